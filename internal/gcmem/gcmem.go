// Package gcmem sets the garbage collector's trade of CPU for memory where
// the runtime's default does not fit: Open spends CPU to save memory while
// the process holds many connections that wait on the network, and
// HeapFloor spends memory to save CPU while a job's live heap is still far
// below what it will need (the analyzer, a long scan, the lab). The two
// compose: many open connections win over a floor.
//
// Open: Go collects when the heap has grown by GOGC percent (100) of what
// was live plus the goroutine stacks, so with 10,000 probes in flight the
// heap in use was 455 MiB for 180 MiB live and 183 MiB of stacks, and the
// scanner's peak RSS 651 MiB. A scan holding that many connections is bound by the network, not by
// its CPU (that run used two thirds of one core): collecting at half the
// growth costs CPU it has to spare (about 10% more) and took the peak to
// 528 MiB (latency 3-6 s, 100,000 lab domains). Below a thousand
// connections, where a lab scan is CPU-bound, the runtime's setting stays.
//
// GOGC set in the environment is the user's choice and is left alone.
package gcmem

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// busy connections lower the growth to busyPercent; it is restored
	// below calm, so a count hovering around one threshold does not flip
	// the setting with every probe.
	busy, calm  = 2000, 1000
	busyPercent = 50
)

var (
	enabled = os.Getenv("GOGC") == ""
	open    atomic.Int64
	lowered atomic.Bool // written under mu; read without it on Open's fast path

	// mu guards the setting gcmem derives from what is asked of it (apply).
	mu      sync.Mutex
	floor   uint64 // HeapFloor's, 0 when none is set
	live    uint64 // the live heap as the floor's poll last read it
	changed bool   // the runtime's setting is gcmem's; base is what it was
	base    int
	set     int // the percent gcmem last set
)

// Open counts a connection that may wait on the network until the
// returned func is called.
func Open() (done func()) {
	adjust(open.Add(1))
	return func() { adjust(open.Add(-1)) }
}

func adjust(n int64) {
	if !enabled {
		return
	}
	want := lowered.Load()
	switch {
	case n >= busy:
		want = true
	case n < calm:
		want = false
	}
	if want == lowered.Load() {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	if want == lowered.Load() {
		return
	}
	lowered.Store(want)
	apply()
}

// apply sets the growth percent that what is asked now calls for, under mu.
// Many open connections win over a floor: memory is then their cost, and
// the floor waits until they are fewer. With neither, the runtime's own
// setting is back.
func apply() {
	if !lowered.Load() && floor == 0 {
		if changed {
			debug.SetGCPercent(base)
			changed = false
		}
		return
	}
	if !changed {
		base = debug.SetGCPercent(100)
		debug.SetGCPercent(base)
		set, changed = base, true
	}
	if base < 0 { // GC off by debug.SetGCPercent: nothing to tune
		return
	}
	want := busyPercent
	if !lowered.Load() {
		want = floorPercent(floor, live, base)
	}
	if want != set {
		debug.SetGCPercent(want)
		set = want
	}
}

// A batch job's live heap grows from nothing over its run: the analyzer's
// caches of certificates and targets reach about 460 MiB for a million
// probe rows. With the default GOGC the collector runs whenever the heap
// has doubled, so while the live heap is small it runs often and finds
// garbage it could have left for later: 58 collections for that analysis,
// a peak of 1.06 GB all the same. HeapFloor lets the heap grow to a floor
// before the collector runs, and to what the runtime's own setting allows
// once the live heap is past half the floor: fewer collections, and the
// peak no higher than the floor or the runtime's own peak, whichever is
// larger. A long scan's sets and caches grow the same way, and so does
// the lab's heap, which stays small while it answers a million
// connections.
//
// It raises the growth percent after each collection (polling the live
// heap every floorPoll) so that the next goal is the larger of the two, and
// restores the runtime's setting when stop is called. One floor at a time:
// a second HeapFloor replaces the first. With GOGC set in the environment
// it does nothing.
func HeapFloor(f uint64) (stop func()) {
	if !enabled || f == 0 {
		return func() {}
	}
	// The live heap is read before the floor applies: a floor set mid-run
	// must not scale the minimum heap for a poll's length.
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(sample)
	mu.Lock()
	floor, live = f, sample[0].Value.Uint64()
	apply()
	mu.Unlock()
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(floorPoll)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			metrics.Read(sample)
			mu.Lock()
			if floor == f {
				live = sample[0].Value.Uint64()
				apply()
			}
			mu.Unlock()
		}
	}()
	return func() {
		close(done)
		<-finished
		mu.Lock()
		if floor == f {
			floor = 0
			apply()
		}
		mu.Unlock()
	}
}

// floorPoll is how often HeapFloor reads the live heap, which changes only
// when a collection ends.
const floorPoll = 20 * time.Millisecond

// minHeap is the runtime's smallest heap goal at GOGC=100 (4 MiB); before
// the first collection the live heap reads 0, and the goal is this scaled
// by the percent.
const minHeap = 4 << 20

// floorPercent is the growth percent that makes the next heap goal, live x
// (1 + percent/100), the floor, or base when that is more.
func floorPercent(floor, live uint64, base int) int {
	live = max(live, minHeap)
	if live >= floor {
		return base
	}
	return max(int(floor*100/live)-100, base)
}
