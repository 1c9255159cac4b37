// Package probe holds one SMTP STARTTLS conversation (RFC 5321, RFC 3207) per
// target and records everything the server said and presented into a
// survey.ProbeRow: greeting, EHLO reply before and after TLS, the negotiated
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

	"github.com/mxsurvey/mxsurvey/datasets/survey"

	"github.com/mxsurvey/mxsurvey/scan/peer"
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
	// readBufferBytes is the reply reader's buffer: a greeting or EHLO line
	// fits, a longer one is read in pieces (smtpreply joins them), and
	// 10,000 probes waiting on slow servers hold 10 MiB of it, not 40.
	readBufferBytes = 1 << 10
)

// Config configures a Prober. Zero fields take the defaults above.
//
// The fields tagged `option` are recorded under that name in a scan's
// manifest (docs/schema.md).
type Config struct {
	Port          int           `option:"port"`          // default 25
	EHLOName      string        `option:"ehlo_name"`     // name sent in EHLO/HELO; required
	Timeout       time.Duration `option:"probe_timeout"` // whole probe, default 30s
	StepTimeout   time.Duration `option:"step_timeout"`  // each connect/read/handshake step, default 10s, at most Timeout
	Limits        smtpreply.Limits
	MaxProbeBytes int64 // bytes read from the server per probe, TLS included; default 256 KiB
	MaxChainCerts int   // certificates of the chain kept, leaf first; default 20
	// CurvePreferences are the key exchanges offered; nil is Go's default
	// (X25519MLKEM768 first). Which groups a survey offers changes what it
	// measures (tls_group), so it is the caller's choice and belongs in the
	// scan's manifest.
	CurvePreferences Groups `option:"tls_groups"`
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
	// and the lab can route or refuse connections. A process's own, never
	// sent to a cluster worker with the rest of the configuration.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error) `json:"-"`
}

// Groups are TLS key exchange groups in order of preference; nil is Go's
// default preference.
type Groups []tls.CurveID

// String names the groups as a scan's manifest records them:
// comma-separated, or "go-default".
func (g Groups) String() string {
	if len(g) == 0 {
		return "go-default"
	}
	names := make([]string, len(g))
	for i, id := range g {
		names[i] = survey.TLSGroupName(id)
	}
	return strings.Join(names, ",")
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
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("probe: port %d out of range", cfg.Port)
	}
	if cfg.Timeout < 0 || cfg.StepTimeout < 0 || cfg.MaxProbeBytes < 0 || cfg.MaxChainCerts < 0 {
		return nil, errors.New("probe: negative timeout or limit")
	}
	cfg = cfg.WithDefaults()
	cfg.StepTimeout = min(cfg.StepTimeout, cfg.Timeout)
	if cfg.MaxTLSVersion != 0 && cfg.MaxTLSVersion < cfg.MinTLSVersion {
		return nil, fmt.Errorf("probe: MaxTLSVersion %s below MinTLSVersion %s",
			tls.VersionName(cfg.MaxTLSVersion), tls.VersionName(cfg.MinTLSVersion))
	}
	cfg.CurvePreferences = slices.Clone(cfg.CurvePreferences)
	cfg.CipherSuites = slices.Clone(cfg.CipherSuites)
	if cfg.Dial == nil {
		// No TCP keep-alive: a probe ends within its timeout, long before a
		// keep-alive would be sent, and setting it up costs each connection
		// four system calls.
		cfg.Dial = (&net.Dialer{KeepAlive: -1}).DialContext
	}
	return &Prober{cfg: cfg}, nil
}

// WithDefaults returns c with the defaults above in its zero fields, as New
// uses it (New also bounds StepTimeout by Timeout).
func (c Config) WithDefaults() Config {
	if c.Port == 0 {
		c.Port = DefaultPort
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.StepTimeout == 0 {
		c.StepTimeout = DefaultStepTimeout
	}
	if c.MaxProbeBytes == 0 {
		c.MaxProbeBytes = DefaultMaxProbeBytes
	}
	if c.MaxChainCerts == 0 {
		c.MaxChainCerts = DefaultMaxChainCerts
	}
	if c.MinTLSVersion == 0 {
		c.MinTLSVersion = tls.VersionTLS10
	}
	c.Limits = c.Limits.WithDefaults()
	return c
}

// Probe runs one conversation with t and returns its row. It never fails:
// every failure is recorded as Outcome (the stage reached) and ErrorClass
// (see Classify), and a panic inside the prober is recovered as ErrInternal
// so one bad server cannot end a scan.
//
// Cancelling ctx ends the probe promptly with ErrorClass "canceled"; ctx's
// deadline, or Config.Timeout, ends it with "timeout".
func (p *Prober) Probe(ctx context.Context, t Target) (row survey.ProbeRow) {
	start := time.Now()
	row = survey.ProbeRow{
		IP:           t.IP.String(),
		Port:         int32(p.cfg.Port),
		MXHost:       t.MXHost,
		StartedAt:    start.UTC(),
		Outcome:      survey.OutcomeConnect,
		EHLONameSent: p.cfg.EHLOName,
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	s := &session{p: p, ctx: ctx, row: &row}
	defer func() {
		if v := recover(); v != nil {
			row.ErrorClass = survey.ErrInternal
			row.Error = peer.CapText(fmt.Sprintf("panic: %v\n%s", v, debug.Stack()), maxErrorBytes)
		}
		s.close()
		if s.mc != nil {
			row.BytesRead = s.mc.N
		}
		if s.br != nil {
			s.br.Reset(nil) // holds nothing of this connection while pooled
			replyReaders.Put(s.br)
		}
		row.DurationMS = time.Since(start).Milliseconds()
	}()
	s.run(t)
	return row
}

// replyReaders are the sessions' reply readers, kept between probes: one
// for each probe was 1% of all the scanner allocated.
var replyReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferBytes) }}

// session is the state of one conversation.
type session struct {
	p   *Prober
	ctx context.Context
	row *survey.ProbeRow

	mc   *peer.Metered // the raw connection, counting bytes
	tc   *tls.Conn     // after STARTTLS
	conn net.Conn      // where commands go: mc, then tc
	br   *bufio.Reader
	// steps arms each step's deadline; a cancelled scan must not wait for
	// one, so it pushes the deadline into the past when ctx ends.
	steps *peer.Steps
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
	s.mc = &peer.Metered{Conn: c, Max: s.p.cfg.MaxProbeBytes}
	s.conn = s.mc
	s.br = replyReaders.Get().(*bufio.Reader)
	s.br.Reset(s.mc)
	s.steps = peer.NewSteps(s.ctx, s.mc, s.p.cfg.StepTimeout)

	row.Outcome = survey.OutcomeBanner
	banner, err := s.read()
	row.Banner, row.BannerCode, row.BannerHost = banner.Raw, int32(banner.Code), smtpreply.HostOf(banner)
	if err != nil {
		s.fail(fmt.Errorf("greeting: %w", err))
		return
	}
	if !s.expect2xx("greeting", banner) {
		return
	}

	row.Outcome = survey.OutcomeEHLO
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

	row.Outcome = survey.OutcomeSTARTTLS
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

	row.Outcome = survey.OutcomeTLS
	if err := s.handshake(t); err != nil {
		s.fail(err)
		return
	}

	row.Outcome = survey.OutcomePostTLSEHLO
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
	row.Outcome = survey.OutcomeOK
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
	// Bytes the server sent after its 220 are already in br: hand them to
	// TLS first, as a client reading the socket directly would see them.
	var pre []byte
	if n := s.br.Buffered(); n > 0 {
		b, _ := s.br.Peek(n) // cannot fail: n bytes are buffered
		pre = slices.Clone(b)
	}
	s.arm(s.p.cfg.StepTimeout)
	tc, res, err := peer.Handshake(s.mc, pre, peer.Config{
		ServerName:       peer.SNIName(t.MXHost),
		MinVersion:       s.p.cfg.MinTLSVersion,
		MaxVersion:       s.p.cfg.MaxTLSVersion,
		CurvePreferences: s.p.cfg.CurvePreferences,
		CipherSuites:     s.p.cfg.CipherSuites,
	})
	if err != nil {
		// Not usable: the raw connection is closed, no close_notify.
		if len(res.Chain) > 0 {
			s.certs(res.Chain, nil)
		}
		return err
	}
	s.tc = tc
	st := res.State
	row.TLSVersion = tls.VersionName(st.Version)
	row.TLSCipher = tls.CipherSuiteName(st.CipherSuite)
	if st.CurveID != 0 { // 0: RSA key exchange, no group at all
		row.TLSGroup = survey.TLSGroupName(st.CurveID)
	}
	s.certs(res.Chain, res.Leaf)
	s.conn = s.tc
	s.br.Reset(s.tc)
	return nil
}

// certs records the chain, capped at MaxChainCerts (leaf first, the rest
// dropped), and its leaf's fields; leaf is the leaf crypto/tls parsed, or
// nil to parse it here.
func (s *session) certs(chain [][]byte, leaf *x509.Certificate) {
	s.row.CertChainLen = int32(len(chain))
	if len(chain) > s.p.cfg.MaxChainCerts {
		chain = chain[:s.p.cfg.MaxChainCerts]
	}
	certFields(s.row, chain, leaf)
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

// arm sets the connection deadline for one step of length d.
func (s *session) arm(d time.Duration) { s.steps.Arm(s.mc.SetDeadline, d) }

func (s *session) close() {
	if s.steps != nil {
		s.steps.Stop()
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
	err = peer.InContext(s.ctx, err)
	s.row.ErrorClass = Classify(err)
	s.row.Error = peer.CapText(err.Error(), maxErrorBytes)
}
