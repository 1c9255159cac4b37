// Package smtpserver is the lab's SMTP server: one tcp4 listener on
// 0.0.0.0 serves every 127.x.y.z address of the world (lab/internal/tcpserve),
// and the address a client dialed (conn.LocalAddr) selects the server
// (world.World.ServerAt).
// Each connection runs its server's script (world.SMTP) in its dialect:
// greeting, EHLO/HELO, STARTTLS (RFC 3207) with the certificate lab/pki
// makes for the SNI, QUIT, RSET, NOOP. A survey never sends MAIL, so the
// lab never needs it, and every byte the lab sends is one the truth has to
// predict.
package smtpserver

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/mxsurvey/mxsurvey/lab/internal/tcpserve"
	"github.com/mxsurvey/mxsurvey/lab/pki"
	"github.com/mxsurvey/mxsurvey/lab/world"
)

const (
	maxLine        = 512 // RFC 5321 4.5.3.1.4 command line limit, CRLF included
	maxCommands    = 50
	idleTimeout    = 60 * time.Second
	silentHold     = 10 * time.Minute // long enough for any scanner's banner timeout
	handshakeLimit = 30 * time.Second

	// The hostile streams' pace and bounds.
	tarpitInterval = 3 * time.Second
	tarpitHold     = 10 * time.Minute
	endlessMax     = 256 << 20
	hugeChunks     = 160 // of 64 KiB: 10 MiB
	// resetDelay: not at once. A reset that beats the client's connect(2) to
	// its SO_ERROR check fails the connect itself (outcome connect), which
	// would make the case a race; half a second after the accept the client
	// waits for the greeting.
	resetDelay = 500 * time.Millisecond
)

// Server is a running SMTP server.
type Server struct {
	w      *world.World
	auth   *pki.Authority
	groups []tls.CurveID // world.ServerGroups
	conns  *tcpserve.Server
	done   <-chan struct{}

	logMu   sync.Mutex
	connLog io.Writer // written under logMu
}

// Serve serves the world on ln until Close. connLog, when not nil, gets a
// line per connection as it ends: "ADDRESS START END CLIENT" (lab.Config),
// so politeness is counted by the servers, not by the scanner.
func Serve(w *world.World, auth *pki.Authority, ln net.Listener, connLog io.Writer) *Server {
	s := &Server{w: w, auth: auth, groups: world.ServerGroups(), connLog: connLog}
	handle := s.handle
	if connLog != nil {
		handle = s.logged
	}
	s.conns = tcpserve.New(ln)
	s.done = s.conns.Done()
	s.conns.Start(handle)
	return s
}

// logged serves c and writes its line once the connection is closed.
func (s *Server) logged(c net.Conn) {
	start := time.Now()
	s.handle(c)
	c.Close() // closed here so that the logged end is the close; tcpserve's second Close is a no-op
	end := time.Now()
	s.logMu.Lock()
	fmt.Fprintf(s.connLog, "%s %d %d %s\n", tcpserve.AddrOf(c.LocalAddr()), start.UnixNano(), end.UnixNano(), tcpserve.AddrOf(c.RemoteAddr()))
	s.logMu.Unlock()
}

// Close stops accepting, closes every connection and waits for their
// sessions to end.
func (s *Server) Close() error { return s.conns.Close() }

// session is one SMTP conversation.
type session struct {
	s    *Server
	srv  *world.Server
	raw  net.Conn // the TCP connection
	conn net.Conn
	r    *bufio.Reader
	tls  bool
}

func (s *Server) handle(c net.Conn) {
	slot, ok := s.w.AddrSlot(tcpserve.AddrOf(c.LocalAddr()))
	if !ok {
		return
	}
	srv, ok := s.w.ServerAt(slot)
	if !ok {
		return
	}
	ss := &session{s: s, srv: srv, raw: c, conn: c, r: bufio.NewReaderSize(c, maxLine)}
	ss.run()
}

// pause simulates the network and server delay before a reply; false when the
// lab shuts down meanwhile.
func (ss *session) pause() bool {
	if ss.srv.Latency <= 0 {
		return true
	}
	t := time.NewTimer(ss.srv.Latency)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ss.s.done:
		return false
	}
}

func (ss *session) reply(lines ...string) bool {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	return ss.send(b.String())
}

// send writes text after the address's latency.
func (ss *session) send(text string) bool {
	return ss.pause() && ss.write([]byte(text))
}

func (ss *session) write(b []byte) bool {
	ss.conn.SetWriteDeadline(time.Now().Add(idleTimeout))
	_, err := ss.conn.Write(b)
	return err == nil
}

// reset closes the connection with a TCP reset.
func (ss *session) reset() { tcpserve.Reset(ss.raw) }

// drain waits for the client to leave, reading and discarding, so that the
// lab never closes first (a close with unread input would send RST and
// blur the case).
func (ss *session) drain() {
	ss.raw.SetReadDeadline(time.Now().Add(idleTimeout))
	_, _ = io.Copy(io.Discard, io.LimitReader(ss.r, 1<<20)) // EOF, deadline or close: all mean "done"
}

// readRecord reads one TLS record (the ClientHello) so that what the lab
// does next is an answer to it.
func (ss *session) readRecord() bool {
	ss.raw.SetReadDeadline(time.Now().Add(idleTimeout))
	return tcpserve.ReadRecord(ss.r)
}

// gone is closed when the client leaves (or the lab shuts down): a reader
// for the streaming greetings, which otherwise would notice only at their
// next write. Reading is harmless there: a client does not talk before the
// greeting ends.
func (ss *session) gone() <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		ss.raw.SetReadDeadline(time.Now().Add(tarpitHold))
		_, _ = io.Copy(io.Discard, io.LimitReader(ss.raw, 1<<20)) // any end means "gone"
	}()
	return ch
}

// tarpit trickles the tarpit line one byte per tarpitInterval until the
// client leaves, the lab stops, or tarpitHold passes.
func (ss *session) tarpit() {
	if !ss.pause() {
		return
	}
	line := ss.srv.TarpitLine()
	gone := ss.gone()
	t := time.NewTicker(tarpitInterval)
	defer t.Stop()
	end := time.Now().Add(tarpitHold)
	for i := 0; time.Now().Before(end); i++ {
		if !ss.write([]byte{line[i%len(line)]}) {
			return
		}
		select {
		case <-t.C:
		case <-gone:
			return
		case <-ss.s.done:
			return
		}
	}
}

// endless sends a greeting line that never ends.
func (ss *session) endless() {
	if !ss.send(ss.srv.EndlessHead()) {
		return
	}
	for sent := 0; sent < endlessMax; sent += len(world.EndlessChunk) {
		select {
		case <-ss.s.done:
			return
		default:
		}
		if !ss.write(world.EndlessChunk) {
			return
		}
	}
}

// hugeGreeting sends the 10 MiB greeting; a client that reads it all gets an
// ordinary session after it.
func (ss *session) hugeGreeting() bool {
	if !ss.send(ss.srv.HugeFirst()) {
		return false
	}
	for range hugeChunks {
		select {
		case <-ss.s.done:
			return false
		default:
		}
		if !ss.write(world.HugeChunk) {
			return false
		}
	}
	return ss.write([]byte(ss.srv.Greeting(time.Now())))
}

// readLine reads one command line; ok is false on EOF, timeout or an
// oversized line (which gets a 500 first).
func (ss *session) readLine(timeout time.Duration) (string, bool) {
	ss.conn.SetReadDeadline(time.Now().Add(timeout))
	line, err := ss.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		ss.reply("500 5.5.0 Error: line too long")
		return "", false
	}
	if err != nil {
		return "", false
	}
	return strings.TrimRight(string(line), "\r\n"), true
}

// open runs what the script does on connect; false when the session is
// over.
func (ss *session) open() bool {
	srv := ss.srv
	switch srv.Case.SMTP.Open {
	case world.OpenSilent:
		ss.conn.SetReadDeadline(time.Now().Add(silentHold))
		_, _ = io.Copy(io.Discard, io.LimitReader(ss.conn, 64<<10)) // ends on EOF, deadline or close: all mean "done"
		return false
	case world.OpenRefuse:
		if !ss.reply(srv.RefusalLine()) || !srv.Case.SMTP.WaitQUIT {
			return false
		}
		// RFC 5321 3.1: wait for QUIT, answering 503 meanwhile.
		for range maxCommands {
			line, ok := ss.readLine(idleTimeout)
			if !ok {
				return false
			}
			if verb(line) == "QUIT" {
				ss.reply("221 2.0.0 Bye")
				return false
			}
			if !ss.reply("503 5.5.1 Error: no SMTP service here") {
				return false
			}
		}
		return false
	case world.OpenTarpit:
		ss.tarpit()
		return false
	case world.OpenEndless:
		ss.endless()
		return false
	case world.OpenHTTP, world.OpenSSH, world.OpenBinary, world.OpenNUL:
		if ss.pause() && ss.write(srv.Foreign()) {
			ss.drain()
		}
		return false
	case world.OpenReset:
		t := time.NewTimer(resetDelay)
		defer t.Stop()
		select {
		case <-t.C:
			ss.reset()
		case <-ss.s.done:
		}
		return false
	case world.OpenHuge:
		return ss.hugeGreeting()
	}
	return ss.send(srv.Greeting(time.Now()))
}

func (ss *session) run() {
	if !ss.open() {
		return
	}
	srv, sc := ss.srv, &ss.srv.Case.SMTP
	peer := tcpserve.AddrOf(ss.raw.RemoteAddr())
	for range maxCommands {
		line, ok := ss.readLine(idleTimeout)
		if !ok {
			return
		}
		var sent bool
		switch verb(line) {
		case "EHLO":
			switch sc.EHLO {
			case world.EHLORefuse:
				sent = ss.reply("502 5.5.2 Error: command not recognized")
			case world.EHLOReset:
				ss.reset()
				return
			default:
				sent = ss.reply(srv.EHLOLines(ss.tls, arg(line), peer)...)
			}
		case "HELO":
			sent = ss.reply(srv.HELOLine(ss.tls, arg(line), peer))
		case "STARTTLS":
			switch {
			case ss.tls:
				sent = ss.reply("503 5.5.1 Error: TLS already active")
			case srv.STARTTLSRefusal() != "":
				sent = ss.reply(srv.STARTTLSRefusal())
			case !sc.Offered():
				sent = ss.reply("502 5.5.1 Error: command not implemented")
			default:
				if ss.r.Buffered() > 0 {
					// Commands pipelined behind STARTTLS would cross into the
					// TLS session (CVE-2011-0411 style); refuse them.
					ss.reply("554 5.5.1 Error: pipelining behind STARTTLS")
					return
				}
				if !ss.reply(srv.STARTTLSReady()) || !ss.afterReady() {
					return
				}
				sent = true
			}
		case "QUIT":
			ss.reply("221 2.0.0 Bye")
			return
		case "RSET", "NOOP":
			sent = ss.reply("250 2.0.0 Ok")
		default:
			sent = ss.reply("502 5.5.2 Error: command not recognized")
		}
		if !sent {
			return
		}
	}
	ss.reply("421 4.7.0 " + srv.Banner + " Error: too many commands")
}

// afterReady does what the script does after the 220 to STARTTLS; true when
// a TLS session follows.
func (ss *session) afterReady() bool {
	srv := ss.srv
	switch srv.Case.SMTP.AfterReady {
	case world.AfterReset:
		if ss.readRecord() {
			ss.reset()
		}
		return false
	case world.AfterPlaintext, world.AfterGarbage:
		answer := []byte(srv.Greeting(time.Now()))
		if srv.Case.SMTP.AfterReady == world.AfterGarbage {
			answer = srv.Garbage(512)
			answer[0] = 0x00 // no TLS record type: the client gives up on the header
		}
		if ss.readRecord() && ss.write(answer) {
			ss.drain()
		}
		return false
	}
	return ss.startTLS()
}

func (ss *session) startTLS() bool {
	srv := ss.srv
	cfg := &tls.Config{
		MinVersion:       tls.VersionTLS12,
		CurvePreferences: ss.s.groups,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return ss.s.auth.Get(srv.CertSpec(strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))))
		},
	}
	if srv.Case.TLS.MaxTLS12 {
		cfg.MaxVersion = tls.VersionTLS12
	}
	tc := tls.Server(ss.conn, cfg)
	if err := ss.s.conns.Handshake(tc, handshakeLimit); err != nil {
		return false
	}
	ss.conn = tc
	ss.r = bufio.NewReaderSize(tc, maxLine)
	ss.tls = true
	return true
}

func verb(line string) string {
	v, _, _ := strings.Cut(strings.TrimSpace(line), " ")
	return strings.ToUpper(v)
}

// arg is what follows a command's verb (the client's EHLO name).
func arg(line string) string {
	_, a, _ := strings.Cut(strings.TrimSpace(line), " ")
	return strings.TrimSpace(a)
}
