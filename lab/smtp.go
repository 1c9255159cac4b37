package lab

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// The SMTP side is deliberately small: greeting, EHLO/HELO, STARTTLS, QUIT,
// RSET, NOOP. A survey never sends MAIL, so the lab never needs it, and every
// byte the lab sends is one the truth file has to predict.

const (
	maxLine        = 512 // RFC 5321 4.5.3.1.4 command line limit, CRLF included
	maxCommands    = 50
	idleTimeout    = 60 * time.Second
	silentHold     = 10 * time.Minute // long enough for any scanner's banner timeout
	handshakeLimit = 30 * time.Second
)

// extensions is the EHLO reply after its first line, as sent on the wire.
// STARTTLS is never advertised after TLS (RFC 3207 4.2).
func extensions(c caseID, postTLS bool) []string {
	out := []string{"PIPELINING", "SIZE 10240000"}
	if postTLS && c == cSMTPPostTLSDiffers {
		out = append(out, "AUTH PLAIN LOGIN")
	}
	if !postTLS {
		switch c {
		case cSMTPNoSTARTTLS:
		case cSMTPSTARTTLSLowercase:
			out = append(out, "starttls")
		default:
			out = append(out, "STARTTLS")
		}
	}
	return append(out, "ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8")
}

// startTLSOffered is what the lab advertises, stated from the case.
func startTLSOffered(c caseID) bool {
	return c != cSMTPNoSTARTTLS && c != cSMTPHELOOnly
}

type smtpServer struct {
	w    *World
	auth *authority
	ln   net.Listener
	done chan struct{}

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newSMTPServer(w *World, auth *authority, ln net.Listener) *smtpServer {
	return &smtpServer{w: w, auth: auth, ln: ln, done: make(chan struct{}), conns: map[net.Conn]struct{}{}}
}

func (s *smtpServer) serve() {
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
			s.handle(c)
		}()
	}
}

func (s *smtpServer) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *smtpServer) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *smtpServer) close() error {
	s.mu.Lock()
	s.closed = true
	close(s.done)
	err := s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ta.IP); ok {
			return ip.Unmap()
		}
	}
	return netip.Addr{}
}

// session is one SMTP conversation.
type session struct {
	s    *smtpServer
	srv  *server
	conn net.Conn
	r    *bufio.Reader
	tls  bool
}

func (s *smtpServer) handle(c net.Conn) {
	// The lab listens on 0.0.0.0 to serve every 127.x address with one
	// socket; only loopback peers may talk to it.
	if !addrOf(c.RemoteAddr()).IsLoopback() {
		return
	}
	slot, ok := s.w.addrSlot(addrOf(c.LocalAddr()))
	if !ok {
		return
	}
	srv, ok := s.w.serverAt(slot)
	if !ok {
		return
	}
	ss := &session{s: s, srv: srv, conn: c, r: bufio.NewReaderSize(c, maxLine)}
	ss.run()
}

// pause simulates the network and server delay before a reply; false when the
// lab shuts down meanwhile.
func (ss *session) pause() bool {
	if ss.srv.latency <= 0 {
		return true
	}
	t := time.NewTimer(ss.srv.latency)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ss.s.done:
		return false
	}
}

func (ss *session) reply(lines ...string) bool {
	if !ss.pause() {
		return false
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteString("\r\n")
	}
	ss.conn.SetWriteDeadline(time.Now().Add(idleTimeout))
	_, err := io.WriteString(ss.conn, b.String())
	return err == nil
}

// multi formats a multi-line reply: code-text for all but the last line.
func multi(code string, first string, rest []string) []string {
	all := append([]string{first}, rest...)
	out := make([]string, len(all))
	for i, l := range all {
		sep := "-"
		if i == len(all)-1 {
			sep = " "
		}
		out[i] = code + sep + l
	}
	return out
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

func (ss *session) run() {
	srv := ss.srv
	switch srv.cas {
	case cSMTPSilent:
		ss.conn.SetReadDeadline(time.Now().Add(silentHold))
		_, _ = io.Copy(io.Discard, io.LimitReader(ss.conn, 64<<10)) // ends on EOF, deadline or close: all mean "done"
		return
	case cSMTPBusy421:
		ss.reply("421 " + srv.banner + " Service not available, closing transmission channel")
		return
	case cSMTPGreeting554:
		if !ss.reply("554 " + srv.banner + " No SMTP service here") {
			return
		}
		// RFC 5321 3.1: wait for QUIT, answering 503 meanwhile.
		for range maxCommands {
			line, ok := ss.readLine(idleTimeout)
			if !ok {
				return
			}
			if verb(line) == "QUIT" {
				ss.reply("221 2.0.0 Bye")
				return
			}
			if !ss.reply("503 5.5.1 Error: no SMTP service here") {
				return
			}
		}
		return
	}
	if !ss.reply("220 " + srv.banner + " ESMTP mxsurvey-lab") {
		return
	}
	for range maxCommands {
		line, ok := ss.readLine(idleTimeout)
		if !ok {
			return
		}
		var sent bool
		switch verb(line) {
		case "EHLO":
			if srv.cas == cSMTPHELOOnly {
				sent = ss.reply("502 5.5.2 Error: command not recognized")
				break
			}
			name := srv.ehlo
			if ss.tls {
				name = srv.postEHLO
			}
			sent = ss.reply(multi("250", name, extensions(srv.cas, ss.tls))...)
		case "HELO":
			name := srv.ehlo
			if ss.tls {
				name = srv.postEHLO
			}
			sent = ss.reply("250 " + name)
		case "STARTTLS":
			switch {
			case ss.tls:
				sent = ss.reply("503 5.5.1 Error: TLS already active")
			case srv.cas == cSMTPSTARTTLS454:
				sent = ss.reply("454 4.7.0 TLS not available due to local problem")
			case !startTLSOffered(srv.cas):
				sent = ss.reply("502 5.5.1 Error: command not implemented")
			default:
				if ss.r.Buffered() > 0 {
					// Commands pipelined behind STARTTLS would cross into the
					// TLS session (CVE-2011-0411 style); refuse them.
					ss.reply("554 5.5.1 Error: pipelining behind STARTTLS")
					return
				}
				if !ss.reply("220 2.0.0 Ready to start TLS") {
					return
				}
				if !ss.startTLS() {
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
	ss.reply("421 4.7.0 " + srv.banner + " Error: too many commands")
}

func (ss *session) startTLS() bool {
	srv := ss.srv
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return ss.s.auth.get(specFor(srv, strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))))
		},
	}
	if srv.cas == cTLS12Only {
		cfg.MaxVersion = tls.VersionTLS12
	}
	tc := tls.Server(ss.conn, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), handshakeLimit)
	defer cancel()
	go func() {
		select {
		case <-ss.s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := tc.HandshakeContext(ctx); err != nil {
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
