package resolve

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/time/rate"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// testZone is the fake resolver's view of the world, one scenario per
// domain under .test.
func testZone() []string {
	z := []string{
		// Several preferences, mixed case, a duplicate A, A and AAAA.
		"multi.test. 300 IN MX 20 mx2.multi.test.",
		"multi.test. 300 IN MX 10 mx1.multi.test.",
		"multi.test. 300 IN MX 30 MX3.Multi.Test.",
		"mx1.multi.test. 300 IN A 192.0.2.11",
		"mx1.multi.test. 300 IN A 192.0.2.12",
		"mx1.multi.test. 300 IN A 192.0.2.11",
		"mx1.multi.test. 300 IN AAAA 2001:db8::11",
		"mx2.multi.test. 300 IN AAAA 2001:db8::12",
		"mx3.multi.test. 300 IN A 192.0.2.13",

		"nullmx.test. 300 IN MX 0 .",
		"nullmixed.test. 300 IN MX 0 .",
		"nullmixed.test. 300 IN MX 10 mx1.multi.test.",

		"implicit.test. 300 IN A 192.0.2.20",
		"implicit.test. 300 IN AAAA 2001:db8::20",
		"nomx.test. 300 IN TXT \"v=spf1 -all\"",

		"cname.test. 300 IN CNAME Target.Cname.Test.",
		"target.cname.test. 300 IN MX 10 mx1.multi.test.",
		"partial.test. 300 IN CNAME a.partial.test.",
		"a.partial.test. 300 IN CNAME b.partial.test.",
		"b.partial.test. 300 IN MX 10 mx1.multi.test.",
		"chain.test. 300 IN CNAME c1.chain.test.",
		"c1.chain.test. 300 IN CNAME c2.chain.test.",
		"c2.chain.test. 300 IN MX 10 mx1.multi.test.",
		"loop.test. 300 IN CNAME loop2.test.",
		"loop2.test. 300 IN CNAME loop.test.",
		"dangling.test. 300 IN CNAME gone.dangling.test.",

		"noaddr.test. 300 IN MX 10 mx.noaddr.test.",
		"mx.noaddr.test. 300 IN TXT \"no addresses here\"",
		"hostnx.test. 300 IN MX 10 gone.hostnx.test.",
		"hostcname.test. 300 IN MX 10 alias.hostcname.test.",
		"alias.hostcname.test. 300 IN CNAME mx1.multi.test.",

		"literal.test. 300 IN MX 10 192.0.2.1.",
		"literal.test. 300 IN MX 20 [192.0.2.1].",
		"literal.test. 300 IN MX 30 mx1.multi.test.",

		"tc.test. 300 IN MX 10 mx1.multi.test.",
		"wrongq.test. 300 IN MX 10 mx1.multi.test.",

		"shared1.test. 300 IN MX 10 mx.shared.test.",
		"shared2.test. 300 IN MX 10 mx.shared.test.",
		"mx.shared.test. 300 IN A 192.0.2.30",

		"1.0.0.127.in-addr.arpa. 300 IN PTR Localhost.",
		"3.0.0.127.in-addr.arpa. 300 IN CNAME 3.0-25.0.0.127.in-addr.arpa.",
		"3.0-25.0.0.127.in-addr.arpa. 300 IN PTR classless.test.",
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa. 300 IN PTR Localhost6.Test.",
		"4.0.0.127.in-addr.arpa. 300 IN TXT \"exists, no ptr\"",
	}
	for i := 0; i < 300; i++ {
		z = append(z, fmt.Sprintf("many.test. 300 IN MX %d mx%03d.many.test.", 300-i, i))
	}
	for i := 0; i < 10; i++ {
		z = append(z, fmt.Sprintf("flight%d.test. 300 IN MX 10 mx.flight.test.", i))
	}
	return append(z, "mx.flight.test. 300 IN A 192.0.2.40")
}

func testSpecial() map[string]behaviour {
	return map[string]behaviour{
		"servfail.test.":    {rcode: dns.RcodeServerFailure},
		"refused.test.":     {rcode: dns.RcodeRefused},
		"formerr.test.":     {rcode: dns.RcodeFormatError},
		"drop.test.":        {drop: true},
		"tc.test. MX":       {truncUDP: true},
		"wrongq.test.":      {wrongQ: true},
		"partial.test.":     {noFollow: true},
		"mx.flight.test. A": {delay: 150 * time.Millisecond},
		"mx2.multi.test. A": {rcode: dns.RcodeServerFailure},
	}
}

type wantHost struct {
	name   string
	pref   uint16
	status string
	addrs  string // space-separated
	cnames string
}

func TestResolve(t *testing.T) {
	srv := newFakeDNS(t, testZone(), testSpecial(), nil)
	base := Config{Servers: []string{srv.addr}, Timeout: time.Second, Retries: 1}

	tests := []struct {
		name     string
		domain   string
		cfg      func(*Config)
		status   string
		errHas   string
		implicit bool
		cnames   string
		hosts    []wantHost
		nHosts   int // when hosts is not listed
		check    func(t *testing.T, r *Resolver, d Domain)
	}{
		{
			name: "several preferences", domain: "Multi.Test.", status: survey.DNSOK,
			hosts: []wantHost{
				{"mx1.multi.test", 10, survey.DNSOK, "192.0.2.11 192.0.2.12 2001:db8::11", ""},
				// A SERVFAILs, AAAA answers: usable, the failure noted.
				{"mx2.multi.test", 20, survey.DNSOK, "2001:db8::12", ""},
				{"mx3.multi.test", 30, survey.DNSOK, "192.0.2.13", ""},
			},
			check: func(t *testing.T, r *Resolver, d Domain) {
				if d.Name != "multi.test" {
					t.Errorf("Name = %q", d.Name)
				}
				if !strings.Contains(d.Hosts[1].Error, "SERVFAIL") {
					t.Errorf("mx2 Error = %q, want the A failure noted", d.Hosts[1].Error)
				}
			},
		},
		{name: "null mx", domain: "nullmx.test", status: survey.DNSNullMX},
		{
			name: "null mx among others ignored", domain: "nullmixed.test", status: survey.DNSOK,
			errHas: "ignored null mx",
			hosts:  []wantHost{{"mx1.multi.test", 10, survey.DNSOK, "192.0.2.11 192.0.2.12 2001:db8::11", ""}},
		},
		{
			name: "implicit mx", domain: "implicit.test", status: survey.DNSOK, implicit: true,
			hosts: []wantHost{{"implicit.test", 0, survey.DNSOK, "192.0.2.20 2001:db8::20", ""}},
		},
		{name: "no mx no address", domain: "nomx.test", status: survey.DNSNoMX},
		{name: "nxdomain", domain: "missing.test", status: survey.DNSNXDomain, errHas: "NXDOMAIN"},
		{
			name: "servfail retried", domain: "servfail.test", status: survey.DNSServfail,
			cfg: func(c *Config) { c.Retries = 2 },
			check: func(t *testing.T, r *Resolver, d Domain) {
				if s := r.Stats(); s.Queries != 3 || s.Retries != 2 {
					t.Errorf("stats = %+v, want 3 queries, 2 retries", s)
				}
			},
		},
		{
			name: "no reply is a timeout", domain: "drop.test", status: survey.DNSTimeout,
			cfg: func(c *Config) { c.Timeout = 200 * time.Millisecond },
			check: func(t *testing.T, r *Resolver, d Domain) {
				if s := r.Stats(); s.Timeouts != 2 || s.Queries != 2 {
					t.Errorf("stats = %+v, want 2 timeouts", s)
				}
			},
		},
		{
			name: "refused not retried", domain: "refused.test", status: survey.DNSRefused,
			check: func(t *testing.T, r *Resolver, d Domain) {
				if s := r.Stats(); s.Queries != 1 {
					t.Errorf("stats = %+v, want 1 query", s)
				}
			},
		},
		{name: "other rcode", domain: "formerr.test", status: survey.DNSError, errHas: "FORMERR"},
		{
			name: "cname followed in answer", domain: "cname.test", status: survey.DNSOK,
			cnames: "target.cname.test", nHosts: 1,
		},
		{
			name: "cname target queried", domain: "partial.test", status: survey.DNSOK,
			cnames: "a.partial.test b.partial.test", nHosts: 1,
			check: func(t *testing.T, r *Resolver, d Domain) {
				if n := srv.count("a.partial.test. MX"); n != 1 {
					t.Errorf("queries for the CNAME target = %d, want 1", n)
				}
			},
		},
		{name: "cname loop", domain: "loop.test", status: survey.DNSError, errHas: "cname loop", cnames: "loop2.test"},
		{
			name: "cname chain bound", domain: "chain.test", status: survey.DNSError, errHas: "cname chain longer",
			cnames: "c1.chain.test",
			cfg:    func(c *Config) { c.MaxCNAME = 1 },
		},
		{name: "cname to nothing", domain: "dangling.test", status: survey.DNSNXDomain, cnames: "gone.dangling.test"},
		{
			name: "mx host without address", domain: "noaddr.test", status: survey.DNSOK,
			hosts: []wantHost{{"mx.noaddr.test", 10, survey.DNSNoAddr, "", ""}},
		},
		{
			name: "mx host nxdomain", domain: "hostnx.test", status: survey.DNSOK,
			hosts: []wantHost{{"gone.hostnx.test", 10, survey.DNSNXDomain, "", ""}},
		},
		{
			name: "mx host is a cname", domain: "hostcname.test", status: survey.DNSOK,
			hosts: []wantHost{{"alias.hostcname.test", 10, survey.DNSOK, "192.0.2.11 192.0.2.12 2001:db8::11", "mx1.multi.test"}},
		},
		{
			name: "mx target address literal", domain: "literal.test", status: survey.DNSOK,
			hosts: []wantHost{
				{"192.0.2.1", 10, survey.DNSError, "", ""},
				{"[192.0.2.1]", 20, survey.DNSError, "", ""},
				{"mx1.multi.test", 30, survey.DNSOK, "192.0.2.11 192.0.2.12 2001:db8::11", ""},
			},
			check: func(t *testing.T, r *Resolver, d Domain) {
				if d.Hosts[0].Error != "mx target is an address literal" {
					t.Errorf("Error = %q", d.Hosts[0].Error)
				}
				if n := srv.count("192.0.2.1. A") + srv.count("[192.0.2.1]. A"); n != 0 {
					t.Errorf("address literal was queried %d times", n)
				}
			},
		},
		{
			name: "truncated udp then tcp", domain: "tc.test", status: survey.DNSOK, nHosts: 1,
			check: func(t *testing.T, r *Resolver, d Domain) {
				if s := r.Stats(); s.TCPFallbacks != 1 {
					t.Errorf("TCPFallbacks = %d, want 1", s.TCPFallbacks)
				}
				if n := srv.count("tcp tc.test. MX"); n != 1 {
					t.Errorf("TCP queries = %d, want 1", n)
				}
			},
		},
		{
			name: "wrong question rejected", domain: "wrongq.test", status: survey.DNSError, errHas: "question",
			check: func(t *testing.T, r *Resolver, d Domain) {
				if n := srv.count("wrongq.test. MX"); n != 2 {
					t.Errorf("queries = %d, want 2 (the rejection is a failed attempt)", n)
				}
			},
		},
		{
			name: "hundreds of mx capped", domain: "many.test", status: survey.DNSOK, errHas: "300 mx hosts",
			nHosts: DefaultMaxMX,
			check: func(t *testing.T, r *Resolver, d Domain) {
				if d.Hosts[0].Preference != 1 || d.Hosts[63].Preference != 64 {
					t.Errorf("kept preferences %d..%d, want the most preferred 1..64",
						d.Hosts[0].Preference, d.Hosts[63].Preference)
				}
				if s := r.Stats(); s.Queries > 2+2*DefaultMaxMX || s.TCPFallbacks != 1 {
					t.Errorf("stats = %+v: want one TCP fallback and at most %d queries", s, 2+2*DefaultMaxMX)
				}
			},
		},
		{name: "invalid name", domain: "bad..name", status: survey.DNSError, errHas: "invalid"},
		{name: "empty name", domain: "", status: survey.DNSError, errHas: "invalid"},
		{name: "address as domain", domain: "192.0.2.1", status: survey.DNSError, errHas: "address literal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := base
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			r, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			d := r.Resolve(ctx, tc.domain)
			if d.Status != tc.status {
				t.Fatalf("Status = %q (%s), want %q", d.Status, d.Error, tc.status)
			}
			if !strings.Contains(d.Error, tc.errHas) {
				t.Errorf("Error = %q, want it to contain %q", d.Error, tc.errHas)
			}
			if d.ImplicitMX != tc.implicit {
				t.Errorf("ImplicitMX = %v", d.ImplicitMX)
			}
			if got := strings.Join(d.CNAMEs, " "); got != tc.cnames {
				t.Errorf("CNAMEs = %q, want %q", got, tc.cnames)
			}
			switch {
			case tc.hosts != nil:
				checkHosts(t, d.Hosts, tc.hosts)
			case len(d.Hosts) != tc.nHosts:
				t.Errorf("%d hosts, want %d: %+v", len(d.Hosts), tc.nHosts, d.Hosts)
			}
			if tc.check != nil {
				tc.check(t, r, d)
			}
		})
	}
}

func checkHosts(t *testing.T, got []Host, want []wantHost) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d hosts, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		var addrs []string
		for _, a := range g.Addrs {
			addrs = append(addrs, a.String())
		}
		if g.Name != w.name || g.Preference != w.pref || g.Status != w.status ||
			strings.Join(addrs, " ") != w.addrs || strings.Join(g.CNAMEs, " ") != w.cnames {
			t.Errorf("host %d = {%s %d %s %q %v %v}, want %+v", i, g.Name, g.Preference, g.Status, g.Error, addrs, g.CNAMEs, w)
		}
	}
}

// The cache is what makes a provider with thousands of customer domains
// cost one lookup.
func TestHostCacheSharedAcrossDomains(t *testing.T) {
	srv := newFakeDNS(t, testZone(), testSpecial(), nil)
	r, err := New(Config{Servers: []string{srv.addr}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"shared1.test", "shared2.test"} {
		got := r.Resolve(context.Background(), d)
		if got.Status != survey.DNSOK || len(got.Hosts) != 1 || got.Hosts[0].Status != survey.DNSOK {
			t.Fatalf("%s: %+v", d, got)
		}
	}
	if n := srv.count("mx.shared.test. A"); n != 1 {
		t.Errorf("server saw %d A queries for the shared host, want 1", n)
	}
	if s := r.Stats(); s.CacheHits != 1 || s.CacheMisses != 1 {
		t.Errorf("stats = %+v, want 1 hit 1 miss", s)
	}
}

// Concurrent lookups of one host merge into one query (singleflight).
func TestHostLookupsInFlightMerged(t *testing.T) {
	srv := newFakeDNS(t, testZone(), testSpecial(), nil)
	r, err := New(Config{Servers: []string{srv.addr}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := r.Resolve(context.Background(), fmt.Sprintf("flight%d.test", i))
			if d.Status != survey.DNSOK || len(d.Hosts) != 1 || len(d.Hosts[0].Addrs) != 1 {
				t.Errorf("flight%d: %+v", i, d)
			}
		}()
	}
	wg.Wait()
	if n := srv.count("mx.flight.test. A"); n != 1 {
		t.Errorf("server saw %d A queries, want 1", n)
	}
	if s := r.Stats(); s.CacheMisses != 1 || s.CacheHits != 9 {
		t.Errorf("stats = %+v, want 1 miss 9 hits", s)
	}
}

func TestPTR(t *testing.T) {
	srv := newFakeDNS(t, testZone(), testSpecial(), nil)
	r, err := New(Config{Servers: []string{srv.addr}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ip, name, status string
	}{
		{"127.0.0.1", "localhost", survey.DNSOK},
		{"::ffff:127.0.0.1", "localhost", survey.DNSOK}, // mapped: reversed as IPv4
		{"::1", "localhost6.test", survey.DNSOK},
		{"127.0.0.3", "classless.test", survey.DNSOK}, // RFC 2317 CNAME
		{"127.0.0.4", "", survey.DNSOK},               // name exists, no PTR
		{"127.0.0.2", "", survey.DNSNXDomain},
	}
	for _, tc := range tests {
		name, status := r.PTR(context.Background(), netip.MustParseAddr(tc.ip))
		if name != tc.name || status != tc.status {
			t.Errorf("PTR(%s) = %q, %q; want %q, %q", tc.ip, name, status, tc.name, tc.status)
		}
	}
	if _, status := r.PTR(context.Background(), netip.Addr{}); status != survey.DNSError {
		t.Errorf("PTR(zero) status = %q", status)
	}
}

func TestRateLimit(t *testing.T) {
	srv := newFakeDNS(t, testZone(), testSpecial(), nil)
	r, err := New(Config{Servers: []string{srv.addr}, Timeout: time.Second, Limiter: rate.NewLimiter(20, 1)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for i := 0; i < 10; i++ {
		if d := r.Resolve(context.Background(), fmt.Sprintf("rate%d.test", i)); d.Status != survey.DNSNXDomain {
			t.Fatalf("%+v", d)
		}
	}
	// 1 burst + 9 at 50ms intervals = 450ms.
	if el := time.Since(start); el < 400*time.Millisecond || el > 5*time.Second {
		t.Errorf("10 queries at 20/s took %v, want about 450ms", el)
	}
}

// Cancellation must end a lookup at once, not after Timeout × attempts.
func TestCancel(t *testing.T) {
	srv := newFakeDNS(t, testZone(), testSpecial(), nil)
	r, err := New(Config{Servers: []string{srv.addr}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, deadline := range []bool{false, true} {
		var ctx context.Context
		var cancel context.CancelFunc
		if deadline {
			ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
		} else {
			ctx, cancel = context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
		}
		start := time.Now()
		d := r.Resolve(ctx, "drop.test")
		cancel()
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("deadline=%v: Resolve took %v after cancel", deadline, el)
		}
		want := survey.DNSError
		if deadline {
			want = survey.DNSTimeout
		}
		if d.Status != want {
			t.Errorf("deadline=%v: Status = %q (%s), want %q", deadline, d.Status, d.Error, want)
		}
	}
}

func TestServerRotation(t *testing.T) {
	dead := newFakeDNS(t, nil, map[string]behaviour{"nullmx.test.": {drop: true}}, nil)
	live := newFakeDNS(t, testZone(), nil, nil)
	r, err := New(Config{Servers: []string{dead.addr, live.addr}, Timeout: 200 * time.Millisecond, Retries: 1})
	if err != nil {
		t.Fatal(err)
	}
	// Whichever server the first attempt goes to, the retry goes to the other.
	for i := 0; i < 2; i++ {
		if d := r.Resolve(context.Background(), "nullmx.test"); d.Status != survey.DNSNullMX {
			t.Errorf("attempt %d: %+v", i, d)
		}
	}
}

func TestNewConfig(t *testing.T) {
	r, err := New(Config{Servers: []string{"127.0.0.1", "[::1]:5353", "::1"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1:53", "[::1]:5353", "[::1]:53"}
	if !slices.Equal(r.servers, want) {
		t.Errorf("servers = %v, want %v", r.servers, want)
	}
	if r.retries != 0 || r.maxCNAME != DefaultMaxCNAME || r.maxMX != DefaultMaxMX || r.cache == nil {
		t.Errorf("defaults not applied: %+v", r)
	}
	if _, err := New(Config{Servers: []string{"not an address"}}); err == nil {
		t.Error("bad server accepted")
	}
	if _, err := New(Config{Servers: []string{"127.0.0.1"}, Retries: -1}); err == nil {
		t.Error("negative Retries accepted")
	}
}

func TestHostCacheBounded(t *testing.T) {
	c := newHostCache(3)
	now := time.Now()
	for i := 0; i < 10; i++ {
		c.put(fmt.Sprint(i), hostResult{status: survey.DNSOK, expires: now.Add(time.Hour)})
	}
	if len(c.m) != 3 {
		t.Errorf("cache holds %d entries, want 3", len(c.m))
	}
	c.put("old", hostResult{expires: now.Add(-time.Second)})
	if _, ok := c.get("old", now); ok {
		t.Error("expired entry served")
	}
}
