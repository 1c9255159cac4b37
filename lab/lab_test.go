package lab

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var (
	shared     *Lab
	sharedErr  error
	sharedOnce sync.Once
	sharedDir  string
)

// testLab is one 1000-domain lab shared by the tests of this package; it is
// closed by TestMain.
func testLab(t *testing.T) (*Lab, *Truth) {
	t.Helper()
	sharedOnce.Do(func() {
		sharedDir, sharedErr = os.MkdirTemp("", "labtest")
		if sharedErr != nil {
			return
		}
		shared, sharedErr = Start(context.Background(), Config{
			WorldParams: WorldParams{Domains: 1000, Seed: 7},
			DNSAddr:     "127.0.0.1:0",
			OutDir:      sharedDir,
		})
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	tr, err := ReadTruth(shared.Dir)
	if err != nil {
		t.Fatal(err)
	}
	return shared, tr
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Close()
		os.RemoveAll(sharedDir)
	}
	os.Exit(code)
}

func TestWorldDeterminism(t *testing.T) {
	mk := func(seed int64) *World {
		w, err := NewWorld(WorldParams{Domains: 5000, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	a, b, c := mk(1), mk(1), mk(2)
	differs := 0
	for i := range 5000 {
		da, db, dc := a.domain(i), b.domain(i), c.domain(i)
		if !reflect.DeepEqual(da, db) || !reflect.DeepEqual(a.truthDomain(da), b.truthDomain(db)) {
			t.Fatalf("domain %d differs between two worlds of seed 1", i)
		}
		if !reflect.DeepEqual(a.truthDomain(da), c.truthDomain(dc)) {
			differs++
		}
	}
	if differs < 2500 {
		t.Errorf("seed 2 differs from seed 1 in only %d of 5000 domains", differs)
	}
	for s := range 2000 {
		ip := a.slotAddr(s)
		if got, ok := a.addrSlot(ip); !ok || got != s {
			t.Fatalf("slot %d -> %s -> %d %v", s, ip, got, ok)
		}
		if b := ip.As4(); b[1] == 0 || b[1] == 255 {
			t.Fatalf("slot %d at %s, outside 127.1-254", s, ip)
		}
	}
	for i := range 5000 {
		if j, ok := a.parseDomain(a.domainName(i)); !ok || j != i {
			t.Fatalf("parseDomain(%s) = %d %v", a.domainName(i), j, ok)
		}
	}
}

func TestEveryCasePresent(t *testing.T) {
	l, tr := testLab(t)
	for _, name := range CaseNames() {
		if l.Info.CaseDomains[name] < 3 {
			t.Errorf("case %s: %d domains at -domains 1000, want >= 3", name, l.Info.CaseDomains[name])
		}
	}
	if len(tr.Domains) != 1000 {
		t.Errorf("%d truth domains", len(tr.Domains))
	}
	seen := map[string]bool{}
	for _, h := range tr.Hosts {
		k := h.IP + " " + h.MXHost
		if seen[k] {
			t.Errorf("target %s twice in truth-hosts", k)
		}
		seen[k] = true
	}
	// Every (ip, mx) the domains resolve to has exactly one truth row.
	for _, d := range tr.Domains {
		for _, m := range d.MX {
			for _, ip := range m.IPs {
				if !seen[ip+" "+m.Host] {
					t.Errorf("%s: target %s %s has no truth row", d.Domain, ip, m.Host)
				}
			}
		}
	}
	t.Logf("%d domains, %d targets, start %.2fs", len(tr.Domains), len(tr.Hosts), l.Info.StartSeconds)
}

func TestShares(t *testing.T) {
	if _, err := ParseCases("nope=0.1"); err == nil {
		t.Error("unknown case accepted")
	}
	m, err := ParseCases("default=0,cert_banner_only=0.05")
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWorld(WorldParams{Domains: 2000, Seed: 3, Cases: m})
	if err != nil {
		t.Fatal(err)
	}
	if w.caseTotal != 100 || w.counts[cCertBannerOnly] != 100 {
		t.Errorf("case total %d, banner_only %d; want 100", w.caseTotal, w.counts[cCertBannerOnly])
	}
	if lo, hi, err := ParseLatency("20ms-200ms"); err != nil || lo != 20*time.Millisecond || hi != 200*time.Millisecond {
		t.Errorf("ParseLatency: %v %v %v", lo, hi, err)
	}
}

func query(t *testing.T, addr, name string, qt uint16, network string, edns bool) (*dns.Msg, error) {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 400 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qt)
	if edns {
		m.SetEdns0(1232, false)
	}
	r, _, err := c.Exchange(m, addr)
	return r, err
}

func byCase(tr *Truth, c string) TruthDomain {
	for _, d := range tr.Domains {
		if slices.Contains(d.Cases, c) {
			return d
		}
	}
	return TruthDomain{}
}

func TestDNSCases(t *testing.T) {
	l, tr := testLab(t)
	a := l.DNSAddr
	rcode := func(name string, qt uint16) int {
		r, err := query(t, a, name, qt, "udp", true)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !r.Authoritative && r.Rcode != dns.RcodeServerFailure && r.Rcode != dns.RcodeRefused {
			t.Errorf("%s: not authoritative", name)
		}
		return r.Rcode
	}
	d := byCase(tr, "dns_nxdomain").Domain
	if rc := rcode(d, dns.TypeMX); rc != dns.RcodeNameError {
		t.Errorf("nxdomain: rcode %d", rc)
	}
	if rc := rcode(byCase(tr, "dns_servfail").Domain, dns.TypeMX); rc != dns.RcodeServerFailure {
		t.Errorf("servfail: rcode %d", rc)
	}
	if _, err := query(t, a, byCase(tr, "dns_timeout").Domain, dns.TypeMX, "udp", false); err == nil {
		t.Error("dns_timeout answered")
	}
	r, _ := query(t, a, byCase(tr, "dns_null_mx").Domain, dns.TypeMX, "udp", false)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.MX).Mx != "." {
		t.Errorf("null mx: %v", r.Answer)
	}
	r, _ = query(t, a, byCase(tr, "dns_domain_cname").Domain, dns.TypeMX, "udp", false)
	if len(r.Answer) != 2 || r.Answer[0].Header().Rrtype != dns.TypeCNAME {
		t.Errorf("domain cname: %v", r.Answer)
	}
	r, _ = query(t, a, "mx."+byCase(tr, "dns_mx_cname").Domain, dns.TypeA, "udp", false)
	if len(r.Answer) != 2 || r.Answer[0].Header().Rrtype != dns.TypeCNAME {
		t.Errorf("mx cname: %v", r.Answer)
	}
	many := byCase(tr, "dns_many_mx").Domain
	r, _ = query(t, a, many, dns.TypeMX, "udp", false)
	if !r.Truncated {
		t.Error("100 MX over UDP without EDNS0: TC not set")
	}
	r, err := query(t, a, many, dns.TypeMX, "tcp", false)
	if err != nil || len(r.Answer) != manyMXCount || r.Truncated {
		t.Errorf("100 MX over TCP: %d answers, %v", len(r.Answer), err)
	}
	if rc := rcode("example.com", dns.TypeA); rc != dns.RcodeRefused {
		t.Errorf("out of zone: rcode %d", rc)
	}

	// The truth states resolution from the cases; the DNS server answers from
	// its zones. They must agree for every domain.
	for _, d := range tr.Domains {
		if d.DNSStatus == stTimeout || d.DNSStatus == stServfail || d.DNSStatus == stNXDomain || d.DNSStatus == stError ||
			slices.ContainsFunc(d.MX, func(m TruthMX) bool { return m.HostStatus == stError }) {
			continue // checked case by case in TestHostileDNS
		}
		r, err := query(t, a, d.Domain, dns.TypeMX, "tcp", false)
		if err != nil {
			t.Fatalf("%s: %v", d.Domain, err)
		}
		var hosts []TruthMX
		var cnames []string
		null := false
		for _, rr := range r.Answer {
			switch rr := rr.(type) {
			case *dns.CNAME:
				cnames = append(cnames, strings.TrimSuffix(rr.Target, "."))
			case *dns.MX:
				if rr.Mx == "." {
					null = true
					continue
				}
				hosts = append(hosts, TruthMX{Host: strings.TrimSuffix(rr.Mx, "."), Preference: int32(rr.Preference)})
			}
		}
		if !slices.Equal(cnames, d.CNAMEs) {
			t.Errorf("%s: cnames %v, truth %v", d.Domain, cnames, d.CNAMEs)
		}
		if null != (d.DNSStatus == stNullMX) {
			t.Errorf("%s: null MX %v, truth %s", d.Domain, null, d.DNSStatus)
		}
		if null {
			continue
		}
		if len(hosts) == 0 {
			hosts = []TruthMX{{Host: d.Domain}} // implicit MX
		}
		for k := range hosts {
			h := &hosts[k]
			h.HostStatus = stOK
			for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
				r, err := query(t, a, h.Host, qt, "tcp", false)
				if err != nil {
					t.Fatal(err)
				}
				if r.Rcode == dns.RcodeNameError {
					h.HostStatus = stNXDomain
				}
				for _, rr := range r.Answer {
					switch rr := rr.(type) {
					case *dns.A:
						h.IPs = append(h.IPs, rr.A.String())
					case *dns.AAAA:
						h.IPs = append(h.IPs, rr.AAAA.String())
					}
				}
			}
			if h.HostStatus == stOK && len(h.IPs) == 0 {
				h.HostStatus = stNoAddress
			}
		}
		want := d.MX
		if d.DNSStatus == stNoMX {
			want = []TruthMX{{Host: d.Domain, HostStatus: stNoAddress}}
		}
		if !reflect.DeepEqual(hosts, want) {
			t.Errorf("%s (%v): DNS gives %+v, truth %+v", d.Domain, d.Cases, hosts, want)
		}
	}

	// PTR answers agree with the truth.
	for _, h := range tr.Hosts[:min(len(tr.Hosts), 200)] {
		if !strings.HasPrefix(h.IP, "127.") {
			continue
		}
		rev, _ := dns.ReverseAddr(h.IP)
		r, err := query(t, a, rev, dns.TypePTR, "udp", false)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if len(r.Answer) == 1 {
			got = strings.TrimSuffix(r.Answer[0].(*dns.PTR).Ptr, ".")
		}
		if got != h.PTRHost {
			t.Errorf("PTR %s = %q, truth %q", h.IP, got, h.PTRHost)
		}
	}
}

// smtpClient is the test's own minimal client: the lab's tests must not lean
// on the scanner's code either.
type smtpClient struct {
	c net.Conn
	r *bufio.Reader
}

func (s *smtpClient) reply(t *testing.T) (int, []string) {
	t.Helper()
	var lines []string
	for {
		s.c.SetReadDeadline(time.Now().Add(3 * time.Second))
		l, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v (after %q)", err, lines)
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l[4:])
		if len(l) < 4 || l[3] == ' ' {
			code, _ := strconv.Atoi(l[:3])
			return code, lines
		}
	}
}

func (s *smtpClient) cmd(t *testing.T, line string) (int, []string) {
	t.Helper()
	fmt.Fprintf(s.c, "%s\r\n", line)
	return s.reply(t)
}

func firstToken(s string) string { f, _, _ := strings.Cut(s, " "); return f }

// scanHost is the host a scan takes from a reply's first line (code
// stripped): its first token, lowercased, when it is a name with a dot or
// localhost (masks and dotless names are none).
func scanHost(line string) string {
	name := strings.ToLower(strings.TrimSuffix(firstToken(strings.TrimRight(line, "\r\n")), "."))
	if strings.Trim(name, "*") == "" {
		return ""
	}
	return sayHost(name)
}

// checkTarget runs one conversation against a target and holds every field
// the truth states against what the server sent.
func checkTarget(t *testing.T, l *Lab, h TruthHost, roots *x509.CertPool) {
	addr := net.JoinHostPort(h.IP, strconv.Itoa(l.SMTPPort))
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if h.Outcome == outConnect {
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("%s: want refused, got %v", addr, err)
		}
		if err == nil {
			conn.Close()
		}
		return
	}
	if err != nil {
		t.Fatalf("%s: %v", addr, err)
	}
	defer conn.Close()
	s := &smtpClient{c: conn, r: bufio.NewReader(conn)}
	if h.Outcome == outBanner && h.ErrorClass == errTimeout {
		conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		var ne net.Error
		if n, err := conn.Read(make([]byte, 10)); n != 0 || !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("%s silent: read %d, %v", h.MXHost, n, err)
		}
		return
	}
	code, lines := s.reply(t)
	if int32(code) != h.BannerCode || scanHost(lines[0]) != h.BannerHost {
		t.Errorf("%s banner %d %q, truth %d %q", h.MXHost, code, lines, h.BannerCode, h.BannerHost)
	}
	if h.Outcome == outBanner {
		if code == 554 {
			if c, _ := s.cmd(t, "EHLO probe.test"); c != 503 {
				t.Errorf("after 554: EHLO got %d", c)
			}
			if c, _ := s.cmd(t, "QUIT"); c != 221 {
				t.Errorf("after 554: QUIT got %d", c)
			}
		}
		return
	}
	code, lines = s.cmd(t, "EHLO probe.test")
	verb := "EHLO"
	if code == 502 {
		verb = "HELO"
		code, lines = s.cmd(t, "HELO probe.test")
	}
	var ext []string
	for _, e := range lines[1:] {
		k, rest, found := strings.Cut(e, " ")
		if found {
			k += " " + rest
		}
		ext = append(ext, strings.ToUpper(k[:len(firstToken(k))])+k[len(firstToken(k)):])
	}
	if verb != h.EHLOVerb || int32(code) != h.EHLOCode || scanHost(lines[0]) != h.EHLOHost || !slices.Equal(ext, h.EHLOExtensions) {
		t.Errorf("%s %s %d %q, truth %s %d %q %q", h.MXHost, verb, code, lines, h.EHLOVerb, h.EHLOCode, h.EHLOHost, h.EHLOExtensions)
	}
	if slices.Contains(ext, "STARTTLS") != h.STARTTLSOffered {
		t.Errorf("%s: starttls offered mismatch", h.MXHost)
	}
	if !h.STARTTLSOffered {
		return
	}
	code, _ = s.cmd(t, "STARTTLS")
	if int32(code) != h.STARTTLSCode {
		t.Errorf("%s STARTTLS %d, truth %d", h.MXHost, code, h.STARTTLSCode)
	}
	if code != 220 {
		return
	}
	tc := tls.Client(conn, &tls.Config{ServerName: h.MXHost, InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("%s handshake: %v", h.MXHost, err)
	}
	st := tc.ConnectionState()
	leaf := st.PeerCertificates[0]
	if tls.VersionName(st.Version) != h.TLSVersion || fmt.Sprintf("%x", sha256.Sum256(leaf.Raw)) != h.CertSHA256 ||
		leaf.Subject.CommonName != h.CertSubjectCN || !slices.Equal(leaf.DNSNames, h.CertSANDNS) ||
		len(st.PeerCertificates) != h.CertChainLen || leaf.Issuer.String() != h.CertIssuer {
		t.Errorf("%s: TLS %s cn %q san %q chain %d issuer %q; truth %+v", h.MXHost, tls.VersionName(st.Version), leaf.Subject.CommonName, leaf.DNSNames, len(st.PeerCertificates), leaf.Issuer, h)
	}
	// Independent oracles for the stated facts: crypto/x509's own chain and
	// hostname checks (whose wildcard rules agree with RFC 6125 on the
	// names the lab makes).
	inter := x509.NewCertPool()
	for _, c := range st.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, verr := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
	f := h.Facts
	if (verr == nil) != f.Trusted {
		t.Errorf("%s %v: trusted %v, x509 says %v", h.MXHost, h.Cases, f.Trusted, verr)
	}
	for name, want := range map[string]bool{h.MXHost: f.MatchMX, h.BannerHost: f.MatchBanner, h.EHLOHost: f.MatchEHLO, h.PostTLSEHLOHost: f.MatchPostTLSEHLO, h.PTRHost: f.MatchPTR} {
		ok := leaf.VerifyHostname(name) == nil
		if f.CNOnly {
			ok = name == leaf.Subject.CommonName // Go ignores the CN since 1.15; RFC 6125 uses it without SANs
		}
		if name != "" && ok != want {
			t.Errorf("%s %v: match %s stated %v", h.MXHost, h.Cases, name, want)
		}
	}
	s = &smtpClient{c: tc, r: bufio.NewReader(tc)}
	code, lines = s.cmd(t, "EHLO probe.test")
	if int32(code) != h.PostTLSEHLOCode || scanHost(lines[0]) != h.PostTLSEHLOHost || !slices.Equal(lines[1:], h.PostTLSEHLOExtensions) {
		t.Errorf("%s post-TLS EHLO %d %q, truth %+v", h.MXHost, code, lines, h)
	}
	if c, _ := s.cmd(t, "QUIT"); c != 221 {
		t.Errorf("QUIT %d", c)
	}
}

func TestSMTPCases(t *testing.T) {
	l, tr := testLab(t)
	pem, err := os.ReadFile(l.CAPath())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	// Two targets per case label and dialect, so every background kind in
	// every dialect it occurs in.
	seen := map[string]int{}
	n := 0
	for _, h := range tr.Hosts {
		key := strings.Join(h.Cases, "/") + "/" + h.Dialect
		if seen[key] >= 2 || h.Outcome == outSkipped {
			continue
		}
		seen[key]++
		n++
		if hostileConversation(h) {
			checkHostile(t, l, h)
			continue
		}
		checkTarget(t, l, h, roots)
		checkRawBanner(t, l, h)
	}
	t.Logf("checked %d targets over %d case labels", n, len(seen))
}

func TestListenerDispatch(t *testing.T) {
	l, tr := testLab(t)
	// Two addresses, one socket: each greets with its own name.
	banners := map[string]string{}
	for _, h := range tr.Hosts {
		if h.BannerCode == 220 && strings.HasPrefix(h.IP, "127.") && len(banners) < 5 {
			banners[h.IP] = h.BannerHost
		}
	}
	for ip, want := range banners {
		c, err := net.Dial("tcp", net.JoinHostPort(ip, strconv.Itoa(l.SMTPPort)))
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if got := scanHost(line[4:]); got != want {
			t.Errorf("%s greets %q, truth %q", ip, line, want)
		}
	}
	// An address the world does not use is closed without a greeting.
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(l.SMTPPort)))
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := c.Read(make([]byte, 10)); n != 0 || err == nil {
		t.Errorf("127.0.0.1: read %d %v, want EOF", n, err)
	}
	c.Close()
}

// TestStart100k measures start-up at 100,000 domains (truth included).
func TestStart100k(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("a measurement: not under -short or -race")
	}
	t0 := time.Now()
	l, err := Start(context.Background(), Config{WorldParams: WorldParams{Domains: benchDomains(), Seed: 1}, DNSAddr: "127.0.0.1:0", OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Logf("100,000 domains: started in %v, %d targets, %s", time.Since(t0), l.Info.Targets, vmRSS())
}

func benchDomains() int {
	if n, err := strconv.Atoi(os.Getenv("LAB_DOMAINS")); err == nil {
		return n
	}
	return 100_000
}

// TestProvingGround checks the benchmark's world (bench/harness): every
// domain has one MX name of its own on two addresses of one pool of
// -tenant-pool addresses, and every target completes with TLS 1.3.
func TestProvingGround(t *testing.T) {
	cases, err := ParseCases("default=0,hostile=0")
	if err != nil {
		t.Fatal(err)
	}
	l, err := Start(context.Background(), Config{
		WorldParams: WorldParams{Domains: 2000, Seed: 1, Cases: cases, Providers: 1, ProviderShare: 1, TenantPool: 200},
		DNSAddr:     "127.0.0.1:0", OutDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	tr, err := ReadTruth(l.Dir)
	if err != nil {
		t.Fatal(err)
	}
	ips := map[string]bool{}
	for _, d := range tr.Domains {
		if d.DNSStatus != stOK || len(d.MX) != 1 || len(d.MX[0].IPs) != 2 {
			t.Fatalf("%s: %+v, want one MX with two addresses", d.Domain, d)
		}
		for _, ip := range d.MX[0].IPs {
			ips[ip] = true
		}
	}
	if len(ips) != 200 {
		t.Errorf("%d addresses in use, want the pool of 200", len(ips))
	}
	if len(tr.Hosts) != 2*len(tr.Domains) {
		t.Errorf("%d targets for %d domains, want two each", len(tr.Hosts), len(tr.Domains))
	}
	for _, h := range tr.Hosts {
		if h.Outcome != "ok" || h.TLSVersion != "TLS 1.3" {
			t.Fatalf("target %s %s: outcome %q, %q; want ok over TLS 1.3", h.IP, h.MXHost, h.Outcome, h.TLSVersion)
		}
	}
}
