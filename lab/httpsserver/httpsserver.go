// Package httpsserver is the lab's MTA-STS policy server (RFC 8461 §3.3):
// one tcp4 listener on 0.0.0.0 (the lab's -mta-sts-port) serves every
// policy host of the world. The address a client dialed selects the host
// (world.World.PolicyHostAt): a domain's own, whose record says what it
// does, or a provider's, which serves its customers' policies by SNI
// (mta-sts.<d>). The certificate is the one the domain's record describes
// for mta-sts.<d> (lab/pki); the answer to a GET of
// /.well-known/mta-sts.txt is world.World.Reply, anything else a 404.
// HTTP/1.1, one request per connection, then the server closes it.
//
// The hostile hosts: one that accepts and never sends a byte (until the
// client leaves, or a bound passes), one that reads the ClientHello and
// resets, and one whose policy is 2 MiB long, streamed from a fixed buffer
// until the client stops reading.
package httpsserver

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mxsurvey/mxsurvey/lab/internal/tcpserve"
	"github.com/mxsurvey/mxsurvey/lab/pki"
	"github.com/mxsurvey/mxsurvey/lab/world"
)

const (
	silentHold     = 10 * time.Minute // longer than any scanner's step deadline
	idleTimeout    = 60 * time.Second
	handshakeLimit = 30 * time.Second
	maxRequest     = 16 << 10 // request line and headers
)

// WellKnownPath is where a policy is (RFC 8461 §3.2).
const WellKnownPath = "/.well-known/mta-sts.txt"

// Server is a running policy server.
type Server struct {
	w      *world.World
	auth   *pki.Authority
	groups []tls.CurveID
	conns  *tcpserve.Server
	done   <-chan struct{}
}

// Serve serves the world's policy hosts on ln until Close.
func Serve(w *world.World, auth *pki.Authority, ln net.Listener) *Server {
	s := &Server{w: w, auth: auth, groups: world.ServerGroups()}
	s.conns = tcpserve.New(ln)
	s.done = s.conns.Done()
	s.conns.Start(s.handle)
	return s
}

// Close stops accepting, closes every connection and waits for their
// handlers.
func (s *Server) Close() error { return s.conns.Close() }

var errUnknownSNI = errors.New("lab: no policy for this SNI here")

func (s *Server) handle(c net.Conn) {
	slot, ok := s.w.AddrSlot(tcpserve.AddrOf(c.LocalAddr()))
	if !ok {
		return
	}
	host, ok := s.w.PolicyHostAt(slot)
	if !ok {
		return
	}
	switch host.Serve() {
	case world.ServeSilent:
		c.SetReadDeadline(time.Now().Add(silentHold))
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10)) // ends on EOF, deadline or close: all mean "done"
		return
	case world.ServeReset:
		c.SetReadDeadline(time.Now().Add(idleTimeout))
		if tcpserve.ReadRecord(c) {
			tcpserve.Reset(c)
		}
		return
	}
	var (
		d  world.Domain
		st world.STS
	)
	cfg := &tls.Config{
		MinVersion:       tls.VersionTLS12,
		CurvePreferences: s.groups,
		NextProtos:       []string{"http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			var ok bool
			if d, st, ok = s.w.Site(host, strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))); !ok {
				return nil, errUnknownSNI
			}
			return s.auth.Get(world.PolicyCert(d, st))
		},
	}
	tc := tls.Server(c, cfg)
	if err := s.conns.Handshake(tc, handshakeLimit); err != nil {
		return
	}
	tc.SetReadDeadline(time.Now().Add(idleTimeout))
	req, err := http.ReadRequest(bufio.NewReader(io.LimitReader(tc, maxRequest)))
	if err != nil {
		return
	}
	if req.URL.Path != WellKnownPath {
		st.Serve = world.Serve404 // what the host answers for anything else
	}
	s.write(tc, s.w.Reply(d, st))
	_ = tc.Close() // the response is complete (or the client left): close_notify and FIN
}

// write sends the response: its head, then its body of r.Len bytes.
func (s *Server) write(c net.Conn, r world.PolicyReply) {
	var b strings.Builder
	b.WriteString("HTTP/1.1 " + strconv.Itoa(r.Status) + " " + http.StatusText(r.Status) + "\r\n")
	b.WriteString("Content-Type: " + r.ContentType + "\r\n")
	if r.Location != "" {
		b.WriteString("Location: " + r.Location + "\r\n")
	}
	b.WriteString("Content-Length: " + strconv.FormatInt(r.Len, 10) + "\r\nConnection: close\r\n\r\n")
	send := func(p []byte) bool {
		select {
		case <-s.done:
			return false
		default:
		}
		c.SetWriteDeadline(time.Now().Add(idleTimeout))
		_, err := c.Write(p)
		return err == nil
	}
	if !send([]byte(b.String())) || !send(r.Body) {
		return
	}
	for left := r.Len - int64(len(r.Body)); left > 0; {
		chunk := r.Filler[:min(int64(len(r.Filler)), left)]
		if !send(chunk) {
			return
		}
		left -= int64(len(chunk))
	}
}
