package resolve

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
)

// udpSockets is how many long-lived UDP sockets each server gets. A socket
// per query costs a socket, connect, epoll registration and close: half of
// a DNS-only scan's CPU was spent there. A few shared sockets, their replies
// told apart by message ID, carry any number of queries in flight; more than
// one spreads the reading over cores and keeps the IDs in flight on one
// socket few (a reply spoiled with another query's ID is rarer).
const udpSockets = 4

// maxUDPReply is the largest datagram read: a server may ignore the EDNS0
// size we advertise, and a reply cut short by our buffer would not parse.
const maxUDPReply = 65535

// udpBatch is how many datagrams one recvmmsg or sendmmsg moves. Under a
// survey's load many queries are sent and many replies wait in a socket at
// once; a system call per datagram was a third of a DNS-only scan's CPU.
const udpBatch = 32

// errServerClosed ends the queries waiting on a socket that Close closed.
var errServerClosed = errors.New("resolver closed")

// udpServer multiplexes the UDP queries to one server over udpSockets
// connected sockets, opened on first use. The sockets are connected, so the
// kernel drops datagrams from any other address, as it did for the socket
// per query; what the shared sockets give up is a fresh source port per
// query, which matters against off-path spoofing of a resolver across the
// internet, not of the local resolver a survey should use (README).
type udpServer struct {
	addr    string
	timeout time.Duration // of every query: the sockets' deadlines come in the order of their queries
	next    atomic.Uint32
	socks   [udpSockets]udpSocket
}

type udpSocket struct {
	mu      sync.Mutex
	conn    *net.UDPConn
	batch   *ipv4.PacketConn // conn's recvmmsg and sendmmsg
	closed  bool
	waiting map[uint16]*udpWaiter // by message ID, queries in flight
	// queue holds the packed queries not sent yet; the query that finds
	// nobody sending sends them, and those queued meanwhile, in batches.
	queue, spare [][]byte
	sending      bool
	out          [udpBatch]ipv4.Message // the sender's, reused
	// deadlines are the registrations in order, so in the order of their
	// deadlines (one timeout per server); expiry fires at the first live
	// one, and is armed exactly while deadlines is not empty. A timer per
	// query, in each query's select, was a twentieth of a DNS-only scan's
	// CPU.
	deadlines []deadline
	expiry    *time.Timer
	seq       uint64
}

type deadline struct {
	id  uint16
	seq uint64
	at  time.Time
}

// udpWaiter is a query waiting for its reply; waiters are pooled, as a
// channel per query was a twentieth of the scanner's allocations.
type udpWaiter struct {
	ch  chan udpReply // buffered; sent to under udpSocket.mu, once per registration
	seq uint64        // the registration's, telling it from the waiter's earlier ones
}

type udpReply struct {
	m   *dns.Msg
	err error
}

var waiters = sync.Pool{New: func() any { return &udpWaiter{ch: make(chan udpReply, 1)} }}

func newUDPServer(addr string, timeout time.Duration) *udpServer {
	return &udpServer{addr: addr, timeout: timeout}
}

// exchange sends m and waits at most the server's timeout for the datagram
// carrying its ID, unpacked by the socket's reader. It sets m.Id to an ID
// no other query in flight on the socket uses. A reply with another ID is
// not for this query and is dropped, so a spoiled ID makes the query time
// out, as with miekg/dns.
func (u *udpServer) exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	s := &u.socks[u.next.Add(1)%udpSockets]
	buf, err := m.Pack()
	if err != nil {
		return nil, fmt.Errorf("packing query: %w", err)
	}
	w := waiters.Get().(*udpWaiter)
	send, err := s.register(u.addr, u.timeout, m, buf, w)
	if err != nil {
		waiters.Put(w)
		return nil, err
	}
	defer s.unregister(m.Id, w)
	if send {
		s.send()
	}
	select {
	case rep := <-w.ch:
		return rep.m, rep.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// register opens the socket if needed, records w as the waiter for a free
// ID, which it writes into m and its packed form buf, with its deadline
// timeout from now, and queues buf. It reports whether the caller is to
// send the queue.
func (s *udpSocket) register(addr string, timeout time.Duration, m *dns.Msg, buf []byte, w *udpWaiter) (send bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, errServerClosed
	}
	if s.expiry == nil {
		s.expiry = time.AfterFunc(time.Hour, func() { s.expire(addr) })
		s.expiry.Stop()
	}
	if s.conn == nil {
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return false, err
		}
		c, err := net.DialUDP("udp", nil, ua)
		if err != nil {
			return false, err
		}
		// Hundreds of replies can arrive between two reads when the
		// machine is busy; the default buffer would drop some, and each
		// loss costs a query its timeout.
		_ = c.SetReadBuffer(4 << 20) // capped at net.core.rmem_max; the default still works
		s.conn, s.batch, s.waiting = c, ipv4.NewPacketConn(c), map[uint16]*udpWaiter{}
		go s.read(addr)
	}
	for {
		if _, busy := s.waiting[m.Id]; !busy {
			break
		}
		m.Id = uint16(rand.Uint32())
	}
	binary.BigEndian.PutUint16(buf, m.Id)
	s.seq++
	w.seq = s.seq
	s.waiting[m.Id] = w
	s.deadlines = append(s.deadlines, deadline{m.Id, w.seq, time.Now().Add(timeout)})
	if len(s.deadlines) == 1 {
		s.expiry.Reset(timeout)
	}
	s.queue = append(s.queue, buf)
	send = !s.sending
	s.sending = true
	return send, nil
}

// unregister forgets w; a reply the reader handed over too late is dropped
// with it, so that w goes back to the pool empty.
func (s *udpSocket) unregister(id uint16, w *udpWaiter) {
	s.mu.Lock()
	if s.waiting[id] == w {
		delete(s.waiting, id)
	}
	s.mu.Unlock()
	select {
	case <-w.ch:
	default:
	}
	waiters.Put(w)
}

// deliver hands rep to the query waiting with ID id, if any; under s.mu.
func (s *udpSocket) deliver(id uint16, rep udpReply) {
	if w := s.waiting[id]; w != nil {
		delete(s.waiting, id)
		w.ch <- rep
	}
}

// expire ends the queries whose deadline has passed with a timeout, and
// sets the timer for the next one still waiting. The deadlines of queries
// answered meanwhile are dropped on the way, so the timer fires about once
// per timeout, not once per query.
func (s *udpSocket) expire(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	k := 0
	for ; k < len(s.deadlines); k++ {
		d := s.deadlines[k]
		w := s.waiting[d.id]
		if w == nil || w.seq != d.seq {
			continue // answered, or gone
		}
		if d.at.After(now) {
			break
		}
		s.deliver(d.id, udpReply{err: fmt.Errorf("udp query to %s: %w", addr, os.ErrDeadlineExceeded)})
	}
	s.deadlines = s.deadlines[k:]
	if len(s.deadlines) == 0 {
		s.deadlines = nil
		return
	}
	s.expiry.Reset(s.deadlines[0].at.Sub(now))
}

// send writes the queued queries, batch by batch, until the queue is
// empty. It first yields: the queries that the reader's last batch of
// replies woke are runnable on this core, and letting them queue their
// next query turns a sendmmsg per datagram into one per ~20 (measured with
// strace -c). A query whose datagram the kernel refuses (an ICMP error
// from an earlier datagram, queued on the socket) gets the error.
func (s *udpSocket) send() {
	for {
		runtime.Gosched()
		s.mu.Lock()
		q := s.queue
		if len(q) == 0 || s.closed {
			s.sending = false
			s.mu.Unlock()
			return
		}
		s.queue, s.spare = s.spare[:0], nil
		s.mu.Unlock()
		for rest := q; len(rest) > 0; {
			out := s.out[:min(len(rest), udpBatch)]
			for i := range out {
				if out[i].Buffers == nil {
					out[i].Buffers = make([][]byte, 1)
				}
				out[i].Buffers[0] = rest[i]
			}
			n, err := s.batch.WriteBatch(out, 0)
			if err != nil {
				s.mu.Lock()
				s.deliver(binary.BigEndian.Uint16(rest[0]), udpReply{err: err})
				s.mu.Unlock()
				n = 1
			}
			rest = rest[n:]
		}
		clear(q)
		s.mu.Lock()
		s.spare = q[:0]
		s.mu.Unlock()
	}
}

// read unpacks the datagrams and hands each to the query waiting for its
// ID. A read error other than the socket's close (an ICMP port
// unreachable: nobody listens at the server's address) fails every query
// in flight on the socket, as it failed the query whose socket got it when
// each query had its own.
func (s *udpSocket) read(addr string) {
	ms := make([]ipv4.Message, udpBatch)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, maxUDPReply)}
	}
	type reply struct {
		id  uint16
		rep udpReply
	}
	var got []reply
	for {
		n, err := s.batch.ReadBatch(ms, 0)
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			if closed {
				err = errServerClosed
			}
			for id := range s.waiting {
				s.deliver(id, udpReply{err: err})
			}
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		got = got[:0]
		for _, d := range ms[:n] {
			if id, rep, ok := parseReply(d.Buffers[0][:d.N], addr); ok {
				got = append(got, reply{id, rep})
			}
		}
		s.mu.Lock()
		for _, g := range got {
			s.deliver(g.id, g.rep)
		}
		s.mu.Unlock()
	}
}

// parseReply unpacks a datagram from the server at addr, in the reader
// rather than in the query's goroutine, which saves copying it out of the
// batch. A datagram without the ID of a DNS header is not a reply to
// anything (ok false); one that does not unpack is the failure of the query
// with its ID.
func parseReply(b []byte, addr string) (id uint16, rep udpReply, ok bool) {
	if len(b) < 12 { // shorter than a DNS header
		return 0, udpReply{}, false
	}
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return binary.BigEndian.Uint16(b), udpReply{err: fmt.Errorf("unpacking reply from %s: %w", addr, err)}, true
	}
	return m.Id, udpReply{m: m}, true
}

// close closes the sockets; queries in flight end with errServerClosed.
func (u *udpServer) close() {
	for i := range u.socks {
		s := &u.socks[i]
		s.mu.Lock()
		s.closed = true
		if s.expiry != nil {
			s.expiry.Stop()
		}
		if s.conn != nil {
			_ = s.conn.Close() // the reader ends the waiters
		}
		s.mu.Unlock()
	}
}
