package resolve

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// A world with signed, unsigned and broken zones, answered by the fake as a
// validating resolver in front of them would.
func dnssecZone() ([]string, map[string]behaviour) {
	records := []string{
		"signed.test. MX 10 mx.signed.test.",
		"mx.signed.test. A 192.0.2.1",
		"mx.signed.test. AAAA 2001:db8::1",
		"_25._tcp.mx.signed.test. TLSA 3 1 1 ABCDEF0123",
		// An MX host whose name is a secure CNAME into a signed provider zone.
		"cname.test. MX 10 mx.cname.test.",
		"mx.cname.test. CNAME mail.provider.test.",
		"mail.provider.test. A 192.0.2.2",
		// ... and one whose CNAME leads into an unsigned zone.
		"half.test. MX 10 mx.half.test.",
		"mx.half.test. CNAME mail.unsigned.test.",
		"mail.unsigned.test. A 192.0.2.3",
		"unsigned.test. MX 10 mail.unsigned.test.",
		"implicit.test. A 192.0.2.4",
		"implicit6.test. AAAA 2001:db8::4",
		"bogus.test. MX 10 mx.signed.test.",
		"mxbogus.test. MX 10 mx.bogus-host.test.",
		"mx.bogus-host.test. A 192.0.2.5",
		"nodata.test. TXT \"not an mx\"",
	}
	special := map[string]behaviour{
		"signed.test.":             {secure: true},
		"mx.signed.test.":          {secure: true},
		"_25._tcp.mx.signed.test.": {secure: true},
		"cname.test.":              {secure: true},
		"mx.cname.test.":           {secure: true},
		"mail.provider.test.":      {secure: true},
		"half.test.":               {secure: true},
		"mx.half.test.":            {secure: true},
		"implicit.test.":           {secure: true},
		"implicit6.test.":          {secure: true},
		"bogus.test.":              {bogus: true},
		"mxbogus.test.":            {secure: true},
		"mx.bogus-host.test.":      {bogus: true},
		"nodata.test.":             {secure: true},
		"gone.signed.test.":        {secure: true}, // a secure denial: NXDOMAIN with AD
		"broken.test. MX":          {rcode: dns.RcodeServerFailure},
	}
	return records, special
}

func TestDNSSECStatus(t *testing.T) {
	records, special := dnssecZone()
	srv := newFakeDNS(t, records, special, nil)
	r, err := New(Config{Servers: []string{srv.addr}, Timeout: time.Second, DNSSEC: true, Retries: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !r.TrustsAD() {
		t.Fatal("a resolver on loopback is not trusted for AD")
	}
	type host struct{ a, aaaa, cnames string }
	tests := []struct {
		domain, status, dnssec string
		host                   *host // the first MX host's statuses
	}{
		{"signed.test", survey.DNSOK, survey.DNSSECSecure, &host{survey.DNSSECSecure, survey.DNSSECSecure, survey.DNSSECSecure}},
		{"cname.test", survey.DNSOK, survey.DNSSECSecure, &host{survey.DNSSECSecure, survey.DNSSECSecure, survey.DNSSECSecure}},
		{"half.test", survey.DNSOK, survey.DNSSECSecure, &host{survey.DNSSECInsecure, survey.DNSSECInsecure, survey.DNSSECInsecure}},
		{"unsigned.test", survey.DNSOK, survey.DNSSECInsecure, &host{survey.DNSSECInsecure, survey.DNSSECInsecure, survey.DNSSECInsecure}},
		// The implicit MX takes the address lookup's status.
		{"implicit.test", survey.DNSOK, survey.DNSSECSecure, nil},
		{"implicit6.test", survey.DNSOK, survey.DNSSECSecure, nil},
		{"bogus.test", survey.DNSServfail, survey.DNSSECBogus, nil},
		{"mxbogus.test", survey.DNSOK, survey.DNSSECSecure, &host{survey.DNSSECBogus, survey.DNSSECBogus, survey.DNSSECBogus}},
		{"gone.signed.test", survey.DNSNXDomain, survey.DNSSECSecure, nil},
		{"nx.unsigned.test", survey.DNSNXDomain, survey.DNSSECInsecure, nil},
		{"nodata.test", survey.DNSNoMX, survey.DNSSECSecure, nil},
		{"broken.test", survey.DNSServfail, survey.DNSSECUnknown, nil},
	}
	for _, tt := range tests {
		d := r.Resolve(context.Background(), tt.domain)
		if d.Status != tt.status || d.DNSSEC != tt.dnssec {
			t.Errorf("%s: status %s, dnssec %q; want %s, %q (%s)", tt.domain, d.Status, d.DNSSEC, tt.status, tt.dnssec, d.Error)
			continue
		}
		if tt.host == nil {
			continue
		}
		h := d.Hosts[0]
		if got := (host{h.DNSSECA, h.DNSSECAAAA, h.CNAMEsDNSSEC}); got != *tt.host {
			t.Errorf("%s: host %s dnssec A %q AAAA %q cnames %q, want %+v", tt.domain, h.Name, got.a, got.aaaa, got.cnames, *tt.host)
		}
	}
	// The implicit MX's host carries its own statuses too.
	if d := r.Resolve(context.Background(), "implicit6.test"); d.Hosts[0].DNSSECAAAA != survey.DNSSECSecure || d.Hosts[0].DNSSECA != survey.DNSSECSecure {
		t.Errorf("implicit6.test host: %+v", d.Hosts[0])
	}
	// A bogus name is asked again with CD, once, after the retry of its
	// SERVFAIL; a failing server is too, and stays undetermined.
	if n, cd := srv.count("bogus.test. MX"), srv.count("cd bogus.test. MX"); n != 3 || cd != 1 {
		t.Errorf("bogus.test: %d queries, %d with CD; want 3 (2 and the CD one), 1", n, cd)
	}
	if n := srv.count("cd broken.test. MX"); n != 1 {
		t.Errorf("broken.test: %d CD queries, want 1 (no retry)", n)
	}
	if n := srv.count("cd signed.test. MX"); n != 0 {
		t.Errorf("signed.test: %d CD queries for a good answer", n)
	}
	if srv.count("do signed.test. MX") != srv.count("signed.test. MX") {
		t.Errorf("DO not set on every query")
	}
}

// Without Config.DNSSEC no query has DO and no status is given; a server
// not on loopback is not trusted unless TrustAD says so.
func TestDNSSECOffAndTrust(t *testing.T) {
	records, special := dnssecZone()
	srv := newFakeDNS(t, records, special, nil)
	r, err := New(Config{Servers: []string{srv.addr}, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	d := r.Resolve(context.Background(), "signed.test")
	if d.Status != survey.DNSOK || d.DNSSEC != "" || d.Hosts[0].DNSSECA != "" || r.TrustsAD() {
		t.Errorf("DNSSEC off: %+v", d)
	}
	if n := srv.count("do signed.test. MX"); n != 0 {
		t.Errorf("DO set %d times with DNSSEC off", n)
	}
	if d := r.Resolve(context.Background(), "bogus.test"); d.DNSSEC != "" || srv.count("cd bogus.test. MX") != 0 {
		t.Errorf("DNSSEC off: a CD query was sent, or bogus.test got %q", d.DNSSEC)
	}
	for _, tt := range []struct {
		servers []string
		trust   bool
		want    bool
	}{
		{[]string{"127.0.0.53:53", "[::1]:53"}, false, true},
		{[]string{"127.0.0.1:53", "192.0.2.53:53"}, false, false},
		{[]string{"192.0.2.53:53"}, true, true},
		{[]string{"[::ffff:127.0.0.1]:53"}, false, true},
	} {
		r, err := New(Config{Servers: tt.servers, DNSSEC: true, TrustAD: tt.trust})
		if err != nil {
			t.Fatal(err)
		}
		if r.TrustsAD() != tt.want {
			t.Errorf("servers %v, TrustAD %v: TrustsAD %v", tt.servers, tt.trust, r.TrustsAD())
		}
	}
}

func TestTXT(t *testing.T) {
	long := strings.Repeat("x", 250)
	records := []string{
		// RFC 8461 §3.1: the strings of one RR are concatenated.
		`_mta-sts.split.test. TXT "v=STSv1; " "id=20260101"`,
		`_mta-sts.dup.test. TXT "v=STSv1; id=1"`,
		`_mta-sts.dup.test. TXT "v=STSv1; id=1"`,
		`_mta-sts.dup.test. TXT "v=STSv1; id=2"`,
		// Bytes that miekg/dns escapes in presentation form come back raw.
		`_mta-sts.bytes.test. TXT "a\"b\\c\000d\255e"`,
		`_mta-sts.long.test. TXT "` + strings.Repeat(long+`" "`, 12) + long + `"`,
		`_mta-sts.cname.test. CNAME _mta-sts.provider.test.`,
		`_mta-sts.provider.test. TXT "v=STSv1; id=p"`,
		`_mta-sts.nodata.test. A 192.0.2.1`,
		`_smtp._tls.signed.test. TXT "v=TLSRPTv1; rua=mailto:r@signed.test"`,
	}
	special := map[string]behaviour{"_smtp._tls.signed.test.": {secure: true}}
	srv := newFakeDNS(t, records, special, nil)
	r, err := New(Config{Servers: []string{srv.addr}, Timeout: time.Second, DNSSEC: true})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, status, dnssec string
		records              []string
		cnames, errHas       string
	}{
		{"_mta-sts.split.test", survey.DNSOK, survey.DNSSECInsecure, []string{"v=STSv1; id=20260101"}, "", ""},
		{"_mta-sts.dup.test", survey.DNSOK, survey.DNSSECInsecure, []string{"v=STSv1; id=1", "v=STSv1; id=1", "v=STSv1; id=2"}, "", ""},
		{"_mta-sts.bytes.test", survey.DNSOK, survey.DNSSECInsecure, []string{"a\"b\\c\x00d\xffe"}, "", ""},
		{"_mta-sts.long.test", survey.DNSOK, survey.DNSSECInsecure, []string{strings.Repeat("x", MaxTXTBytes)}, "", "record 1 cut to 2048 bytes"},
		{"_mta-sts.cname.test", survey.DNSOK, survey.DNSSECInsecure, []string{"v=STSv1; id=p"}, "_mta-sts.provider.test", ""},
		{"_mta-sts.nodata.test", survey.DNSNoRecords, survey.DNSSECInsecure, nil, "", ""},
		{"_mta-sts.none.test", survey.DNSNXDomain, survey.DNSSECInsecure, nil, "", "NXDOMAIN"},
		{"_SMTP._TLS.Signed.Test.", survey.DNSOK, survey.DNSSECSecure, []string{"v=TLSRPTv1; rua=mailto:r@signed.test"}, "", ""},
	}
	for _, tt := range tests {
		got := r.TXT(context.Background(), tt.name)
		if got.Status != tt.status || got.DNSSEC != tt.dnssec || fmt.Sprintf("%q", got.Records) != fmt.Sprintf("%q", tt.records) ||
			strings.Join(got.CNAMEs, " ") != tt.cnames || !strings.Contains(got.Error, tt.errHas) {
			t.Errorf("TXT %s = %+v\nwant status %s, dnssec %s, records %q, cnames %q, error with %q", tt.name, got, tt.status, tt.dnssec, tt.records, tt.cnames, tt.errHas)
		}
	}
	if got := r.TXT(context.Background(), "not a name!"); got.Status != survey.DNSError {
		t.Errorf("invalid name: %+v", got)
	}
}

// 10,000 TXT records: over UDP the answer is truncated, over TCP the server
// sends what fits in one 64 KiB message; the lookup keeps 64, promptly.
func TestTXTTenThousandRecords(t *testing.T) {
	const n = 10_000
	synth := func(name string, qtype uint16) []dns.RR {
		if name != "_mta-sts.many.test." {
			return nil
		}
		rrs := make([]dns.RR, n)
		for i := range rrs {
			rrs[i] = &dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
				Txt: []string{fmt.Sprintf("v=STSv1; id=%d", i)}}
		}
		return rrs
	}
	srv := newFakeDNS(t, nil, nil, synth)
	r, err := New(Config{Servers: []string{srv.addr}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	got := r.TXT(context.Background(), "_mta-sts.many.test")
	took := time.Since(t0)
	if got.Status != survey.DNSOK || len(got.Records) != MaxRecords || got.Records[0] != "v=STSv1; id=0" || got.Records[63] != "v=STSv1; id=63" {
		t.Fatalf("status %s, %d records (%s)", got.Status, len(got.Records), got.Error)
	}
	if !strings.Contains(got.Error, "only the first 64 kept") {
		t.Errorf("the cap is not noted: %q", got.Error)
	}
	if srv.count("tcp _mta-sts.many.test. TXT") != 1 {
		t.Errorf("not retried over TCP")
	}
	if took > 3*time.Second {
		t.Errorf("lookup took %v", took)
	}
}

func TestTLSA(t *testing.T) {
	records, special := dnssecZone()
	records = append(records,
		"_25._tcp.mx.unsigned.test. TLSA 2 0 1 00FF",
		"_25._tcp.mx.unsigned.test. TLSA 9 9 9 01",
		"_25._tcp.alias.test. CNAME _25._tcp.mx.signed.test.")
	special["_25._tcp.alias.test."] = behaviour{secure: true}
	srv := newFakeDNS(t, records, special, nil)
	r, err := New(Config{Servers: []string{srv.addr}, Timeout: time.Second, DNSSEC: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		host, name, status, dnssec, records, cnames string
	}{
		{"mx.signed.test", "_25._tcp.mx.signed.test", survey.DNSOK, survey.DNSSECSecure, "3 1 1 abcdef0123", ""},
		{"MX.Unsigned.Test.", "_25._tcp.mx.unsigned.test", survey.DNSOK, survey.DNSSECInsecure, "2 0 1 00ff|9 9 9 01", ""},
		{"alias.test", "_25._tcp.alias.test", survey.DNSOK, survey.DNSSECSecure, "3 1 1 abcdef0123", "_25._tcp.mx.signed.test"},
		{"mx.half.test", "_25._tcp.mx.half.test", survey.DNSNXDomain, survey.DNSSECInsecure, "", ""},
		{"192.0.2.1", "", survey.DNSError, "", "", ""},
		{"[IPv6:2001:db8::1]", "", survey.DNSError, "", "", ""},
		{"not a name!", "", survey.DNSError, "", "", ""},
	} {
		got := r.TLSA(context.Background(), 25, tt.host)
		if got.Name != tt.name || got.Status != tt.status || got.DNSSEC != tt.dnssec || strings.Join(got.Records, "|") != tt.records || strings.Join(got.CNAMEs, " ") != tt.cnames {
			t.Errorf("TLSA %s = %+v", tt.host, got)
		}
	}
}

// LookupHost resolves like an MX host, but every call asks: its names are
// not shared.
func TestLookupHost(t *testing.T) {
	records, special := dnssecZone()
	srv := newFakeDNS(t, records, special, nil)
	r, err := New(Config{Servers: []string{srv.addr}, Timeout: time.Second, DNSSEC: true})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		h := r.LookupHost(context.Background(), "MX.Cname.Test.")
		if h.Name != "mx.cname.test" || h.Status != survey.DNSOK || len(h.Addrs) != 1 || h.Addrs[0].String() != "192.0.2.2" ||
			strings.Join(h.CNAMEs, " ") != "mail.provider.test" || h.CNAMEsDNSSEC != survey.DNSSECSecure {
			t.Fatalf("LookupHost = %+v", h)
		}
	}
	if n := srv.count("mx.cname.test. A"); n != 2 {
		t.Errorf("%d A queries for two lookups, want 2 (no cache)", n)
	}
	if h := r.LookupHost(context.Background(), "nothing.test"); h.Status != survey.DNSNXDomain {
		t.Errorf("LookupHost(nothing.test) = %+v", h)
	}
}

func TestJoinStrings(t *testing.T) {
	for _, tt := range []struct {
		rdata   string
		max     int
		want    string
		cut, ok bool
	}{
		{"\x03abc\x02de", 10, "abcde", false, true},
		{"\x03abc\x02de", 4, "abcd", true, true},
		{"\x00\x00", 10, "", false, true},
		{"", 10, "", false, true},
		{"\x05ab", 10, "", false, false},
	} {
		s, cut, ok := joinStrings([]byte(tt.rdata), tt.max)
		if s != tt.want || cut != tt.cut || ok != tt.ok {
			t.Errorf("joinStrings(%q, %d) = %q, %v, %v", tt.rdata, tt.max, s, cut, ok)
		}
	}
}

// Seeds for FuzzJoinStrings, each with what is odd about it: TXT RDATA as a
// server sends it.
func FuzzJoinStrings(f *testing.F) {
	f.Add([]byte("\x07v=STSv1\x05; id=")) // two strings
	f.Add([]byte("\xff"))                 // a length beyond the data
	f.Add([]byte("\x00"))                 // an empty string
	f.Add([]byte{})                       // no string at all
	f.Fuzz(func(t *testing.T, rdata []byte) {
		s, cut, ok := joinStrings(rdata, 16)
		if len(s) > 16 || len(s) > len(rdata) {
			t.Fatalf("%d bytes from %d bytes of RDATA, cap 16", len(s), len(rdata))
		}
		if !ok && (s != "" || cut) {
			t.Fatalf("malformed RDATA gave %q, cut %v", s, cut)
		}
	})
}
