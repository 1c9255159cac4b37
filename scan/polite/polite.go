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
//
// Longest queue first: of the addresses that are free and rested, the one
// with the most queued items is served next. A polite scan cannot end
// before its busiest address has had all its connections one after the
// other, each followed by the interval (the polite lower bound:
// max over addresses of the sum of its probes' durations plus the
// interval); an address that waits behind a crowd of one-target addresses
// only moves that end later. Serving the longest queues first keeps every
// busy address busy from the start, and the one-target addresses fill the
// slots in between.
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

	// Owned by the dispatcher goroutine. An address with queued items and
	// a free slot is in resting until its interval has passed, then in
	// ready; otherwise in neither.
	addrs    map[netip.Addr]*addrQueue[T]
	resting  queueHeap[T] // earliest readyAt first
	ready    queueHeap[T] // longest queue first
	seen     uint64       // addresses ever queued: the tie-break
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
	readyAt  time.Time     // earliest next start
	added    int           // items ever queued: a busy address is likely to get more
	seq      uint64        // first seen
	heap     *queueHeap[T] // the heap holding it, nil when none
	index    int           // in heap
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
	s.resting.less = func(a, b *addrQueue[T]) bool { return a.readyAt.Before(b.readyAt) }
	s.ready.less = longerQueue[T]
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
// function the caller must call when the connection has ended (calling it
// again does nothing). Of several such addresses, the one with the most
// queued items goes first (see the package comment). ok is false
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
		now := s.now()
		for s.resting.Len() > 0 && !s.resting.top().readyAt.After(now) {
			s.place(s.resting.top(), now)
		}
		var out chan handout[T]
		var next handout[T]
		var wake <-chan time.Time
		if s.ready.Len() > 0 {
			q := s.ready.top()
			out = s.out
			next = handout[T]{item: q.items[0], done: s.releaseFunc(q)}
		}
		// Woken when the next address has rested, even with an item on
		// offer: that address may have the longer queue.
		if s.resting.Len() > 0 {
			timer.Reset(s.resting.top().readyAt.Sub(now))
			wake = timer.C
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
		s.seen++
		q = &addrQueue[T]{addr: a.addr, seq: s.seen}
		s.addrs[a.addr] = q
		s.tracked.Store(int64(len(s.addrs)))
	}
	q.items = append(q.items, a.item)
	q.added++
	s.pending.Add(1)
	s.place(q, s.now())
}

// handedOut records that the first item of the top of the ready heap went
// to a worker.
func (s *Scheduler[T]) handedOut() {
	q := s.ready.top()
	var zero T
	q.items[0] = zero
	q.items = q.items[1:]
	q.inFlight++
	s.inFlight++
	s.pending.Add(-1)
	<-s.room
	s.place(q, s.now())
}

// released counts the interval from the end of the connection: the done
// function is called when it has ended.
func (s *Scheduler[T]) released(q *addrQueue[T]) {
	q.inFlight--
	s.inFlight--
	now := s.now()
	q.readyAt = now.Add(s.interval)
	s.place(q, now)
	s.releases++
	if s.releases%4096 == 0 {
		s.sweep()
	}
}

// place puts q in the heap its state says (ready, resting or none) and
// restores that heap's order after a change of q.
func (s *Scheduler[T]) place(q *addrQueue[T], now time.Time) {
	var h *queueHeap[T]
	switch {
	case len(q.items) == 0 || q.inFlight >= s.perAddr:
	case q.readyAt.After(now):
		h = &s.resting
	default:
		h = &s.ready
	}
	if q.heap == h {
		if h != nil {
			heap.Fix(h, q.index)
		}
		return
	}
	if q.heap != nil {
		heap.Remove(q.heap, q.index)
	}
	if h != nil {
		heap.Push(h, q)
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

// longerQueue orders the ready heap: the most queued items first; among
// equal queues the address that had the most items so far (its queue is
// short because its targets are still being resolved: more will come), then
// the one that has rested longest, then the one seen first.
func longerQueue[T any](a, b *addrQueue[T]) bool {
	if len(a.items) != len(b.items) {
		return len(a.items) > len(b.items)
	}
	if a.added != b.added {
		return a.added > b.added
	}
	if !a.readyAt.Equal(b.readyAt) {
		return a.readyAt.Before(b.readyAt)
	}
	return a.seq < b.seq
}

// queueHeap is a heap of address queues that keeps each queue's heap and
// index up to date, so a queue can be fixed or removed where it is.
type queueHeap[T any] struct {
	qs   []*addrQueue[T]
	less func(a, b *addrQueue[T]) bool
}

func (h *queueHeap[T]) top() *addrQueue[T] { return h.qs[0] }
func (h *queueHeap[T]) Len() int           { return len(h.qs) }
func (h *queueHeap[T]) Less(i, j int) bool { return h.less(h.qs[i], h.qs[j]) }
func (h *queueHeap[T]) Swap(i, j int) {
	h.qs[i], h.qs[j] = h.qs[j], h.qs[i]
	h.qs[i].index = i
	h.qs[j].index = j
}
func (h *queueHeap[T]) Push(x any) {
	q := x.(*addrQueue[T])
	q.heap, q.index = h, len(h.qs)
	h.qs = append(h.qs, q)
}
func (h *queueHeap[T]) Pop() any {
	q := h.qs[len(h.qs)-1]
	h.qs[len(h.qs)-1] = nil
	h.qs = h.qs[:len(h.qs)-1]
	q.heap, q.index = nil, -1
	return q
}
