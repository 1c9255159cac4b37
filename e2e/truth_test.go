package e2e

import (
	"context"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/analyze"
	"github.com/mxsurvey/mxsurvey/analyze/tlsrpt"
	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/lab"

	"github.com/mxsurvey/mxsurvey/scan/resolve"

	"github.com/parquet-go/parquet-go"
)

// capMX applies the scanner's documented bound on MX records per domain
// (the most preferred kept, ties by name) to a truth domain.
func capMX(mx []lab.TruthMX) []lab.TruthMX {
	mx = append([]lab.TruthMX(nil), mx...)
	sort.SliceStable(mx, func(i, j int) bool {
		if mx[i].Preference != mx[j].Preference {
			return mx[i].Preference < mx[j].Preference
		}
		return mx[i].Host < mx[j].Host
	})
	if len(mx) > resolve.DefaultMaxMX {
		mx = mx[:resolve.DefaultMaxMX]
	}
	return mx
}

// TestLabScanMatchesGroundTruth scans a world where every case occurs, with
// policies on (DNSSEC, TLSA, MTA-STS and TLS-RPT, the policy fetches on the
// lab's HTTPS port), and holds every row of every table and every figure to
// the truth. The step deadline leaves room for the handshakes of a loaded
// machine (make check runs the packages in parallel on two cores): with 3 s,
// a few of the 1,500 policy fetches and probes timed out there.
func TestLabScanMatchesGroundTruth(t *testing.T) {
	labDir, scanDir, _ := scanLab(t, lab.WorldParams{Domains: 1500, Seed: 11}, 10*time.Second, 5*time.Second)
	truth, err := lab.ReadTruth(labDir)
	if err != nil {
		t.Fatal(err)
	}

	compared, bad := checkAgainstTruth(t, truth, scanDir, nil)
	cases := map[string]int{}
	for _, d := range truth.Domains {
		for _, c := range d.Cases {
			cases[c]++
		}
	}
	t.Logf("compared %d domains and %d targets over %d cases; %d mismatches", len(truth.Domains), len(compared), len(cases), bad)
	if len(cases) < 40 {
		t.Errorf("only %d cases occur in the world: %v", len(cases), cases)
	}

	// The analyzer's figures equal the ones stated by the truth.
	analyzeAgainstTruth(t, truth, labDir, scanDir, compared)
}

// checkAgainstTruth compares every mx row with the truth's domains and every
// probe row with the truth's hosts, field by field, calls each (when not
// nil) for every target compared, and returns the targets the truth says a
// scan must probe (the MX cap applied) and the number of mismatches.
func checkAgainstTruth(t *testing.T, truth *lab.Truth, scanDir string, each func(lab.TruthHost, survey.ProbeRow)) (reachable map[string]bool, bad int) {
	t.Helper()
	report := func(format string, args ...any) {
		bad++
		if bad <= 60 {
			t.Errorf(format, args...)
		}
	}
	mxRows := map[string][]survey.MXRow{}
	if err := store.ReadAll(survey.MXDir(scanDir), func(r *survey.MXRow) error {
		mxRows[r.Domain] = append(mxRows[r.Domain], *r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(mxRows) != len(truth.Domains) {
		report("scan has %d domains, truth %d", len(mxRows), len(truth.Domains))
	}
	reachable = map[string]bool{}
	for _, d := range truth.Domains {
		for _, m := range capMX(d.MX) {
			for _, ip := range m.IPs {
				reachable[survey.TargetKey(ip, m.Host)] = true
			}
		}
		rows := mxRows[d.Domain]
		if len(rows) == 0 {
			report("%s %v: no mx row", d.Domain, d.Cases)
			continue
		}
		for _, diff := range compareMX(d, rows) {
			report("%s %v: %s", d.Domain, d.Cases, diff)
		}
	}

	probes := map[string]survey.ProbeRow{}
	if err := store.ReadAll(survey.ProbesDir(scanDir), func(r *survey.ProbeRow) error {
		k := survey.TargetKey(r.IP, r.MXHost)
		if _, dup := probes[k]; dup {
			report("target %s probed twice", k)
		}
		probes[k] = *r
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, h := range truth.Hosts {
		k := survey.TargetKey(h.IP, h.MXHost)
		if !reachable[k] {
			continue // behind the MX cap
		}
		p, ok := probes[k]
		if !ok {
			report("%s %v: no probe row", k, h.Cases)
			continue
		}
		delete(probes, k)
		for _, diff := range compareProbe(h, p) {
			report("%s %v: %s (error %q)", k, h.Cases, diff, p.Error)
		}
		if each != nil {
			each(h, p)
		}
	}
	for k := range probes {
		report("probe row for %s that the truth does not list", k)
	}
	nTLSA, nPolicies := checkPolicies(truth, scanDir, report)
	t.Logf("compared %d tlsa rows and %d policies rows", nTLSA, nPolicies)
	return reachable, bad
}

// checkPolicies compares every tlsa row with the truth's tlsa row of its MX
// host (the hosts of every domain's MX list, the MX cap applied) and every
// policies row with its domain's, field by field.
func checkPolicies(truth *lab.Truth, scanDir string, report func(string, ...any)) (nTLSA, nPolicies int) {
	hosts := map[string]bool{}
	for _, d := range truth.Domains {
		for _, m := range capMX(d.MX) {
			hosts[m.Host] = true
		}
	}
	tlsa := map[string]survey.TLSARow{}
	if err := store.ReadAll(survey.TLSADir(scanDir), func(r *survey.TLSARow) error {
		if _, dup := tlsa[r.MXHost]; dup {
			report("tlsa row for %s twice", r.MXHost)
		}
		tlsa[r.MXHost] = *r
		return nil
	}); err != nil {
		report("reading tlsa rows: %v", err)
		return 0, 0
	}
	for _, want := range truth.TLSA {
		if !hosts[want.MXHost] {
			continue // of an MX host no domain lists, or behind the MX cap
		}
		r, ok := tlsa[want.MXHost]
		if !ok {
			report("%s: no tlsa row", want.MXHost)
			continue
		}
		delete(tlsa, want.MXHost)
		nTLSA++
		for _, diff := range compareRow("tlsa", &r, truthColumns(want)) {
			report("tlsa %s: %s (error %q)", want.MXHost, diff, r.TLSAError)
		}
	}
	for h := range tlsa {
		report("tlsa row for %s, which the truth does not list", h)
	}

	policies := map[string]survey.PolicyRow{}
	if err := store.ReadAll(survey.PoliciesDir(scanDir), func(r *survey.PolicyRow) error {
		if _, dup := policies[r.Domain]; dup {
			report("policies row for %s twice", r.Domain)
		}
		policies[r.Domain] = *r
		return nil
	}); err != nil {
		report("reading policies rows: %v", err)
		return nTLSA, 0
	}
	for _, d := range truth.Domains {
		r, ok := policies[d.Domain]
		if !ok {
			report("%s %v: no policies row", d.Domain, d.Cases)
			continue
		}
		delete(policies, d.Domain)
		nPolicies++
		for _, diff := range compareRow("policies", &r, policyTruth(d)) {
			report("policies %s %v: %s (sts_error %q)", d.Domain, d.Cases, diff, r.STSError)
		}
	}
	for d := range policies {
		report("policies row for %s, which the truth does not list", d)
	}
	return nTLSA, nPolicies
}

// analyzeAgainstTruth analyzes the scan with the lab's CA as the only root
// and compares every figure the truth states; it returns the report
// directory.
func analyzeAgainstTruth(t *testing.T, truth *lab.Truth, labDir, scanDir string, reachable map[string]bool) string {
	t.Helper()
	reportDir := filepath.Join(t.TempDir(), "report")
	sum, err := analyze.Analyze(context.Background(), analyze.Options{Dirs: []string{scanDir},
		RootsFile: filepath.Join(labDir, "ca.pem"), OutDir: reportDir, TopN: 1000})
	if err != nil {
		t.Fatal(err)
	}
	// The scans of the lab run with policies on and the lab's DNS trusted
	// for AD: every policy figure is measured and held to the truth.
	wantHosts, wantDomains := truthFigures(truth, reachable)
	policyHosts, policyDomains, wantResults := truthPolicyFigures(truth, reachable)
	maps.Copy(wantHosts, policyHosts)
	maps.Copy(wantDomains, policyDomains)
	if sum.TLSRPTResults == nil {
		t.Error("summary has no tlsrpt_results")
	}
	for k, v := range wantResults {
		if got, ok := sum.TLSRPTResults[k]; !ok || got != v {
			t.Errorf("summary tlsrpt_results.%s = %d, truth says %d", k, got, v)
		}
	}
	for k := range sum.TLSRPTResults {
		if _, ok := wantResults[k]; !ok {
			t.Errorf("summary tlsrpt_results.%s is no RFC 8460 result type", k)
		}
	}
	for k, v := range wantHosts {
		if got, ok := sum.Hosts[k]; !ok || got != v {
			t.Errorf("summary hosts.%s = %d, truth says %d", k, got, v)
		}
	}
	for k, v := range wantDomains {
		if got, ok := sum.Domains[k]; !ok || got != v {
			t.Errorf("summary domains.%s = %d, truth says %d", k, got, v)
		}
	}
	t.Logf("summary: %d host figures, %d domain figures and %d tlsrpt_results equal the truth's", len(wantHosts), len(wantDomains), len(wantResults))
	t.Logf("policy figures: hosts %v, domains %v, tlsrpt_results %v", policyHosts, policyDomains, wantResults)
	checkVerdictExports(t, truth, reportDir, reachable)
	return reportDir
}

// compareProbe holds a probe row to its truth host, column by column (see
// columns_test.go for how the truth of a column is found).
func compareProbe(h lab.TruthHost, p survey.ProbeRow) []string {
	return compareRow("probes", &p, truthColumns(h))
}

// truthPolicyFigures counts the summary's figures of transport security
// policies (issue 13) from the truth's facts: per probe row its DANE facts,
// per domain its verdicts, and the RFC 8460 result types of its MX hosts.
func truthPolicyFigures(truth *lab.Truth, reachable map[string]bool) (hosts, domains, results map[string]int64) {
	hosts = map[string]int64{"tlsa_present": 0, "tlsa_secure": 0, "tlsa_bogus": 0, "dane_valid": 0}
	for _, h := range truth.Hosts {
		if !reachable[survey.TargetKey(h.IP, h.MXHost)] {
			continue
		}
		for k, v := range map[string]bool{"tlsa_present": h.DANE.TLSAPresent, "tlsa_secure": h.DANE.TLSASecure,
			"tlsa_bogus": h.DANE.TLSABogus, "dane_valid": h.DANE.DANEValid} {
			if v {
				hosts[k]++
			}
		}
	}
	domains = map[string]int64{"mx_secure": 0, "dane_protected": 0, "dane_deliverable": 0, "mta_sts_record": 0,
		"mta_sts_policy_ok": 0, "mta_sts_enforce": 0, "mta_sts_deliverable": 0, "tlsrpt_record": 0}
	results = map[string]int64{}
	for _, r := range tlsrpt.ResultTypes() {
		results[string(r)] = 0
	}
	for _, d := range truth.Domains {
		f := d.Facts
		for _, r := range f.TLSRPTResults {
			results[r.Result]++
		}
		for k, v := range map[string]bool{"mx_secure": f.MXSecure, "dane_protected": f.DANEProtected, "dane_deliverable": f.DANEDeliverable,
			"mta_sts_record": f.MTASTSRecord, "mta_sts_policy_ok": f.MTASTSPolicyOK, "mta_sts_enforce": f.MTASTSEnforce,
			"mta_sts_deliverable": f.MTASTSDeliverable, "tlsrpt_record": f.TLSRPTRecord} {
			if v {
				domains[k]++
			}
		}
	}
	return hosts, domains, results
}

// checkVerdictExports holds the analyzer's per-domain verdicts
// (domains.parquet) and per-target DANE verdicts (hosts.parquet) to the
// truth's facts, row by row, so that a figure that agrees by chance (two
// wrong verdicts cancelling) is caught too.
func checkVerdictExports(t *testing.T, truth *lab.Truth, reportDir string, reachable map[string]bool) {
	t.Helper()
	bad := 0
	report := func(format string, args ...any) {
		if bad++; bad <= 40 {
			t.Errorf(format, args...)
		}
	}
	facts := map[string]lab.TruthDomainFacts{}
	for _, d := range truth.Domains {
		facts[d.Domain] = d.Facts
	}
	domains, err := parquet.ReadFile[analyze.DomainRow](filepath.Join(reportDir, "domains.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	auth := map[string]string{"": "", "dane": "dane", "sts": "mta-sts"} // the truth's spelling, the export's
	for _, r := range domains {
		f := facts[r.Domain]
		var want []string
		for _, h := range f.TLSRPTResults {
			want = append(want, h.MXHost+"="+h.Result)
		}
		got := slices.Sorted(slices.Values(r.TLSRPTResults))
		slices.Sort(want)
		for _, c := range []struct {
			col       string
			got, want any
		}{
			{"mx_secure", r.MXSecure, f.MXSecure}, {"dane_protected", r.DANEProtected, f.DANEProtected},
			{"dane_deliverable", r.DANEDeliverable, f.DANEDeliverable}, {"mta_sts_record", r.MTASTSRecord, f.MTASTSRecord},
			{"mta_sts_policy_ok", r.MTASTSPolicyOK, f.MTASTSPolicyOK}, {"mta_sts_enforce", r.MTASTSEnforce, f.MTASTSEnforce},
			{"mta_sts_deliverable", r.MTASTSDeliverable, f.MTASTSDeliverable}, {"tlsrpt_record", r.TLSRPTRecord, f.TLSRPTRecord},
			{"auth_policy", r.AuthPolicy, auth[f.AuthPolicy]}, {"tlsrpt_results", got, want},
		} {
			if !reflect.DeepEqual(comparable(c.got), comparable(c.want)) {
				report("domains.parquet %s: %s = %v, truth %v", r.Domain, c.col, c.got, c.want)
			}
		}
	}
	if len(domains) != len(truth.Domains) {
		report("domains.parquet has %d rows, the truth %d domains", len(domains), len(truth.Domains))
	}
	dane := map[string]lab.TruthHost{}
	for _, h := range truth.Hosts {
		if reachable[survey.TargetKey(h.IP, h.MXHost)] {
			dane[survey.TargetKey(h.IP, h.MXHost)] = h
		}
	}
	hosts, err := parquet.ReadFile[analyze.HostRow](filepath.Join(reportDir, "hosts.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range hosts {
		h, ok := dane[survey.TargetKey(r.IP, r.MXHost)]
		if !ok {
			continue // behind the MX cap: checkAgainstTruth reports a probe row there
		}
		d := h.DANE
		if r.TLSAPresent != d.TLSAPresent || r.TLSASecure != d.TLSASecure || r.TLSABogus != d.TLSABogus ||
			r.DANEValid != d.DANEValid || r.DANEResult != d.Failure {
			report("hosts.parquet %s %s: tlsa present/secure/bogus %v/%v/%v dane_valid %v dane_result %q; truth %+v",
				r.IP, r.MXHost, r.TLSAPresent, r.TLSASecure, r.TLSABogus, r.DANEValid, r.DANEResult, d)
		}
	}
	t.Logf("verdicts: %d domains and %d hosts compared with the truth, %d mismatches", len(domains), len(hosts), bad)
}

// truthFigures counts the summary's figures from the truth's own facts.
func truthFigures(truth *lab.Truth, reachable map[string]bool) (hosts, domains map[string]int64) {
	hosts = map[string]int64{}
	// Every figure the truth can state starts at zero, so a figure the
	// analyzer counts where the truth has none is caught too.
	for _, k := range []string{"total", "skipped", "probed", "connected", "banner_host_present", "banner_is_mx",
		"starttls_offered", "tls_ok", "with_cert", "trusted", "self_signed", "expired", "not_yet_valid", "wildcard",
		"wildcard_used", "cn_only", "match_mx", "match_banner", "match_both", "match_mx_only", "match_banner_only",
		"match_neither", "match_ehlo", "match_post_tls_ehlo", "match_ptr", "valid_for_mx"} {
		hosts[k] = 0
	}
	type tfacts struct {
		probed, starttls, valid bool
	}
	byTarget := map[string]tfacts{}
	for _, h := range truth.Hosts {
		k := survey.TargetKey(h.IP, h.MXHost)
		if !reachable[k] {
			continue
		}
		hosts["total"]++
		probed := h.Outcome != survey.OutcomeSkipped
		if !probed {
			hosts["skipped"]++
		} else {
			hosts["probed"]++
			if h.Outcome != survey.OutcomeConnect {
				hosts["connected"]++
			}
			if h.BannerHost != "" {
				hosts["banner_host_present"]++
				if h.BannerHost == h.MXHost {
					hosts["banner_is_mx"]++
				}
			}
		}
		if h.STARTTLSOffered {
			hosts["starttls_offered"]++
		}
		if h.TLSVersion != "" {
			hosts["tls_ok"]++
		}
		tf := tfacts{probed: probed, starttls: h.STARTTLSOffered}
		if f := h.Facts; f != nil {
			hosts["with_cert"]++
			count := func(key string, v bool) {
				if v {
					hosts[key]++
				}
			}
			count("trusted", f.Trusted)
			count("self_signed", f.SelfSigned)
			count("expired", f.Expired)
			count("not_yet_valid", f.NotYetValid)
			count("wildcard", f.Wildcard)
			count("wildcard_used", f.WildcardUsed)
			count("cn_only", f.CNOnly)
			count("match_mx", f.MatchMX)
			count("match_banner", f.MatchBanner)
			count("match_both", f.MatchMX && f.MatchBanner)
			count("match_mx_only", f.MatchMX && !f.MatchBanner)
			count("match_banner_only", !f.MatchMX && f.MatchBanner)
			count("match_neither", !f.MatchMX && !f.MatchBanner)
			count("match_ehlo", f.MatchEHLO)
			count("match_post_tls_ehlo", f.MatchPostTLSEHLO)
			count("match_ptr", f.MatchPTR)
			count("valid_for_mx", f.ValidForMX)
			tf.valid = f.ValidForMX
		}
		byTarget[k] = tf
	}
	domains = map[string]int64{}
	for _, k := range []string{"total", "with_mx", "null_mx", "no_mx", "dns_error", "implicit_mx", "with_probed_mx",
		"starttls_all_mx", "any_mx_valid", "primary_mx_valid"} {
		domains[k] = 0
	}
	for _, d := range truth.Domains {
		domains["total"]++
		switch d.DNSStatus {
		case survey.DNSOK:
			domains["with_mx"]++
		case survey.DNSNullMX:
			domains["null_mx"]++
		case survey.DNSNoMX:
			domains["no_mx"]++
		default:
			domains["dns_error"]++
		}
		if d.ImplicitMX {
			domains["implicit_mx"]++
		}
		if d.DNSStatus != survey.DNSOK {
			continue
		}
		mx := capMX(d.MX)
		primaryPref := int32(-1)
		for _, m := range mx {
			if primaryPref < 0 || m.Preference < primaryPref {
				primaryPref = m.Preference
			}
		}
		var anyProbed, allStartTLS, anyValid = false, true, false
		var primaryProbed, primaryAllValid = false, true
		for _, m := range mx {
			for _, ip := range m.IPs {
				tf := byTarget[survey.TargetKey(ip, m.Host)]
				if !tf.probed {
					continue
				}
				anyProbed = true
				allStartTLS = allStartTLS && tf.starttls
				anyValid = anyValid || tf.valid
				if m.Preference == primaryPref {
					primaryProbed = true
					primaryAllValid = primaryAllValid && tf.valid
				}
			}
		}
		if anyProbed {
			domains["with_probed_mx"]++
			if allStartTLS {
				domains["starttls_all_mx"]++
			}
		}
		if anyValid {
			domains["any_mx_valid"]++
		}
		if primaryProbed && primaryAllValid {
			domains["primary_mx_valid"]++
		}
	}
	return hosts, domains
}
