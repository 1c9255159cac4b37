package resolve

import (
	"sync"
	"time"
)

// helperIdle is how long a helper goroutine waits for more work before it
// ends: long enough to live through a scan's steady state, short enough
// that a finished burst does not leave them around.
const helperIdle = 2 * time.Second

// helpers run the questions a lookup asks at once (AAAA beside A, the hosts
// of a domain with several MX) on goroutines that outlive one question. A
// fresh goroutine per question starts with a small stack and grows it
// through the DNS code every time: stack copying was 10% of a DNS-only
// scan's CPU. A helper keeps its grown stack for the next question. More
// kinds of question per domain (policy records) cost a hand-off each, not a
// goroutine.
type helpers struct {
	work chan func() // unbuffered: a send succeeds only to an idle helper
	quit chan struct{}
	once sync.Once
}

func newHelpers() *helpers {
	return &helpers{work: make(chan func()), quit: make(chan struct{})}
}

// goRun runs fn on an idle helper, or on a new one when all are busy, so it
// never waits for another question to finish.
func (h *helpers) goRun(fn func()) {
	select {
	case h.work <- fn:
	default:
		go h.loop(fn)
	}
}

func (h *helpers) loop(fn func()) {
	t := time.NewTimer(helperIdle)
	defer t.Stop()
	for {
		fn()
		t.Reset(helperIdle)
		select {
		case fn = <-h.work:
		case <-t.C:
			return
		case <-h.quit:
			return
		}
	}
}

// stop ends the idle helpers; busy ones end when their question does.
func (h *helpers) stop() { h.once.Do(func() { close(h.quit) }) }
