// Package resolve is mxsurvey's DNS stage: a stub resolver that asks
// configured recursive resolvers for a domain's MX records and for the
// addresses of each MX host, and reports the outcome in the dataset's
// stable status vocabulary (survey.DNSOK, survey.DNSNXDomain, ...), never
// as raw Go errors.
//
// It follows RFC 1035 (messages, RCODEs, truncation and the TCP retry),
// RFC 5321 §5.1 (MX preference order, and the implicit MX: a domain with
// no MX records is its own mail host at preference 0) and RFC 7505 (the
// null MX "MX 0 ." declaring that a domain accepts no mail).
//
// A survey resolves millions of domains that share a few thousand provider
// MX hosts, so host addresses are cached in a bounded cache and concurrent
// lookups of one host are merged; everything an answer can make us do
// (CNAME hops, MX count) is bounded so a hostile zone cannot multiply work.
//
// Queries travel over a few long-lived UDP sockets per server, replies
// matched to queries by message ID (udp.go); the datagrams go out and come
// in a batch per system call (sendmmsg, recvmmsg), as the kernel's work
// per datagram is most of what a question costs. The questions a lookup can
// ask at once (A beside AAAA, the hosts of one domain) run in parallel on
// reused goroutines: a further question per domain costs one datagram each
// way and a hand-off, which is what a survey asking policy records too
// needs. Truncated answers go to TCP on a connection of their own.
package resolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/internal/workers"
)

// Defaults applied by New to zero Config fields, except DefaultRetries,
// which is what a command offers (Config.Retries 0 means no retries).
const (
	DefaultTimeout   = 3 * time.Second
	DefaultRetries   = 2
	DefaultMaxCNAME  = 8
	DefaultCacheSize = 200000
	DefaultMaxMX     = 64
)

// Config configures a Resolver. Zero values take the defaults above.
//
// The fields tagged `option` are recorded under that name in a scan's
// manifest (docs/schema.md).
type Config struct {
	// Servers are the recursive resolvers, HOST:PORT (a bare address gets
	// port 53). Empty means the nameservers of /etc/resolv.conf.
	Servers []string `option:"resolvers"`
	// Timeout bounds one query attempt (dial, send, and wait for the reply).
	Timeout time.Duration `option:"dns_timeout"`
	// Retries is the number of extra attempts after a timeout, SERVFAIL,
	// network error or rejected reply, each on the next server, after an
	// exponential backoff with jitter starting at 100ms. 0 means none.
	Retries int `option:"dns_retries"`
	// MaxCNAME bounds the CNAME chain followed for one lookup.
	MaxCNAME int
	// Limiter, when set, is waited on before every query sent, retries and
	// TCP fallbacks included, so it is the scan's global DNS query rate:
	// a *rate.Limiter in one process, leases of the coordinator's tokens
	// in a cluster worker. A process's own object, never sent.
	Limiter Limiter `json:"-"`
	// CacheSize bounds the MX-host address cache (entries). 0 means
	// DefaultCacheSize; a negative value disables the cache.
	CacheSize int
	// MaxMX bounds the MX records used per domain (the most preferred are
	// kept), so a hostile answer with hundreds of MX records cannot fan
	// out into hundreds of lookups and probes.
	MaxMX int
	// DNSSEC sets the DO bit on every query and reports the DNSSEC status
	// of each lookup, when the servers are trusted for AD (dnssec.go).
	DNSSEC bool
	// TrustAD trusts the AD bit of servers that are not on loopback.
	TrustAD bool `option:"trust_ad"`
}

// Limiter paces queries. Wait returns when one query may be sent, or an
// error when ctx ends first or would end while waiting.
type Limiter interface {
	Wait(ctx context.Context) error
}

// Resolver resolves domains to MX hosts and addresses. It is safe for
// concurrent use; share one per scan so the host cache is shared.
type Resolver struct {
	servers  []string
	retries  int
	maxCNAME int
	maxMX    int
	limiter  Limiter
	dnssec   bool // DO on every query
	trustAD  bool // dnssec, and the servers' AD bit is believed
	timeout  time.Duration
	udp      *dns.Client // the check's one-off queries
	tcp      *dns.Client
	// udpServers carry the queries, over a few shared sockets per server.
	udpServers map[string]*udpServer
	cache      *hostCache // nil when disabled
	flight     flight
	workers    *workers.Pool // the parallel questions of a lookup
	next       atomic.Uint32 // spreads first attempts over the servers
	stats      counters
}

// Stats are cumulative counters since New.
type Stats struct {
	Queries      uint64 // queries sent, retries and TCP fallbacks included
	Retries      uint64 // attempts after the first for one question
	TCPFallbacks uint64 // truncated UDP replies retried over TCP
	Timeouts     uint64 // attempts that got no reply in time
	CacheHits    uint64 // host lookups served by the cache or by an in-flight lookup
	CacheMisses  uint64 // host lookups that queried the servers
}

type counters struct {
	queries, retries, tcpFallbacks, timeouts, cacheHits, cacheMisses atomic.Uint64
}

// WithDefaults returns c with the defaults above in its zero fields, as New
// uses it.
func (c Config) WithDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxCNAME == 0 {
		c.MaxCNAME = DefaultMaxCNAME
	}
	if c.MaxMX == 0 {
		c.MaxMX = DefaultMaxMX
	}
	if c.CacheSize == 0 {
		c.CacheSize = DefaultCacheSize
	}
	return c
}

// New returns a Resolver for cfg. It fails when no server is configured, a
// server address does not parse, or a timeout or bound is negative.
func New(cfg Config) (*Resolver, error) {
	if cfg.Timeout < 0 || cfg.Retries < 0 || cfg.MaxCNAME < 0 || cfg.MaxMX < 0 {
		return nil, errors.New("resolve: negative timeout, retries or bound")
	}
	cfg = cfg.WithDefaults()
	servers := cfg.Servers
	if len(servers) == 0 {
		cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
		if err != nil {
			return nil, fmt.Errorf("resolve: no servers configured and %w", err)
		}
		for _, s := range cc.Servers {
			servers = append(servers, net.JoinHostPort(s, cc.Port))
		}
		if len(servers) == 0 {
			return nil, errors.New("resolve: no servers configured and none in /etc/resolv.conf")
		}
	}
	r := &Resolver{
		retries:  cfg.Retries,
		maxCNAME: cfg.MaxCNAME,
		maxMX:    cfg.MaxMX,
		limiter:  cfg.Limiter,
	}
	for _, s := range servers {
		hp, err := serverAddr(s)
		if err != nil {
			return nil, err
		}
		r.servers = append(r.servers, hp)
	}
	if cfg.CacheSize > 0 {
		r.cache = newHostCache(cfg.CacheSize)
	}
	r.dnssec = cfg.DNSSEC
	r.trustAD = cfg.DNSSEC && (cfg.TrustAD || onLoopback(r.servers))
	r.timeout = cfg.Timeout
	r.udp = &dns.Client{Net: "udp", Timeout: cfg.Timeout, UDPSize: ednsSize}
	r.tcp = &dns.Client{Net: "tcp", Timeout: cfg.Timeout}
	r.workers = workers.New(2 * time.Second)
	r.udpServers = map[string]*udpServer{}
	for _, s := range r.servers {
		r.udpServers[s] = newUDPServer(s, r.timeout)
	}
	return r, nil
}

// Close closes the resolver's sockets; lookups still in flight end with an
// error. A Resolver is not usable after Close.
func (r *Resolver) Close() {
	for _, u := range r.udpServers {
		u.close()
	}
	r.workers.Stop()
}

// serverAddr accepts HOST:PORT, or a bare IP address meaning port 53,
// because resolv.conf and people both write the latter.
func serverAddr(s string) (string, error) {
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s, nil
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return net.JoinHostPort(a.String(), "53"), nil
	}
	return "", fmt.Errorf("resolve: server %q is not HOST:PORT", s)
}

// Stats returns a snapshot of the counters.
func (r *Resolver) Stats() Stats {
	return Stats{
		Queries:      r.stats.queries.Load(),
		Retries:      r.stats.retries.Load(),
		TCPFallbacks: r.stats.tcpFallbacks.Load(),
		Timeouts:     r.stats.timeouts.Load(),
		CacheHits:    r.stats.cacheHits.Load(),
		CacheMisses:  r.stats.cacheMisses.Load(),
	}
}

// Host is one MX host of a domain and the outcome of its address lookup.
type Host struct {
	Name       string // lowercased, no trailing dot
	Preference uint16
	// Status is survey.DNSOK when the host has at least one address,
	// survey.DNSNoAddr when its A and AAAA answers are both empty, or the
	// failure of its lookup (timeout, servfail, nxdomain, refused, error).
	// When only one of A and AAAA failed and the other gave addresses, the
	// host is ok and Error names the failed half.
	Status string
	Error  string
	// Addrs are the A addresses then the AAAA addresses, each in answer
	// order, without duplicates. Read-only: the slice is the caller's own.
	Addrs []netip.Addr
	// CNAMEs are the targets followed from Name for its A lookup (or AAAA
	// when the A lookup failed), in order.
	CNAMEs []string
	// DNSSEC statuses (survey.DNSSEC*) of the A and of the AAAA lookup,
	// and of the one CNAMEs come from. Empty without Config.DNSSEC.
	DNSSECA, DNSSECAAAA, CNAMEsDNSSEC string
}

// Domain is the DNS outcome for one domain.
type Domain struct {
	Name string // lowercased, no trailing dot
	// Status is one of survey.DNSOK, DNSNXDomain, DNSNoMX, DNSNullMX,
	// DNSServfail, DNSTimeout, DNSRefused, DNSError. It describes the MX
	// lookup (and for an implicit MX, the domain's own address lookup);
	// MX hosts carry their own Status.
	Status string
	// Error is the raw reason for a failure, and also notes what was
	// ignored on success (a "." among other MX records, MX records beyond
	// MaxMX).
	Error string
	// ImplicitMX means the domain has no MX records and, per RFC 5321
	// §5.1, is its own mail host: Hosts holds the domain at preference 0.
	ImplicitMX bool
	// CNAMEs are the targets followed from Name for the MX query, in order.
	CNAMEs []string
	// DNSSEC is the status of the MX lookup (its answer or denial); for an
	// implicit MX, and when the implicit MX's address lookup failed, of
	// that address lookup (the A lookup's, or AAAA's when only AAAA gave
	// addresses or only AAAA failed).
	DNSSEC string
	// Hosts are sorted by Preference then Name.
	Hosts []Host
}

// Resolve looks up the MX records of domain and the addresses of every MX
// host. It never returns a Go error: every failure is a Status, because a
// failed lookup is a result of the survey. If ctx ends, the lookup stops
// promptly with Status timeout (deadline) or error (canceled).
func (r *Resolver) Resolve(ctx context.Context, domain string) Domain {
	name, ok := normalize(domain)
	d := Domain{Name: display(name)}
	if !ok {
		d.Name = strings.ToLower(strings.TrimSuffix(domain, "."))
		d.Status, d.Error = survey.DNSError, "invalid domain name"
		return d
	}
	if isAddrLiteral(name) {
		d.Status, d.Error = survey.DNSError, "domain is an address literal"
		return d
	}
	res, sec := r.lookupSec(ctx, name, dns.TypeMX)
	d.CNAMEs, d.DNSSEC = res.cnames, sec
	if res.status != survey.DNSOK {
		d.Status, d.Error = res.status, res.reason
		return d
	}
	mxs := make([]*dns.MX, 0, len(res.rrs))
	for _, rr := range res.rrs {
		if mx, ok := rr.(*dns.MX); ok {
			mxs = append(mxs, mx)
		}
	}
	if len(mxs) == 0 {
		return r.implicitMX(ctx, name, d)
	}
	// RFC 7505: a lone "." MX says the domain takes no mail. Preference
	// should be 0; a lone "." at another preference still cannot name a
	// host, so it is read as null MX too, with a note.
	if len(mxs) == 1 && mxs[0].Mx == "." {
		d.Status = survey.DNSNullMX
		if mxs[0].Preference != 0 {
			d.Error = fmt.Sprintf("null mx with preference %d", mxs[0].Preference)
		}
		return d
	}
	d.Status = survey.DNSOK
	d.Hosts, d.Error = r.mxHosts(mxs)
	r.lookupHosts(ctx, d.Hosts)
	return d
}

// mxHosts turns MX records into Hosts: "." dropped (RFC 7505 §3 says it
// must not be mixed with other MX records; the real hosts are still worth
// measuring), duplicates merged at their best preference, sorted, and
// capped at maxMX. The note records what was dropped.
func (r *Resolver) mxHosts(mxs []*dns.MX) ([]Host, string) {
	var notes []string
	hosts := make([]Host, 0, len(mxs))
	for _, mx := range mxs {
		if mx.Mx == "." {
			notes = append(notes, fmt.Sprintf("ignored null mx target among %d mx records", len(mxs)))
			continue
		}
		hosts = append(hosts, Host{Name: display(dns.CanonicalName(mx.Mx)), Preference: mx.Preference})
	}
	sortHosts(hosts)
	if len(hosts) > 1 {
		// Sorted by preference first, so the first of each name is its best.
		seen := make(map[string]bool, len(hosts))
		out := hosts[:0]
		for _, h := range hosts {
			if !seen[h.Name] {
				seen[h.Name] = true
				out = append(out, h)
			}
		}
		hosts = out
	}
	if len(hosts) > r.maxMX {
		notes = append(notes, fmt.Sprintf("%d mx hosts, only the %d most preferred used", len(hosts), r.maxMX))
		hosts = slices.Clip(hosts[:r.maxMX])
	}
	return hosts, strings.Join(notes, "; ")
}

func sortHosts(hosts []Host) {
	slices.SortStableFunc(hosts, func(a, b Host) int {
		if a.Preference != b.Preference {
			return int(a.Preference) - int(b.Preference)
		}
		return strings.Compare(a.Name, b.Name)
	})
}

// hostParallel bounds concurrent host lookups per domain: enough to overlap
// the round trips of a typical domain's few MX hosts, few enough that a
// domain with MaxMX hosts does not burst.
const hostParallel = 8

func (r *Resolver) lookupHosts(ctx context.Context, hosts []Host) {
	if len(hosts) == 1 {
		r.fillHost(ctx, &hosts[0], true)
		return
	}
	sem := make(chan struct{}, hostParallel)
	var wg sync.WaitGroup
	for i := range hosts {
		sem <- struct{}{}
		wg.Add(1)
		r.workers.Go(func() {
			defer func() { <-sem; wg.Done() }()
			r.fillHost(ctx, &hosts[i], true)
		})
	}
	wg.Wait()
}

func (r *Resolver) fillHost(ctx context.Context, h *Host, useCache bool) {
	if isAddrLiteral(h.Name) {
		// RFC 5321 §5.1 wants a name here; an address would bypass the
		// host-name checks the survey is about, so it is not looked up.
		h.Status, h.Error = survey.DNSError, "mx target is an address literal"
		return
	}
	if _, ok := dns.IsDomainName(h.Name); !ok || h.Name == "" {
		h.Status, h.Error = survey.DNSError, "mx target is not a valid name"
		return
	}
	a := r.hostAddrs(ctx, dns.Fqdn(h.Name), useCache)
	h.Status, h.Error = a.status, a.reason
	h.Addrs = slices.Clone(a.addrs)
	h.CNAMEs = slices.Clone(a.cnames)
	h.DNSSECA, h.DNSSECAAAA, h.CNAMEsDNSSEC = a.dnssecA, a.dnssecAAAA, a.cnamesDNSSEC
}

// implicitMX applies RFC 5321 §5.1 to a domain whose MX answer is empty.
// Its address lookup is not cached: the name is used by this domain only
// and would push shared provider hosts out of the cache.
func (r *Resolver) implicitMX(ctx context.Context, name string, d Domain) Domain {
	a := r.hostAddrs(ctx, name, false)
	switch a.status {
	case survey.DNSOK:
		d.Status, d.ImplicitMX, d.DNSSEC = survey.DNSOK, true, a.dnssec
		d.Hosts = []Host{{Name: d.Name, Status: a.status, Error: a.reason, Addrs: a.addrs, CNAMEs: a.cnames,
			DNSSECA: a.dnssecA, DNSSECAAAA: a.dnssecAAAA, CNAMEsDNSSEC: a.cnamesDNSSEC}}
	case survey.DNSNoAddr:
		d.Status = survey.DNSNoMX
	default:
		// We cannot tell "no mail" from "lookup failed": report the failure.
		d.Status, d.Error, d.DNSSEC = a.status, "implicit mx address lookup: "+a.reason, a.dnssec
	}
	return d
}

// PTR returns the first PTR name of ip (lowercased, no trailing dot) and a
// DNS status. CNAMEs are followed, as RFC 2317 classless delegation needs.
// A name that exists without PTR records gives ("", survey.DNSOK); a
// missing one gives survey.DNSNXDomain.
func (r *Resolver) PTR(ctx context.Context, ip netip.Addr) (name, status string) {
	if !ip.IsValid() {
		return "", survey.DNSError
	}
	arpa, err := dns.ReverseAddr(ip.Unmap().String())
	if err != nil {
		return "", survey.DNSError
	}
	res := r.lookup(ctx, arpa, dns.TypePTR)
	if res.status != survey.DNSOK {
		return "", res.status
	}
	for _, rr := range res.rrs {
		if p, ok := rr.(*dns.PTR); ok {
			return display(dns.CanonicalName(p.Ptr)), survey.DNSOK
		}
	}
	return "", survey.DNSOK
}

// normalize returns the canonical (lowercase, fully qualified) form of a
// domain given as input, and whether it is a usable name.
func normalize(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if s == "" || s == "." || strings.HasSuffix(s, "..") {
		return "", false
	}
	if _, ok := dns.IsDomainName(s); !ok {
		return "", false
	}
	return dns.CanonicalName(s), true
}

// display is the dataset's spelling of a canonical name.
func display(fqdn string) string {
	if fqdn == "." {
		return ""
	}
	return strings.TrimSuffix(fqdn, ".")
}

// isAddrLiteral reports whether a name is really an IP address, with or
// without RFC 5321 brackets ("192.0.2.1", "[192.0.2.1]", "[IPv6:2001:db8::1]").
func isAddrLiteral(name string) bool {
	s := strings.TrimSuffix(name, ".")
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
		if len(s) > 5 && strings.EqualFold(s[:5], "ipv6:") {
			s = s[5:]
		}
	}
	_, err := netip.ParseAddr(s)
	return err == nil
}
