// Package polite schedules probes so that no address is hit by more than a
// set number of connections at once, nor sooner than a minimum interval after
// the previous one ended. A mail provider that hosts a million domains sees
// one guest at a time, not a burst of thousands.
//
// Scheduling instead of blocking: a worker never waits on a busy address
// while other addresses have work ready; it takes the next ready item. One
// dispatcher goroutine owns the queues and hands each ready item to exactly
// one waiting worker over a channel, so ten thousand idle workers cost no
// CPU: nothing wakes them but their own item.
package polite

import (
	"container/heap"
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Scheduler is safe for concurrent use: producers call Add, workers Next.
type Scheduler[T any] struct {
	perAddr  int
	interval time.Duration
	now      func() time.Time

	room    chan struct{} // one token per queued item: bounds the queue
	adds    chan added[T] // to the dispatcher
	release chan *addrQueue[T]
	out     chan handout[T] // ready items, one per waiting worker
	closing chan struct{}
	closeMu sync.Once
	stopped chan struct{} // closed when the dispatcher has returned

	pending atomic.Int64 // queued items, for Stats
	tracked atomic.Int64 // addresses remembered, for Stats

	// Owned by the dispatcher goroutine.
	addrs    map[netip.Addr]*addrQueue[T]
	ready    readyHeap[T]
	inFlight int
	releases int
}

type added[T any] struct {
	addr netip.Addr
	item T
}

type handout[T any] struct {
	item T
	done func()
}

type addrQueue[T any] struct {
	addr     netip.Addr
	items    []T
	inFlight int
	readyAt  time.Time // earliest next start
	index    int       // in the ready heap, -1 when absent
}

// New returns a scheduler allowing perAddr concurrent items per address
// (at least 1), interval between the end of one and the start of the next
// on the same address, and at most maxPending queued items before Add
// blocks. Its dispatcher runs until Close has been called and every item
// has been handed out and released, or until ctx ends.
func New[T any](ctx context.Context, perAddr int, interval time.Duration, maxPending int) *Scheduler[T] {
	s := &Scheduler[T]{perAddr: max(perAddr, 1), interval: interval, now: time.Now,
		room: make(chan struct{}, max(maxPending, 1)), adds: make(chan added[T]),
		release: make(chan *addrQueue[T]), out: make(chan handout[T]), closing: make(chan struct{}),
		stopped: make(chan struct{}),
		addrs:   make(map[netip.Addr]*addrQueue[T])}
	go s.dispatch(ctx)
	return s
}

// Add queues item for addr, blocking while the queue is full.
func (s *Scheduler[T]) Add(ctx context.Context, addr netip.Addr, item T) error {
	select {
	case s.room <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case s.adds <- added[T]{addr, item}:
		return nil
	case <-ctx.Done():
		<-s.room
		return ctx.Err()
	}
}

// Close says no more items will be added; Next reports false once drained.
func (s *Scheduler[T]) Close() {
	s.closeMu.Do(func() { close(s.closing) })
}

// Next returns the next item whose address is free and rested, and a done
// function the caller must call when the connection has ended. ok is false
// when the scheduler is closed and drained, or ctx is done.
func (s *Scheduler[T]) Next(ctx context.Context) (item T, done func(), ok bool) {
	select {
	case h, open := <-s.out:
		if !open {
			return item, nil, false
		}
		return h.item, h.done, true
	case <-ctx.Done():
		return item, nil, false
	}
}

// Done is closed when the scheduler has stopped: it was closed and every
// item was handed out and released, or its context ended.
func (s *Scheduler[T]) Done() <-chan struct{} { return s.stopped }

// Stats reports queued items and tracked addresses.
func (s *Scheduler[T]) Stats() (pending, addrs int) {
	return int(s.pending.Load()), int(s.tracked.Load())
}

func (s *Scheduler[T]) dispatch(ctx context.Context) {
	defer close(s.stopped)
	defer close(s.out)
	closing := s.closing
	closed := false
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		if closed && s.pending.Load() == 0 && s.inFlight == 0 {
			return
		}
		var out chan handout[T]
		var next handout[T]
		var wake <-chan time.Time
		if s.ready.Len() > 0 {
			q := s.ready[0]
			if wait := q.readyAt.Sub(s.now()); wait > 0 {
				timer.Reset(wait)
				wake = timer.C
			} else {
				out = s.out
				next = handout[T]{item: q.items[0], done: s.releaseFunc(q)}
			}
		}
		select {
		case a := <-s.adds:
			s.enqueue(a)
		case q := <-s.release:
			s.released(q)
		case out <- next:
			s.handedOut()
		case <-wake:
		case <-closing:
			closed, closing = true, nil
		case <-ctx.Done():
			return
		}
		if wake != nil && !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

func (s *Scheduler[T]) enqueue(a added[T]) {
	q := s.addrs[a.addr]
	if q == nil {
		q = &addrQueue[T]{addr: a.addr, index: -1}
		s.addrs[a.addr] = q
		s.tracked.Store(int64(len(s.addrs)))
	}
	q.items = append(q.items, a.item)
	s.pending.Add(1)
	if q.index < 0 && q.inFlight < s.perAddr {
		heap.Push(&s.ready, q)
	}
}

// handedOut records that the item at the top of the ready heap went to a
// worker.
func (s *Scheduler[T]) handedOut() {
	q := heap.Pop(&s.ready).(*addrQueue[T])
	var zero T
	q.items[0] = zero
	q.items = q.items[1:]
	q.inFlight++
	s.inFlight++
	s.pending.Add(-1)
	<-s.room
	if len(q.items) > 0 && q.inFlight < s.perAddr {
		heap.Push(&s.ready, q)
	}
}

func (s *Scheduler[T]) released(q *addrQueue[T]) {
	q.inFlight--
	s.inFlight--
	q.readyAt = s.now().Add(s.interval)
	if q.index >= 0 {
		heap.Fix(&s.ready, q.index)
	} else if len(q.items) > 0 {
		heap.Push(&s.ready, q)
	}
	s.releases++
	if s.releases%4096 == 0 {
		s.sweep()
	}
}

// releaseFunc returns the done function of one handed-out item. After a
// normal close the dispatcher waits for every release; after ctx ended it
// may be gone, and then there is nothing left to release.
func (s *Scheduler[T]) releaseFunc(q *addrQueue[T]) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			select {
			case s.release <- q:
			case <-s.stopped:
			}
		})
	}
}

// sweep forgets addresses that have nothing queued, nothing in flight and
// have rested, so memory follows the active addresses, not all ever seen.
func (s *Scheduler[T]) sweep() {
	now := s.now()
	for a, q := range s.addrs {
		if len(q.items) == 0 && q.inFlight == 0 && !q.readyAt.After(now) {
			delete(s.addrs, a)
		}
	}
	s.tracked.Store(int64(len(s.addrs)))
}

type readyHeap[T any] []*addrQueue[T]

func (h readyHeap[T]) Len() int           { return len(h) }
func (h readyHeap[T]) Less(i, j int) bool { return h[i].readyAt.Before(h[j].readyAt) }
func (h readyHeap[T]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *readyHeap[T]) Push(x any) {
	q := x.(*addrQueue[T])
	q.index = len(*h)
	*h = append(*h, q)
}
func (h *readyHeap[T]) Pop() any {
	old := *h
	q := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	q.index = -1
	return q
}
