// Package gcmem trades the garbage collector's CPU for memory while the
// process holds many connections that wait on the network. Go collects
// when the heap has grown by GOGC percent (100) of what was live plus the
// goroutine stacks, so with 10,000 probes in flight the heap in use was 455
// MiB for 180 MiB live and 183 MiB of stacks, and the scanner's peak RSS 651
// MiB. A scan holding that many connections is bound by the network, not by
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
	"sync"
	"sync/atomic"
)

const (
	// busy connections lower the growth to busyPercent; it is restored
	// below calm, so a count hovering around one threshold does not flip
	// the setting with every probe.
	busy, calm  = 2000, 1000
	busyPercent = 50
)

var (
	open     atomic.Int64
	lowered  atomic.Bool
	mu       sync.Mutex
	previous int // the percent before lowering, restored after
	enabled  = os.Getenv("GOGC") == ""
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
	if want {
		previous = debug.SetGCPercent(busyPercent)
	} else {
		debug.SetGCPercent(previous)
	}
	lowered.Store(want)
}
