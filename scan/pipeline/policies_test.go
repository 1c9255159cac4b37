package pipeline

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// The test world's policies: MTA-STS for a.test (served) and b.test (its
// policy host at an address never contacted), TLS-RPT for b.test, TLSA for
// the shared MX host.
var policyZone = []string{
	`_mta-sts.a.test. TXT "v=STSv1; " "id=20261201"`,
	`mta-sts.a.test. A 127.61.0.5`,
	`_mta-sts.b.test. TXT "v=STSv1; id=1"`,
	`mta-sts.b.test. A 10.0.0.7`,
	`_smtp._tls.b.test. TXT "v=TLSRPTv1; rua=mailto:tlsrpt@b.test"`,
	`_25._tcp.mx.shared.test. TLSA 3 1 1 0123456789ABCDEF`,
}

const testPolicy = "version: STSv1\nmode: enforce\nmx: mx1.a.test\nmax_age: 604800\n"

// startSTS serves testPolicy over HTTPS on ip, for any name, and counts the
// requests by Host.
func startSTS(t *testing.T, ip string) (port int, hosts func() []string) {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Host+r.URL.Path)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(testPolicy))
	}), TLSConfig: &tls.Config{Certificates: []tls.Certificate{selfSigned(t, "mta-sts.a.test")}}}
	go srv.ServeTLS(l, "", "")
	t.Cleanup(func() { srv.Close() })
	return l.Addr().(*net.TCPAddr).Port, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

func policyConfig(l *lab, out string, stsPort int) Config {
	cfg := l.config(out)
	cfg.Policies = true
	cfg.STS.Port = stsPort
	return cfg
}

func readPolicies(t *testing.T, dir string) (map[string]survey.PolicyRow, map[string]survey.TLSARow) {
	t.Helper()
	pol := map[string]survey.PolicyRow{}
	if err := store.ReadAll(survey.PoliciesDir(dir), func(r *survey.PolicyRow) error {
		if _, dup := pol[r.Domain]; dup {
			t.Errorf("domain %s has two policies rows", r.Domain)
		}
		pol[r.Domain] = *r
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	tlsa := map[string]survey.TLSARow{}
	if err := store.ReadAll(survey.TLSADir(dir), func(r *survey.TLSARow) error {
		if _, dup := tlsa[r.MXHost]; dup {
			t.Errorf("MX host %s has two tlsa rows", r.MXHost)
		}
		tlsa[r.MXHost] = *r
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return pol, tlsa
}

// A version-2 scan writes every table: a policies row per valid domain, a
// tlsa row per MX host, the DNSSEC columns of mx, and the manifest says how.
func TestScanWritesPolicyTables(t *testing.T) {
	l := startTestWorld(t, 0, policyZone...)
	stsPort, stsHosts := startSTS(t, "127.61.0.5")
	out := t.TempDir() + "/scan"
	cfg := policyConfig(l, out, stsPort)
	var mu sync.Mutex
	var dialed []string
	cfg.Probe.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	var progress strings.Builder
	cfg.Progress = &progress
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := "policies: 11 policies rows, 7 tlsa rows written, 2 MTA-STS policies fetched; dnssec trusted"; !strings.Contains(progress.String(), want) {
		t.Errorf("summary lacks %q:\n%s", want, progress.String())
	}
	mx, probes := readDataset(t, out)
	pol, tlsa := readPolicies(t, out)
	if len(mx) != 12 || len(probes) != 7 {
		t.Errorf("%d domains, %d targets; want 12, 7", len(mx), len(probes))
	}
	// Every valid input domain, and no invalid line, has a policies row.
	for d := range mx {
		if _, ok := pol[d]; ok == (d == "not a domain!") {
			t.Errorf("%s: policies row present %v", d, ok)
		}
	}
	if len(pol) != 11 {
		t.Errorf("%d policies rows, want 11", len(pol))
	}
	a := pol["a.test"]
	if a.MTASTSStatus != survey.DNSOK || !slices.Equal(a.MTASTSTXT, []string{"v=STSv1; id=20261201"}) || a.MTASTSDNSSEC != survey.DNSSECInsecure ||
		!a.STSFetched || a.STSIP != "127.61.0.5" || a.STSHTTPStatus != 200 || a.STSErrorClass != "" || string(a.STSBody) != testPolicy ||
		a.STSContentType != "text/plain" || len(a.STSCertChain) != 1 || a.STSTLSVersion != "TLS 1.3" || a.TLSRPTStatus != survey.DNSNXDomain {
		t.Errorf("a.test policies row: %+v", a)
	}
	if got := stsHosts(); len(got) != 1 || !strings.HasPrefix(got[0], "mta-sts.a.test:") || !strings.HasSuffix(got[0], "/.well-known/mta-sts.txt") {
		t.Errorf("policy server saw %q, want one request for mta-sts.a.test", got)
	}
	b := pol["b.test"]
	if !b.STSFetched || b.STSErrorClass != survey.ErrBlocked || b.STSIP != "10.0.0.7" ||
		b.TLSRPTStatus != survey.DNSOK || !slices.Equal(b.TLSRPTTXT, []string{"v=TLSRPTv1; rua=mailto:tlsrpt@b.test"}) {
		t.Errorf("b.test policies row: %+v", b)
	}
	if n := pol["null.test"]; n.STSFetched || n.MTASTSStatus != survey.DNSNXDomain {
		t.Errorf("null.test policies row: %+v", n)
	}
	mu.Lock()
	for _, addr := range dialed {
		if strings.HasPrefix(addr, "10.") || strings.HasPrefix(addr, "169.254.") {
			t.Errorf("dialed %s, which must not be contacted", addr)
		}
	}
	mu.Unlock()

	// One tlsa row per distinct MX host, with or without addresses.
	wantHosts := []string{"implicit.test", "mx.blocked.test", "mx.noaddr.test", "mx.refused.test", "mx.shared.test", "mx.v6.test", "mx1.a.test"}
	if got := slices.Sorted(func(yield func(string) bool) {
		for h := range tlsa {
			if !yield(h) {
				return
			}
		}
	}); !slices.Equal(got, wantHosts) {
		t.Errorf("tlsa rows for %q, want %q", got, wantHosts)
	}
	if r := tlsa["mx.shared.test"]; r.TLSAName != "_25._tcp.mx.shared.test" || r.TLSAStatus != survey.DNSOK ||
		!slices.Equal(r.TLSARecords, []string{"3 1 1 0123456789abcdef"}) || r.TLSADNSSEC != survey.DNSSECInsecure || r.QueriedAt.IsZero() {
		t.Errorf("tlsa row of mx.shared.test: %+v", r)
	}
	if r := tlsa["mx1.a.test"]; r.TLSAStatus != survey.DNSNXDomain {
		t.Errorf("tlsa row of mx1.a.test: %+v", r)
	}
	if n := l.dns.count("_25._tcp.mx.shared.test", "TLSA"); n != 1 {
		t.Errorf("the shared MX host's TLSA was asked %d times, want 1", n)
	}

	// DNSSEC columns: the fake resolver is on loopback, so trusted, and
	// validates nothing, so every answer is insecure and failures unknown.
	for d, rows := range mx {
		for _, r := range rows {
			wantMX := survey.DNSSECInsecure
			if r.DNSStatus == survey.DNSServfail || r.DNSStatus == survey.DNSError {
				wantMX = survey.DNSSECUnknown
			}
			wantAddr := survey.DNSSECInsecure // mx.noaddr.test's NXDOMAIN too: an insecure denial
			if r.MXHost == "" {
				wantAddr = survey.DNSSECUnknown
			}
			if r.MXDNSSEC != wantMX || r.AddrDNSSEC != wantAddr {
				t.Errorf("%s %s %s: mx_dnssec %q addr_dnssec %q, want %q %q", d, r.MXHost, r.IP, r.MXDNSSEC, r.AddrDNSSEC, wantMX, wantAddr)
			}
		}
	}
	m := res.Manifest
	if m.Options["dnssec"] != survey.DNSSECTrusted || m.Options["policies"] != true || m.Options["mta_sts_port"] != stsPort {
		t.Errorf("manifest options: dnssec %v policies %v mta_sts_port %v", m.Options["dnssec"], m.Options["policies"], m.Options["mta_sts_port"])
	}
	if m.Counts["policy_rows_written"] != 11 || m.Counts["tlsa_rows_written"] != 7 || m.Counts["sts_fetches"] != 2 ||
		m.Parts[survey.PoliciesTable] != 1 || m.Parts[survey.TLSATable] != 1 {
		t.Errorf("manifest counts %v parts %v", m.Counts, m.Parts)
	}
}

// -policies=false: no policy query, no table, no DNSSEC column.
func TestPoliciesOff(t *testing.T) {
	l := startTestWorld(t, 0, policyZone...)
	out := t.TempDir() + "/scan"
	res, err := Run(context.Background(), l.config(out))
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{survey.PoliciesDir(out), survey.TLSADir(out)} {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s exists with policies off", dir)
		}
	}
	if n := l.dns.count("_mta-sts.a.test", "TXT") + l.dns.count("_25._tcp.mx.shared.test", "TLSA"); n != 0 {
		t.Errorf("%d policy queries with policies off", n)
	}
	mx, _ := readDataset(t, out)
	for d, rows := range mx {
		for _, r := range rows {
			if r.MXDNSSEC != "" || r.AddrDNSSEC != "" {
				t.Errorf("%s: DNSSEC columns %q %q with policies off", d, r.MXDNSSEC, r.AddrDNSSEC)
			}
		}
	}
	if m := res.Manifest; m.Options["dnssec"] != survey.DNSSECOff || m.Options["policies"] != false {
		t.Errorf("manifest options: %v", m.Options)
	}
	// And a scan made without policies is not resumed with them.
	cfg := policyConfig(l, out, 443)
	cfg.Resume = true
	if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "-policies=false") {
		t.Errorf("resume with the other -policies: %v", err)
	}
}

// The state a kill leaves when a domain's policies and tlsa rows were
// committed and its mx rows were not: resume resolves the domain again and
// writes neither a second policies row nor a second tlsa row; and a domain
// whose mx rows are committed is not looked at at all.
func TestResumeKeepsPolicyRows(t *testing.T) {
	l := startTestWorld(t, 0, policyZone...)
	stsPort, stsHosts := startSTS(t, "127.61.0.5")
	out := t.TempDir() + "/scan"
	if _, err := Run(context.Background(), policyConfig(l, out, stsPort)); err != nil {
		t.Fatal(err)
	}
	parts, _ := store.Parts(survey.MXDir(out))
	for _, p := range parts {
		os.Remove(p)
	}
	txt, tlsaQ := l.dns.count("_mta-sts.a.test", "TXT"), l.dns.count("_25._tcp.mx.shared.test", "TLSA")
	mxQ := l.dns.count("a.test", "MX")
	cfg := policyConfig(l, out, stsPort)
	cfg.Resume = true
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	mx, _ := readDataset(t, out)
	pol, tlsa := readPolicies(t, out) // fails on a duplicate
	if len(mx) != 12 || len(pol) != 11 || len(tlsa) != 7 {
		t.Errorf("after resume: %d domains, %d policies rows, %d tlsa rows; want 12, 11, 7", len(mx), len(pol), len(tlsa))
	}
	if l.dns.count("a.test", "MX") == mxQ {
		t.Errorf("a.test, whose mx rows were lost, was not resolved again")
	}
	if l.dns.count("_mta-sts.a.test", "TXT") != txt || l.dns.count("_25._tcp.mx.shared.test", "TLSA") != tlsaQ || len(stsHosts()) != 1 {
		t.Errorf("committed policy lookups were made again")
	}
	if c := res.Manifest.Counts; c["resumed_policy_rows"] != 11 || c["resumed_tlsa_rows"] != 7 || c["policy_rows_written"] != 0 {
		t.Errorf("counts %v", c)
	}
	// Now everything is committed: a second resume asks nothing.
	cfg.Resume = true
	asked := l.dns.count("a.test", "MX")
	if _, err := Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if l.dns.count("a.test", "MX") != asked {
		t.Errorf("a complete scan resumed asked again")
	}
}
