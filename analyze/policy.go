package analyze

// Transport security policies (issue 13, docs/statistics.md "Transport
// security"): what a sender that honours a domain's request for
// authenticated delivery, DANE (RFC 7672) or MTA-STS (RFC 8461), would
// make of each MX host and each domain, and the RFC 8460 result type of
// every failure. The records and policies are parsed by packages dane,
// mtasts and tlsrpt; this file joins them to the probes and the domains.
//
// The tlsa and policies tables are read in passes of their own before the
// probes (readTLSA, readPolicies), into maps keyed by MX host and by
// domain that hold only hosts and domains with something to say; the
// per-target verdicts are made in evalProbe, the per-domain ones in
// evalDomain, so that every worker count gives the same bytes.

import (
	"context"
	"mime"
	"slices"
	"strings"
	"time"

	"github.com/mxsurvey/mxsurvey/analyze/certs"
	"github.com/mxsurvey/mxsurvey/analyze/dane"
	"github.com/mxsurvey/mxsurvey/analyze/match"
	"github.com/mxsurvey/mxsurvey/analyze/mtasts"
	"github.com/mxsurvey/mxsurvey/analyze/tlsrpt"
	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// scanMeasured is what every scan directory measured: the policy tables
// when its manifest says the scan ran with policies on (a manifest of
// schema 1, or of a scan with -policies=false, does not), and DNSSEC when
// it also says "dnssec": "trusted". A directory without a usable manifest
// counts as having measured the tables when it has a policies table, and
// DNSSEC never: nothing says its DNSSEC columns were filled. Shards that
// differ give the least of them, so that no figure mixes measured shards
// with unmeasured ones.
func scanMeasured(dir string, m *survey.Manifest) measured {
	if m == nil {
		if parts, err := store.Parts(survey.PoliciesDir(dir)); err == nil && len(parts) > 0 {
			return measuredPolicies
		}
		return measuredBasics
	}
	if on, _ := m.Options["policies"].(bool); !on || m.SchemaVersion < 2 {
		return measuredBasics
	}
	if m.Options["dnssec"] == survey.DNSSECTrusted {
		return measuredDNSSEC
	}
	return measuredPolicies
}

// tlsaRow is what the analyzer reads of a survey.TLSARow.
type tlsaRow struct {
	MXHost      string   `parquet:"mx_host,dict"`
	TLSAStatus  string   `parquet:"tlsa_status,dict"`
	TLSADNSSEC  string   `parquet:"tlsa_dnssec,dict"`
	TLSARecords []string `parquet:"tlsa_records,list"`
}

// tlsaHost is an MX host's TLSA lookup as a DANE sender sees it.
type tlsaHost struct {
	status, dnssec string // tlsa_status, tlsa_dnssec
	records        []dane.Record
	usable         bool // a record is usable for SMTP (dane.Usable)
	// names are the reference identifiers DANE-TA checks the leaf against
	// (RFC 7672 §3.2.2): the MX host, and the name its address lookup
	// reached through a secure CNAME chain (readCNAMEs adds it).
	names []string
}

func (t *tlsaHost) present() bool { return t != nil && t.status == survey.DNSOK }

// secure is hosts.tlsa_secure: present, DNSSEC-secure, a usable record.
func (t *tlsaHost) secure() bool {
	return t.present() && t.dnssec == survey.DNSSECSecure && t.usable
}

func (t *tlsaHost) bogus() bool { return t != nil && t.dnssec == survey.DNSSECBogus }

// asksDANE: the host asks senders for DANE, whether or not they can follow:
// a secure TLSA RRset, usable or not, or one that does not validate.
func (t *tlsaHost) asksDANE() bool {
	return t.present() && t.dnssec == survey.DNSSECSecure || t.bogus()
}

// newTLSAHost keeps what the verdicts need of a tlsa row. Statuses are
// the vocabulary's own strings, not the row's, so that no row buffer is
// held; a record that does not parse is not usable and is left out.
func newTLSAHost(r *tlsaRow) *tlsaHost {
	t := &tlsaHost{status: vocab(r.TLSAStatus), dnssec: vocab(r.TLSADNSSEC), names: []string{r.MXHost}}
	for _, s := range r.TLSARecords {
		rec, err := dane.Parse(s)
		if err != nil {
			continue
		}
		t.records = append(t.records, rec)
		t.usable = t.usable || dane.Usable(rec)
	}
	return t
}

// vocab returns the constant of survey's vocabulary equal to s, or s.
func vocab(s string) string {
	for _, v := range []string{survey.DNSOK, survey.DNSNoRecords, survey.DNSNXDomain, survey.DNSServfail,
		survey.DNSTimeout, survey.DNSRefused, survey.DNSError, survey.DNSSECSecure, survey.DNSSECInsecure,
		survey.DNSSECBogus, survey.DNSSECUnknown} {
		if s == v {
			return v
		}
	}
	return strings.Clone(s)
}

// readTLSA is the tlsa pass: one tlsaHost per MX host whose lookup found
// records or was bogus (the others ask nothing of a sender). A host in
// several shards keeps its first row.
func (a *analyzer) readTLSA(ctx context.Context) error {
	return runPass(ctx, a, survey.TLSATable, survey.TLSADir, func(ctx context.Context, g store.RowGroup) ([]*tlsaHost, error) {
		var out []*tlsaHost
		err := store.ReadRowGroup(ctx, g, func(rows []tlsaRow) error {
			for i := range rows {
				if r := &rows[i]; r.TLSAStatus == survey.DNSOK || r.TLSADNSSEC == survey.DNSSECBogus {
					out = append(out, newTLSAHost(r))
				}
			}
			return nil
		})
		return out, err
	}, func(g store.RowGroup, hosts []*tlsaHost) (int, error) {
		for _, h := range hosts {
			if _, seen := a.tlsa[h.names[0]]; !seen {
				a.tlsa[h.names[0]] = h
			}
		}
		return int(g.Rows), nil
	})
}

// cnameRow is what readCNAMEs reads of a survey.MXRow.
type cnameRow struct {
	MXHost       string   `parquet:"mx_host,dict"`
	MXHostCNAMEs []string `parquet:"mx_host_cnames,list"`
	AddrDNSSEC   string   `parquet:"addr_dnssec,dict"`
}

// readCNAMEs adds to each host with a secure usable TLSA RRset the name its
// address lookup reached through CNAMEs, when that lookup was secure: a
// DANE-TA leaf may carry either name (RFC 7672 §3.2.2). It reads the mx
// table's three columns only when some host needs them.
func (a *analyzer) readCNAMEs(ctx context.Context) error {
	need := false
	for _, t := range a.tlsa {
		need = need || t.secure()
	}
	if !need {
		return nil
	}
	type alias struct{ host, name string }
	return runPass(ctx, a, survey.MXTable+" (CNAMEs of TLSA hosts)", survey.MXDir, func(ctx context.Context, g store.RowGroup) ([]alias, error) {
		var out []alias
		err := store.ReadRowGroup(ctx, g, func(rows []cnameRow) error {
			for i := range rows {
				r := &rows[i]
				if len(r.MXHostCNAMEs) == 0 || r.AddrDNSSEC != survey.DNSSECSecure || !a.tlsa[r.MXHost].secure() {
					continue
				}
				out = append(out, alias{r.MXHost, strings.Clone(r.MXHostCNAMEs[len(r.MXHostCNAMEs)-1])})
			}
			return nil
		})
		return out, err
	}, func(g store.RowGroup, found []alias) (int, error) {
		for _, f := range found {
			t := a.tlsa[f.host]
			if !slices.Contains(t.names, f.name) {
				t.names = append(t.names, f.name)
			}
		}
		return int(g.Rows), nil
	})
}

// daneVerdict is what a DANE sender makes of one target.
type daneVerdict struct {
	valid  bool
	result tlsrpt.ResultType // "" when it delivers, does not apply DANE, or never reached TLS
}

// daneTarget judges a target whose MX host's TLSA lookup is t (nil: none),
// whose probe ended with outcome, completed a handshake when tlsDone, and
// recorded chain at time at. A bogus RRset is dnssec-invalid and a secure
// one without a usable record tlsa-invalid whatever the server does (RFC
// 7672 §2.2, §3.1); with usable records, a server without STARTTLS, a
// failed handshake, and then the chain's verdict (package dane) decide. A
// probe that ended before STARTTLS (no connection, no greeting) has
// nothing a TLS report speaks of.
func daneTarget(t *tlsaHost, outcome string, tlsDone bool, chain [][]byte, at time.Time) daneVerdict {
	switch {
	case t.bogus():
		return daneVerdict{result: tlsrpt.ResultDNSSECInvalid}
	case t.present() && t.dnssec == survey.DNSSECSecure && !t.usable:
		return daneVerdict{result: tlsrpt.ResultTLSAInvalid}
	case !t.secure():
		return daneVerdict{}
	case outcome == survey.OutcomeSTARTTLS:
		return daneVerdict{result: tlsrpt.ResultSTARTTLSNotSupported}
	case outcome == survey.OutcomeTLS:
		return daneVerdict{result: tlsrpt.ResultValidationFailure}
	case !tlsDone:
		return daneVerdict{}
	}
	res := dane.Verify(t.records, chain, t.names, at)
	return daneVerdict{valid: res.Valid, result: res.Reason.ResultType()}
}

// stsTarget is the RFC 8460 result type an MTA-STS sender reports for a
// target of an MX host its policy lists ("" when it delivers or never
// reached TLS): no STARTTLS, a failed handshake, then the certificate in
// the order crypto/x509 checks it (dates, then the name, then the chain),
// a certificate outside its dates having tlsrpt.DateResult's type, as for
// DANE.
func stsTarget(outcome string, tlsDone bool, h *hostResult) tlsrpt.ResultType {
	switch {
	case outcome == survey.OutcomeSTARTTLS:
		return tlsrpt.ResultSTARTTLSNotSupported
	case outcome == survey.OutcomeTLS:
		return tlsrpt.ResultValidationFailure
	case !tlsDone:
		return ""
	case !h.withCert:
		return tlsrpt.ResultValidationFailure // a certificate no client can read
	case h.cert.Expired || h.cert.NotYetValid:
		return tlsrpt.DateResult(h.cert.Expired, h.cert.NotYetValid)
	case !h.matchMX:
		return tlsrpt.ResultCertificateHostMismatch
	case !h.cert.Trusted:
		return tlsrpt.ResultCertificateNotTrusted
	}
	return ""
}

// resultCode packs a result type into a byte for the target map: 0 for
// none, else 1 + its position in tlsrpt.ResultTypes.
func resultCode(r tlsrpt.ResultType) uint8 {
	for i, t := range resultTypes {
		if t == r {
			return uint8(i + 1)
		}
	}
	return 0
}

var resultTypes = tlsrpt.ResultTypes()

func resultOf(code uint8) tlsrpt.ResultType {
	if code == 0 {
		return ""
	}
	return resultTypes[code-1]
}

// policyRow is what the analyzer reads of a survey.PolicyRow.
type policyRow struct {
	Domain           string    `parquet:"domain,dict"`
	MTASTSStatus     string    `parquet:"mta_sts_status,dict"`
	MTASTSTXT        []string  `parquet:"mta_sts_txt,list"`
	TLSRPTStatus     string    `parquet:"tlsrpt_status,dict"`
	TLSRPTTXT        []string  `parquet:"tlsrpt_txt,list"`
	STSFetched       bool      `parquet:"sts_fetched"`
	STSStartedAt     time.Time `parquet:"sts_started_at,timestamp(millisecond),optional"`
	STSErrorClass    string    `parquet:"sts_error_class,dict"`
	STSHTTPStatus    int32     `parquet:"sts_http_status"`
	STSContentType   string    `parquet:"sts_content_type"`
	STSBody          []byte    `parquet:"sts_body"`
	STSBodyTruncated bool      `parquet:"sts_body_truncated"`
	STSTLSVersion    string    `parquet:"sts_tls_version,dict"`
	STSCertChain     [][]byte  `parquet:"sts_cert_chain,list"`
}

// policyInfo is a domain's MTA-STS and TLS-RPT, as a sender sees them.
type policyInfo struct {
	domain       string
	mtaSTSRecord bool // exactly one valid v=STSv1 record
	tlsrptRecord bool // exactly one valid v=TLSRPTv1 record with a usable rua
	// policy is the fetched policy when mtaSTSRecord and it was fetched
	// and is valid (failure ""); failure is the policy's own RFC 8460
	// result type otherwise.
	policy  mtasts.Policy
	failure tlsrpt.ResultType
}

func (p *policyInfo) policyOK() bool { return p != nil && p.mtaSTSRecord && p.failure == "" }

// evalPolicy decides a policies row. fallback is the time for a fetch
// without sts_started_at.
func (a *analyzer) evalPolicy(r *policyRow) *policyInfo {
	p := &policyInfo{domain: strings.Clone(r.Domain)}
	if r.MTASTSStatus == survey.DNSOK {
		_, err := mtasts.ParseRecord(r.MTASTSTXT)
		p.mtaSTSRecord = err == nil
	}
	if r.TLSRPTStatus == survey.DNSOK {
		_, err := tlsrpt.ParseRecord(r.TLSRPTTXT)
		p.tlsrptRecord = err == nil
	}
	if p.mtaSTSRecord {
		p.policy, p.failure = a.stsPolicy(r)
	}
	return p
}

// stsPolicy is what a sender's fetch of the policy gives (RFC 8461 §3.3),
// in the order its HTTPS client meets the failures: no TLS session
// (nothing answered, no address, a failed handshake) is a fetch error; a
// certificate that is not trusted by the roots, not in date at the fetch,
// or not for mta-sts.<domain> is sts-webpki-invalid; then a failure after
// the handshake (sts_error_class, e.g. a body over 1 MiB) or a status
// other than 200, redirects included, is a fetch error; a media type other
// than text/plain (parameters allowed), a body cut at 64 KiB, or a policy
// that does not parse is sts-policy-invalid.
func (a *analyzer) stsPolicy(r *policyRow) (mtasts.Policy, tlsrpt.ResultType) {
	if !r.STSFetched || r.STSTLSVersion == "" {
		return mtasts.Policy{}, tlsrpt.ResultSTSPolicyFetchError
	}
	at := r.STSStartedAt
	if at.IsZero() {
		at = a.fallback
	}
	if !a.webPKIValid(r.STSCertChain, at, "mta-sts."+r.Domain) {
		return mtasts.Policy{}, tlsrpt.ResultSTSWebPKIInvalid
	}
	if r.STSErrorClass != "" || r.STSHTTPStatus != 200 {
		return mtasts.Policy{}, tlsrpt.ResultSTSPolicyFetchError
	}
	if mt, _, err := mime.ParseMediaType(r.STSContentType); err != nil || mt != "text/plain" {
		return mtasts.Policy{}, tlsrpt.ResultSTSPolicyInvalid
	}
	if r.STSBodyTruncated {
		return mtasts.Policy{}, tlsrpt.ResultSTSPolicyInvalid // mtasts.ErrPolicyTooLarge
	}
	pol, err := mtasts.ParsePolicy(r.STSBody)
	if err != nil {
		return mtasts.Policy{}, mtasts.ResultType(err)
	}
	return pol, ""
}

// webPKIValid: the chain verifies to the roots at time at, its leaf is in
// date and carries host (the same checks as valid_for_mx).
func (a *analyzer) webPKIValid(chain [][]byte, at time.Time, host string) bool {
	res, err := a.verifier.Check(chain, at)
	if err != nil {
		return false
	}
	ok, _ := match.MatchAny(res.Leaf.Names, host)
	return ok && validAt(res)
}

func validAt(res certs.Result) bool { return res.Trusted && !res.Expired && !res.NotYetValid }

// readPolicies is the policies pass: one policyInfo per domain with a valid
// MTA-STS or TLS-RPT record. A domain in several shards keeps its first
// row.
func (a *analyzer) readPolicies(ctx context.Context) error {
	return runPass(ctx, a, survey.PoliciesTable, survey.PoliciesDir, func(ctx context.Context, g store.RowGroup) ([]*policyInfo, error) {
		var out []*policyInfo
		err := store.ReadRowGroup(ctx, g, func(rows []policyRow) error {
			for i := range rows {
				if p := a.evalPolicy(&rows[i]); p.mtaSTSRecord || p.tlsrptRecord {
					out = append(out, p)
				}
			}
			return nil
		})
		return out, err
	}, func(g store.RowGroup, ps []*policyInfo) (int, error) {
		for _, p := range ps {
			if _, seen := a.policies[p.domain]; !seen {
				a.policies[p.domain] = p
			}
		}
		return int(g.Rows), nil
	})
}

// Values of domains.csv's auth_policy: the request a sender honours for the
// domain.
const (
	authNone   = ""
	authDANE   = "dane"    // DANE wins over MTA-STS (RFC 8461 §2)
	authMTASTS = "mta-sts" // a valid record and a policy not known to be mode none
)

// mxHostView is one probed MX host of a domain (a host with a target that
// was not skipped), as the domain verdicts see it: it stands for its
// first probed target (in mx row order), and any of its probed targets may
// carry the mail.
type mxHostView struct {
	name          string
	tlsa          *tlsaHost // nil: no records and not bogus
	first         targetFacts
	anyDANEValid  bool
	anyValidForMX bool
}

// policyVerdicts are a domain's policy columns of domains.csv.
type policyVerdicts struct {
	mxSecure, daneProtected, daneDeliverable    bool
	mtaSTSRecord, mtaSTSPolicyOK, mtaSTSEnforce bool
	mtaSTSDeliverable, tlsrptRecord             bool
	mtaSTSMode                                  string
	mtaSTSFailure                               tlsrpt.ResultType
	authPolicy                                  string
	results                                     []hostFailure
}

// hostFailure is the RFC 8460 result type a sender reports for one MX host.
type hostFailure struct {
	host   string
	result tlsrpt.ResultType
}

// domainPolicy decides a domain (docs/statistics.md "Transport security"):
// mxSecure is its MX RRset's status, pol its policies (nil: no valid
// record), hosts its probed MX hosts in row order.
func domainPolicy(mxSecure bool, pol *policyInfo, hosts []mxHostView) policyVerdicts {
	v := policyVerdicts{mxSecure: mxSecure}
	if pol != nil {
		v.mtaSTSRecord, v.tlsrptRecord = pol.mtaSTSRecord, pol.tlsrptRecord
		v.mtaSTSPolicyOK = pol.policyOK()
		if v.mtaSTSRecord {
			v.mtaSTSFailure = pol.failure
		}
		if v.mtaSTSPolicyOK {
			v.mtaSTSMode = string(pol.policy.Mode)
			v.mtaSTSEnforce = pol.policy.Mode == mtasts.ModeEnforce
		}
	}
	asksDANE := false
	v.daneProtected = mxSecure && len(hosts) > 0
	for _, h := range hosts {
		v.daneProtected = v.daneProtected && h.tlsa.secure()
		asksDANE = asksDANE || h.tlsa.asksDANE()
		v.daneDeliverable = v.daneDeliverable || h.anyDANEValid
		v.mtaSTSDeliverable = v.mtaSTSDeliverable || (v.mtaSTSEnforce && h.anyValidForMX && pol.policy.Matches(h.name))
	}
	v.daneDeliverable = v.daneDeliverable && v.daneProtected
	switch {
	case mxSecure && asksDANE:
		v.authPolicy = authDANE
		for _, h := range hosts {
			if r := resultOf(h.first.dane); r != "" {
				v.results = append(v.results, hostFailure{h.name, r})
			}
		}
	case v.mtaSTSRecord && v.mtaSTSMode != string(mtasts.ModeNone):
		v.authPolicy = authMTASTS
		for _, h := range hosts {
			r := v.mtaSTSFailure
			switch {
			case r != "":
			case !pol.policy.Matches(h.name):
				r = tlsrpt.ResultValidationFailure // RFC 8461 §4.1: the MX host is not in the policy
			default:
				r = resultOf(h.first.sts)
			}
			if r != "" {
				v.results = append(v.results, hostFailure{h.name, r})
			}
		}
	}
	return v
}
