// Package workers runs short tasks on goroutines that outlive them. A fresh
// goroutine starts with a small stack and grows it (copying) through deep
// code such as DNS message handling or a TLS handshake, every time; a
// worker keeps its grown stack for the next task. And a goroutine that
// waits most of its life (a probe waiting on a slow server) can hand its
// deep, short work to a worker and keep a small stack itself.
package workers

import (
	"fmt"
	"runtime/debug"
	"sync"
	"time"
)

// Pool is an elastic set of workers: Go never waits, starting a worker
// when none is idle, and a worker idle for longer than the pool's idle time
// ends. The zero value is not usable; use New.
type Pool struct {
	idle time.Duration
	work chan func() // unbuffered: a send succeeds only to an idle worker
	quit chan struct{}
	once sync.Once
}

// New returns a pool whose workers end after idle without work.
func New(idle time.Duration) *Pool {
	return &Pool{idle: idle, work: make(chan func()), quit: make(chan struct{})}
}

// Go runs fn on an idle worker, or on a new one when all are busy, so it
// never waits for another task to finish. fn must not panic: a panic ends
// the program, as in any goroutine.
func (p *Pool) Go(fn func()) {
	select {
	case p.work <- fn:
	default:
		go p.loop(fn)
	}
}

// Run runs fn on a worker and waits for its result: a caller that spends
// most of its life waiting hands its deep, short work over this way. A
// panic in fn is carried back and raised in the caller's goroutine, where
// the caller's recovery (a probe's row) sees it.
func (p *Pool) Run(fn func() error) error {
	type result struct {
		err   error
		panic any
	}
	done := make(chan result, 1)
	p.Go(func() {
		defer func() {
			if v := recover(); v != nil {
				done <- result{panic: fmt.Sprintf("%v\n%s", v, debug.Stack())}
			}
		}()
		done <- result{err: fn()}
	})
	r := <-done
	if r.panic != nil {
		panic(r.panic)
	}
	return r.err
}

func (p *Pool) loop(fn func()) {
	t := time.NewTimer(p.idle)
	defer t.Stop()
	for {
		fn()
		t.Reset(p.idle)
		select {
		case fn = <-p.work:
		case <-t.C:
			return
		case <-p.quit:
			return
		}
	}
}

// Stop ends the idle workers; busy ones end when their task does. Go may
// still be called: it then starts workers that end after their task.
func (p *Pool) Stop() { p.once.Do(func() { close(p.quit) }) }
