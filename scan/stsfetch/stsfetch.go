// Package stsfetch fetches a domain's MTA-STS policy (RFC 8461 §3.3) the way
// a survey must: once, raw, bounded, and recorded whatever happens. It
// resolves mta-sts.<domain>, connects to one address the scan may contact,
// runs a TLS handshake with SNI mta-sts.<domain> that verifies nothing and
// records the chain as sent (package peer, as the SMTP prober does), sends an
// HTTP/1.1 GET for /.well-known/mta-sts.txt and keeps the status, the
// Content-Type and Location headers and the body's first bytes, into the
// sts_* columns of a policies row (docs/schema.md).
//
// What a sender would require of the policy (status 200, text/plain, a
// WebPKI-valid certificate for mta-sts.<domain>, RFC 8461 §3.2's grammar) is
// the analyzer's to decide; redirects are recorded and never followed (RFC
// 8461 §3.3 forbids following them). Every step has a deadline inside one
// for the whole fetch, and every byte read counts against a cap, so a server
// that never answers ends as a timeout and a 10 MB policy as too_large.
package stsfetch

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/scan/guard"
	"github.com/mxsurvey/mxsurvey/scan/peer"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
)

// Defaults and caps.
const (
	DefaultPort        = 443
	DefaultTimeout     = 30 * time.Second
	DefaultStepTimeout = 10 * time.Second

	// MaxBodyKept bytes of the body are stored: RFC 8461 policies are a
	// few hundred bytes, and 64 KiB holds any list of mx patterns.
	MaxBodyKept = 64 << 10
	// MaxBodyRead bytes of the body are read, counted, and no more: enough
	// to tell a large policy from a stream that never ends.
	MaxBodyRead = 1 << 20
	// maxHandshakeBytes, maxHeadBytes and bodySlack bound the bytes read
	// from the server in each phase (TLS records included): the chain, the
	// response head, and the TLS framing and read-ahead around the body.
	maxHandshakeBytes = 256 << 10
	maxHeadBytes      = 64 << 10
	bodySlack         = 64 << 10

	maxChainCerts = 20   // as the prober's default
	maxErrorBytes = 1024 // as the prober's

	// WellKnownPath is where the policy lives (RFC 8461 §3.2).
	WellKnownPath = "/.well-known/mta-sts.txt"
)

// Config configures a Fetcher. Zero fields take the defaults above.
//
// The fields tagged `option` are recorded under that name in a scan's
// manifest (docs/schema.md).
type Config struct {
	Port        int           `option:"mta_sts_port"`
	Timeout     time.Duration // the whole fetch, address lookup included
	StepTimeout time.Duration // connect, the TLS handshake, each read and write
	// The TLS offer: the scan offers what its prober offers.
	MinTLSVersion, MaxTLSVersion uint16
	CurvePreferences             []tls.CurveID
	// UserAgent names the scanner to the servers it asks.
	UserAgent string
	// Guard says which addresses may be contacted; nil contacts none. The
	// fields from here on are the process's own, never sent to a cluster
	// worker with the rest.
	Guard *guard.Policy `json:"-"`
	// IPv6 allows IPv6 addresses; without it they are recorded, not used.
	IPv6 bool
	// Limiter, when set, is waited on before connecting: the scan's global
	// connection rate, which SMTP probes share.
	Limiter resolve.Limiter `json:"-"`
	// Dial connects; nil uses a net.Dialer. Tests route connections with it.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error) `json:"-"`
}

// Resolver is what the fetcher asks of DNS: a *resolve.Resolver, or a map in
// tests.
type Resolver interface {
	LookupHost(ctx context.Context, name string) resolve.Host
}

// Fetcher fetches policies. It is safe for concurrent use: every fetch has
// its own connection.
type Fetcher struct {
	cfg Config
	r   Resolver
}

// New checks cfg and fills its defaults.
func New(cfg Config, r Resolver) (*Fetcher, error) {
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("stsfetch: port %d out of range", cfg.Port)
	}
	if cfg.Timeout < 0 || cfg.StepTimeout < 0 {
		return nil, errors.New("stsfetch: negative timeout")
	}
	cfg = cfg.WithDefaults()
	cfg.StepTimeout = min(cfg.StepTimeout, cfg.Timeout)
	if cfg.Dial == nil {
		cfg.Dial = (&net.Dialer{}).DialContext
	}
	return &Fetcher{cfg: cfg, r: r}, nil
}

// WithDefaults returns c with the defaults above in its zero fields.
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
	return c
}

// URL is where a domain's policy is fetched from: the port shows only when
// it is not HTTPS's.
func URL(domain string, port int) string {
	host := "mta-sts." + domain
	if port != DefaultPort {
		host = net.JoinHostPort(host, strconv.Itoa(port))
	}
	return "https://" + host + WellKnownPath
}

// Fetch fetches domain's policy into row's sts_* columns and sets
// sts_fetched. It never fails: every failure is sts_error_class (peer's
// vocabulary, plus no_address and dns for the address lookup) and the raw
// sts_error, with what was received before it kept. A panic is recovered
// as "internal". Cancelling ctx ends the fetch promptly as "canceled".
func (f *Fetcher) Fetch(ctx context.Context, domain string, row *survey.PolicyRow) {
	start := time.Now()
	row.STSFetched = true
	row.STSURL = URL(domain, f.cfg.Port)
	row.STSStartedAt = start.UTC()
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	defer func() {
		if v := recover(); v != nil {
			row.STSErrorClass = survey.ErrInternal
			row.STSError = peer.CapText(fmt.Sprintf("panic: %v\n%s", v, debug.Stack()), maxErrorBytes)
		}
		row.STSDurationMS = time.Since(start).Milliseconds()
	}()
	host := "mta-sts." + domain
	ip, class, reason := f.address(ctx, host)
	if ip.IsValid() {
		row.STSIP = ip.String()
	}
	if class != "" {
		row.STSErrorClass, row.STSError = class, peer.CapText(reason, maxErrorBytes)
		return
	}
	if f.cfg.Limiter != nil {
		if err := f.cfg.Limiter.Wait(ctx); err != nil {
			f.fail(ctx, row, fmt.Errorf("waiting for the connection rate: %w", err), false)
			return
		}
	}
	f.get(ctx, domain, ip, row)
}

// address resolves host and picks the address to connect to: the first, A
// before AAAA, that may be contacted. It returns the class of why there is
// none, and then the first address not contacted, if any.
func (f *Fetcher) address(ctx context.Context, host string) (netip.Addr, string, string) {
	h := f.r.LookupHost(ctx, host)
	switch h.Status {
	case survey.DNSOK:
	case survey.DNSNoAddr, survey.DNSNXDomain:
		return netip.Addr{}, survey.ErrNoAddress, h.Error
	default:
		if ctx.Err() != nil {
			return netip.Addr{}, peer.Classify(peer.InContext(ctx, errors.New(h.Error)), nil), h.Error
		}
		return netip.Addr{}, survey.ErrDNS, h.Error
	}
	var blocked, v6 netip.Addr
	var why string
	for _, a := range h.Addrs {
		if a.Is6() && !a.Is4In6() && !f.cfg.IPv6 {
			if !v6.IsValid() {
				v6 = a
			}
			continue
		}
		ok, reason := false, "no guard configured"
		if f.cfg.Guard != nil {
			ok, reason = f.cfg.Guard.Check(a)
		}
		if ok {
			return a, "", ""
		}
		if !blocked.IsValid() {
			blocked, why = a, reason
		}
	}
	if blocked.IsValid() {
		return blocked, survey.ErrBlocked, fmt.Sprintf("%s %s not contacted: %s", host, blocked, why)
	}
	return v6, survey.ErrIPv6Disabled, fmt.Sprintf("%s has only IPv6 addresses, not contacted (no -ipv6)", host)
}

// get makes the HTTPS request to ip and records the response.
func (f *Fetcher) get(ctx context.Context, domain string, ip netip.Addr, row *survey.PolicyRow) {
	c := &conn{f: f, ctx: ctx, ip: ip, host: "mta-sts." + domain}
	defer c.close()
	tr := &http.Transport{
		DialTLSContext:    c.dialTLS,
		DisableKeepAlives: true,
		// The body as the server sent it: no Accept-Encoding, no decoding.
		DisableCompression: true,
		// Above the byte cap of the head, which so ends as too_large.
		MaxResponseHeaderBytes: 2 * maxHeadBytes,
		// No HTTP/2: an empty map turns it off.
		TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
		Proxy:        nil, // never the environment's proxy
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, URL(domain, f.cfg.Port), nil)
	if err != nil {
		f.fail(ctx, row, fmt.Errorf("building the request: %w", err), false)
		return
	}
	if f.cfg.UserAgent != "" {
		req.Header.Set("User-Agent", f.cfg.UserAgent)
	}
	// RoundTrip, not a Client: a response is recorded as it comes, a
	// redirect included, and nothing is followed.
	resp, err := tr.RoundTrip(req)
	handshaken := c.record(row)
	if err != nil {
		f.fail(ctx, row, err, handshaken)
		return
	}
	defer resp.Body.Close()
	row.STSHTTPStatus = int32(resp.StatusCode)
	row.STSContentType = resp.Header.Get("Content-Type")
	row.STSLocation = resp.Header.Get("Location")
	c.budget(MaxBodyRead + bodySlack)
	body := &capped{max: MaxBodyKept}
	// io.Copy would allocate 32 KiB for each fetch; a policy is a few
	// hundred bytes.
	n, err := io.CopyBuffer(body, io.LimitReader(resp.Body, MaxBodyRead+1), make([]byte, 4<<10))
	row.STSBody = body.b
	row.STSBodyLen = min(n, MaxBodyRead)
	row.STSBodyTruncated = n > MaxBodyKept
	switch {
	case err != nil:
		f.fail(ctx, row, fmt.Errorf("reading the body: %w", err), true)
	case n > MaxBodyRead:
		f.fail(ctx, row, fmt.Errorf("reading the body: more than %d bytes: %w", MaxBodyRead, peer.ErrByteLimit), true)
	}
}

// fail records why the fetch did not end with a complete response. An error
// after the TLS handshake that no class names is net/http refusing what the
// server sent as HTTP: protocol.
func (f *Fetcher) fail(ctx context.Context, row *survey.PolicyRow, err error, handshaken bool) {
	err = peer.InContext(ctx, err)
	row.STSErrorClass = peer.Classify(err, nil)
	if row.STSErrorClass == survey.ErrOther && handshaken {
		row.STSErrorClass = survey.ErrProtocol
	}
	row.STSError = peer.CapText(err.Error(), maxErrorBytes)
}

// capped keeps the first max bytes written to it and counts the rest away.
type capped struct {
	b   []byte
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - len(c.b); room > 0 {
		c.b = append(c.b, p[:min(len(p), room)]...)
	}
	return len(p), nil
}

// conn is the one connection of a fetch: dialled by the transport through
// dialTLS, metered, with a deadline per read and write. The transport dials
// in a goroutine of its own, which may outlive a cancelled request: mu
// guards what both see. Once a fetch's context ends (the fetch returned, or
// the scan was interrupted) every deadline is in the past.
type conn struct {
	f    *Fetcher
	ctx  context.Context
	ip   netip.Addr
	host string

	mu         sync.Mutex
	raw        net.Conn
	mc         *peer.Metered
	steps      *peer.Steps
	handshaken bool
	version    string
	chain      [][]byte
}

// dialTLS connects to the chosen address, whatever the transport asks for,
// and runs the recording handshake.
func (c *conn) dialTLS(context.Context, string, string) (net.Conn, error) {
	step := c.f.cfg.StepTimeout
	dctx, cancel := context.WithTimeout(c.ctx, step)
	raw, err := c.f.cfg.Dial(dctx, "tcp", netip.AddrPortFrom(c.ip.Unmap(), uint16(c.f.cfg.Port)).String())
	cancel()
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	c.mu.Lock()
	c.raw = raw
	c.mc = &peer.Metered{Conn: raw, Max: maxHandshakeBytes}
	c.steps = peer.NewSteps(c.ctx, c.mc, step)
	sc := c.steps.Conn()
	c.mu.Unlock()
	tc, res, err := peer.Handshake(sc, nil, peer.Config{
		ServerName:       peer.SNIName(c.host),
		MinVersion:       c.f.cfg.MinTLSVersion,
		MaxVersion:       c.f.cfg.MaxTLSVersion,
		CurvePreferences: c.f.cfg.CurvePreferences,
		NextProtos:       []string{"http/1.1"},
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	c.chain = res.Chain
	if err != nil {
		return nil, err
	}
	c.handshaken = true
	c.version = tls.VersionName(res.State.Version)
	c.mc.Max = c.mc.N + maxHeadBytes
	return tc, nil
}

// record puts what the handshake saw into row, and reports whether it
// completed.
func (c *conn) record(row *survey.PolicyRow) (handshaken bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	row.STSTLSVersion = c.version
	row.STSCertChain = c.chain[:min(len(c.chain), maxChainCerts)]
	return c.handshaken
}

// budget allows n more bytes from now on.
func (c *conn) budget(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mc != nil {
		c.mc.Max = c.mc.N + n
	}
}

func (c *conn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	// steps is not stopped: the fetch's context ends when Fetch returns,
	// which pushes the deadline of a dial the transport still runs into the
	// past.
	if c.raw != nil {
		_ = c.raw.Close() // the transport closed it already, or nothing is left to record
	}
}
