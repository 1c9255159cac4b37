package truth

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mxsurvey/mxsurvey/lab/world"
)

// policyWant is what a policy case's domain must be, written by hand from
// the case's description: the DNSSEC status of its MX RRset, the DANE facts
// of its (first) target, its verdicts, the policy a sender applies and the
// result type of its MX host, and its policy fetch ("class/status", "" when
// not fetched).
type policyWant struct {
	mxSec, dane, facts, auth, result, fetch string
}

var policyWants = map[string]policyWant{
	"dnssec_signed":         {"secure", "", "mx_secure", "", "", ""},
	"dnssec_mx_bogus":       {"bogus", "", "", "", "", ""},
	"dnssec_addr_bogus":     {"secure", "", "mx_secure", "", "", ""},
	"dane_311":              {"secure", "present secure valid", "mx_secure dane_protected dane_deliverable", "dane", "", ""},
	"dane_301":              {"secure", "present secure valid", "mx_secure dane_protected dane_deliverable", "dane", "", ""},
	"dane_312":              {"secure", "present secure valid", "mx_secure dane_protected dane_deliverable", "dane", "", ""},
	"dane_201":              {"secure", "present secure valid", "mx_secure dane_protected dane_deliverable", "dane", "", ""},
	"dane_311_stale":        {"secure", "present secure", "mx_secure dane_protected", "dane", world.ResultValidationFailure, ""},
	"dane_rollover":         {"secure", "present secure valid", "mx_secure dane_protected dane_deliverable", "dane", "", ""},
	"dane_tlsa_bogus":       {"secure", "bogus", "mx_secure", "dane", world.ResultDNSSECInvalid, ""},
	"dane_unusable":         {"secure", "present", "mx_secure", "dane", world.ResultTLSAInvalid, ""},
	"dane_insecure":         {"insecure", "present", "", "", "", ""},
	"dane_ee_name_mismatch": {"secure", "present secure valid", "mx_secure dane_protected dane_deliverable", "dane", "", ""},
	"dane_ta_name_mismatch": {"secure", "present secure", "mx_secure dane_protected", "dane", world.ResultHostMismatch, ""},
	"dane_ee_expired":       {"secure", "present secure valid", "mx_secure dane_protected dane_deliverable", "dane", "", ""},
	"dane_ta_expired":       {"secure", "present secure", "mx_secure dane_protected", "dane", world.ResultCertExpired, ""},
	"dane_ee_self_signed":   {"secure", "present secure valid", "mx_secure dane_protected dane_deliverable", "dane", "", ""},
	"dane_cname":            {"secure", "present secure valid", "mx_secure dane_protected dane_deliverable", "dane", "", ""},
	"dane_no_starttls":      {"secure", "present secure", "mx_secure dane_protected", "dane", world.ResultSTARTTLSNotSupported, ""},
	"sts_enforce":           {"insecure", "", "mta_sts_record policy_ok enforce sts_deliverable tlsrpt", "sts", "", "/200"},
	"sts_testing":           {"insecure", "", "mta_sts_record policy_ok", "sts", "", "/200"},
	"sts_none":              {"insecure", "", "mta_sts_record policy_ok", "", "", "/200"},
	"sts_record_split":      {"insecure", "", "mta_sts_record policy_ok enforce sts_deliverable", "sts", "", "/200"},
	"sts_record_duplicate":  {"insecure", "", "", "", "", "/200"},
	"sts_record_invalid":    {"insecure", "", "", "", "", "/200"},
	"sts_many_records":      {"insecure", "", "mta_sts_record policy_ok enforce sts_deliverable", "sts", "", "/200"},
	"sts_no_host":           {"insecure", "", "mta_sts_record", "sts", world.ResultSTSFetchError, "no_address/0"},
	"sts_refused":           {"insecure", "", "mta_sts_record", "sts", world.ResultSTSFetchError, "refused/0"},
	"sts_private":           {"insecure", "", "mta_sts_record", "sts", world.ResultSTSFetchError, "blocked/0"},
	"sts_silent":            {"insecure", "", "mta_sts_record", "sts", world.ResultSTSFetchError, "timeout/0"},
	"sts_reset":             {"insecure", "", "mta_sts_record", "sts", world.ResultSTSFetchError, "reset/0"},
	"sts_cert_expired":      {"insecure", "", "mta_sts_record", "sts", world.ResultSTSWebPKIInvalid, "/200"},
	"sts_cert_wrong_name":   {"insecure", "", "mta_sts_record", "sts", world.ResultSTSWebPKIInvalid, "/200"},
	"sts_cert_unknown_ca":   {"insecure", "", "mta_sts_record", "sts", world.ResultSTSWebPKIInvalid, "/200"},
	"sts_404":               {"insecure", "", "mta_sts_record", "sts", world.ResultSTSFetchError, "/404"},
	"sts_redirect":          {"insecure", "", "mta_sts_record", "sts", world.ResultSTSFetchError, "/301"},
	"sts_html":              {"insecure", "", "mta_sts_record", "sts", world.ResultSTSInvalid, "/200"},
	"sts_policy_malformed":  {"insecure", "", "mta_sts_record", "sts", world.ResultSTSInvalid, "/200"},
	"sts_policy_huge":       {"insecure", "", "mta_sts_record", "sts", world.ResultSTSFetchError, "too_large/200"},
	"sts_policy_utf16":      {"insecure", "", "mta_sts_record", "sts", world.ResultSTSInvalid, "/200"},
	"sts_mx_mismatch":       {"insecure", "", "mta_sts_record policy_ok enforce", "sts", world.ResultValidationFailure, "/200"},
	"sts_mx_wildcard":       {"insecure", "", "mta_sts_record policy_ok enforce sts_deliverable", "sts", "", "/200"},
	"sts_mx_cert_mismatch":  {"insecure", "", "mta_sts_record policy_ok enforce", "sts", world.ResultHostMismatch, "/200"},
	"sts_mx_cert_expired":   {"insecure", "", "mta_sts_record policy_ok enforce", "sts", world.ResultCertExpired, "/200"},
	"sts_mx_self_signed":    {"insecure", "", "mta_sts_record policy_ok enforce", "sts", world.ResultCertNotTrusted, "/200"},
	"sts_no_starttls":       {"insecure", "", "mta_sts_record policy_ok enforce", "sts", world.ResultSTARTTLSNotSupported, "/200"},
	"tlsrpt_mailto":         {"insecure", "", "tlsrpt", "", "", ""},
	"tlsrpt_https":          {"insecure", "", "tlsrpt", "", "", ""},
	"tlsrpt_split":          {"insecure", "", "tlsrpt", "", "", ""},
	"tlsrpt_invalid":        {"insecure", "", "", "", "", ""},
	"tlsrpt_duplicate":      {"insecure", "", "", "", "", ""},
	"dane_and_sts": {"secure", "present secure valid",
		"mx_secure dane_protected dane_deliverable mta_sts_record policy_ok enforce sts_deliverable tlsrpt", "dane", "", "/200"},
}

func words(pairs ...any) string {
	var out []string
	for i := 0; i < len(pairs); i += 2 {
		if pairs[i+1].(bool) {
			out = append(out, pairs[i].(string))
		}
	}
	return strings.Join(out, " ")
}

// TestPolicyCases holds every policy case's truth to what its description
// says, written by hand in policyWants.
func TestPolicyCases(t *testing.T) {
	tr := testTruth(t, 1000)
	rows := map[string]Host{}
	for _, h := range tr.Hosts {
		rows[targetKey(h.IP, h.MXHost)] = h
	}
	seen := map[string]bool{}
	for _, d := range tr.Domains {
		c := d.Cases[0]
		want, ok := policyWants[c]
		if !ok {
			continue
		}
		seen[c] = true
		got := policyWant{mxSec: d.MXDNSSEC, auth: d.Facts.AuthPolicy}
		f := d.Facts
		got.facts = words("mx_secure", f.MXSecure, "dane_protected", f.DANEProtected, "dane_deliverable", f.DANEDeliverable,
			"mta_sts_record", f.MTASTSRecord, "policy_ok", f.MTASTSPolicyOK, "enforce", f.MTASTSEnforce, "sts_deliverable", f.MTASTSDeliverable,
			"tlsrpt", f.TLSRPTRecord)
		if len(f.TLSRPTResults) > 0 {
			got.result = f.TLSRPTResults[0].Result
		}
		if len(d.MX) > 0 && len(d.MX[0].IPs) > 0 {
			dn := rows[targetKey(d.MX[0].IPs[0], d.MX[0].Host)].DANE
			got.dane = words("present", dn.TLSAPresent, "secure", dn.TLSASecure, "bogus", dn.TLSABogus, "valid", dn.DANEValid)
		}
		if p := d.Policy; p.STSFetched {
			got.fetch = p.STSErrorClass + "/" + strconv.Itoa(int(p.STSHTTPStatus))
		}
		if got != want {
			t.Errorf("%s (%s):\n got %+v\nwant %+v", c, d.Domain, got, want)
		}
	}
	for _, c := range world.CaseNames() {
		if _, ok := policyWants[c]; !ok && (strings.HasPrefix(c, "dane_") || strings.HasPrefix(c, "sts_") ||
			strings.HasPrefix(c, "tlsrpt_") || strings.HasPrefix(c, "dnssec_")) {
			t.Errorf("policy case %s has no row in policyWants", c)
		}
		if _, ok := policyWants[c]; ok && !seen[c] {
			t.Errorf("case %s is not in the world", c)
		}
	}
}

// TestPolicyBackground: the background publishes DNSSEC, DANE, MTA-STS and
// TLS-RPT in small shares, with failures among them, so that every figure
// of a scan of it is more than a count of the case domains; and a host's
// probed addresses agree on what a sender makes of them (the truth states a
// host's result from its first).
func TestPolicyBackground(t *testing.T) {
	tr := testTruth(t, 20000)
	rows := map[string]*Host{}
	for i := range tr.Hosts {
		rows[targetKey(tr.Hosts[i].IP, tr.Hosts[i].MXHost)] = &tr.Hosts[i]
	}
	n := map[string]int{}
	for _, d := range tr.Domains {
		if d.Cases[0] != "bg_provider" && d.Cases[0] != "bg_hosting" && d.Cases[0] != "bg_self" {
			continue
		}
		n["domains"]++
		f := d.Facts
		for k, v := range map[string]bool{"mx_secure": f.MXSecure, "dane_protected": f.DANEProtected, "dane_deliverable": f.DANEDeliverable,
			"mta_sts_record": f.MTASTSRecord, "policy_ok": f.MTASTSPolicyOK, "enforce": f.MTASTSEnforce, "sts_deliverable": f.MTASTSDeliverable,
			"tlsrpt": f.TLSRPTRecord, "auth_" + f.AuthPolicy: f.AuthPolicy != ""} {
			if v {
				n[k]++
			}
		}
		for _, r := range f.TLSRPTResults {
			n[r.Result]++
		}
		s := world.STS{}
		if f.AuthPolicy == "sts" {
			s.MX = world.STSMXWildcard // the background's policies list their MX hosts
		}
		for _, m := range capMX(d.MX) {
			var results []string
			for _, ip := range m.IPs {
				h := rows[targetKey(ip, m.Host)]
				if h == nil || h.Outcome == world.OutSkipped {
					continue
				}
				r := h.DANE.Failure
				if f.AuthPolicy == "sts" {
					r = stsHostResult("", s, h)
				}
				results = append(results, r)
			}
			if len(slices.Compact(results)) > 1 {
				t.Errorf("%s %s: its addresses disagree: %v", d.Domain, m.Host, results)
			}
		}
	}
	t.Logf("background: %v", n)
	for _, k := range []string{"mx_secure", "dane_protected", "dane_deliverable", "mta_sts_record", "policy_ok", "enforce", "sts_deliverable",
		"tlsrpt", "auth_dane", "auth_sts", world.ResultValidationFailure} {
		if n[k] == 0 {
			t.Errorf("no background domain with %s", k)
		}
	}
	if n["mx_secure"] > n["domains"]/5 || n["mta_sts_record"] > n["domains"]/10 {
		t.Errorf("shares beyond the small ones intended: %v", n)
	}
}

// A leaf outside its dates: certificate-expired only once it has expired
// (RFC 8460 §4.3.1), certificate-not-trusted while not yet valid, under an
// MTA-STS policy as under DANE-TA (no lab case puts a not-yet-valid leaf
// behind either, so the rule is held here).
func TestSTSHostResultDates(t *testing.T) {
	sts := world.STS{MX: world.STSMXHosts}
	tests := []struct {
		name  string
		facts Facts
		want  string
	}{
		{"in date", Facts{Trusted: true, MatchMX: true}, ""},
		{"expired", Facts{Trusted: true, MatchMX: true, Expired: true}, world.ResultCertExpired},
		{"not yet valid", Facts{Trusted: true, MatchMX: true, NotYetValid: true}, world.ResultCertNotTrusted},
		{"expired before the name", Facts{Trusted: true, Expired: true}, world.ResultCertExpired},
		{"not yet valid before the name", Facts{Trusted: true, NotYetValid: true}, world.ResultCertNotTrusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &Host{Outcome: world.OutOK, Facts: &tt.facts}
			if got := stsHostResult("", sts, h); got != tt.want {
				t.Errorf("stsHostResult = %q, want %q", got, tt.want)
			}
			if tt.want == "" {
				return
			}
			if got := dateResult(&tt.facts); got != tt.want {
				t.Errorf("dateResult = %q, want %q (the DANE-TA rule)", got, tt.want)
			}
		})
	}
}
