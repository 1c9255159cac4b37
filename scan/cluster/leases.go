package cluster

import (
	"strconv"
	"sync"
	"time"

	"github.com/mxsurvey/mxsurvey/scan/pipeline"
)

// leases are the targets granted to workers and not yet answered for. A
// lease holds its target's slot in the per-address scheduler until the
// worker's result arrives or the lease runs out; it runs out only once the
// worker's connection is certainly over (docs/distributed.md, "Politeness"),
// and then the target is queued again.
type leases struct {
	run     string
	d       time.Duration
	expired func(t pipeline.Target, release func()) // called once per lease that ran out
	running func(delta int64)                       // the count of leases changed

	mu  sync.Mutex
	m   map[string]*held
	seq uint64
}

type held struct {
	t       pipeline.Target
	release func()
	timer   *time.Timer
}

func newLeases(run string, d time.Duration, expired func(pipeline.Target, func()), running func(int64)) *leases {
	return &leases{run: run, d: d, expired: expired, running: running, m: map[string]*held{}}
}

// grant starts the lease of t, whose scheduler slot release frees.
func (l *leases) grant(t pipeline.Target, release func()) lease {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	id := l.run + "-" + strconv.FormatUint(l.seq, 36)
	h := &held{t: t, release: release}
	h.timer = time.AfterFunc(l.d, func() {
		if h := l.take(id, t); h != nil {
			l.expired(h.t, h.release)
		}
	})
	l.m[id] = h
	l.running(1)
	return lease{ID: id, Target: t}
}

// take ends the lease id of t and returns it, or nil when it has already
// ended (answered, run out) or belongs to another coordinator run.
func (l *leases) take(id string, t pipeline.Target) *held {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.m[id]
	if h == nil || h.t != t {
		return nil
	}
	delete(l.m, id)
	h.timer.Stop()
	l.running(-1)
	return h
}
