package pipeline

import (
	"context"
	"fmt"
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

// Rows queued while the writer was busy go into one store write, so into
// one part even past MaxPartRows (a write is never split), and their acks
// still wait for that part's commit.
func TestSinkWritesQueuedRowsTogether(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mx")
	tb, err := newTable(survey.MXTable, dir, store.PartOptions{MaxPartRows: 2},
		func(r *Rows) []survey.MXRow { return r.MX })
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{groups: []*group{{tables: []tableWriter{tb}, ch: make(chan groupBatch, 8)}}}
	var fired [3]atomic.Bool
	ctx := context.Background()
	for i, d := range []string{"a", "b", "c"} {
		a := NewAck(func() { fired[i].Store(true) })
		s.write(ctx, &Rows{MX: []survey.MXRow{{Domain: d}}}, a)
		a.Release()
	}
	close(s.groups[0].ch) // queued before the writer starts: taken in one go
	var inOpenPart bool
	tb.w.CommitBefore(committerFunc(func() error {
		inOpenPart = fired[0].Load() || fired[1].Load() || fired[2].Load()
		return nil
	}))
	if err := s.groups[0].run(time.Hour, func(error) {}); err != nil {
		t.Fatal(err)
	}
	if inOpenPart {
		t.Error("an ack ran before the part holding its row was committed")
	}
	for i := range fired {
		if !fired[i].Load() {
			t.Errorf("ack %d did not run after the commit", i)
		}
	}
	parts, err := store.Parts(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range parts {
		var n int
		if err := store.ReadPart(p, func(*survey.MXRow) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprint(n))
	}
	if fmt.Sprint(got) != "[3]" {
		t.Errorf("rows per part %v, want [3]: the queued rows in one write", got)
	}
}

type committerFunc func() error

func (f committerFunc) Commit() error { return f() }

// take stops at maxWriteRows rows, never splits a batch, and returns what
// it took when the channel closes.
func TestGroupTakeBounds(t *testing.T) {
	tb, err := newTable(survey.MXTable, t.TempDir(), store.PartOptions{},
		func(r *Rows) []survey.MXRow { return r.MX })
	if err != nil {
		t.Fatal(err)
	}
	two := &Rows{MX: make([]survey.MXRow, 2)}
	tests := []struct {
		name   string
		queued int // batches of two rows behind the first
		close  bool
		want   int // batches taken
		wantOK bool
	}{
		{"nothing queued", 0, false, 1, true},
		{"some queued", 10, false, 11, true},
		{"bound", maxWriteRows, false, maxWriteRows / 2, true},
		{"closed", 3, true, 4, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := &group{tables: []tableWriter{tb}, ch: make(chan groupBatch, tt.queued)}
			for range tt.queued {
				g.ch <- groupBatch{rows: two}
			}
			if tt.close {
				close(g.ch)
			}
			bs, ok := g.take(nil, groupBatch{rows: two})
			if len(bs) != tt.want || ok != tt.wantOK {
				t.Errorf("took %d batches, ok %v; want %d, %v", len(bs), ok, tt.want, tt.wantOK)
			}
		})
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
		if err := tw.write([]groupBatch{{rows: rows("a.test")}}); err != nil {
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
		if err := tw.write([]groupBatch{{rows: rows("b.test")}}); err != nil {
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

// BenchmarkSink hands the sink one domain's rows (or one probe row) per
// op from several goroutines, as resolvers and probers do, and closes it:
// ns/op is the writer's cost per domain or probe, commits included.
func BenchmarkSink(b *testing.B) {
	domainRows := func(i int) *Rows {
		d := fmt.Sprintf("d%d.example", i)
		at := time.Unix(1_800_000_000, 0).UTC()
		mx := func(n int) survey.MXRow {
			return survey.MXRow{Domain: d, Input: d, DNSStatus: survey.DNSOK, MXHost: fmt.Sprintf("mx%d.%s", n, d),
				MXPreference: int32(10 * n), MXHostStatus: survey.DNSOK, IP: fmt.Sprintf("192.0.%d.%d", i%256, n),
				IPVersion: 4, ResolvedAt: at, MXDNSSEC: "insecure", AddrDNSSEC: "insecure"}
		}
		return &Rows{MX: []survey.MXRow{mx(1), mx(2)},
			Policies: []survey.PolicyRow{{Domain: d, MTASTSTXT: []string{"v=STSv1; id=20260101"}}},
			TLSA:     []survey.TLSARow{{MXHost: "mx1." + d, TLSAName: "_25._tcp.mx1." + d, TLSAStatus: "no_records", TLSADNSSEC: "insecure"}}}
	}
	probeRows := func(i int) *Rows {
		return &Rows{Probes: []survey.ProbeRow{{IP: fmt.Sprintf("192.0.%d.%d", i%256, i/256%256), MXHost: fmt.Sprintf("mx.d%d.example", i),
			Banner: "220 mx.example ESMTP", Outcome: survey.OutcomeTLS, TLSVersion: "TLS 1.3"}}}
	}
	for _, bc := range []struct {
		name string
		rows func(int) *Rows
	}{{"domains", domainRows}, {"probes", probeRows}} {
		b.Run(bc.name, func(b *testing.B) {
			rows := make([]*Rows, 4096)
			for i := range rows {
				rows[i] = bc.rows(i)
			}
			ctx := context.Background()
			var next atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(8)
			b.ResetTimer()
			s, err := newSink(b.TempDir(), true, time.Hour, func(error) {})
			if err != nil {
				b.Fatal(err)
			}
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1)
					if !s.write(ctx, rows[i%int64(len(rows))], nil) {
						b.Error("write refused")
					}
				}
			})
			if err := s.close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
