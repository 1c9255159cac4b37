package polite

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// The tests in this file run in a synctest bubble: time is a fake clock
// that moves only when every goroutine waits, so durations are exact and
// nothing depends on the machine's load.

func addr(i int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}) }

// TestLongestQueueFirst: of the free, rested addresses the one with the
// most queued items goes first; equal queues go in the order their
// addresses were first seen.
func TestLongestQueueFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := New[string](ctx, 1, 0, 100)
		for _, q := range []struct {
			a int
			n int
		}{{1, 1}, {2, 3}, {3, 2}, {4, 3}} {
			for i := range q.n {
				if err := s.Add(ctx, addr(q.a), fmt.Sprintf("%d.%d", q.a, i+1)); err != nil {
					t.Fatal(err)
				}
			}
		}
		next := func() (string, func()) {
			item, done, ok := s.Next(ctx)
			if !ok {
				t.Fatal("Next: scheduler closed")
			}
			return item, done
		}
		var got []string
		var dones []func()
		for range 4 {
			item, done := next()
			got = append(got, item)
			dones = append(dones, done)
		}
		// Address 2's second item waits for its first to end (one
		// connection per address); once it has, 2 again has the longest
		// queue (2 left) ahead of 4 (2 left, seen later).
		dones[0]()
		item, done := next()
		got = append(got, item)
		want := []string{"2.1", "4.1", "3.1", "1.1", "2.2"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("order %v, want %v", got, want)
		}
		s.Close()
		for _, d := range append(dones[1:], done) {
			d()
		}
		drain(ctx, s)
	})
}

// TestEqualQueuesGoToTheBusierAddress: with one item queued each, the
// address that has had more items goes first (its next targets are likely
// still being resolved), even though the other was seen first.
func TestEqualQueuesGoToTheBusierAddress(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := New[string](ctx, 1, 0, 100)
		s.Add(ctx, addr(1), "one")
		s.Add(ctx, addr(2), "busy.1")
		s.Add(ctx, addr(2), "busy.2")
		s.Add(ctx, addr(2), "busy.3")
		var got []string
		for range 3 {
			item, done, _ := s.Next(ctx)
			got = append(got, item)
			done()
		}
		// busy.1 (3 queued), busy.2 (2 queued, one rested 0s), then
		// busy.3 and one tie at one item: busy has had 3.
		if want := "[busy.1 busy.2 busy.3]"; fmt.Sprint(got) != want {
			t.Fatalf("order %v, want %s", got, want)
		}
		s.Close()
		drain(ctx, s)
	})
}

// drain runs what is left, one at a time, until the scheduler is closed and
// empty, so the bubble ends with no goroutine left.
func drain[T any](ctx context.Context, s *Scheduler[T]) {
	for {
		_, done, ok := s.Next(ctx)
		if !ok {
			return
		}
		done()
	}
}

// TestIntervalCountsFromTheEnd: the next connection to an address starts
// exactly the interval after the previous one ended, not after it began,
// and not a moment later.
func TestIntervalCountsFromTheEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := New[int](ctx, 1, time.Second, 10)
		s.Add(ctx, addr(1), 1)
		s.Add(ctx, addr(1), 2)
		s.Close()
		start := time.Now()
		_, done, _ := s.Next(ctx)
		time.Sleep(5 * time.Second) // a long connection
		done()
		_, done, ok := s.Next(ctx)
		if !ok {
			t.Fatal("second item not handed out")
		}
		if got := time.Since(start); got != 6*time.Second {
			t.Fatalf("second connection after %v, want 6s (5s connection + 1s interval)", got)
		}
		done()
		drain(ctx, s)
	})
}

// span is one simulated connection.
type span struct {
	addr       netip.Addr
	start, end time.Time
}

// TestBusiestAddressSetsTheEnd simulates a scan on the fake clock: one
// address hosts 20 targets (300 ms each, 1 s interval), while a producer
// (the resolver) keeps adding one-target addresses faster than the 4
// workers can probe them, for 10 s. The busiest address decides the end:
// the polite lower bound is 20 x 300 ms + 19 x 1 s = 25 s (all the work
// spread over the workers takes 14 s). Served in order of rest (the
// scheduler before longest-queue-first), the busiest address waited behind
// every newer one-target address and the run took 36.2 s. Now its every
// start is at most one short probe (the wait for a worker to free) after
// its interval, and exactly on its interval once the crowd is gone; and no
// address is ever contacted twice at once or within the interval.
func TestBusiestAddressSetsTheEnd(t *testing.T) {
	const (
		interval  = time.Second
		busyProbe = 300 * time.Millisecond
		busyN     = 20
		oneProbe  = 100 * time.Millisecond
		workers   = 4
		// 50 one-target addresses per second, 4 workers x 10 probes/s:
		// the workers never run out of work while the producer runs.
		oneEvery = 20 * time.Millisecond
		ones     = 500
	)
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		s := New[int](ctx, 1, interval, ones+busyN)
		busy := addr(0)
		var mu sync.Mutex
		var spans []span
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for {
					item, done, ok := s.Next(ctx)
					if !ok {
						return
					}
					a, d := busy, busyProbe
					if item >= 0 {
						a, d = netip.AddrFrom4([4]byte{10, byte(item >> 16), byte(item >> 8), byte(item)}), oneProbe
					}
					st := time.Now()
					time.Sleep(d)
					mu.Lock()
					spans = append(spans, span{a, st, time.Now()})
					mu.Unlock()
					done()
				}
			})
		}
		start := time.Now()
		for i := range busyN {
			s.Add(ctx, busy, -1-i)
		}
		for i := range ones {
			s.Add(ctx, netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), i)
			time.Sleep(oneEvery)
		}
		s.Close()
		wg.Wait()

		if len(spans) != busyN+ones {
			t.Fatalf("%d connections, want %d", len(spans), busyN+ones)
		}
		checkPolite(t, spans, interval)
		var busySpans []span
		var end, crowdEnd time.Time
		for _, sp := range spans {
			end = latest(end, sp.end)
			if sp.addr == busy {
				busySpans = append(busySpans, sp)
			} else {
				crowdEnd = latest(crowdEnd, sp.end)
			}
		}
		bound := busyN*busyProbe + (busyN-1)*interval
		makespan := end.Sub(start)
		t.Logf("makespan %v, polite lower bound %v", makespan, bound)
		if busySpans[0].start != start {
			t.Errorf("the busiest address started %v after the first item", busySpans[0].start.Sub(start))
		}
		for i := 1; i < len(busySpans); i++ {
			idle := busySpans[i].start.Sub(busySpans[i-1].end) - interval
			if idle > oneProbe {
				t.Errorf("busiest address: connection %d waited %v beyond its interval, want at most %v", i, idle, oneProbe)
			}
			if busySpans[i].start.After(crowdEnd) && idle != 0 {
				t.Errorf("busiest address: connection %d waited %v beyond its interval with every worker free", i, idle)
			}
		}
		if limit := bound + busyN*oneProbe; makespan > limit {
			t.Errorf("makespan %v, want at most %v (the bound plus one short probe per busy connection)", makespan, limit)
		}
	})
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// checkPolite fails t if any address had two connections at once or one
// starting sooner than interval after the previous one ended.
func checkPolite(t *testing.T, spans []span, interval time.Duration) {
	t.Helper()
	last := map[netip.Addr]span{}
	// spans are recorded at their end; per address at most one is open,
	// so per address they are in order.
	for _, sp := range spans {
		if prev, ok := last[sp.addr]; ok {
			if gap := sp.start.Sub(prev.end); gap < interval {
				t.Errorf("%s: a connection started %v after the previous ended, want >= %v", sp.addr, gap, interval)
			}
		}
		last[sp.addr] = sp
	}
}
