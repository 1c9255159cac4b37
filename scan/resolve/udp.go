package resolve

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
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

// errServerClosed ends the queries waiting on a socket that Close closed.
var errServerClosed = errors.New("resolver closed")

// udpServer multiplexes the UDP queries to one server over udpSockets
// connected sockets, opened on first use. The sockets are connected, so the
// kernel drops datagrams from any other address, as it did for the socket
// per query; what the shared sockets give up is a fresh source port per
// query, which matters against off-path spoofing of a resolver across the
// internet, not of the local resolver a survey should use (README).
type udpServer struct {
	addr  string
	next  atomic.Uint32
	socks [udpSockets]udpSocket
}

type udpSocket struct {
	mu      sync.Mutex
	conn    *net.UDPConn
	closed  bool
	waiting map[uint16]chan udpReply // by message ID, queries in flight
}

type udpReply struct {
	b   []byte
	err error
}

func newUDPServer(addr string) *udpServer { return &udpServer{addr: addr} }

// exchange sends m and waits at most timeout for the datagram carrying its
// ID, which it unpacks. It sets m.Id to an ID no other query in flight on
// the socket uses. A reply with another ID is not for this query and is
// dropped, so a spoiled ID makes the query time out, as with miekg/dns.
func (u *udpServer) exchange(ctx context.Context, m *dns.Msg, timeout time.Duration) (*dns.Msg, error) {
	s := &u.socks[u.next.Add(1)%udpSockets]
	ch := make(chan udpReply, 1)
	conn, err := s.register(u.addr, m, ch)
	if err != nil {
		return nil, err
	}
	defer s.unregister(m.Id, ch)
	buf, err := m.Pack()
	if err != nil {
		return nil, fmt.Errorf("packing query: %w", err)
	}
	if _, err := conn.Write(buf); err != nil {
		return nil, err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case rep := <-ch:
		if rep.err != nil {
			return nil, rep.err
		}
		resp := new(dns.Msg)
		if err := resp.Unpack(rep.b); err != nil {
			return nil, fmt.Errorf("unpacking reply from %s: %w", u.addr, err)
		}
		return resp, nil
	case <-t.C:
		return nil, fmt.Errorf("udp query to %s: %w", u.addr, os.ErrDeadlineExceeded)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// register opens the socket if needed and records ch as the waiter for a
// free ID, which it writes into m.
func (s *udpSocket) register(addr string, m *dns.Msg, ch chan udpReply) (*net.UDPConn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errServerClosed
	}
	if s.conn == nil {
		ua, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return nil, err
		}
		c, err := net.DialUDP("udp", nil, ua)
		if err != nil {
			return nil, err
		}
		// Hundreds of replies can arrive between two reads when the
		// machine is busy; the default buffer would drop some, and each
		// loss costs a query its timeout.
		_ = c.SetReadBuffer(4 << 20) // capped at net.core.rmem_max; the default still works
		s.conn, s.waiting = c, map[uint16]chan udpReply{}
		go s.read(c)
	}
	for {
		if _, busy := s.waiting[m.Id]; !busy {
			break
		}
		m.Id = uint16(rand.Uint32())
	}
	s.waiting[m.Id] = ch
	return s.conn, nil
}

func (s *udpSocket) unregister(id uint16, ch chan udpReply) {
	s.mu.Lock()
	if s.waiting[id] == ch {
		delete(s.waiting, id)
	}
	s.mu.Unlock()
}

// read hands each datagram to the query waiting for its ID. A read error
// other than the socket's close (an ICMP port unreachable: nobody listens
// at the server's address) fails every query in flight on the socket, as it
// failed the query whose socket got it when each query had its own.
func (s *udpSocket) read(c *net.UDPConn) {
	buf := make([]byte, maxUDPReply)
	for {
		n, err := c.Read(buf)
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			if closed {
				err = errServerClosed
			}
			for id, ch := range s.waiting {
				ch <- udpReply{err: err}
				delete(s.waiting, id)
			}
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if n < 12 { // shorter than a DNS header: not a reply to anything
			continue
		}
		id := binary.BigEndian.Uint16(buf)
		s.mu.Lock()
		ch := s.waiting[id]
		delete(s.waiting, id)
		s.mu.Unlock()
		if ch != nil {
			ch <- udpReply{b: append([]byte(nil), buf[:n]...)}
		}
	}
}

// close closes the sockets; queries in flight end with errServerClosed.
func (u *udpServer) close() {
	for i := range u.socks {
		s := &u.socks[i]
		s.mu.Lock()
		s.closed = true
		if s.conn != nil {
			_ = s.conn.Close() // the reader ends the waiters
		}
		s.mu.Unlock()
	}
}
