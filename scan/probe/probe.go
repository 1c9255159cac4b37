// Package probe holds one SMTP STARTTLS conversation (RFC 5321, RFC 3207) per
// target and records everything the server said and presented into a
// record.ProbeRow: greeting, EHLO reply before and after TLS, the negotiated
// TLS parameters and the certificate chain exactly as sent.
//
// The prober records rather than enforces: certificates are not verified
// (the analyzer does that, offline, against the roots it is given), and every
// failure becomes an outcome and an error class in the row, never an error
// returned to the caller, because in a survey a failure is a measurement.
// It never sends MAIL, RCPT or DATA.
//
// Every step has a deadline and every byte read counts against a cap, because
// the servers are arbitrary internet hosts and some are hostile or broken.
// Which addresses may be contacted at all (blocklists, special-purpose
// ranges) is decided before a target reaches the prober.
package probe

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/mxsurvey/mxsurvey/internal/workers"
	"github.com/mxsurvey/mxsurvey/scan/record"
	"github.com/mxsurvey/mxsurvey/scan/smtpreply"
)

// Defaults for zero Config fields.
const (
	DefaultPort          = 25
	DefaultTimeout       = 30 * time.Second
	DefaultStepTimeout   = 10 * time.Second
	DefaultMaxProbeBytes = 256 << 10
	DefaultMaxChainCerts = 20
)

const (
	// quitTimeout bounds the courtesy QUIT: the row is complete by then, so a
	// server slow to say goodbye must not cost the scan more than this.
	quitTimeout = 2 * time.Second
	// maxErrorBytes caps ProbeRow.Error and CertParseError: error text can
	// embed server-chosen bytes.
	maxErrorBytes = 1024
	// maxSniffBytes caps the copy of the server's handshake bytes kept to
	// recover a chain crypto/tls refused to parse (see plaintextChain). Real
	// chains are a few KiB; the cap keeps 10,000 probes in flight cheap.
	maxSniffBytes = 64 << 10
	// readBufferBytes is the reply reader's buffer: a greeting or EHLO line
	// fits, a longer one is read in pieces (smtpreply joins them), and
	// 10,000 probes waiting on slow servers hold 10 MiB of it, not 40.
	readBufferBytes = 1 << 10
)

// Config configures a Prober. Zero fields take the defaults above.
type Config struct {
	Port          int           // default 25
	EHLOName      string        // name sent in EHLO/HELO; required
	Timeout       time.Duration // whole probe, default 30s
	StepTimeout   time.Duration // each connect/read/handshake step, default 10s, at most Timeout
	Limits        smtpreply.Limits
	MaxProbeBytes int64 // bytes read from the server per probe, TLS included; default 256 KiB
	MaxChainCerts int   // certificates of the chain kept, leaf first; default 20
	// CurvePreferences are the key exchanges offered; nil is Go's default
	// (X25519MLKEM768 first). Which groups a survey offers changes what it
	// measures (tls_group), so it is the caller's choice and belongs in the
	// scan's manifest.
	CurvePreferences []tls.CurveID
	// MinTLSVersion defaults to TLS 1.0, below Go's client default of 1.2, so
	// that old servers are measured rather than counted as failures.
	// MaxTLSVersion 0 is Go's default (TLS 1.3).
	MinTLSVersion, MaxTLSVersion uint16
	// CipherSuites are the TLS 1.0–1.2 suites offered; nil is Go's default,
	// which no longer offers RSA key exchange (Go 1.22) or 3DES (Go 1.23), so
	// servers with nothing else end in a handshake failure. Listing such
	// suites here measures them instead. TLS 1.3 suites are not configurable.
	CipherSuites []uint16
	// Dial connects to the target; nil uses a net.Dialer. One method, so tests
	// and the lab can route or refuse connections.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Target is one address to probe and the MX host it was found for. The MX host
// is sent as SNI, since the certificate a server presents can depend on it.
type Target struct {
	IP     netip.Addr
	MXHost string
}

// Prober probes targets. It is safe for concurrent use: each Probe holds its
// own connection and state.
type Prober struct {
	cfg Config
	// handshakers run the TLS handshakes. A handshake (ML-KEM above all)
	// needs a deep stack, and a goroutine keeps the stack it grew: probes
	// that spend seconds waiting on slow servers would each hold 32 KiB of
	// stack for the few milliseconds of their handshake. Handed to a few
	// workers, the probes' own goroutines stay at a few KiB.
	handshakers *workers.Pool
}

// New checks cfg and fills its defaults.
func New(cfg Config) (*Prober, error) {
	if cfg.EHLOName == "" {
		return nil, errors.New("probe: EHLOName is required")
	}
	if len(cfg.EHLOName) > 255 || strings.IndexFunc(cfg.EHLOName, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0 {
		// A space or CRLF in the name would inject words or commands.
		return nil, fmt.Errorf("probe: EHLOName %q is not a single printable ASCII word", cfg.EHLOName)
	}
	switch {
	case cfg.Port == 0:
		cfg.Port = DefaultPort
	case cfg.Port < 0 || cfg.Port > 65535:
		return nil, fmt.Errorf("probe: port %d out of range", cfg.Port)
	}
	if cfg.Timeout < 0 || cfg.StepTimeout < 0 || cfg.MaxProbeBytes < 0 || cfg.MaxChainCerts < 0 {
		return nil, errors.New("probe: negative timeout or limit")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.StepTimeout == 0 {
		cfg.StepTimeout = DefaultStepTimeout
	}
	cfg.StepTimeout = min(cfg.StepTimeout, cfg.Timeout)
	if cfg.MaxProbeBytes == 0 {
		cfg.MaxProbeBytes = DefaultMaxProbeBytes
	}
	if cfg.MaxChainCerts == 0 {
		cfg.MaxChainCerts = DefaultMaxChainCerts
	}
	if cfg.MinTLSVersion == 0 {
		cfg.MinTLSVersion = tls.VersionTLS10
	}
	if cfg.MaxTLSVersion != 0 && cfg.MaxTLSVersion < cfg.MinTLSVersion {
		return nil, fmt.Errorf("probe: MaxTLSVersion %s below MinTLSVersion %s",
			tls.VersionName(cfg.MaxTLSVersion), tls.VersionName(cfg.MinTLSVersion))
	}
	cfg.Limits = cfg.Limits.WithDefaults()
	cfg.CurvePreferences = slices.Clone(cfg.CurvePreferences)
	cfg.CipherSuites = slices.Clone(cfg.CipherSuites)
	if cfg.Dial == nil {
		// No TCP keep-alive: a probe ends within its timeout, long before a
		// keep-alive would be sent, and setting it up costs each connection
		// four system calls.
		cfg.Dial = (&net.Dialer{KeepAlive: -1}).DialContext
	}
	return &Prober{cfg: cfg, handshakers: workers.New(handshakerIdle)}, nil
}

// handshakerIdle is how long a handshake worker waits for the next one: in
// a steady scan a worker is busy again within milliseconds, and after a
// burst of handshakes the workers' 32 KiB stacks should not linger.
const handshakerIdle = time.Second

// Config returns the configuration in use, defaults filled, for the manifest.
func (p *Prober) Config() Config {
	c := p.cfg
	c.CurvePreferences = slices.Clone(c.CurvePreferences)
	c.CipherSuites = slices.Clone(c.CipherSuites)
	return c
}

// Probe runs one conversation with t and returns its row. It never fails:
// every failure is recorded as Outcome (the stage reached) and ErrorClass
// (see Classify), and a panic inside the prober is recovered as ErrInternal
// so one bad server cannot end a scan.
//
// Cancelling ctx ends the probe promptly with ErrorClass "canceled"; ctx's
// deadline, or Config.Timeout, ends it with "timeout".
func (p *Prober) Probe(ctx context.Context, t Target) (row record.ProbeRow) {
	start := time.Now()
	row = record.ProbeRow{
		IP:           t.IP.String(),
		Port:         int32(p.cfg.Port),
		MXHost:       t.MXHost,
		StartedAt:    start.UTC(),
		Outcome:      record.OutcomeConnect,
		EHLONameSent: p.cfg.EHLOName,
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	s := &session{p: p, ctx: ctx, row: &row}
	defer func() {
		if v := recover(); v != nil {
			row.ErrorClass = record.ErrInternal
			row.Error = capText(fmt.Sprintf("panic: %v\n%s", v, debug.Stack()), maxErrorBytes)
		}
		s.close()
		if s.mc != nil {
			row.BytesRead = s.mc.n
		}
		row.DurationMS = time.Since(start).Milliseconds()
	}()
	s.run(t)
	return row
}

// session is the state of one conversation.
type session struct {
	p   *Prober
	ctx context.Context
	row *record.ProbeRow

	mc   *meteredConn // the raw connection, counting bytes
	tc   *tls.Conn    // after STARTTLS
	conn net.Conn     // where commands go: mc, then tc
	br   *bufio.Reader
	stop func() bool // unregisters the interrupt

	mu          sync.Mutex // guards interrupted against the interrupt goroutine
	interrupted bool
}

func (s *session) run(t Target) {
	row := s.row
	if !t.IP.IsValid() {
		s.fail(errors.New("probe: invalid target address"))
		return
	}
	if err := s.ctx.Err(); err != nil {
		s.fail(err)
		return
	}

	addr := netip.AddrPortFrom(t.IP.Unmap(), uint16(s.p.cfg.Port)).String()
	dctx, cancel := context.WithTimeout(s.ctx, s.p.cfg.StepTimeout)
	c, err := s.p.cfg.Dial(dctx, "tcp", addr)
	cancel()
	if err != nil {
		s.fail(fmt.Errorf("connect: %w", err))
		return
	}
	s.mc = &meteredConn{Conn: c, max: s.p.cfg.MaxProbeBytes}
	s.conn = s.mc
	s.br = bufio.NewReaderSize(s.mc, readBufferBytes)
	// A cancelled scan must not wait for a step deadline: push the deadline
	// into the past so the blocked read returns now.
	s.stop = context.AfterFunc(s.ctx, s.interrupt)

	row.Outcome = record.OutcomeBanner
	banner, err := s.read()
	row.Banner, row.BannerCode, row.BannerHost = banner.Raw, int32(banner.Code), smtpreply.HostOf(banner)
	if err != nil {
		s.fail(fmt.Errorf("greeting: %w", err))
		return
	}
	if !s.expect2xx("greeting", banner) {
		return
	}

	row.Outcome = record.OutcomeEHLO
	row.EHLOVerb = "EHLO"
	ehlo, err := s.command("EHLO " + s.p.cfg.EHLOName)
	if err == nil && ehlo.Code >= 500 && ehlo.Code < 600 {
		// RFC 5321 §4.1.4: a server that does not know EHLO answers 5xx, and
		// the client falls back to HELO. HELO has no extensions, so such a
		// server cannot offer STARTTLS; it is still recorded as what it is.
		row.EHLOVerb = "HELO"
		row.EHLORefusal = ehlo.Raw
		ehlo, err = s.command("HELO " + s.p.cfg.EHLOName)
	}
	row.EHLOReply, row.EHLOCode, row.EHLOHost = ehlo.Raw, int32(ehlo.Code), smtpreply.HostOf(ehlo)
	// Only a positive EHLO reply lists extensions (RFC 5321 §4.1.1.1); the
	// lines of a multi-line refusal are text.
	if row.EHLOVerb == "EHLO" && ehlo.Code/100 == 2 {
		row.EHLOExtensions = smtpreply.Extensions(ehlo)
		row.STARTTLSOffered = smtpreply.HasExtension(ehlo, "STARTTLS")
	}
	if err != nil {
		s.fail(fmt.Errorf("%s: %w", row.EHLOVerb, err))
		return
	}
	if !s.expect2xx(row.EHLOVerb, ehlo) {
		return
	}

	row.Outcome = record.OutcomeSTARTTLS
	if !row.STARTTLSOffered {
		s.fail(ErrNoSTARTTLS)
		s.quit()
		return
	}
	st, err := s.command("STARTTLS")
	row.STARTTLSReply, row.STARTTLSCode = st.Raw, int32(st.Code)
	if err != nil {
		s.fail(fmt.Errorf("STARTTLS: %w", err))
		return
	}
	if st.Code != 220 {
		// Anything but 220 leaves TLS unstarted; a refusal (454) is a
		// well-formed answer the session survives, so say goodbye.
		s.fail(&ReplyError{Command: "STARTTLS", Code: st.Code})
		if st.Code >= 400 {
			s.quit()
		}
		return
	}

	row.Outcome = record.OutcomeTLS
	if err := s.handshake(t); err != nil {
		s.fail(err)
		return
	}

	row.Outcome = record.OutcomePostTLSEHLO
	pe, err := s.command("EHLO " + s.p.cfg.EHLOName)
	row.PostTLSEHLOReply, row.PostTLSEHLOCode, row.PostTLSEHLOHost = pe.Raw, int32(pe.Code), smtpreply.HostOf(pe)
	if pe.Code/100 == 2 {
		row.PostTLSEHLOExtensions = smtpreply.Extensions(pe)
	}
	if err != nil {
		s.fail(fmt.Errorf("EHLO after TLS: %w", err))
		return
	}
	if !s.expect2xx("EHLO after TLS", pe) {
		return
	}
	row.Outcome = record.OutcomeOK
	s.quit()
}

// expect2xx records a non-2xx reply as the probe's end and reports whether the
// conversation may go on. 4xx/5xx are refusals the server meant (rejected,
// with a courtesy QUIT); any other code is not SMTP as RFC 5321 defines it.
func (s *session) expect2xx(what string, r smtpreply.Reply) bool {
	if r.Code >= 200 && r.Code < 300 {
		return true
	}
	s.fail(&ReplyError{Command: what, Code: r.Code})
	if r.Code >= 400 {
		s.quit()
	}
	return false
}

// handshake runs the TLS client handshake and records what it negotiated and
// the chain the server sent.
func (s *session) handshake(t Target) error {
	row := s.row
	var sent [][]byte
	cfg := &tls.Config{
		// Verification is the analyzer's job, against the roots it is given:
		// the prober must get to the end of the handshake with any chain.
		InsecureSkipVerify: true,
		// Called with the chain as sent; with InsecureSkipVerify it is the
		// one place the raw DER list is handed over before the connection
		// state exists.
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			sent = rawCerts
			return nil
		},
		MinVersion:       s.p.cfg.MinTLSVersion,
		MaxVersion:       s.p.cfg.MaxTLSVersion,
		CurvePreferences: s.p.cfg.CurvePreferences,
		CipherSuites:     s.p.cfg.CipherSuites,
		ServerName:       sniName(t.MXHost),
		Renegotiation:    tls.RenegotiateNever,
	}
	// Bytes the server sent after its 220 are already in br: hand them to
	// TLS first, as a client reading the socket directly would see them.
	var pre []byte
	if n := s.br.Buffered(); n > 0 {
		b, _ := s.br.Peek(n) // cannot fail: n bytes are buffered
		pre = slices.Clone(b)
	}
	hc := &handshakeConn{Conn: s.mc, pre: pre, record: true}
	s.tc = tls.Client(hc, cfg)
	s.arm(s.p.cfg.StepTimeout)
	err := s.handshakeOnWorker()
	hc.record = false
	if err != nil {
		// crypto/tls gives up before any callback when a certificate does not
		// parse. In TLS 1.2 the chain travelled in clear, so it is recovered
		// from the bytes read; in TLS 1.3 it was encrypted and is lost.
		chain := sent
		if chain == nil {
			chain = plaintextChain(hc.rec)
		}
		hc.rec = nil
		s.tc = nil // not usable: close the raw connection, no close_notify
		if len(chain) == 0 {
			return &handshakeError{err: err}
		}
		s.certs(chain, nil)
		if perr := chainParseError(chain); perr != nil {
			return &CertParseError{Err: perr, Handshake: err}
		}
		return &handshakeError{err: err}
	}
	hc.rec = nil
	st := s.tc.ConnectionState()
	row.TLSVersion = tls.VersionName(st.Version)
	row.TLSCipher = tls.CipherSuiteName(st.CipherSuite)
	if st.CurveID != 0 { // 0: RSA key exchange, no group at all
		row.TLSGroup = st.CurveID.String()
	}
	if sent == nil {
		// Defensive: the callback has always run for a full handshake, and
		// the prober keeps no session cache, so no handshake is resumed.
		for _, c := range st.PeerCertificates {
			sent = append(sent, c.Raw)
		}
	}
	var leaf *x509.Certificate
	if len(st.PeerCertificates) > 0 && len(sent) > 0 && bytes.Equal(st.PeerCertificates[0].Raw, sent[0]) {
		leaf = st.PeerCertificates[0]
	}
	s.certs(sent, leaf)
	s.conn = s.tc
	s.br.Reset(s.tc)
	return nil
}

// handshakeOnWorker runs the handshake on one of the prober's handshake
// workers and waits for it. Not HandshakeContext: it starts a goroutine per
// handshake to watch the context, which arm and interrupt already do
// through the deadline. A panic in the handshake is carried back and raised
// here, where Probe records it.
func (s *session) handshakeOnWorker() error {
	type result struct {
		err   error
		panic any
	}
	done := make(chan result, 1)
	s.p.handshakers.Go(func() {
		defer func() {
			if v := recover(); v != nil {
				done <- result{panic: fmt.Sprintf("%v\n%s", v, debug.Stack())}
			}
		}()
		done <- result{err: s.tc.Handshake()}
	})
	r := <-done
	if r.panic != nil {
		panic(r.panic)
	}
	return r.err
}

// certs records the chain, capped at MaxChainCerts (leaf first, the rest
// dropped), and its leaf's fields; leaf is the leaf crypto/tls parsed, or
// nil to parse it here.
func (s *session) certs(chain [][]byte, leaf *x509.Certificate) {
	s.row.CertChainLen = int32(len(chain))
	if len(chain) > s.p.cfg.MaxChainCerts {
		chain = chain[:s.p.cfg.MaxChainCerts]
	}
	if leaf == nil {
		CertFields(s.row, chain)
		return
	}
	certFields(s.row, chain, leaf, nil)
}

// command sends one command line and reads the reply.
func (s *session) command(line string) (smtpreply.Reply, error) {
	s.arm(s.p.cfg.StepTimeout)
	if _, err := io.WriteString(s.conn, line+"\r\n"); err != nil {
		return smtpreply.Reply{}, err
	}
	return s.read()
}

func (s *session) read() (smtpreply.Reply, error) {
	s.arm(s.p.cfg.StepTimeout)
	return smtpreply.Read(s.br, s.p.cfg.Limits)
}

// quit says goodbye as a polite client does, within a short deadline. Its
// errors are not recorded: the row was complete before it.
func (s *session) quit() {
	s.arm(min(quitTimeout, s.p.cfg.StepTimeout))
	if _, err := io.WriteString(s.conn, "QUIT\r\n"); err != nil {
		return
	}
	_, _ = smtpreply.Read(s.br, s.p.cfg.Limits) // the 221 is not part of the dataset
}

// arm sets the connection deadline for one step: d from now, but never past
// the probe's deadline, and in the past once the context is done.
func (s *session) arm(d time.Duration) {
	dl := time.Now().Add(d)
	if cd, ok := s.ctx.Deadline(); ok && cd.Before(dl) {
		dl = cd
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.interrupted {
		dl = time.Unix(1, 0)
	}
	_ = s.mc.SetDeadline(dl) // an error means the conn is closed; the next I/O says so
}

func (s *session) interrupt() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.interrupted = true
	_ = s.mc.SetDeadline(time.Unix(1, 0)) // as in arm
}

func (s *session) close() {
	if s.stop != nil {
		s.stop()
	}
	if s.tc != nil {
		// Sends close_notify, bounded by the deadline already set.
		_ = s.tc.Close() // nothing left to record
		return
	}
	if s.mc != nil {
		_ = s.mc.Close() // nothing left to record
	}
}

// fail records why the probe stopped. An error that came from the probe's own
// context ending (a deadline pushed into the past, a closed connection) is
// attributed to the context, so a cancelled scan reads "canceled" rather than
// the "timeout" its interrupted read reported.
func (s *session) fail(err error) {
	if cerr := s.ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		err = &contextError{ctx: cerr, err: err}
	}
	s.row.ErrorClass = Classify(err)
	s.row.Error = capText(err.Error(), maxErrorBytes)
}

// sniName is the SNI to send: the MX host without its trailing dot, or none
// when there is no name (RFC 6066 §3 forbids addresses in SNI).
func sniName(mx string) string {
	mx = strings.TrimSuffix(mx, ".")
	if mx == "" {
		return ""
	}
	if _, err := netip.ParseAddr(strings.Trim(mx, "[]")); err == nil {
		return ""
	}
	return mx
}

// capText cuts s to at most n bytes without splitting a UTF-8 sequence.
func capText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && cut > n-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// meteredConn counts the bytes read from the server and refuses to read more
// than max of them, so no server can make a probe read without bound; the
// count is ProbeRow.BytesRead.
type meteredConn struct {
	net.Conn
	max, n int64
}

func (c *meteredConn) Read(p []byte) (int, error) {
	left := c.max - c.n
	if left <= 0 {
		return 0, ErrByteLimit
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	n, err := c.Conn.Read(p)
	c.n += int64(n)
	return n, err
}

// handshakeConn is what TLS reads from: first the bytes the SMTP reader had
// already buffered, then the connection; while record is set it keeps a
// capped copy of what it hands out, for plaintextChain.
type handshakeConn struct {
	net.Conn
	pre    []byte
	record bool
	rec    []byte
}

func (c *handshakeConn) Read(p []byte) (int, error) {
	var (
		n   int
		err error
	)
	if len(c.pre) > 0 {
		n = copy(p, c.pre)
		c.pre = c.pre[n:]
	} else {
		n, err = c.Conn.Read(p)
	}
	if c.record {
		keep := min(n, maxSniffBytes-len(c.rec))
		c.rec = append(c.rec, p[:keep]...)
	}
	return n, err
}
