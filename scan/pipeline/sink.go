package pipeline

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// Ack is what the rows of one piece of work wait on before the work may be
// acknowledged (a cluster coordinator acknowledges a worker's message with
// it): its function runs once, after every Parquet part holding the rows
// given with it has been committed, and never when one of them could not be
// written, so that the work is delivered again instead of lost.
//
// The creator holds one reference and gives it up with Release once every
// row of the work has been handed to the Scan; each table's writer holds
// one more until the part holding that table's rows is committed.
type Ack struct {
	refs   atomic.Int64
	failed atomic.Bool
	fn     func()
}

// NewAck returns an Ack that runs fn when its rows are committed.
func NewAck(fn func()) *Ack {
	a := &Ack{fn: fn}
	a.refs.Store(1)
	return a
}

// Release gives up the creator's reference. With no rows given (a repeat
// that was dropped), fn runs at once.
func (a *Ack) Release() { a.done() }

func (a *Ack) hold() {
	if a != nil {
		a.refs.Add(1)
	}
}

func (a *Ack) done() {
	if a != nil && a.refs.Add(-1) == 0 && !a.failed.Load() {
		a.fn()
	}
}

// fail marks rows that will never be committed: fn must not run.
func (a *Ack) fail() {
	if a != nil {
		a.failed.Store(true)
	}
}

// sink writes Rows into the dataset's tables. Tables are written in
// groups, each by one goroutine: a domain's tables (policies, mx, tlsa, in
// that order, each writer committing the one before it first:
// store.CommitBefore), and the probes. Each group commits its open parts
// together at least every checkpoint. A group writes what has queued up in
// one store write per table (rows of several domains or probes together,
// up to maxWriteRows): one write per domain cost a size check and a
// dispatch each, and a writer that falls behind keeps probes and resolvers
// waiting with their rows.
//
// The order is the dataset's contract (docs/schema.md): a domain's
// policies row is committed no later than its mx rows, so committed mx rows
// mean a domain done; a tlsa row no earlier than the mx rows written before
// it, so every committed tlsa row's host is referenced by a committed mx
// row, whatever a kill interrupts. A host referenced by committed mx rows
// whose tlsa row was lost is looked up again on -resume (Task.TLSAHost).
type sink struct {
	groups  []*group
	writers errgroup.Group
}

// newSink opens a part writer for every table of the dataset in out: mx and
// probes, and tlsa and policies with policies on.
func newSink(out string, policies bool, checkpoint time.Duration, stop context.CancelCauseFunc) (*sink, error) {
	mx, err := newTable(survey.MXTable, survey.MXDir(out), store.PartOptions{},
		func(r *Rows) []survey.MXRow { return r.MX })
	if err != nil {
		return nil, err
	}
	domain := &group{}
	if policies {
		tlsa, err := newTable(survey.TLSATable, survey.TLSADir(out), store.PartOptions{},
			func(r *Rows) []survey.TLSARow { return r.TLSA })
		if err != nil {
			return nil, err
		}
		pol, err := newTable(survey.PoliciesTable, survey.PoliciesDir(out), store.PartOptions{GroupRows: 2000},
			func(r *Rows) []survey.PolicyRow { return r.Policies })
		if err != nil {
			return nil, err
		}
		mx.w.CommitBefore(pol.w)
		tlsa.w.CommitBefore(mx.w)
		domain.tables = []tableWriter{pol, mx, tlsa}
	} else {
		domain.tables = []tableWriter{mx}
	}
	probes, err := newTable(survey.ProbesTable, survey.ProbesDir(out), store.PartOptions{GroupRows: 2000},
		func(r *Rows) []survey.ProbeRow { return r.Probes })
	if err != nil {
		return nil, err
	}
	s := &sink{groups: []*group{domain, {tables: []tableWriter{probes}}}}
	for _, g := range s.groups {
		g.ch = make(chan groupBatch, 256)
		s.writers.Go(func() error { return g.run(checkpoint, stop) })
	}
	return s, nil
}

// tables lists every table, for the manifest.
func (s *sink) tables() []tableWriter {
	var ts []tableWriter
	for _, g := range s.groups {
		ts = append(ts, g.tables...)
	}
	return ts
}

// write hands every group the rows of r it writes; false when ctx ended
// first (the rows not handed over are not written, and ack never runs).
func (s *sink) write(ctx context.Context, r *Rows, ack *Ack) bool {
	for _, g := range s.groups {
		n := 0
		for _, t := range g.tables {
			if t.rows(r) > 0 {
				n++
			}
		}
		if n == 0 {
			continue
		}
		for range n {
			ack.hold()
		}
		select {
		case g.ch <- groupBatch{r, ack}:
		case <-ctx.Done():
			ack.fail()
			return false
		}
	}
	return true
}

// close ends the writers once everything sent is committed, and returns
// the first write error.
func (s *sink) close() error {
	for _, g := range s.groups {
		close(g.ch)
	}
	return s.writers.Wait()
}

// group is tables written by one goroutine, in order.
type group struct {
	tables []tableWriter
	ch     chan groupBatch
}

type groupBatch struct {
	rows *Rows
	ack  *Ack
}

// rows counts the rows of r that the group writes.
func (g *group) rows(r *Rows) int {
	n := 0
	for _, t := range g.tables {
		n += t.rows(r)
	}
	return n
}

// maxWriteRows bounds the rows a group takes off its channel for one
// write. A write puts all its rows into one part, so it also bounds by how
// much a part may pass its PartOptions.MaxPartRows.
const maxWriteRows = 1024

// take returns first and the batches queued behind it, up to maxWriteRows
// rows, without waiting for more: ok is false once the channel is closed
// (the batches taken before are still returned).
func (g *group) take(bs []groupBatch, first groupBatch) (_ []groupBatch, ok bool) {
	bs = append(bs[:0], first)
	n := g.rows(first.rows)
	for n < maxWriteRows {
		select {
		case b, open := <-g.ch:
			if !open {
				return bs, false
			}
			bs = append(bs, b)
			n += g.rows(b.rows)
		default:
			return bs, true
		}
	}
	return bs, true
}

// tableWriter is one table's part writer; table[R] for each row type R.
type tableWriter interface {
	name() string
	rows(r *Rows) int // the table's rows in r
	// write writes the table's rows of every batch in one store write,
	// so into one part, remembering each batch's ack for that part.
	write(bs []groupBatch) error
	committed() (parts int, rows int64)
	// settle completes the acks of the rows in parts committed since the
	// last call.
	settle()
	failPending()
	age() time.Duration // of the open part, 0 when none
	commit() error
	close() error
	abort()
}

// run drains the group's channel into its tables, committing open parts
// every checkpoint interval and completing the Acks of the rows a commit
// made durable. After a write error it keeps draining (so no stage blocks)
// but drops the open parts, leaving only committed ones, and stops the
// scan's work.
func (g *group) run(checkpoint time.Duration, stop context.CancelCauseFunc) error {
	var firstErr error
	fail := func(err error) {
		firstErr = err
		for _, t := range g.tables {
			t.abort()
			t.failPending()
		}
		stop(err)
	}
	// settle completes the acks of whatever the last step committed: a
	// part filled up, its age, or the mx part committing the others first.
	settle := func() {
		for _, t := range g.tables {
			t.settle()
		}
	}
	closeAll := func() error {
		if firstErr != nil {
			return firstErr
		}
		var errs []error
		for _, t := range g.tables { // in order, as each commits the one before it first
			errs = append(errs, t.close())
		}
		settle()
		return errors.Join(errs...)
	}
	tick := time.NewTicker(max(checkpoint/4, 10*time.Millisecond))
	defer tick.Stop()
	var bs []groupBatch
	for {
		select {
		case b, ok := <-g.ch:
			if !ok {
				return closeAll()
			}
			bs, ok = g.take(bs, b)
			if firstErr != nil {
				for _, b := range bs {
					b.ack.fail()
				}
			} else {
				// Tables in order: every batch's policies rows are
				// written before its mx rows, its mx rows before its tlsa
				// rows, as one batch at a time would.
				for _, t := range g.tables {
					if err := t.write(bs); err != nil {
						for _, b := range bs {
							b.ack.fail()
						}
						fail(err)
						break
					}
				}
				if firstErr == nil {
					settle()
				}
			}
			clear(bs) // the rows are not kept alive until the next write
			if !ok {
				return closeAll()
			}
		case <-tick.C:
			if firstErr != nil {
				continue
			}
			if !g.due(checkpoint) {
				continue
			}
			for _, t := range g.tables {
				if err := t.commit(); err != nil {
					fail(err)
					break
				}
			}
			if firstErr == nil {
				settle()
			}
		}
	}
}

// due says a part of the group has been open for a checkpoint: then all
// of them are committed, so that a tlsa part does not lag behind the mx
// part its rows follow.
func (g *group) due(checkpoint time.Duration) bool {
	for _, t := range g.tables {
		if t.age() >= checkpoint {
			return true
		}
	}
	return false
}

type table[R any] struct {
	tableName string
	pick      func(*Rows) []R
	w         *store.PartWriter[R]
	buf       []R    // the rows of one write
	pending   []*Ack // of the rows in the open part
	parts     int    // committed parts when pending was last settled
}

func newTable[R any](name, dir string, opts store.PartOptions, pick func(*Rows) []R) (*table[R], error) {
	w, err := store.NewPartWriter[R](dir, opts)
	if err != nil {
		return nil, err
	}
	return &table[R]{tableName: name, pick: pick, w: w}, nil
}

func (t *table[R]) name() string                       { return t.tableName }
func (t *table[R]) rows(r *Rows) int                   { return len(t.pick(r)) }
func (t *table[R]) committed() (parts int, rows int64) { return t.w.Committed() }
func (t *table[R]) age() time.Duration                 { return t.w.Age() }
func (t *table[R]) commit() error                      { return t.w.Commit() }
func (t *table[R]) close() error                       { return t.w.Close() }
func (t *table[R]) abort()                             { t.w.Abort() }

// write writes the table's rows of bs, copied into one slice (so the
// store's in-place UTF-8 repair never touches rows a caller still reads).
// A full part is committed inside Write before they go into the next one,
// so the acks pending before are settled first.
func (t *table[R]) write(bs []groupBatch) error {
	for _, b := range bs {
		t.buf = append(t.buf, t.pick(b.rows)...)
	}
	if len(t.buf) == 0 {
		return nil
	}
	before, _ := t.w.Committed()
	err := t.w.Write(t.buf)
	clear(t.buf) // the rows' strings and chains are not kept alive by the buffer
	t.buf = t.buf[:0]
	if after, _ := t.w.Committed(); after > before {
		t.settle()
	}
	if err != nil {
		return err
	}
	for _, b := range bs {
		if b.ack != nil && t.rows(b.rows) > 0 {
			t.pending = append(t.pending, b.ack)
		}
	}
	return nil
}

func (t *table[R]) settle() {
	parts, _ := t.w.Committed()
	if parts == t.parts {
		return
	}
	t.parts = parts
	for _, a := range t.pending {
		a.done()
	}
	t.pending = t.pending[:0]
}

func (t *table[R]) failPending() {
	for _, a := range t.pending {
		a.fail()
	}
	t.pending = nil
}
