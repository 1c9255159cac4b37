package pipeline

import (
	"context"
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

// sink writes Rows into the dataset's tables: one writer goroutine per
// table, each committing its open part at least every checkpoint.
type sink struct {
	tables  []tableSink
	writers errgroup.Group
}

// tableSink is one table's writer; table[R] for each row type R.
type tableSink interface {
	send(ctx context.Context, r *Rows, ack *Ack) bool
	run(checkpoint time.Duration, stop context.CancelCauseFunc) error
	close()
	committed() (parts int, rows int64)
	name() string
}

// newSink opens a part writer for every table of the dataset in out.
func newSink(out string, checkpoint time.Duration, stop context.CancelCauseFunc) (*sink, error) {
	mx, err := newTable(survey.MXTable, survey.MXDir(out), store.PartOptions{},
		func(r *Rows) []survey.MXRow { return r.MX })
	if err != nil {
		return nil, err
	}
	probes, err := newTable(survey.ProbesTable, survey.ProbesDir(out), store.PartOptions{GroupRows: 2000},
		func(r *Rows) []survey.ProbeRow { return r.Probes })
	if err != nil {
		return nil, err
	}
	s := &sink{tables: []tableSink{mx, probes}}
	for _, t := range s.tables {
		s.writers.Go(func() error { return t.run(checkpoint, stop) })
	}
	return s, nil
}

// write hands every table its rows of r; false when ctx ended first (the
// rows not handed over are not written, and ack never runs).
func (s *sink) write(ctx context.Context, r *Rows, ack *Ack) bool {
	for _, t := range s.tables {
		if !t.send(ctx, r, ack) {
			ack.fail()
			return false
		}
	}
	return true
}

// close ends the writers once everything sent is committed, and returns
// the first write error.
func (s *sink) close() error {
	for _, t := range s.tables {
		t.close()
	}
	return s.writers.Wait()
}

type table[R any] struct {
	tableName string
	pick      func(*Rows) []R
	w         *store.PartWriter[R]
	ch        chan tableBatch[R]
}

type tableBatch[R any] struct {
	rows []R
	ack  *Ack
}

func newTable[R any](name, dir string, opts store.PartOptions, pick func(*Rows) []R) (*table[R], error) {
	w, err := store.NewPartWriter[R](dir, opts)
	if err != nil {
		return nil, err
	}
	return &table[R]{tableName: name, pick: pick, w: w, ch: make(chan tableBatch[R], 256)}, nil
}

func (t *table[R]) name() string                       { return t.tableName }
func (t *table[R]) committed() (parts int, rows int64) { return t.w.Committed() }
func (t *table[R]) close()                             { close(t.ch) }

func (t *table[R]) send(ctx context.Context, r *Rows, ack *Ack) bool {
	rows := t.pick(r)
	if len(rows) == 0 {
		return true
	}
	ack.hold()
	select {
	case t.ch <- tableBatch[R]{rows, ack}:
		return true
	case <-ctx.Done():
		return false
	}
}

// run drains the table's channel into its part writer, committing the open
// part every checkpoint interval and completing the Acks of the rows a
// commit made durable. After a write error it keeps draining (so no stage
// blocks) but drops the open part, leaving only committed parts, and stops
// the scan's work.
func (t *table[R]) run(checkpoint time.Duration, stop context.CancelCauseFunc) error {
	var firstErr error
	var pending []*Ack // of the rows in the open part
	fail := func(err error) {
		firstErr = err
		t.w.Abort()
		for _, a := range pending {
			a.fail()
		}
		pending = nil
		stop(err)
	}
	// commit runs f, which may commit the open part, and completes the
	// Acks of the rows that were in it if it did.
	commit := func(f func() error) error {
		before, _ := t.w.Committed()
		err := f()
		if after, _ := t.w.Committed(); after > before {
			for _, a := range pending {
				a.done()
			}
			pending = pending[:0]
		}
		return err
	}
	tick := time.NewTicker(max(checkpoint/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case b, ok := <-t.ch:
			if !ok {
				if firstErr != nil {
					return firstErr
				}
				return commit(t.w.Close)
			}
			if firstErr != nil {
				b.ack.fail()
				continue
			}
			// A full part is committed inside Write, before b's rows go
			// into the next one.
			if err := commit(func() error { return t.w.Write(b.rows) }); err != nil {
				b.ack.fail()
				fail(err)
				continue
			}
			if b.ack != nil {
				pending = append(pending, b.ack)
			}
		case <-tick.C:
			if firstErr == nil {
				if err := commit(func() error { return t.w.CommitIfOlder(checkpoint) }); err != nil {
					fail(err)
				}
			}
		}
	}
}
