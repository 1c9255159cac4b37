package analyze

import (
	"context"
	"crypto/sha256"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/analyze/certs"
	"github.com/mxsurvey/mxsurvey/analyze/internal/testpki"
	"github.com/mxsurvey/mxsurvey/analyze/mtasts"
	"github.com/mxsurvey/mxsurvey/analyze/tlsrpt"
	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

var policyTime = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// policyPKI is a root, an issuing CA and leaves for the policy tests.
type policyPKI struct {
	root, inter         *testpki.Cert
	leaf, other, stale  *testpki.Cert // for mx.example.com; for mx.other.net; mx.example.com expired
	leafChain, staleTA  [][]byte
	otherChain, selfSig [][]byte
}

func newPolicyPKI() *policyPKI {
	p := &policyPKI{}
	p.root = testpki.Make(testpki.Spec{CN: "Root", IsCA: true}, nil)
	p.inter = testpki.Make(testpki.Spec{CN: "Issuing CA", IsCA: true}, p.root)
	p.leaf = testpki.Make(testpki.Spec{CN: "mx.example.com", DNSNames: []string{"mx.example.com", "mta-sts.example.com"}}, p.inter)
	p.other = testpki.Make(testpki.Spec{CN: "mx.other.net", DNSNames: []string{"mx.other.net"}}, p.inter)
	p.stale = testpki.Make(testpki.Spec{DNSNames: []string{"mx.example.com", "mta-sts.example.com"},
		NotAfter: policyTime.Add(-time.Hour)}, p.inter)
	p.leafChain = testpki.Chain(p.leaf, p.inter)
	p.otherChain = testpki.Chain(p.other, p.inter)
	p.staleTA = testpki.Chain(p.stale, p.inter)
	p.selfSig = testpki.Chain(testpki.Make(testpki.Spec{DNSNames: []string{"mx.example.com", "mta-sts.example.com"}}, nil))
	return p
}

func spkiRecord(usage int, c *testpki.Cert) string {
	return fmt.Sprintf("%d 1 1 %x", usage, sha256.Sum256(c.Cert.RawSubjectPublicKeyInfo))
}

func certRecord(usage int, c *testpki.Cert) string {
	return fmt.Sprintf("%d 0 1 %x", usage, sha256.Sum256(c.DER))
}

func tlsaFor(host, dnssec string, records ...string) *tlsaHost {
	return newTLSAHost(&tlsaRow{MXHost: host, TLSAStatus: survey.DNSOK, TLSADNSSEC: dnssec, TLSARecords: records})
}

// DANE-EE matches the leaf whatever its names and dates; DANE-TA needs the
// anchor in the chain, the leaf in date and carrying a reference name; the
// lookup's DNSSEC status and the probe's outcome come first.
func TestDANETarget(t *testing.T) {
	p := newPolicyPKI()
	ee := spkiRecord(3, p.leaf)
	ta := certRecord(2, p.inter)
	withAlias := tlsaFor("alias.example.net", survey.DNSSECSecure, ta)
	withAlias.names = append(withAlias.names, "mx.example.com") // reached by a secure CNAME
	for _, tc := range []struct {
		name    string
		tlsa    *tlsaHost
		outcome string
		chain   [][]byte
		valid   bool
		result  tlsrpt.ResultType
	}{
		{"EE matches", tlsaFor("mx.example.com", survey.DNSSECSecure, ee), survey.OutcomeOK, p.leafChain, true, ""},
		{"EE ignores names", tlsaFor("mx.other.net", survey.DNSSECSecure, ee), survey.OutcomeOK, p.leafChain, true, ""},
		{"EE ignores dates", tlsaFor("mx.example.com", survey.DNSSECSecure, spkiRecord(3, p.stale)), survey.OutcomeOK, p.staleTA, true, ""},
		{"EE of another key", tlsaFor("mx.example.com", survey.DNSSECSecure, ee), survey.OutcomeOK, p.otherChain, false, tlsrpt.ResultValidationFailure},
		{"TA with the name", tlsaFor("mx.example.com", survey.DNSSECSecure, ta), survey.OutcomeOK, p.leafChain, true, ""},
		{"TA needs the name", tlsaFor("mx.example.com", survey.DNSSECSecure, ta), survey.OutcomeOK, p.otherChain, false, tlsrpt.ResultCertificateHostMismatch},
		{"TA takes the secure CNAME target", withAlias, survey.OutcomeOK, p.leafChain, true, ""},
		{"TA needs dates", tlsaFor("mx.example.com", survey.DNSSECSecure, ta), survey.OutcomeOK, p.staleTA, false, tlsrpt.ResultCertificateExpired},
		{"TA not in the chain", tlsaFor("mx.example.com", survey.DNSSECSecure, certRecord(2, p.root)), survey.OutcomeOK, p.selfSig, false, tlsrpt.ResultValidationFailure},
		{"insecure records ask nothing", tlsaFor("mx.example.com", survey.DNSSECInsecure, ee), survey.OutcomeOK, p.otherChain, false, ""},
		{"no lookup asks nothing", nil, survey.OutcomeOK, p.otherChain, false, ""},
		{"bogus", &tlsaHost{status: survey.DNSServfail, dnssec: survey.DNSSECBogus}, survey.OutcomeOK, p.leafChain, false, tlsrpt.ResultDNSSECInvalid},
		{"none usable", tlsaFor("mx.example.com", survey.DNSSECSecure, "1 1 1 "+ee[6:], "3 1 1 00"), survey.OutcomeOK, p.leafChain, false, tlsrpt.ResultTLSAInvalid},
		{"no STARTTLS", tlsaFor("mx.example.com", survey.DNSSECSecure, ee), survey.OutcomeSTARTTLS, nil, false, tlsrpt.ResultSTARTTLSNotSupported},
		{"handshake failed", tlsaFor("mx.example.com", survey.DNSSECSecure, ee), survey.OutcomeTLS, nil, false, tlsrpt.ResultValidationFailure},
		{"no connection", tlsaFor("mx.example.com", survey.DNSSECSecure, ee), survey.OutcomeConnect, nil, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := daneTarget(tc.tlsa, tc.outcome, tc.chain != nil, tc.chain, policyTime)
			if v.valid != tc.valid || v.result != tc.result {
				t.Errorf("valid %v, result %q; want %v, %q", v.valid, v.result, tc.valid, tc.result)
			}
		})
	}
}

// An MTA-STS sender checks STARTTLS, the handshake, then the certificate
// as crypto/x509 does: dates, name, chain.
func TestSTSTarget(t *testing.T) {
	good := hostResult{withCert: true, matchMX: true, cert: certs.Result{Trusted: true}}
	with := func(edit func(*hostResult)) *hostResult {
		h := good
		edit(&h)
		return &h
	}
	for _, tc := range []struct {
		name    string
		outcome string
		tlsDone bool
		h       *hostResult
		want    tlsrpt.ResultType
	}{
		{"valid", survey.OutcomeOK, true, &good, ""},
		{"no STARTTLS", survey.OutcomeSTARTTLS, false, &hostResult{}, tlsrpt.ResultSTARTTLSNotSupported},
		{"handshake failed", survey.OutcomeTLS, false, &hostResult{}, tlsrpt.ResultValidationFailure},
		{"no connection", survey.OutcomeConnect, false, &hostResult{}, ""},
		{"leaf unreadable", survey.OutcomeOK, true, &hostResult{}, tlsrpt.ResultValidationFailure},
		{"expired before mismatch", survey.OutcomeOK, true, with(func(h *hostResult) { h.cert.Expired, h.matchMX = true, false }), tlsrpt.ResultCertificateExpired},
		{"expired", survey.OutcomeOK, true, with(func(h *hostResult) { h.cert.Expired = true }), tlsrpt.ResultCertificateExpired},
		// Not yet valid is not expired (RFC 8460 §4.3.1), as for DANE-TA.
		{"not yet valid", survey.OutcomeOK, true, with(func(h *hostResult) { h.cert.NotYetValid = true }), tlsrpt.ResultCertificateNotTrusted},
		{"not yet valid before mismatch", survey.OutcomeOK, true, with(func(h *hostResult) { h.cert.NotYetValid, h.matchMX = true, false }), tlsrpt.ResultCertificateNotTrusted},
		{"mismatch before untrusted", survey.OutcomePostTLSEHLO, true, with(func(h *hostResult) { h.matchMX, h.cert.Trusted = false, false }), tlsrpt.ResultCertificateHostMismatch},
		{"untrusted", survey.OutcomeOK, true, with(func(h *hostResult) { h.cert.Trusted = false }), tlsrpt.ResultCertificateNotTrusted},
	} {
		if got := stsTarget(tc.outcome, tc.tlsDone, tc.h); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// A policy is taken only when fetched over a WebPKI-valid session for
// mta-sts.<domain> with a 200 text/plain answer that parses; each failure
// has its RFC 8460 type, in the order a sender meets them.
func TestSTSPolicy(t *testing.T) {
	p := newPolicyPKI()
	a := &analyzer{verifier: certs.New(testpki.Pool(p.root)), fallback: policyTime}
	body := []byte("version: STSv1\r\nmode: enforce\r\nmx: *.example.com\r\nmax_age: 86400\r\n")
	good := policyRow{Domain: "example.com", MTASTSStatus: survey.DNSOK, MTASTSTXT: []string{"v=STSv1; id=20250601"},
		STSFetched: true, STSStartedAt: policyTime, STSHTTPStatus: 200, STSContentType: "text/plain; charset=utf-8",
		STSBody: body, STSTLSVersion: "TLS 1.3", STSCertChain: p.leafChain}
	with := func(edit func(*policyRow)) policyRow {
		r := good
		edit(&r)
		return r
	}
	for _, tc := range []struct {
		name string
		row  policyRow
		want tlsrpt.ResultType
	}{
		{"valid", good, ""},
		{"no answer", with(func(r *policyRow) { r.STSTLSVersion, r.STSErrorClass, r.STSCertChain = "", survey.ErrTimeout, nil }), tlsrpt.ResultSTSPolicyFetchError},
		{"no address", with(func(r *policyRow) { r.STSTLSVersion, r.STSErrorClass, r.STSCertChain = "", survey.ErrNoAddress, nil }), tlsrpt.ResultSTSPolicyFetchError},
		{"self-signed", with(func(r *policyRow) { r.STSCertChain = p.selfSig }), tlsrpt.ResultSTSWebPKIInvalid},
		{"expired", with(func(r *policyRow) { r.STSCertChain = p.staleTA }), tlsrpt.ResultSTSWebPKIInvalid},
		{"other name", with(func(r *policyRow) { r.STSCertChain = p.otherChain }), tlsrpt.ResultSTSWebPKIInvalid},
		{"webpki before status", with(func(r *policyRow) { r.STSCertChain, r.STSHTTPStatus = p.otherChain, 404 }), tlsrpt.ResultSTSWebPKIInvalid},
		{"over 1 MiB", with(func(r *policyRow) { r.STSErrorClass = survey.ErrTooLarge }), tlsrpt.ResultSTSPolicyFetchError},
		{"404", with(func(r *policyRow) { r.STSHTTPStatus = 404 }), tlsrpt.ResultSTSPolicyFetchError},
		{"redirect", with(func(r *policyRow) { r.STSHTTPStatus = 301 }), tlsrpt.ResultSTSPolicyFetchError},
		{"html", with(func(r *policyRow) { r.STSContentType = "text/html" }), tlsrpt.ResultSTSPolicyInvalid},
		{"no type", with(func(r *policyRow) { r.STSContentType = "" }), tlsrpt.ResultSTSPolicyInvalid},
		{"cut at 64 KiB", with(func(r *policyRow) { r.STSBodyTruncated = true }), tlsrpt.ResultSTSPolicyInvalid},
		{"syntax", with(func(r *policyRow) { r.STSBody = []byte("version: STSv1\nmode: strict\n") }), tlsrpt.ResultSTSPolicyInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pi := a.evalPolicy(&tc.row)
			if !pi.mtaSTSRecord || pi.failure != tc.want {
				t.Errorf("record %v, failure %q; want %q", pi.mtaSTSRecord, pi.failure, tc.want)
			}
			if pi.policyOK() != (tc.want == "") {
				t.Errorf("policyOK %v", pi.policyOK())
			}
		})
	}
	for _, tc := range []struct {
		name         string
		row          policyRow
		record, rpt  bool
		failureNoted bool
	}{
		{"two STS records", with(func(r *policyRow) { r.MTASTSTXT = []string{"v=STSv1; id=1", "v=STSv1; id=2"} }), false, false, false},
		{"STS lookup failed", with(func(r *policyRow) { r.MTASTSStatus = survey.DNSServfail }), false, false, false},
		{"TLS-RPT", with(func(r *policyRow) {
			r.TLSRPTStatus, r.TLSRPTTXT = survey.DNSOK, []string{"v=TLSRPTv1; rua=mailto:tls@example.com"}
		}), true, true, false},
		{"TLS-RPT without a usable rua", with(func(r *policyRow) {
			r.TLSRPTStatus, r.TLSRPTTXT = survey.DNSOK, []string{"v=TLSRPTv1; rua=ftp://example.com"}
		}), true, false, false},
	} {
		pi := a.evalPolicy(&tc.row)
		if pi.mtaSTSRecord != tc.record || pi.tlsrptRecord != tc.rpt {
			t.Errorf("%s: mta_sts_record %v, tlsrpt_record %v; want %v, %v", tc.name, pi.mtaSTSRecord, pi.tlsrptRecord, tc.record, tc.rpt)
		}
	}
}

// The domain verdicts from the MX hosts' views.
func TestDomainPolicy(t *testing.T) {
	secureTLSA := &tlsaHost{status: survey.DNSOK, dnssec: survey.DNSSECSecure, usable: true}
	unusable := &tlsaHost{status: survey.DNSOK, dnssec: survey.DNSSECSecure}
	bogus := &tlsaHost{status: survey.DNSServfail, dnssec: survey.DNSSECBogus}
	code := resultCode
	daneOK := mxHostView{name: "mx1.example.com", tlsa: secureTLSA, first: targetFacts{flags: tProbed | tDANEValid}, anyDANEValid: true}
	daneBad := mxHostView{name: "mx2.example.com", tlsa: secureTLSA,
		first: targetFacts{flags: tProbed, dane: code(tlsrpt.ResultCertificateHostMismatch)}}
	plain := mxHostView{name: "mx3.example.com", first: targetFacts{flags: tProbed | tValidForMX}, anyValidForMX: true}
	expired := mxHostView{name: "mx4.example.com", first: targetFacts{flags: tProbed, sts: code(tlsrpt.ResultCertificateExpired)}}
	offList := mxHostView{name: "mail.elsewhere.net", first: targetFacts{flags: tProbed | tValidForMX}, anyValidForMX: true}
	policy := func(mode mtasts.Mode, failure tlsrpt.ResultType) *policyInfo {
		p := &policyInfo{mtaSTSRecord: true, failure: failure}
		if failure == "" {
			p.policy = mtasts.Policy{Mode: mode, MaxAge: 86400, MX: []string{"*.example.com"}}
		}
		return p
	}
	fail := func(host string, r tlsrpt.ResultType) hostFailure { return hostFailure{host, r} }
	for _, tc := range []struct {
		name     string
		mxSecure bool
		pol      *policyInfo
		hosts    []mxHostView
		want     policyVerdicts
	}{
		{"nothing", false, nil, []mxHostView{plain}, policyVerdicts{}},
		{"DANE on every host, one valid", true, nil, []mxHostView{daneOK, daneBad},
			policyVerdicts{mxSecure: true, daneProtected: true, daneDeliverable: true, authPolicy: authDANE,
				results: []hostFailure{fail("mx2.example.com", tlsrpt.ResultCertificateHostMismatch)}}},
		{"DANE not on every host", true, nil, []mxHostView{daneOK, plain},
			policyVerdicts{mxSecure: true, authPolicy: authDANE}},
		{"TLSA under an insecure MX RRset", false, nil, []mxHostView{daneOK, daneBad}, policyVerdicts{}},
		{"no probed host", true, nil, nil, policyVerdicts{mxSecure: true}},
		{"unusable TLSA asks for DANE", true, nil, []mxHostView{{name: "mx.example.com", tlsa: unusable,
			first: targetFacts{flags: tProbed, dane: code(tlsrpt.ResultTLSAInvalid)}}},
			policyVerdicts{mxSecure: true, authPolicy: authDANE, results: []hostFailure{fail("mx.example.com", tlsrpt.ResultTLSAInvalid)}}},
		{"bogus TLSA asks for DANE", true, nil, []mxHostView{{name: "mx.example.com", tlsa: bogus,
			first: targetFacts{flags: tProbed, dane: code(tlsrpt.ResultDNSSECInvalid)}}},
			policyVerdicts{mxSecure: true, authPolicy: authDANE, results: []hostFailure{fail("mx.example.com", tlsrpt.ResultDNSSECInvalid)}}},
		{"MTA-STS enforce", false, policy(mtasts.ModeEnforce, ""), []mxHostView{plain, expired},
			policyVerdicts{mtaSTSRecord: true, mtaSTSPolicyOK: true, mtaSTSMode: "enforce", mtaSTSEnforce: true, mtaSTSDeliverable: true,
				authPolicy: authMTASTS, results: []hostFailure{fail("mx4.example.com", tlsrpt.ResultCertificateExpired)}}},
		{"MTA-STS host off the list", false, policy(mtasts.ModeEnforce, ""), []mxHostView{offList},
			policyVerdicts{mtaSTSRecord: true, mtaSTSPolicyOK: true, mtaSTSMode: "enforce", mtaSTSEnforce: true,
				authPolicy: authMTASTS, results: []hostFailure{fail("mail.elsewhere.net", tlsrpt.ResultValidationFailure)}}},
		{"MTA-STS testing", false, policy(mtasts.ModeTesting, ""), []mxHostView{plain},
			policyVerdicts{mtaSTSRecord: true, mtaSTSPolicyOK: true, mtaSTSMode: "testing", authPolicy: authMTASTS}},
		{"MTA-STS none", false, policy(mtasts.ModeNone, ""), []mxHostView{expired},
			policyVerdicts{mtaSTSRecord: true, mtaSTSPolicyOK: true, mtaSTSMode: "none"}},
		{"MTA-STS policy not fetched", false, policy("", tlsrpt.ResultSTSPolicyFetchError), []mxHostView{plain, expired},
			policyVerdicts{mtaSTSRecord: true, mtaSTSFailure: tlsrpt.ResultSTSPolicyFetchError, authPolicy: authMTASTS,
				results: []hostFailure{fail("mx3.example.com", tlsrpt.ResultSTSPolicyFetchError), fail("mx4.example.com", tlsrpt.ResultSTSPolicyFetchError)}}},
		{"DANE wins over MTA-STS", true, policy(mtasts.ModeEnforce, ""), []mxHostView{daneBad},
			policyVerdicts{mxSecure: true, daneProtected: true, mtaSTSRecord: true, mtaSTSPolicyOK: true, mtaSTSMode: "enforce",
				mtaSTSEnforce: true, authPolicy: authDANE, results: []hostFailure{fail("mx2.example.com", tlsrpt.ResultCertificateHostMismatch)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := domainPolicy(tc.mxSecure, tc.pol, tc.hosts); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// An implicit MX (RFC 5321 §5.1) is secure when the domain's own address
// RRset is: the scanner records that as the row's mx_dnssec, and DANE then
// applies to the domain's host as to any MX host.
func TestImplicitMXSecure(t *testing.T) {
	p := newPolicyPKI()
	dir := t.TempDir()
	if err := store.WriteManifest(dir, &survey.Manifest{Tool: survey.Tool, SchemaVersion: survey.SchemaVersion,
		Options: map[string]any{"policies": true, "dnssec": survey.DNSSECTrusted}, Started: policyTime}); err != nil {
		t.Fatal(err)
	}
	writeTable(t, survey.MXDir(dir), []survey.MXRow{
		{Domain: "mx.example.com", DNSStatus: survey.DNSOK, ImplicitMX: true, MXHost: "mx.example.com", IP: "192.0.2.1", MXDNSSEC: survey.DNSSECSecure},
		{Domain: "plain.example", DNSStatus: survey.DNSOK, ImplicitMX: true, MXHost: "plain.example", IP: "192.0.2.2", MXDNSSEC: survey.DNSSECInsecure},
	})
	writeTable(t, survey.ProbesDir(dir), []survey.ProbeRow{
		{IP: "192.0.2.1", MXHost: "mx.example.com", StartedAt: policyTime, Outcome: survey.OutcomeOK, STARTTLSOffered: true, TLSVersion: "TLS 1.3", CertChain: p.leafChain},
		{IP: "192.0.2.2", MXHost: "plain.example", StartedAt: policyTime, Outcome: survey.OutcomeOK, STARTTLSOffered: true, TLSVersion: "TLS 1.3", CertChain: p.leafChain},
	})
	writeTable(t, survey.TLSADir(dir), []survey.TLSARow{
		{MXHost: "mx.example.com", TLSAStatus: survey.DNSOK, TLSADNSSEC: survey.DNSSECSecure, TLSARecords: []string{spkiRecord(3, p.leaf)}},
		{MXHost: "plain.example", TLSAStatus: survey.DNSOK, TLSADNSSEC: survey.DNSSECSecure, TLSARecords: []string{spkiRecord(3, p.leaf)}},
	})
	writeTable(t, survey.PoliciesDir(dir), []survey.PolicyRow{{Domain: "mx.example.com"}, {Domain: "plain.example"}})
	s, err := Analyze(context.Background(), Options{Dirs: []string{dir}, Roots: testpki.Pool(p.root)})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"mx_secure": 1, "dane_protected": 1, "dane_deliverable": 1}
	for k, v := range want {
		if s.Domains[k] != v {
			t.Errorf("domains.%s = %d, want %d", k, s.Domains[k], v)
		}
	}
	if s.Hosts["tlsa_secure"] != 2 || s.Hosts["dane_valid"] != 2 {
		t.Errorf("hosts %v", s.Hosts)
	}
}
