package smtpserver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
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
	if c == cSMTPEHLOManyExt && !postTLS {
		out = append(out, "STARTTLS")
		for k := range manyExtCount - 6 {
			out = append(out, fmt.Sprintf("X-LAB-EXT-%04d", k+1))
		}
		return append(out, "ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8")
	}
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

// manyExtCount is the number of extensions smtp_ehlo_many_ext advertises.
const manyExtCount = 5000

// codeChangeLine is the line of smtp_ehlo_code_change's EHLO reply (0-based)
// whose code is 251 instead of 250.
const codeChangeLine = 2

// ehloLines is the EHLO reply as sent, codes included, without line endings;
// helo is the client's EHLO argument and peer its address (Exim and
// Microsoft echo them).
func ehloLines(s *server, postTLS bool, helo string, peer netip.Addr) []string {
	name := s.ehlo
	if postTLS {
		name = s.postEHLO
	}
	lines := multi("250", s.wireName(name)+replyJunk(s.cas)+helloText(s, helo, peer), serverExtensions(s, postTLS))
	if s.cas == cSMTPEHLOCodeChange && !postTLS {
		lines[codeChangeLine] = "251" + lines[codeChangeLine][3:]
	}
	return lines
}

// replyJunk is what smtp_invalid_utf8 and smtp_banner_script add after the
// host name of the greeting and of the EHLO reply's first line.
func replyJunk(c caseID) string {
	switch c {
	case cSMTPInvalidUTF8:
		return " caf\xe9 \xff\xfe\xc3\x28 nul\x00here"
	case cSMTPBannerScript:
		return " <script>alert(1)</script>"
	}
	return ""
}

// notSMTP is what the non-SMTP services of the lab send on connect.
func (w *World) notSMTP(s *server) []byte {
	switch s.cas {
	case cSMTPHTTP:
		body := "<html><head><title>400 Bad Request</title></head><body><h1>400 Bad Request</h1></body></html>\r\n"
		return []byte("HTTP/1.1 400 Bad Request\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: " +
			strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body)
	case cSMTPSSH:
		return []byte("SSH-2.0-OpenSSH_9.6p1 Debian-3\r\n")
	case cSMTPNULBytes:
		return append(make([]byte, 64), '\r', '\n')
	case cSMTPBinary:
		b := w.garbage(s.slot, 160)
		b[0], b[1], b[2] = 0x16, 0x00, 0xff // not a digit; a NUL; never valid UTF-8
		b[100] = '\n'                       // the end of the one "line" a reader takes
		return b
	}
	return nil
}

// garbage is n seeded bytes without a line feed.
func (w *World) garbage(slot, n int) []byte {
	b := make([]byte, 0, n+8)
	for k := 0; len(b) < n; k++ {
		b = binary.LittleEndian.AppendUint64(b, w.hash(tagGarbage, slot*64+k))
	}
	b = b[:n]
	for i, c := range b {
		if c == '\n' {
			b[i] = 0
		}
	}
	return b
}

// firstLine is b up to and including its first LF (all of b without one).
func firstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i+1]
	}
	return b
}

// Hostile streams. The tarpit trickles tarpitLine, over and over; the
// endless line is endlessHead followed by 'x' until the client leaves (or
// endlessMax); the 10 MiB greeting is hugeFirst, hugeChunks copies of
// hugeChunk and greeting().
const (
	tarpitInterval = 3 * time.Second
	tarpitHold     = 10 * time.Minute
	endlessMax     = 256 << 20
	hugeChunks     = 160 // of 64 KiB: 10 MiB
	resetDelay     = 500 * time.Millisecond
)

func tarpitLine(s *server) string  { return "220-" + s.banner + " tarpit: one byte every 3 s\r\n" }
func endlessHead(s *server) string { return "220 " + s.banner + " " }
func hugeFirst(s *server) string {
	return "220-" + s.banner + " ESMTP mxsurvey-lab: a 10 MiB greeting follows\r\n"
}

// hugeChunk is 64 lines of 1 KiB: "220-0123...\r\n".
var hugeChunk = func() []byte {
	line := "220-" + strings.Repeat("0123456789abcdef", 63) + "0123456789\r\n"
	return []byte(strings.Repeat(line, 64))
}()

var endlessChunk = bytes.Repeat([]byte("x"), 64<<10)

// maxTLS12 says whether a case's server speaks TLS 1.2 at most.
func maxTLS12(c caseID) bool {
	switch c {
	case cTLS12Only, cCertParseLeafTLS12, cCertParseIntermediateTLS12:
		return true
	}
	return false
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
	raw  net.Conn // the TCP connection
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
	ss := &session{s: s, srv: srv, raw: c, conn: c, r: bufio.NewReaderSize(c, maxLine)}
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

// reset closes the connection with SO_LINGER 0: the kernel sends RST, not FIN.
func (ss *session) reset() {
	if tc, ok := ss.raw.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // fails only on a closed socket, which Close then reports to nobody
	}
	_ = ss.raw.Close() // the session is over either way
}

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
	var hdr [5]byte
	if _, err := io.ReadFull(ss.r, hdr[:]); err != nil {
		return false
	}
	n := int(hdr[3])<<8 | int(hdr[4])
	_, err := io.CopyN(io.Discard, ss.r, int64(n))
	return err == nil
}

// closed is closed when the client leaves (or the lab shuts down): a reader
// for the streaming cases, which otherwise would notice only at their next
// write. Reading is harmless there: a client does not talk before the
// greeting ends.
func (ss *session) closed() <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		ss.raw.SetReadDeadline(time.Now().Add(tarpitHold))
		_, _ = io.Copy(io.Discard, io.LimitReader(ss.raw, 1<<20)) // any end means "gone"
	}()
	return ch
}

// tarpit trickles tarpitLine one byte per tarpitInterval until the client
// leaves, the lab stops, or tarpitHold passes.
func (ss *session) tarpit() {
	if !ss.pause() {
		return
	}
	line := tarpitLine(ss.srv)
	gone := ss.closed()
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
	if !ss.send(endlessHead(ss.srv)) {
		return
	}
	for sent := 0; sent < endlessMax; sent += len(endlessChunk) {
		select {
		case <-ss.s.done:
			return
		default:
		}
		if !ss.write(endlessChunk) {
			return
		}
	}
}

// hugeGreeting sends the 10 MiB greeting; a client that reads it all gets an
// ordinary session after it.
func (ss *session) hugeGreeting() bool {
	if !ss.send(hugeFirst(ss.srv)) {
		return false
	}
	for range hugeChunks {
		select {
		case <-ss.s.done:
			return false
		default:
		}
		if !ss.write(hugeChunk) {
			return false
		}
	}
	return ss.write([]byte(greeting(ss.srv, time.Now())))
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
	case cSMTPTarpit:
		ss.tarpit()
		return
	case cSMTPEndlessLine:
		ss.endless()
		return
	case cSMTPHTTP, cSMTPSSH, cSMTPBinary, cSMTPNULBytes:
		if ss.pause() && ss.write(ss.s.w.notSMTP(srv)) {
			ss.drain()
		}
		return
	case cSMTPResetConnect:
		// Not at once: a reset that beats the client's connect(2) to its
		// SO_ERROR check fails the connect itself (outcome connect), which
		// would make the case a race. Half a second after the accept the
		// client waits for the greeting.
		t := time.NewTimer(resetDelay)
		defer t.Stop()
		select {
		case <-t.C:
			ss.reset()
		case <-ss.s.done:
		}
		return
	case cSMTPGreeting10MB:
		if !ss.hugeGreeting() {
			return
		}
	}
	if srv.cas != cSMTPGreeting10MB && !ss.send(greeting(srv, time.Now())) {
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
			if srv.cas == cSMTPResetEHLO {
				ss.reset()
				return
			}
			sent = ss.reply(ehloLines(srv, ss.tls, arg(line), addrOf(ss.raw.RemoteAddr()))...)
		case "HELO":
			name := srv.ehlo
			if ss.tls {
				name = srv.postEHLO
			}
			sent = ss.reply("250 " + srv.wireName(name) + helloText(srv, arg(line), addrOf(ss.raw.RemoteAddr())))
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
				if !ss.reply(startTLSReady(srv)) {
					return
				}
				switch srv.cas {
				case cSMTPResetTLS:
					if ss.readRecord() {
						ss.reset()
					}
					return
				case cSMTPSTARTTLSPlaintext, cSMTPSTARTTLSGarbage:
					answer := []byte(greeting(srv, time.Now()))
					if srv.cas == cSMTPSTARTTLSGarbage {
						answer = ss.s.w.garbage(srv.slot, 512)
						answer[0] = 0x00 // no TLS record type: the client gives up on the header
					}
					if ss.readRecord() && ss.write(answer) {
						ss.drain()
					}
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
	if maxTLS12(srv.cas) {
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

// arg is what follows a command's verb (the client's EHLO name).
func arg(line string) string {
	_, a, _ := strings.Cut(strings.TrimSpace(line), " ")
	return strings.TrimSpace(a)
}
