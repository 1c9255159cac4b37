package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// An Ack runs once every part holding its rows is committed, never before,
// and never when its rows could not be written: a coordinator acknowledges
// a worker's message with it, so an early run would lose rows on a crash.
func TestAckRunsOnlyAfterCommit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mx")
	tb, err := newTable(survey.MXTable, dir, store.PartOptions{MaxPartRows: 2},
		func(r *Rows) []survey.MXRow { return r.MX })
	if err != nil {
		t.Fatal(err)
	}
	var stopped atomic.Bool
	s := &sink{groups: []*group{{tables: []tableWriter{tb}, ch: make(chan groupBatch)}}}
	done := make(chan error, 1)
	go func() {
		done <- s.groups[0].run(time.Hour, func(error) { stopped.Store(true) })
	}()
	var fired [4]atomic.Bool
	acks := make([]*Ack, 4)
	for i := range acks {
		acks[i] = NewAck(func() { fired[i].Store(true) })
	}
	row := func(d string) *Rows { return &Rows{MX: []survey.MXRow{{Domain: d}}} }
	ctx := context.Background()
	s.write(ctx, row("a"), acks[0])
	s.write(ctx, row("b"), acks[1])
	for _, a := range acks[:2] {
		a.Release()
	}
	time.Sleep(50 * time.Millisecond)
	if fired[0].Load() || fired[1].Load() {
		t.Fatal("an ack ran before its part was committed")
	}
	// The third row fills the part: it is committed before c goes into
	// the next one.
	s.write(ctx, row("c"), acks[2])
	acks[2].Release()
	waitFor(t, func() bool { return fired[0].Load() && fired[1].Load() })
	if fired[2].Load() {
		t.Fatal("the ack of a row in the open part ran")
	}
	// Rows dropped as repeats: nothing to wait for.
	acks[3].Release()
	if !fired[3].Load() {
		t.Error("an ack with no rows did not run at once")
	}
	close(s.groups[0].ch)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !fired[2].Load() {
		t.Error("closing did not run the ack of the last part")
	}
	if stopped.Load() {
		t.Error("the scan was stopped without a write error")
	}
}

func TestAckNeverRunsForRowsNotWritten(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mx")
	tb, err := newTable(survey.MXTable, dir, store.PartOptions{},
		func(r *Rows) []survey.MXRow { return r.MX })
	if err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(dir) // the part cannot be created
	var stopped atomic.Bool
	s := &sink{groups: []*group{{tables: []tableWriter{tb}, ch: make(chan groupBatch)}}}
	done := make(chan error, 1)
	go func() { done <- s.groups[0].run(time.Hour, func(error) { stopped.Store(true) }) }()
	var fired atomic.Bool
	a := NewAck(func() { fired.Store(true) })
	s.write(context.Background(), &Rows{MX: []survey.MXRow{{Domain: "a"}}}, a)
	a.Release()
	close(s.groups[0].ch)
	if err := <-done; err == nil {
		t.Fatal("no write error")
	}
	if fired.Load() || !stopped.Load() {
		t.Errorf("ack ran %v, scan stopped %v: want false, true", fired.Load(), stopped.Load())
	}
	// A row that never reached a writer (the scan ended first).
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s = &sink{groups: []*group{{tables: []tableWriter{tb}, ch: make(chan groupBatch)}}}
	b := NewAck(func() { fired.Store(true) })
	if s.write(ctx, &Rows{MX: []survey.MXRow{{Domain: "b"}}}, b) {
		t.Error("write after the end reported success")
	}
	b.Release()
	if fired.Load() {
		t.Error("the ack of a row never written ran")
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("timed out")
		}
	}
}

// newSink's tables of a domain commit in the dataset's order: a commit of
// the mx part commits the policies part first and leaves the tlsa part
// open; a commit of the tlsa part commits the mx part first. So a kill
// never leaves a tlsa row whose host no committed mx row names.
func TestSinkCommitsTLSAAfterMX(t *testing.T) {
	out := t.TempDir()
	s, err := newSink(out, true, time.Hour, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	tables := map[string]tableWriter{}
	for _, tw := range s.groups[0].tables {
		tables[tw.name()] = tw
	}
	rows := func(d string) *Rows {
		return &Rows{MX: []survey.MXRow{{Domain: d, MXHost: "mx." + d}}, Policies: []survey.PolicyRow{{Domain: d}},
			TLSA: []survey.TLSARow{{MXHost: "mx." + d}}}
	}
	visible := func() (n [3]int) {
		for i, dir := range []string{survey.PoliciesDir(out), survey.MXDir(out), survey.TLSADir(out)} {
			parts, _ := store.Parts(dir)
			n[i] = len(parts)
		}
		return n
	}
	// The group's goroutine gets no batch, and no tick within an hour's
	// checkpoint: the test writes and commits from its own, as that
	// goroutine would.
	for _, tw := range s.groups[0].tables {
		if err := tw.write(rows("a.test"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := tables[survey.MXTable].commit(); err != nil {
		t.Fatal(err)
	}
	if got := visible(); got != [3]int{1, 1, 0} {
		t.Fatalf("after the mx commit: policies, mx, tlsa parts %v, want [1 1 0]", got)
	}
	for _, tw := range s.groups[0].tables {
		if err := tw.write(rows("b.test"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := tables[survey.TLSATable].commit(); err != nil {
		t.Fatal(err)
	}
	if got := visible(); got != [3]int{2, 2, 1} {
		t.Fatalf("after the tlsa commit: policies, mx, tlsa parts %v, want [2 2 1]", got)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
}
