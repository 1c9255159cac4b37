package realservers

// The policies harness scanned by `mxsurvey scan` through the lab's Unbound
// (schema version 2: the DNSSEC columns of mx, the tlsa and policies
// tables), its raw columns held to what the harness configured and what
// dig, curl and openssl s_client said about it (policies_test.go), and
// mxsurvey's DANE verdict per MX host held to posttls-finger's.

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/mxsurvey/mxsurvey/analyze/dane"
	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// The policy fetch's caps, as the issue 13 contract states them
// (/docs/schema.md, policies table): bytes of the body kept, and read.
const (
	stsBodyKept = 64 << 10
	stsBodyRead = 1 << 20
)

// policyEvidence is what the independent tools said during the policies
// checks, kept for the comparison with the scan (the checks run in
// parallel).
type policyEvidence struct {
	mu     sync.Mutex
	finger map[string]fingerDANE // DANE case -> posttls-finger -l dane on [mx host]
	curl   map[string]curlResult // STS case -> curl's fetch (verified, or with -k)
	chain  map[string][]string   // STS case -> SHA-256 of each certificate s_client saw, in order
	tlsVer map[string]string     // STS case -> s_client's protocol
}

func newPolicyEvidence() *policyEvidence {
	return &policyEvidence{finger: map[string]fingerDANE{}, curl: map[string]curlResult{},
		chain: map[string][]string{}, tlsVer: map[string]string{}}
}

// set records evidence under the lock.
func (e *policyEvidence) set(f func(e *policyEvidence)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f(e)
}

// policyScan is a scan of the harness's domains and its tables.
type policyScan struct {
	dir      string
	manifest *survey.Manifest
	mx       map[string][]survey.MXRow // by domain
	tlsa     map[string][]survey.TLSARow
	policies map[string][]survey.PolicyRow
	probes   map[string][]survey.ProbeRow // by "ip|mx_host"
}

// scanPolicies scans every domain of the harness with mxsurvey, through
// Unbound (on loopback, so its AD bit is trusted without -trust-ad), the
// policy fetches on the lab's HTTPS port; no pause between connections to
// one address (six MX hosts share Exim's).
func scanPolicies(ctx context.Context, t *testing.T, l *lab) *policyScan {
	t.Helper()
	var domains []string
	for _, c := range l.dane {
		domains = append(domains, c.Domain)
	}
	for _, c := range l.sts {
		domains = append(domains, c.Domain)
	}
	in := l.path("policies-domains.txt")
	writeFile(t, in, strings.Join(domains, "\n")+"\n", 0o644)
	out := l.path("policies-scan")
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	start := time.Now()
	if err := mxsurvey(sctx, t, "scan", "-policies",
		"-resolver", net.JoinHostPort(policyResolverIP, "53"),
		"-port", strconv.Itoa(l.port), "-mta-sts-port", strconv.Itoa(httpsPort()),
		"-allow", "127.0.0.0/8", "-ehlo-name", ehloName, "-ip-interval", "0s",
		"-timeout", "20s", "-step-timeout", "5s", "-dns-timeout", "3s",
		"-o", out, "-quiet", in); err != nil {
		t.Fatal(err)
	}
	t.Logf("policies scan of %d domains took %v", len(domains), time.Since(start).Round(time.Millisecond))
	s := &policyScan{dir: out, mx: map[string][]survey.MXRow{}, tlsa: map[string][]survey.TLSARow{},
		policies: map[string][]survey.PolicyRow{}, probes: map[string][]survey.ProbeRow{}}
	var err error
	if s.manifest, err = store.ReadManifest(out); err != nil {
		t.Fatal(err)
	}
	if err = store.ReadAll(survey.MXDir(out), func(r *survey.MXRow) error { s.mx[r.Domain] = append(s.mx[r.Domain], *r); return nil }); err != nil {
		t.Fatal(err)
	}
	if err = store.ReadAll(survey.TLSADir(out), func(r *survey.TLSARow) error { s.tlsa[r.MXHost] = append(s.tlsa[r.MXHost], *r); return nil }); err != nil {
		t.Fatal(err)
	}
	if err = store.ReadAll(survey.PoliciesDir(out), func(r *survey.PolicyRow) error {
		s.policies[r.Domain] = append(s.policies[r.Domain], *r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err = store.ReadAll(survey.ProbesDir(out), func(r *survey.ProbeRow) error {
		k := r.IP + "|" + r.MXHost
		s.probes[k] = append(s.probes[k], *r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return s
}

// testPolicyScan compares the scan with the harness and the evidence.
func testPolicyScan(ctx context.Context, t *testing.T, l *lab, ev *policyEvidence) {
	s := scanPolicies(ctx, t, l)
	t.Run("manifest", func(t *testing.T) {
		if got := s.manifest.Options["dnssec"]; got != survey.DNSSECTrusted {
			t.Errorf("manifest dnssec %v, want %q (the resolver is on loopback)", got, survey.DNSSECTrusted)
		}
		if got := s.manifest.Options["policies"]; got != true {
			t.Errorf("manifest policies %v", got)
		}
	})
	t.Run("mx", func(t *testing.T) { checkPolicyMX(t, l, s) })
	t.Run("tlsa", func(t *testing.T) { checkPolicyTLSA(t, l, s) })
	t.Run("policies", func(t *testing.T) {
		for _, c := range l.dane {
			checkNoPolicy(t, c.Domain, s.policies[c.Domain])
		}
		for _, c := range l.sts {
			t.Run(c.Key, func(t *testing.T) { checkPolicyRow(t, l, c, s.policies[c.Domain], ev) })
		}
	})
	t.Run("dane", func(t *testing.T) { checkDANEVerdicts(t, l, s, ev) })
	t.Run("analyze", func(t *testing.T) { checkAnalyzerDANE(ctx, t, l, s, ev) })
}

// zoneSecure: the name is in a signed zone of the harness.
func zoneSecure(name string) bool { z := zoneOf(name); return z == signedZone || z == bogusZone }

// dnssecOf is the status of an unbroken answer from the name's zone.
func dnssecOf(name string) string {
	if zoneSecure(name) {
		return survey.DNSSECSecure
	}
	return survey.DNSSECInsecure
}

func checkPolicyMX(t *testing.T, l *lab, s *policyScan) {
	type want struct {
		status, host, ip, mxDNSSEC, addrDNSSEC string
		cnames                                 []string
	}
	wants := map[string]want{}
	for _, c := range l.dane {
		w := want{survey.DNSOK, c.MX, c.IP, c.MXDNSSEC, c.AddrDNSSEC, nil}
		if c.CNAME != "" {
			w.cnames = []string{c.CNAME}
		}
		if c.MXDNSSEC == survey.DNSSECBogus {
			w = want{status: survey.DNSServfail, mxDNSSEC: survey.DNSSECBogus}
		}
		wants[c.Domain] = w
	}
	for _, c := range l.sts {
		ip := map[string]string{"mx1.real.test": "127.77.0.25", "mx4.real.test": "127.77.0.28"}[c.MX]
		wants[c.Domain] = want{survey.DNSOK, c.MX, ip, survey.DNSSECInsecure, survey.DNSSECInsecure, nil}
	}
	for d, w := range wants {
		rows := s.mx[d]
		if len(rows) != 1 {
			t.Errorf("%s: %d mx rows, want 1: %+v", d, len(rows), rows)
			continue
		}
		r := rows[0]
		if r.DNSStatus != w.status || r.MXHost != w.host || r.IP != w.ip || r.MXDNSSEC != w.mxDNSSEC || r.AddrDNSSEC != w.addrDNSSEC ||
			!slices.Equal(r.MXHostCNAMEs, w.cnames) {
			t.Errorf("%s: dns_status %q mx_host %q ip %q mx_dnssec %q addr_dnssec %q mx_host_cnames %q, want %q %q %q %q %q %q (dns_error %q)",
				d, r.DNSStatus, r.MXHost, r.IP, r.MXDNSSEC, r.AddrDNSSEC, r.MXHostCNAMEs,
				w.status, w.host, w.ip, w.mxDNSSEC, w.addrDNSSEC, w.cnames, r.DNSError)
		}
	}
	if len(s.mx) != len(wants) {
		t.Errorf("mx rows for %d domains, want %d", len(s.mx), len(wants))
	}
}

// checkPolicyTLSA: one tlsa row per MX host the scan learnt, the TLSA RRset
// of the base name a DANE sender uses, as published and as dig saw it.
func checkPolicyTLSA(t *testing.T, l *lab, s *policyScan) {
	type want struct{ name, status, dnssec string }
	wants := map[string]want{}
	status := map[string]string{"ok": survey.DNSOK, "nxdomain": survey.DNSNXDomain, "servfail": survey.DNSServfail}
	for _, c := range l.dane {
		if c.MXDNSSEC == survey.DNSSECBogus {
			continue // the MX lookup failed: the host is never learnt
		}
		wants[c.MX] = want{tlsaOwner(c.tlsaBase()), status[c.TLSAStatus], c.TLSADNSSEC}
	}
	for _, c := range l.sts {
		wants[c.MX] = want{tlsaOwner(c.MX), survey.DNSNXDomain, survey.DNSSECInsecure}
	}
	for host, w := range wants {
		rows := s.tlsa[host]
		if len(rows) != 1 {
			t.Errorf("%s: %d tlsa rows, want 1", host, len(rows))
			continue
		}
		r := rows[0]
		var records []string
		if w.status == survey.DNSOK {
			records = l.tlsa[w.name]
		}
		if r.TLSAName != w.name || r.TLSAStatus != w.status || r.TLSADNSSEC != w.dnssec || !sameSet(r.TLSARecords, records) || r.QueriedAt.IsZero() {
			t.Errorf("%s: tlsa_name %q status %q dnssec %q records %q (error %q), want %q %q %q %q",
				host, r.TLSAName, r.TLSAStatus, r.TLSADNSSEC, r.TLSARecords, r.TLSAError, w.name, w.status, w.dnssec, records)
		}
		if (w.status == survey.DNSOK) != (r.TLSAError == "") {
			t.Errorf("%s: tlsa_error %q for status %q (the text of a failure or denial, only)", host, r.TLSAError, r.TLSAStatus)
		}
	}
	if len(s.tlsa) != len(wants) {
		var hosts []string
		for h := range s.tlsa {
			hosts = append(hosts, h)
		}
		sort.Strings(hosts)
		t.Errorf("tlsa rows for %d hosts %q, want %d", len(s.tlsa), hosts, len(wants))
	}
}

// checkNoPolicy: a domain without MTA-STS or TLS-RPT records (the DANE
// domains): both lookups NXDOMAIN, secure in a signed zone, no fetch.
func checkNoPolicy(t *testing.T, domain string, rows []survey.PolicyRow) {
	t.Helper()
	if len(rows) != 1 {
		t.Errorf("%s: %d policies rows, want 1", domain, len(rows))
		return
	}
	r := rows[0]
	want := dnssecOf(domain)
	if r.MTASTSStatus != survey.DNSNXDomain || r.MTASTSDNSSEC != want || len(r.MTASTSTXT) != 0 ||
		r.TLSRPTStatus != survey.DNSNXDomain || r.TLSRPTDNSSEC != want || len(r.TLSRPTTXT) != 0 || r.STSFetched || r.STSURL != "" {
		t.Errorf("%s: %+v, want NXDOMAIN (%s) twice and no fetch", domain, r, want)
	}
}

// checkPolicyRow holds an MTA-STS domain's policies row to the case and to
// curl's and s_client's view of the policy host.
func checkPolicyRow(t *testing.T, l *lab, c stsCase, rows []survey.PolicyRow, ev *policyEvidence) {
	if len(rows) != 1 {
		t.Fatalf("%d policies rows, want 1", len(rows))
	}
	r := rows[0]
	txtStatus := func(rrs [][]string) string {
		if len(rrs) == 0 {
			return survey.DNSNXDomain
		}
		return survey.DNSOK
	}
	joined := func(rrs [][]string) []string {
		return mapStrings(rrs, func(s []string) string { return strings.Join(s, "") })
	}
	if r.MTASTSStatus != txtStatus(c.STS) || r.MTASTSDNSSEC != survey.DNSSECInsecure || !sameSet(r.MTASTSTXT, joined(c.STS)) {
		t.Errorf("mta_sts_status %q dnssec %q txt %q, want %q insecure %q", r.MTASTSStatus, r.MTASTSDNSSEC, r.MTASTSTXT, txtStatus(c.STS), joined(c.STS))
	}
	if r.TLSRPTStatus != txtStatus(c.TLSRPT) || r.TLSRPTDNSSEC != survey.DNSSECInsecure || !sameSet(r.TLSRPTTXT, joined(c.TLSRPT)) {
		t.Errorf("tlsrpt_status %q dnssec %q txt %q, want %q insecure %q", r.TLSRPTStatus, r.TLSRPTDNSSEC, r.TLSRPTTXT, txtStatus(c.TLSRPT), joined(c.TLSRPT))
	}
	if r.STSFetched != c.Fetched() {
		t.Fatalf("sts_fetched %v, want %v", r.STSFetched, c.Fetched())
	}
	if !c.Fetched() {
		if r.STSURL != "" || r.STSIP != "" || r.STSHTTPStatus != 0 || len(r.STSBody) != 0 || r.STSErrorClass != "" {
			t.Errorf("no fetch, but sts columns %+v", r)
		}
		return
	}
	if r.STSURL != policyURL(c.Domain) || r.STSStartedAt.IsZero() {
		t.Errorf("sts_url %q started_at %v, want %q", r.STSURL, r.STSStartedAt, policyURL(c.Domain))
	}
	switch c.HostIP {
	case "":
		if r.STSErrorClass != survey.ErrNoAddress || r.STSIP != "" || r.STSHTTPStatus != 0 {
			t.Errorf("sts_error_class %q ip %q status %d, want %q (no address)", r.STSErrorClass, r.STSIP, r.STSHTTPStatus, survey.ErrNoAddress)
		}
		return
	case stsDeadIP:
		if r.STSErrorClass != survey.ErrRefused || r.STSIP != stsDeadIP || r.STSHTTPStatus != 0 || r.STSError == "" {
			t.Errorf("sts_error_class %q ip %q status %d error %q, want %q from %s (curl: exit 7)", r.STSErrorClass, r.STSIP, r.STSHTTPStatus, r.STSError, survey.ErrRefused, stsDeadIP)
		}
		return
	}

	ev.mu.Lock()
	cr, haveCurl := ev.curl[c.Key]
	chain, tlsVer := ev.chain[c.Key], ev.tlsVer[c.Key]
	ev.mu.Unlock()
	if !haveCurl || len(chain) == 0 {
		t.Fatal("no curl or s_client evidence (policies/mta-sts failed?)")
	}
	// A complete HTTP response, whatever the certificate (the scanner
	// records, the analyzer judges), unless the body goes past the read
	// limit.
	wantClass := survey.ErrNone
	if len(cr.Body) > stsBodyRead {
		wantClass = survey.ErrTooLarge
	}
	if r.STSErrorClass != wantClass || r.STSIP != c.HostIP || (r.STSError == "") != (wantClass == survey.ErrNone) {
		t.Errorf("sts_error_class %q ip %q error %q, want %q from %s", r.STSErrorClass, r.STSIP, r.STSError, wantClass, c.HostIP)
	}
	if int(r.STSHTTPStatus) != cr.Status || r.STSContentType != cr.ContentType || r.STSLocation != cr.Location {
		t.Errorf("sts_http_status %d content_type %q location %q; curl: %d %q %q", r.STSHTTPStatus, r.STSContentType, r.STSLocation, cr.Status, cr.ContentType, cr.Location)
	}
	wantBody := cr.Body[:min(len(cr.Body), stsBodyKept)]
	wantLen := int64(min(len(cr.Body), stsBodyRead))
	if string(r.STSBody) != string(wantBody) || r.STSBodyLen != wantLen || r.STSBodyTruncated != (len(cr.Body) > stsBodyKept) {
		t.Errorf("sts_body %d bytes (equal to curl's first %d: %v), body_len %d, truncated %v; curl got %d bytes: want %d, %v",
			len(r.STSBody), len(wantBody), string(r.STSBody) == string(wantBody), r.STSBodyLen, r.STSBodyTruncated, len(cr.Body), wantLen, len(cr.Body) > stsBodyKept)
	}
	var got []string
	for _, der := range r.STSCertChain {
		got = append(got, sha256Hex(der))
	}
	if !slices.Equal(got, chain) || normTLSVersion(r.STSTLSVersion) != normTLSVersion(tlsVer) {
		t.Errorf("sts_cert_chain %q tls_version %q; openssl s_client: %q %q", got, r.STSTLSVersion, chain, tlsVer)
	}
}

// checkDANEVerdicts: for every MX host whose TLSA RRset the scan found
// secure with a usable record, mxsurvey's verifier (analyze/dane, on the
// scan's tlsa row and the probe's chain as recorded) must reach
// posttls-finger's verdict; the other hosts are ones posttls-finger did not
// authenticate with DANE either.
func checkDANEVerdicts(t *testing.T, l *lab, s *policyScan, ev *policyEvidence) {
	for _, c := range l.dane {
		if c.MXDNSSEC == survey.DNSSECBogus {
			continue // no host learnt (posttls-finger on the domain failed the same way)
		}
		t.Run(c.Key, func(t *testing.T) {
			ev.mu.Lock()
			f, ok := ev.finger[c.Key]
			ev.mu.Unlock()
			if !ok {
				t.Fatal("no posttls-finger verdict (policies/dane failed?)")
			}
			tl := s.tlsa[c.MX]
			probes := s.probes[c.IP+"|"+c.MX]
			if len(tl) != 1 || len(probes) != 1 || probes[0].Outcome != survey.OutcomeOK {
				t.Fatalf("tlsa rows %+v probes %+v", tl, probes)
			}
			res, secure := verifyDANE(t, s, tl[0], probes[0])
			t.Logf("mxsurvey (analyze/dane): secure %v valid %v reason %q %s; posttls-finger: %s matched %q refused %q %s",
				secure, res.Valid, res.Reason, res.Detail, f.Trust, f.Matched, f.Unsupported, f.VerifyError)
			switch {
			case tl[0].TLSADNSSEC == survey.DNSSECBogus:
				if !f.TLSALookupError {
					t.Errorf("tlsa_dnssec bogus, but posttls-finger had no TLSA lookup error: %+v", f)
				}
			case !secure || res.Reason == dane.ReasonNoUsable:
				if len(f.Matched) != 0 {
					t.Errorf("mxsurvey sees no secure usable TLSA record, posttls-finger matched %q", f.Matched)
				}
			case res.Valid != f.DANEVerified():
				t.Errorf("mxsurvey: DANE valid %v (%s: %s); posttls-finger: %s, matched %q, %s", res.Valid, res.Reason, res.Detail, f.Trust, f.Matched, f.VerifyError)
			case res.Valid && !slices.Contains(f.Matched, res.Record.String()):
				t.Errorf("mxsurvey verified with %q, posttls-finger matched %q", res.Record, f.Matched)
			}
			if res.Valid != (c.Usable && c.Valid) {
				t.Errorf("mxsurvey: DANE valid %v, the case says %v", res.Valid, c.Usable && c.Valid)
			}
		})
	}
}

// verifyDANE runs analyze/dane.Verify on a host's tlsa row and probe row,
// with the reference names RFC 7672 §3.2.2 gives (the MX host, and the
// CNAME-expanded name when its lookup was secure). secure: the TLSA RRset
// was secure and had records.
func verifyDANE(t *testing.T, s *policyScan, tl survey.TLSARow, p survey.ProbeRow) (dane.Result, bool) {
	t.Helper()
	if tl.TLSAStatus != survey.DNSOK || tl.TLSADNSSEC != survey.DNSSECSecure {
		return dane.Result{Reason: dane.ReasonNoUsable}, false
	}
	var records []dane.Record
	for _, rr := range tl.TLSARecords {
		r, err := dane.Parse(rr)
		if err != nil {
			t.Errorf("tlsa record %q: %v", rr, err)
			continue
		}
		records = append(records, r)
	}
	names := []string{p.MXHost}
	for _, rows := range s.mx {
		for _, m := range rows {
			if m.MXHost == p.MXHost && m.AddrDNSSEC == survey.DNSSECSecure && len(m.MXHostCNAMEs) > 0 {
				names = append(names, m.MXHostCNAMEs[len(m.MXHostCNAMEs)-1])
			}
		}
	}
	return dane.Verify(records, p.CertChain, names, p.StartedAt), true
}

// checkAnalyzerDANE compares `mxsurvey analyze`'s per-host DANE verdict
// (hosts.parquet's dane_valid, issue 13) with posttls-finger's, once the
// analyzer writes it: until then it says so and skips.
func checkAnalyzerDANE(ctx context.Context, t *testing.T, l *lab, s *policyScan, ev *policyEvidence) {
	report := s.dir + "-report"
	actx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := mxsurvey(actx, t, "analyze", "-roots", l.caFile, "-quiet", "-o", report, s.dir); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(report, "hosts.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := pf.Schema().Lookup("dane_valid"); !ok {
		t.Skip("hosts.parquet has no dane_valid column yet (the analyzer side of issue 13): the comparison runs once it has")
	}
	type hostDANE struct {
		IP        string `parquet:"ip"`
		MXHost    string `parquet:"mx_host"`
		DANEValid bool   `parquet:"dane_valid"`
	}
	rows, err := parquet.Read[hostDANE](f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, r := range rows {
		got[r.IP+"|"+r.MXHost] = r.DANEValid
	}
	for _, c := range l.dane {
		if c.MXDNSSEC == survey.DNSSECBogus {
			continue
		}
		ev.mu.Lock()
		fv, ok := ev.finger[c.Key]
		ev.mu.Unlock()
		v, have := got[c.IP+"|"+c.MX]
		switch {
		case !ok || !have:
			t.Errorf("%s: posttls-finger verdict %v, host row %v", c.Key, ok, have)
		case v != fv.DANEVerified():
			t.Errorf("%s: hosts.parquet dane_valid %v; posttls-finger %s, matched %q, %s", c.Key, v, fv.Trust, fv.Matched, fv.VerifyError)
		}
	}
}
