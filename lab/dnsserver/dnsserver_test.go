package dnsserver

import (
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxsurvey/mxsurvey/lab/internal/labtest"
	"github.com/mxsurvey/mxsurvey/lab/pki"
	"github.com/mxsurvey/mxsurvey/lab/truth"
	"github.com/mxsurvey/mxsurvey/lab/world"
)

// fixture is a DNS server for the world of labtest and its truth, shared
// by the tests of this package and closed by TestMain.
type fixture struct {
	DNSAddr string
	srv     *Server
}

var (
	shared      *fixture
	sharedTruth *truth.Truth
	sharedErr   error
	sharedOnce  sync.Once
)

func testServer(t *testing.T) (*fixture, *truth.Truth) {
	t.Helper()
	sharedOnce.Do(func() {
		var w *world.World
		var auth *pki.Authority
		if w, auth, sharedTruth, sharedErr = labtest.World(25); sharedErr != nil {
			return
		}
		srv, err := Start("127.0.0.1:0", w, auth)
		if err != nil {
			sharedErr = err
			return
		}
		shared = &fixture{DNSAddr: srv.Addr, srv: srv}
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared, sharedTruth
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.srv.Close()
	}
	os.Exit(code)
}

// The truth states resolution from the world's records; the server answers
// from its zones. The tests resolve as a resolver would, with miekg/dns's
// client, and hold the answers against the truth.

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
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

func byCase(tr *truth.Truth, c string) truth.Domain {
	for _, d := range tr.Domains {
		if slices.Contains(d.Cases, c) {
			return d
		}
	}
	return truth.Domain{}
}

func TestDNSCases(t *testing.T) {
	l, tr := testServer(t)
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
	if err != nil || len(r.Answer) != 100 || r.Truncated {
		t.Errorf("100 MX over TCP: %d answers, %v", len(r.Answer), err)
	}
	if rc := rcode("example.com", dns.TypeA); rc != dns.RcodeRefused {
		t.Errorf("out of zone: rcode %d", rc)
	}

	// The truth states resolution from the cases; the DNS server answers from
	// its zones. They must agree for every domain.
	for _, d := range tr.Domains {
		if d.DNSStatus == world.StatusTimeout || d.DNSStatus == world.StatusServfail || d.DNSStatus == world.StatusNXDomain || d.DNSStatus == world.StatusError ||
			slices.ContainsFunc(d.MX, func(m truth.MX) bool { return m.HostStatus == world.StatusError }) {
			continue // checked case by case in TestHostileDNS
		}
		r, err := query(t, a, d.Domain, dns.TypeMX, "tcp", false)
		if err != nil {
			t.Fatalf("%s: %v", d.Domain, err)
		}
		var hosts []truth.MX
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
				hosts = append(hosts, truth.MX{Host: strings.TrimSuffix(rr.Mx, "."), Preference: int32(rr.Preference)})
			}
		}
		if !slices.Equal(cnames, d.CNAMEs) {
			t.Errorf("%s: cnames %v, truth %v", d.Domain, cnames, d.CNAMEs)
		}
		if null != (d.DNSStatus == world.StatusNullMX) {
			t.Errorf("%s: null MX %v, truth %s", d.Domain, null, d.DNSStatus)
		}
		if null {
			continue
		}
		if len(hosts) == 0 {
			hosts = []truth.MX{{Host: d.Domain}} // implicit MX
		}
		for k := range hosts {
			h := &hosts[k]
			h.HostStatus = world.StatusOK
			for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
				r, err := query(t, a, h.Host, qt, "tcp", false)
				if err != nil {
					t.Fatalf("%s %v: %s: %v", d.Domain, d.Cases, h.Host, err)
				}
				switch r.Rcode {
				case dns.RcodeNameError:
					h.HostStatus = world.StatusNXDomain
				case dns.RcodeServerFailure:
					h.HostStatus = world.StatusServfail
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
			if h.HostStatus == world.StatusOK && len(h.IPs) == 0 {
				h.HostStatus = world.StatusNoAddress
			}
			r, _, h.AddrDNSSEC = stub(t, a, h.Host, dns.TypeA)
			if r != nil {
				h.CNAMEs = cnamesOf(r)
			}
		}
		if _, _, sec := stub(t, a, d.Domain, dns.TypeMX); sec != d.MXDNSSEC {
			t.Errorf("%s (%v): mx_dnssec %q, truth %q", d.Domain, d.Cases, sec, d.MXDNSSEC)
		}
		want := d.MX
		if d.DNSStatus == world.StatusNoMX {
			want = []truth.MX{{Host: d.Domain, HostStatus: world.StatusNoAddress, AddrDNSSEC: d.MXDNSSEC}}
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

// stub asks (name, qt) as mxsurvey does with policies on (docs/schema.md):
// with DO over UDP, over TCP when truncated; a SERVFAIL asked again with
// CD; an answer to another question rejected. It returns the reply (nil for
// a failure), the lookup's status and its DNSSEC status.
func stub(t *testing.T, addr, name string, qt uint16) (*dns.Msg, string, string) {
	t.Helper()
	ask := func(cd bool) (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qt)
		m.SetEdns0(1232, true)
		m.CheckingDisabled = cd
		r, _, err := (&dns.Client{Net: "udp", Timeout: 500 * time.Millisecond}).Exchange(m, addr)
		if err == nil && r.Truncated {
			r, _, err = (&dns.Client{Net: "tcp", Timeout: 5 * time.Second}).Exchange(m, addr)
		}
		return r, err
	}
	r, err := ask(false)
	switch {
	case isTimeout(err):
		return nil, world.StatusTimeout, ""
	case err != nil, len(r.Question) != 1 || !strings.EqualFold(r.Question[0].Name, dns.Fqdn(name)):
		return nil, world.StatusError, ""
	case r.Rcode == dns.RcodeServerFailure:
		if again, err := ask(true); err == nil && (again.Rcode == dns.RcodeSuccess || again.Rcode == dns.RcodeNameError) {
			return nil, world.StatusServfail, world.DNSSECBogus
		}
		return nil, world.StatusServfail, ""
	}
	sec := world.DNSSECInsecure
	if r.AuthenticatedData {
		sec = world.DNSSECSecure
	}
	switch {
	case r.Rcode == dns.RcodeNameError:
		return r, world.StatusNXDomain, sec
	case r.Rcode != dns.RcodeSuccess:
		return nil, world.StatusError, ""
	case !slices.ContainsFunc(r.Answer, func(rr dns.RR) bool { return rr.Header().Rrtype == qt }):
		return r, world.StatusNoRecords, sec
	}
	return r, world.StatusOK, sec
}

// cnamesOf are the CNAME targets of an answer, in order.
func cnamesOf(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		if c, ok := rr.(*dns.CNAME); ok {
			out = append(out, strings.TrimSuffix(c.Target, "."))
		}
	}
	return out
}

// TestPolicyDNS resolves every domain's MTA-STS and TLS-RPT records and
// every MX host's TLSA records as a scan does, and holds them to the
// truth's policies and tlsa rows: statuses, DNSSEC statuses, records.
func TestPolicyDNS(t *testing.T) {
	l, tr := testServer(t)
	a := l.DNSAddr
	txt := func(r *dns.Msg) []string {
		var out []string
		for _, rr := range r.Answer {
			if x, ok := rr.(*dns.TXT); ok && len(out) < world.AssumeMaxTXTRecords {
				s := strings.Join(x.Txt, "")
				out = append(out, s[:min(len(s), world.AssumeMaxTXTBytes)])
			}
		}
		return out
	}
	seen := map[string]int{}
	for _, d := range tr.Domains {
		for _, c := range []struct {
			name        string
			status, sec string
			records     []string
		}{
			{"_mta-sts." + d.Domain, d.Policy.MTASTSStatus, d.Policy.MTASTSDNSSEC, d.Policy.MTASTSTXT},
			{"_smtp._tls." + d.Domain, d.Policy.TLSRPTStatus, d.Policy.TLSRPTDNSSEC, d.Policy.TLSRPTTXT},
		} {
			r, status, sec := stub(t, a, c.name, dns.TypeTXT)
			var got []string
			if status == world.StatusOK {
				got = txt(r)
			}
			if status != c.status || sec != c.sec || !slices.Equal(got, c.records) {
				t.Errorf("%s %v: %s %q %q, truth %s %q %q", c.name, d.Cases, status, sec, got, c.status, c.sec, c.records)
			}
			if status == world.StatusOK {
				seen["txt"]++
			}
		}
	}
	for _, row := range tr.TLSA {
		if row.Name == "" {
			continue // not a name (dns_mx_ip_literal)
		}
		r, status, sec := stub(t, a, row.Name, dns.TypeTLSA)
		var got []string
		if status == world.StatusOK {
			for _, rr := range r.Answer {
				if x, ok := rr.(*dns.TLSA); ok {
					got = append(got, fmt.Sprintf("%d %d %d %s", x.Usage, x.Selector, x.MatchingType, strings.ToLower(x.Certificate)))
				}
			}
		}
		if status != row.Status || sec != row.DNSSEC || !slices.Equal(got, row.Records) {
			t.Errorf("%s: %s %q %q, truth %+v", row.Name, status, sec, got, row)
		}
		seen[status+"/"+sec]++
		if row.Name != "_25._tcp."+row.MXHost {
			// RFC 7672 2.2.2: the CNAME-expanded name, after a secure chain.
			r, _, addrSec := stub(t, a, row.MXHost, dns.TypeA)
			if c := cnamesOf(r); len(c) == 0 || "_25._tcp."+c[len(c)-1] != row.Name || addrSec != world.DNSSECSecure {
				t.Errorf("%s: TLSA at %s, but the host's address chain is %v (%s)", row.MXHost, row.Name, c, addrSec)
			}
			seen["expanded"]++
		}
	}
	t.Logf("answers: %v", seen)
	for _, k := range []string{"txt", "ok/secure", "ok/insecure", "servfail/bogus", "nxdomain/secure", "nxdomain/insecure", "expanded"} {
		if seen[k] == 0 {
			t.Errorf("no %s answer in the world", k)
		}
	}

	// 10,000 TXT records: UDP truncates, TCP sends what fits in 64 KiB.
	many := byCase(tr, "sts_many_records").Domain
	if r, err := query(t, a, "_mta-sts."+many, dns.TypeTXT, "udp", true); err != nil || !r.Truncated {
		t.Errorf("10,000 TXT over UDP: not truncated (%v)", err)
	}
	r, err := query(t, a, "_mta-sts."+many, dns.TypeTXT, "tcp", true)
	if err != nil || len(r.Answer) < 1000 || len(r.Answer) >= world.STSManyRecords {
		t.Errorf("10,000 TXT over TCP: %d records (%v)", len(r.Answer), err)
	}
}

func TestHostileDNS(t *testing.T) {
	l, tr := testServer(t)
	a := l.DNSAddr

	loop := byCase(tr, "dns_cname_loop")
	r, err := query(t, a, loop.Domain, dns.TypeMX, "udp", true)
	if err != nil {
		t.Fatal(err)
	}
	var chain []string
	for _, rr := range r.Answer {
		if c, ok := rr.(*dns.CNAME); ok {
			chain = append(chain, strings.TrimSuffix(c.Hdr.Name, ".")+">"+strings.TrimSuffix(c.Target, "."))
		}
	}
	d := loop.Domain
	if want := []string{d + ">loop1." + d, "loop1." + d + ">loop2." + d, "loop2." + d + ">" + d}; !slices.Equal(chain, want) ||
		len(r.Answer) != 3 || loop.DNSStatus != world.StatusError || !slices.Equal(loop.CNAMEs, []string{"loop1." + d, "loop2." + d}) {
		t.Errorf("cname loop: answer %v; truth %+v", chain, loop)
	}

	many := byCase(tr, "dns_mx_hundreds")
	r, err = query(t, a, many.Domain, dns.TypeMX, "tcp", false)
	if err != nil || len(r.Answer) != 300 || len(many.MX) != 300 {
		t.Errorf("300 MX over TCP: %d answers (%v), truth %d", len(r.Answer), err, len(many.MX))
	}
	if r, err := query(t, a, many.Domain, dns.TypeMX, "udp", true); err != nil || !r.Truncated {
		t.Errorf("300 MX over UDP: not truncated (%v)", err)
	}

	lit := byCase(tr, "dns_mx_ip_literal")
	r, err = query(t, a, lit.Domain, dns.TypeMX, "udp", true)
	if err != nil || len(r.Answer) != 1 || len(lit.MX) != 1 {
		t.Fatalf("mx ip literal: %v %v", r, err)
	}
	if got := strings.TrimSuffix(r.Answer[0].(*dns.MX).Mx, "."); got != lit.MX[0].Host || lit.MX[0].HostStatus != world.StatusError {
		t.Errorf("mx ip literal: MX %s, truth %+v", got, lit.MX)
	}

	// Wrong ID: miekg/dns's UDP client discards it and waits (a timeout);
	// over TCP it reports ErrId. The records are the right ones.
	wid := byCase(tr, "dns_wrong_id")
	if _, err := query(t, a, wid.Domain, dns.TypeMX, "udp", true); !isTimeout(err) || wid.DNSStatus != world.StatusTimeout {
		t.Errorf("wrong id over UDP: %v, truth %s", err, wid.DNSStatus)
	}
	if _, err := query(t, a, wid.Domain, dns.TypeMX, "tcp", false); !errors.Is(err, dns.ErrId) {
		t.Errorf("wrong id over TCP: %v", err)
	}
	wq := byCase(tr, "dns_wrong_question")
	r, err = query(t, a, wq.Domain, dns.TypeMX, "udp", true)
	if err != nil || len(r.Question) != 1 || r.Question[0].Name != "mismatch."+wq.Domain+"." || len(r.Answer) != 1 || wq.DNSStatus != world.StatusError {
		t.Errorf("wrong question: %v %v, truth %s", r, err, wq.DNSStatus)
	}
}

// A burst of queries from one socket, all sent before any reply is read,
// and datagrams that are no query among them: the batched reader answers
// every query once, with its ID and its records, and drops the rest.
func TestUDPBurst(t *testing.T) {
	l, tr := testServer(t)
	c, err := net.Dial("udp", l.DNSAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.(*net.UDPConn).SetReadBuffer(4 << 20)
	d := byCase(tr, "dns_null_mx")
	one, err := query(t, l.DNSAddr, d.Domain, dns.TypeMX, "udp", false)
	if err != nil || len(one.Answer) == 0 {
		t.Fatalf("one query: %v, %v", one, err)
	}
	const n = 300
	for i := range n {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(d.Domain), dns.TypeMX)
		m.Id = uint16(i)
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if i%50 == 0 {
			_, _ = c.Write([]byte("not a query"))
			resp := new(dns.Msg).SetReply(m)
			rb, _ := resp.Pack()
			_, _ = c.Write(rb) // a response sent to the server: dropped
		}
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[uint16]bool{}
	buf := make([]byte, dns.MaxMsgSize)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for len(seen) < n {
		k, err := c.Read(buf)
		if err != nil {
			t.Fatalf("%d of %d answered: %v", len(seen), n, err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(buf[:k]); err != nil {
			t.Fatal(err)
		}
		if seen[r.Id] || r.Id >= n || len(r.Answer) != len(one.Answer) {
			t.Fatalf("reply %d: seen %v, %d answers (want %d)", r.Id, seen[r.Id], len(r.Answer), len(one.Answer))
		}
		seen[r.Id] = true
	}
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if k, err := c.Read(buf); err == nil {
		t.Errorf("a reply beyond the %d queries: %d bytes", n, k)
	}
}

// answerUDP's view of a datagram: a reply, or nothing to send.
func TestAnswerUDP(t *testing.T) {
	w, auth, tr, err := labtest.World(25)
	if err != nil {
		t.Fatal(err)
	}
	h := &handler{w: w, auth: auth}
	q := func(name string, mod func(*dns.Msg)) []byte {
		m := new(dns.Msg).SetQuestion(dns.Fqdn(name), dns.TypeMX)
		m.Id = 77
		if mod != nil {
			mod(m)
		}
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	plain := byCase(tr, "dns_null_mx").Domain
	for _, tc := range []struct {
		name  string
		in    []byte
		rcode int // -1: no reply
	}{
		{"query", q(plain, nil), dns.RcodeSuccess},
		{"dropped on purpose", q(byCase(tr, "dns_timeout").Domain, nil), -1},
		{"outside the zones", q("example.com", nil), dns.RcodeRefused},
		{"a response", q(plain, func(m *dns.Msg) { m.Response = true }), -1},
		{"garbage", []byte("not a dns message"), -1},
		{"empty", nil, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := h.answerUDP(tc.in, make([]byte, dns.MaxMsgSize))
			if tc.rcode < 0 {
				if b != nil {
					t.Errorf("replied %d bytes, want nothing", len(b))
				}
				return
			}
			r := new(dns.Msg)
			if err := r.Unpack(b); err != nil {
				t.Fatal(err)
			}
			if r.Id != 77 || r.Rcode != tc.rcode {
				t.Errorf("reply id %d rcode %d, want 77 %d", r.Id, r.Rcode, tc.rcode)
			}
		})
	}
}
