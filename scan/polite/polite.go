// Package polite schedules probes so that no address is hit by more than a
// set number of connections at once, nor sooner than a minimum interval after
// the previous one ended. A mail provider that hosts a million domains sees
// one guest at a time, not a burst of thousands.
//
// Scheduling instead of blocking: a worker never waits on a busy address
// while other addresses have work ready; it takes the next ready item.
package polite

import (
	"container/heap"
	"context"
	"net/netip"
	"sync"
	"time"
)

// Scheduler is safe for concurrent use: producers call Add, workers Next.
type Scheduler[T any] struct {
	perAddr    int
	interval   time.Duration
	maxPending int
	now        func() time.Time

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every state change
	addrs    map[netip.Addr]*addrQueue[T]
	ready    readyHeap[T] // addresses with queued items and a free slot
	pending  int          // queued items, all addresses
	closed   bool
	releases int
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
// on the same address, and at most maxPending queued items before Add blocks.
func New[T any](perAddr int, interval time.Duration, maxPending int) *Scheduler[T] {
	if perAddr < 1 {
		perAddr = 1
	}
	if maxPending < 1 {
		maxPending = 1
	}
	return &Scheduler[T]{perAddr: perAddr, interval: interval, maxPending: maxPending, now: time.Now,
		changed: make(chan struct{}), addrs: make(map[netip.Addr]*addrQueue[T])}
}

func (s *Scheduler[T]) signalLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Add queues item for addr, blocking while the queue is full.
func (s *Scheduler[T]) Add(ctx context.Context, addr netip.Addr, item T) error {
	s.mu.Lock()
	for s.pending >= s.maxPending {
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.mu.Lock()
	}
	q := s.addrs[addr]
	if q == nil {
		q = &addrQueue[T]{addr: addr, index: -1}
		s.addrs[addr] = q
	}
	q.items = append(q.items, item)
	s.pending++
	if q.index < 0 && q.inFlight < s.perAddr {
		heap.Push(&s.ready, q)
	}
	s.signalLocked()
	s.mu.Unlock()
	return nil
}

// Close says no more items will be added; Next reports false once drained.
func (s *Scheduler[T]) Close() {
	s.mu.Lock()
	s.closed = true
	s.signalLocked()
	s.mu.Unlock()
}

// Next returns the next item whose address is free and rested, and a done
// function the caller must call when the connection has ended. ok is false
// when the scheduler is closed and drained, or ctx is done.
func (s *Scheduler[T]) Next(ctx context.Context) (item T, done func(), ok bool) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	s.mu.Lock()
	for {
		if ctx.Err() != nil {
			s.mu.Unlock()
			return item, nil, false
		}
		var wait time.Duration = -1
		if s.ready.Len() > 0 {
			q := s.ready[0]
			now := s.now()
			if !q.readyAt.After(now) {
				heap.Pop(&s.ready)
				item = q.items[0]
				var zero T
				q.items[0] = zero
				q.items = q.items[1:]
				q.inFlight++
				s.pending--
				if len(q.items) > 0 && q.inFlight < s.perAddr {
					heap.Push(&s.ready, q)
				}
				s.signalLocked() // Add may be waiting for room
				s.mu.Unlock()
				return item, s.releaseFunc(q), true
			}
			wait = q.readyAt.Sub(now)
		} else if s.closed && s.pending == 0 {
			s.mu.Unlock()
			return item, nil, false
		}
		ch := s.changed
		s.mu.Unlock()
		var tc <-chan time.Time
		if wait >= 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			tc = timer.C
		}
		select {
		case <-ch:
		case <-tc:
		case <-ctx.Done():
		}
		if timer != nil && !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		s.mu.Lock()
	}
}

func (s *Scheduler[T]) releaseFunc(q *addrQueue[T]) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			q.inFlight--
			q.readyAt = s.now().Add(s.interval)
			if len(q.items) > 0 && q.index < 0 {
				heap.Push(&s.ready, q)
			} else if q.index >= 0 {
				heap.Fix(&s.ready, q.index)
			}
			s.releases++
			if s.releases%4096 == 0 {
				s.sweepLocked()
			}
			s.signalLocked()
		})
	}
}

// sweepLocked forgets addresses that have nothing queued, nothing in flight
// and have rested, so memory follows the active addresses, not all ever seen.
func (s *Scheduler[T]) sweepLocked() {
	now := s.now()
	for a, q := range s.addrs {
		if len(q.items) == 0 && q.inFlight == 0 && !q.readyAt.After(now) {
			delete(s.addrs, a)
		}
	}
}

// Stats reports queued items and tracked addresses.
func (s *Scheduler[T]) Stats() (pending, addrs int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending, len(s.addrs)
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
