package peer

import (
	"context"
	"net"
	"sync"
	"time"
)

// Steps gives a connection one deadline per step of a conversation, never
// past the deadline of the conversation's context, and pushes it into the
// past as soon as that context ends, so that a blocked read or write returns
// at once instead of waiting for its step to pass (crypto/tls and net/http
// then fail with a deadline error, which InContext attributes to the
// context).
type Steps struct {
	ctx   context.Context
	conn  net.Conn
	step  time.Duration
	stop  func() bool
	mu    sync.Mutex
	ended bool
}

// NewSteps watches ctx for conn until Stop.
func NewSteps(ctx context.Context, conn net.Conn, step time.Duration) *Steps {
	s := &Steps{ctx: ctx, conn: conn, step: step}
	s.stop = context.AfterFunc(ctx, s.end)
	return s
}

// Arm starts a step of length d (the step given to NewSteps when d is 0)
// through set: the connection's SetDeadline, SetReadDeadline or
// SetWriteDeadline.
func (s *Steps) Arm(set func(time.Time) error, d time.Duration) {
	if d == 0 {
		d = s.step
	}
	dl := time.Now().Add(d)
	if cd, ok := s.ctx.Deadline(); ok && cd.Before(dl) {
		dl = cd
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		dl = time.Unix(1, 0)
	}
	_ = set(dl) // an error means the conn is closed; the next I/O says so
}

func (s *Steps) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ended = true
	_ = s.conn.SetDeadline(time.Unix(1, 0)) // as in Arm
}

// Stop stops watching the context.
func (s *Steps) Stop() { s.stop() }

// Conn is the connection with a step armed before each read and each
// write: for a client that reads through layers it does not control
// (net/http), where a step is "the peer sent something", not a command.
func (s *Steps) Conn() net.Conn { return stepConn{Conn: s.conn, s: s} }

type stepConn struct {
	net.Conn
	s *Steps
}

func (c stepConn) Read(p []byte) (int, error) {
	c.s.Arm(c.Conn.SetReadDeadline, 0)
	return c.Conn.Read(p)
}

func (c stepConn) Write(p []byte) (int, error) {
	c.s.Arm(c.Conn.SetWriteDeadline, 0)
	return c.Conn.Write(p)
}
