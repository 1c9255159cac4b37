// Package tcpserve is what the lab's TCP servers (SMTP, HTTPS) share: one
// listener on 0.0.0.0 whose connections are served each in its own
// goroutine, only for loopback peers, and all closed by Close; the address
// a client dialed, which selects what answers; and the moves of the
// hostile peers (a TCP reset, reading one TLS record before it).
package tcpserve

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mxsurvey/mxsurvey/internal/workers"
)

// Server serves the connections of one listener.
type Server struct {
	ln     net.Listener
	handle func(net.Conn)
	done   chan struct{}
	ctx    context.Context // canceled by Close
	cancel context.CancelFunc

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// New makes the server of ln; Start starts accepting. The two are apart so
// that a caller can keep Done (and the server itself) in its own fields
// before the first connection can read them.
func New(ln net.Listener) *Server {
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{ln: ln, done: make(chan struct{}), ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}
}

// Start accepts on ln until Close and runs handle for each connection from
// a loopback peer, in a goroutine of its own; the connection is closed when
// handle returns.
func (s *Server) Start(handle func(net.Conn)) {
	s.handle = handle
	s.wg.Add(1)
	go s.serve()
}

// Done is closed when Close is called: a session waiting on a timer ends.
func (s *Server) Done() <-chan struct{} { return s.done }

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors or similar: back off instead of spinning.
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if !s.track(c) {
			c.Close()
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			// The lab listens on 0.0.0.0 to serve every 127.x address with
			// one socket; only loopback peers may talk to it.
			if AddrOf(c.RemoteAddr()).IsLoopback() {
				s.handle(c)
			}
		}()
	}
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Close stops accepting, closes every connection and waits for their
// handlers to return.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	close(s.done)
	s.cancel()
	err := s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// handshakers run the lab's TLS server handshakes, as scan/peer's run the
// scanner's: a handshake needs a deep stack, and a connection's goroutine,
// new for each connection, would grow one by copying every time (5% of the
// lab's CPU in a latency-off scan) and keep it while the session waits.
var handshakers = workers.New(time.Second)

// Handshake runs a TLS server handshake on tc, bounded by limit and by
// Close.
func (s *Server) Handshake(tc *tls.Conn, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(s.ctx, limit)
	defer cancel()
	return handshakers.Run(func() error { return tc.HandshakeContext(ctx) })
}

// AddrOf is the address of a TCP endpoint.
func AddrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// Reset closes the connection with SO_LINGER 0: the kernel sends RST, not
// FIN.
func Reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // fails only on a closed socket, which Close then reports to nobody
	}
	_ = c.Close() // the session is over either way
}

// ReadRecord reads one TLS record (a ClientHello) from r, so that what the
// lab does next is an answer to it; false when the client left first. The
// caller sets the read deadline.
func ReadRecord(r io.Reader) bool {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return false
	}
	n := int(hdr[3])<<8 | int(hdr[4])
	_, err := io.CopyN(io.Discard, r, int64(n))
	return err == nil
}
