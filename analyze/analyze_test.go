package analyze

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/analyze/internal/testpki"
	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"

	"github.com/parquet-go/parquet-go"
)

// writeRows writes rows as one Parquet part the way the scanner does.
func writeRows[T any](t *testing.T, path string, rows []T) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := parquet.NewGenericWriter[T](f, parquet.Compression(&parquet.Zstd))
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

const evil = "<script>alert(1)</script>"

var probeTime = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	scan  string // scan directory
	roots string // PEM bundle
}

// makeFixture builds a scan with one probe row per counted case; the
// comments give the case each row is there for.
func makeFixture(t *testing.T) fixture {
	t.Helper()
	dir := t.TempDir()
	root := testpki.Make(testpki.Spec{CN: "Test Root", Org: "Test PKI", IsCA: true}, nil)
	inter := testpki.Make(testpki.Spec{CN: "Test Issuing CA", Org: "Test PKI", IsCA: true}, root)
	other := testpki.Make(testpki.Spec{CN: "Other Root", IsCA: true}, nil)
	evilCA := testpki.Make(testpki.Spec{CN: evil, IsCA: true}, nil)
	leaf := func(s testpki.Spec, issuer *testpki.Cert) [][]byte {
		c := testpki.Make(s, issuer)
		if issuer == nil {
			return testpki.Chain(c)
		}
		return testpki.Chain(c, issuer)
	}
	rootsPEM := filepath.Join(dir, "roots.pem")
	if err := os.WriteFile(rootsPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.DER}), 0o644); err != nil {
		t.Fatal(err)
	}

	ok := func(ip, mx, banner, bannerHost string, chain [][]byte) survey.ProbeRow {
		return survey.ProbeRow{
			IP: ip, Port: 25, MXHost: mx, StartedAt: probeTime, Outcome: survey.OutcomeOK,
			Banner: banner, BannerCode: 220, BannerHost: bannerHost,
			STARTTLSOffered: true, TLSVersion: "TLSv1.3", TLSGroup: "X25519", CertChain: chain,
		}
	}
	var rows []survey.ProbeRow
	// 1: everything names the MX host; trusted; valid.
	r := ok("192.0.2.1", "mx1.example.com", "220 mx1.example.com ESMTP Postfix", "mx1.example.com",
		leaf(testpki.Spec{CN: "mx1.example.com", DNSNames: []string{"mx1.example.com"}}, inter))
	r.EHLOHost, r.PostTLSEHLOHost, r.PTRHost = "mx1.example.com", "mx1.example.com", "mx1.example.com"
	rows = append(rows, r)
	// 2: wildcard certificate covering MX and banner names.
	r = ok("192.0.2.2", "mx.example.net", "220 foo.example.net ESMTP Exim 4.96", "foo.example.net",
		leaf(testpki.Spec{CN: "*.example.net", DNSNames: []string{"*.example.net"}}, inter))
	r.EHLOHost, r.PTRHost = "foo.example.net", "host-2.isp.example"
	rows = append(rows, r)
	// 3: certificate for the banner name only (RSA key).
	r = ok("192.0.2.3", "mx.shared.example", "220 banner.host.example Microsoft ESMTP MAIL Service ready", "banner.host.example",
		leaf(testpki.Spec{CN: "banner.host.example", DNSNames: []string{"banner.host.example"}, RSABits: 2048}, inter))
	r.EHLOHost = "banner.host.example"
	r.TLSGroup = "CurveP384" // Go's spelling, as scans before the tls_group vocabulary wrote it
	rows = append(rows, r)
	// 4: self-signed localhost certificate, TLS 1.2, P-256 in Go's old spelling.
	r = ok("192.0.2.4", "mx.self.example", "220 mail.self.example ESMTP Sendmail 8.15", "mail.self.example",
		leaf(testpki.Spec{CN: "localhost", DNSNames: []string{"localhost"}}, nil))
	r.TLSVersion, r.TLSGroup = "TLSv1.2", "CurveP256"
	rows = append(rows, r)
	// 5: expired; P-256 in the documented spelling.
	r = ok("192.0.2.5", "mx.expired.example", "220 mx.expired.example ESMTP OpenSMTPD", "mx.expired.example",
		leaf(testpki.Spec{CN: "mx.expired.example", DNSNames: []string{"mx.expired.example"}, NotAfter: probeTime.Add(-time.Hour)}, inter))
	r.TLSGroup = "P-256"
	rows = append(rows, r)
	// 6: not yet valid, behind a masking firewall.
	rows = append(rows, ok("192.0.2.6", "mx.future.example", "220 ********************************2*0*0", "",
		leaf(testpki.Spec{CN: "mx.future.example", DNSNames: []string{"mx.future.example"}, NotBefore: probeTime.Add(time.Hour)}, inter)))
	// 7: CN-only certificate; the banner names an address literal.
	rows = append(rows, ok("192.0.2.7", "mx.cn.example", "220 [192.0.2.7] ESMTP qmail", "[192.0.2.7]",
		leaf(testpki.Spec{CN: "mx.cn.example"}, inter)))
	// 8: unknown CA.
	rows = append(rows, ok("192.0.2.8", "mx.unknown.example", "220 mx.unknown.example ESMTP Haraka/3.0", "mx.unknown.example",
		leaf(testpki.Spec{CN: "mx.unknown.example", DNSNames: []string{"mx.unknown.example"}}, other)))
	// 9: handshake done, leaf unparseable.
	r = ok("192.0.2.9", "mx.bad.example", "220 mx.bad.example ESMTP Zimbra Postfix", "mx.bad.example", [][]byte{[]byte("\x30\x03bad")})
	r.ErrorClass = survey.ErrCertParse
	rows = append(rows, r)
	// 10: no STARTTLS.
	rows = append(rows, survey.ProbeRow{IP: "192.0.2.10", Port: 25, MXHost: "mx.nostarttls.example", StartedAt: probeTime,
		Outcome: survey.OutcomeSTARTTLS, ErrorClass: survey.ErrNoSTARTTLS,
		Banner: "220 mx.nostarttls.example ESMTP", BannerHost: "mx.nostarttls.example",
		EHLOReply: "250-mx.nostarttls.example Hello\r\n250 SIZE 1000"})
	// 11: connection timeout.
	rows = append(rows, survey.ProbeRow{IP: "192.0.2.11", Port: 25, MXHost: "mx.down.example", StartedAt: probeTime,
		Outcome: survey.OutcomeConnect, ErrorClass: survey.ErrTimeout})
	// 12: TLS alert.
	rows = append(rows, survey.ProbeRow{IP: "192.0.2.12", Port: 25, MXHost: "mx.tlsfail.example", StartedAt: probeTime,
		Outcome: survey.OutcomeTLS, ErrorClass: survey.ErrTLSAlert, STARTTLSOffered: true,
		Banner: "220 mx.tlsfail.example ESMTP Postfix (Debian/GNU)", BannerHost: "mx.tlsfail.example"})
	// 13, 14: skipped.
	rows = append(rows, survey.ProbeRow{IP: "10.0.0.1", Port: 25, MXHost: "mx.blocked.example", Outcome: survey.OutcomeSkipped, ErrorClass: survey.ErrBlocked})
	rows = append(rows, survey.ProbeRow{IP: "2001:db8::1", Port: 25, MXHost: "mx1.example.com", Outcome: survey.OutcomeSkipped, ErrorClass: survey.ErrIPv6Disabled})
	// 15: hostile text in the banner and the issuer.
	rows = append(rows, ok("192.0.2.15", "mx.evil.example", "220 "+evil+" ESMTP", "",
		leaf(testpki.Spec{CN: "mx.evil.example", DNSNames: []string{"mx.evil.example"}}, evilCA)))
	// 16: matches PTR and post-TLS EHLO names only; Google named in the EHLO reply.
	r = ok("192.0.2.16", "mx.ptr.example", "220 ESMTP ready", "",
		leaf(testpki.Spec{CN: "mx.other.example", DNSNames: []string{"mx.other.example"}}, inter))
	r.EHLOHost, r.PostTLSEHLOHost, r.PTRHost = "mx.ptr.example", "mx.other.example", "mx.other.example"
	r.EHLOReply, r.TLSGroup = "250-mx.ptr.example at your service (mx.google.com)\r\n250 STARTTLS", "X25519MLKEM768"
	rows = append(rows, r)
	// 17: handshake done, no certificate recorded.
	r = ok("192.0.2.17", "mx.nocert.example", "220 mx.nocert.example ESMTP", "mx.nocert.example", nil)
	r.TLSGroup = ""
	rows = append(rows, r)
	// Two parts, to exercise part ordering.
	writeRows(t, filepath.Join(dir, "scan", "probes", "part-00000.parquet"), rows[:8])
	writeRows(t, filepath.Join(dir, "scan", "probes", "part-00001.parquet"), rows[8:])

	mx := func(domain string, rank int64, status string, host string, pref int32, ip string) survey.MXRow {
		return survey.MXRow{Domain: domain, Rank: rank, DNSStatus: status, MXHost: host, MXPreference: pref, IP: ip}
	}
	mxRows := []survey.MXRow{
		mx("example.com", 1, survey.DNSOK, "mx1.example.com", 10, "192.0.2.1"),
		mx("example.com", 1, survey.DNSOK, "mx1.example.com", 10, "2001:db8::1"),
		mx("example.net", 2, survey.DNSOK, "mx.example.net", 10, "192.0.2.2"),
		mx("example.net", 2, survey.DNSOK, "mx.self.example", 20, "192.0.2.4"),
		mx("shared.example", 3, survey.DNSOK, "mx.shared.example", 5, "192.0.2.3"),
		mx("shared.example", 3, survey.DNSOK, "mx.expired.example", 5, "192.0.2.5"),
		{Domain: "mx.cn.example", Rank: 4, DNSStatus: survey.DNSOK, ImplicitMX: true, MXHost: "mx.cn.example", IP: "192.0.2.7"},
		mx("nostarttls.example", 5, survey.DNSOK, "mx.nostarttls.example", 10, "192.0.2.10"),
		mx("nostarttls.example", 5, survey.DNSOK, "mx1.example.com", 20, "192.0.2.1"),
		mx("down.example", 6, survey.DNSOK, "mx.down.example", 10, "192.0.2.11"),
		mx("down.example", 6, survey.DNSOK, "mx.blocked.example", 20, "10.0.0.1"),
		mx("blocked.example", 7, survey.DNSOK, "mx.blocked.example", 10, "10.0.0.1"),
		mx("nullmx.example", 8, survey.DNSNullMX, "", 0, ""),
		mx("nomx.example", 9, survey.DNSNoMX, "", 0, ""),
		mx("nx.example", 10, survey.DNSNXDomain, "", 0, ""),
	}
	mxRows2 := []survey.MXRow{
		mx("servfail.example", 11, survey.DNSServfail, "", 0, ""),
		mx("evil.example", 12, survey.DNSOK, "x."+evil, 10, ""),
		mx("evil.example", 12, survey.DNSOK, "mx.evil.example", 20, "192.0.2.15"),
		mx("notprobed.example", 13, survey.DNSOK, "mx.notprobed.example", 10, "192.0.2.99"),
	}
	writeRows(t, filepath.Join(dir, "scan", "mx", "part-00000.parquet"), mxRows)
	writeRows(t, filepath.Join(dir, "scan", "mx", "part-00001.parquet"), mxRows2)
	// A temporary of a running scan must be ignored.
	writeRows(t, filepath.Join(dir, "scan", "mx", ".part-00002.parquet.tmp"), mxRows2)

	ended := probeTime.Add(time.Hour)
	m, err := json.Marshal(map[string]any{
		"tool": "mxsurvey", "tool_version": "v0.1.0", "schema_version": survey.SchemaVersion,
		"started": probeTime.Add(-time.Minute), "ended": ended, "status": "complete", "counts": map[string]int{"x": 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "scan", "manifest.json"), m, 0o644); err != nil {
		t.Fatal(err)
	}
	return fixture{scan: filepath.Join(dir, "scan"), roots: rootsPEM}
}

var wantHosts = map[string]int64{
	"total": 17, "skipped": 2, "probed": 15, "connected": 14, "greeted": 14,
	"banner_host_present": 11, "banner_is_mx": 7,
	"starttls_offered": 13, "tls_ok": 12, "with_cert": 10, "cert_unparseable": 1, "cert_missing": 1,
	"trusted": 5, "self_signed": 1, "expired": 1, "not_yet_valid": 1, "wildcard": 1, "wildcard_used": 1, "cn_only": 1,
	"match_mx": 7, "match_banner": 5, "match_mx_only": 3, "match_banner_only": 1, "match_both": 4, "match_neither": 2,
	"match_ehlo": 3, "match_post_tls_ehlo": 2, "match_ptr": 2, "valid_for_mx": 3,
}

var wantDomains = map[string]int64{
	"total": 13, "with_mx": 9, "implicit_mx": 1, "null_mx": 1, "no_mx": 1, "dns_error": 2,
	"with_probed_mx": 7, "starttls_all_mx": 5, "primary_mx_valid": 3, "any_mx_valid": 4,
}

var wantTop = map[string]string{
	"issuers":         "Test Issuing CA / Test PKI=7 " + evil + "=1 Other Root=1 localhost=1",
	"key_types":       "ECDSA 256=9 RSA 2048=1",
	"tls_versions":    "TLSv1.3=11 TLSv1.2=1",
	"tls_groups":      "X25519=7 P-256=2 P-384=1 X25519MLKEM768=1",
	"mx_providers":    "blocked.example=1 cn.example=1 down.example=1 example.com=1 example.net=1 expired.example=1 nostarttls.example=1 notprobed.example=1 x." + evil + "=1",
	"server_software": "unknown=3 Postfix=2 Cisco (masked ****)=1 Exim=1 Google=1 Haraka=1 Microsoft ESMTP=1 OpenSMTPD=1 Sendmail=1 Zimbra=1 qmail=1",
	"outcomes":        "ok=12 skipped=2 connect=1 starttls=1 tls=1",
	"error_classes":   "blocked=1 cert_parse=1 ipv6_disabled=1 no_starttls=1 timeout=1 tls_alert=1",
}

func topString(t TopList) string {
	var parts []string
	for _, e := range t.Entries {
		parts = append(parts, e.Name+"="+itoa(e.Count))
	}
	return strings.Join(parts, " ")
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func checkCounts(t *testing.T, section string, got, want map[string]int64) {
	t.Helper()
	for k, w := range want {
		if g, ok := got[k]; !ok || g != w {
			t.Errorf("%s.%s = %d (present %v), want %d", section, k, g, ok, w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected key %s.%s", section, k)
		}
	}
}

func TestAnalyzeEndToEnd(t *testing.T) {
	fx := makeFixture(t)
	out := filepath.Join(t.TempDir(), "report")
	if _, err := Analyze(context.Background(), Options{Dirs: []string{fx.scan}, RootsFile: fx.roots, OutDir: out}); err != nil {
		t.Fatal(err)
	}
	// summary.json, read back as a reader would.
	data, err := os.ReadFile(filepath.Join(out, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s Summary
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	checkCounts(t, "hosts", s.Hosts, wantHosts)
	checkCounts(t, "domains", s.Domains, wantDomains)
	wantScan := ScanInfo{ToolVersion: "v0.1.0", SchemaVersion: survey.SchemaVersion, Started: "2025-06-01T11:59:00Z",
		Ended: "2025-06-01T13:00:00Z", Status: "complete", Dirs: []string{fx.scan}}
	if g, w := mustJSON(t, s.Scan), mustJSON(t, wantScan); g != w {
		t.Errorf("scan = %s, want %s", g, w)
	}
	for name, want := range wantTop {
		if got := topString(s.Top[name]); got != want {
			t.Errorf("top %s = %q, want %q", name, got, want)
		}
	}
	if len(s.Top) != len(wantTop) {
		t.Errorf("top lists: %d, want %d", len(s.Top), len(wantTop))
	}
	if it := s.Top["issuers"]; it.Total != 10 || it.Distinct != 4 || it.Other != 0 {
		t.Errorf("issuers list header = %+v", it)
	}

	// CSV exports: header and a few rows.
	hosts := readCSV(t, filepath.Join(out, "hosts.csv"))
	wantHeader := "ip,port,mx_host,ptr_host,outcome,error_class,banner_host,ehlo_host,post_tls_ehlo_host,starttls_offered," +
		"tls_version,tls_group,cert_sha256,cert_subject_cn,cert_san_dns,cert_issuer,cert_key_type,cert_key_bits,issuer,with_cert,trusted," +
		"self_signed,expired,not_yet_valid,wildcard,wildcard_used,cn_only,match_mx,match_banner,match_ehlo," +
		"match_post_tls_ehlo,match_ptr,valid_for_mx,server_software,mx_provider," +
		"tlsa_present,tlsa_secure,tlsa_bogus,dane_valid,dane_result"
	if got := strings.Join(hosts[0], ","); got != wantHeader {
		t.Errorf("hosts.csv header:\n got %s\nwant %s", got, wantHeader)
	}
	if len(hosts) != 18 {
		t.Fatalf("hosts.csv has %d lines, want 18", len(hosts))
	}
	col := func(name string) int {
		for i, h := range hosts[0] {
			if h == name {
				return i
			}
		}
		t.Fatalf("no column %s", name)
		return -1
	}
	row2 := hosts[2] // the wildcard host
	for name, want := range map[string]string{
		"ip": "192.0.2.2", "mx_host": "mx.example.net", "cert_san_dns": "*.example.net", "wildcard": "true",
		"wildcard_used": "true", "match_mx": "true", "valid_for_mx": "true", "server_software": "Exim",
		"mx_provider": "example.net", "cert_key_type": "ECDSA", "cert_key_bits": "256", "issuer": "Test Issuing CA / Test PKI",
		"cert_issuer": "CN=Test Issuing CA,O=Test PKI",
	} {
		if got := row2[col(name)]; got != want {
			t.Errorf("hosts.csv row 2 %s = %q, want %q", name, got, want)
		}
	}
	for line, want := range map[int]string{3: "P-384", 4: "P-256", 5: "P-256", 16: "X25519MLKEM768"} {
		if got := hosts[line][col("tls_group")]; got != want {
			t.Errorf("hosts.csv row %d tls_group = %q, want %q", line, got, want)
		}
	}
	if got := hosts[13][col("outcome")]; got != "skipped" {
		t.Errorf("hosts.csv row 13 outcome = %q", got)
	}
	if got := len(hosts[1][col("cert_sha256")]); got != 64 {
		t.Errorf("cert_sha256 length %d", got)
	}
	domains := readCSV(t, filepath.Join(out, "domains.csv"))
	// The fixture's manifest does not say the scan had policies on.
	const unmeasured = ",false,false,false,false,false,,,false,false,false,,"
	if got := strings.Join(domains[0], ","); got != "domain,rank,dns_status,implicit_mx,mx_count,target_count,probed,"+
		"starttls_all_mx,primary_mx_valid,any_mx_valid,primary_mx_host,mx_provider,mx_secure,dane_protected,dane_deliverable,"+
		"mta_sts_record,mta_sts_policy_ok,mta_sts_mode,mta_sts_failure,mta_sts_enforce,mta_sts_deliverable,tlsrpt_record,"+
		"auth_policy,tlsrpt_results" {
		t.Errorf("domains.csv header: %s", got)
	}
	if len(domains) != 14 {
		t.Fatalf("domains.csv has %d lines, want 14", len(domains))
	}
	if got := strings.Join(domains[1], ","); got != "example.com,1,ok,false,1,2,1,true,true,true,mx1.example.com,example.com"+unmeasured {
		t.Errorf("domains.csv example.com: %s", got)
	}
	if got := strings.Join(domains[3], ","); got != "shared.example,3,ok,false,2,2,2,true,false,false,mx.expired.example,expired.example"+unmeasured {
		t.Errorf("domains.csv shared.example: %s", got)
	}
	if got := strings.Join(domains[12], ","); got != "evil.example,12,ok,false,2,1,1,true,false,false,x."+evil+",x."+evil+unmeasured {
		t.Errorf("domains.csv evil.example: %s", got)
	}
	top := readCSV(t, filepath.Join(out, "top_tls_versions.csv"))
	if got := mustJSON(t, top); got != `[["name","count"],["TLSv1.3","11"],["TLSv1.2","1"]]` {
		t.Errorf("top_tls_versions.csv = %s", got)
	}

	// The Parquet exports read back.
	hp := readParquet[HostRow](t, filepath.Join(out, "hosts.parquet"))
	if len(hp) != 17 || hp[0].MXHost != "mx1.example.com" || !hp[0].ValidForMX || !hp[0].MatchPTR || hp[6].CNOnly != true {
		t.Errorf("hosts.parquet: %d rows, first %+v", len(hp), hp[0])
	}
	dp := readParquet[DomainRow](t, filepath.Join(out, "domains.parquet"))
	if len(dp) != 13 || dp[3].Domain != "mx.cn.example" || !dp[3].ImplicitMX || !dp[3].PrimaryMXValid {
		t.Errorf("domains.parquet: %d rows, row 3 %+v", len(dp), dp[3])
	}

	// Reports: figures with denominators, and hostile text escaped.
	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	html, err := os.ReadFile(filepath.Join(out, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| Matches the MX name only | 3 of 10 (30.0%) | hosts.with_cert |",
		"| Primary MX valid for its name on every probed target | domains.primary_mx_valid | 3 of 9 (33.3%) | domains.with_mx |",
		"| 2 | P-256 | 2 of 11 (18.2%) |"} {
		if !bytes.Contains(md, []byte(want)) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	if bytes.Contains(md, []byte("<script")) {
		t.Errorf("report.md contains raw <script")
	}
	if bytes.Contains(md, []byte("CurveP")) || bytes.Contains(html, []byte("CurveP")) {
		t.Errorf("a report spells a group as Go does (CurveP256), not as docs/schema.md does")
	}
	checkHTML(t, html)
	if !bytes.Contains(html, []byte("3 of 10 (30.0%)")) || !bytes.Contains(html, []byte("<svg")) {
		t.Errorf("report.html lacks the headline figure or a chart")
	}
}

// checkHTML asserts that no data made it into report.html as markup: the
// report has no script of its own, so any "<script" is an injection, and the
// escaped form must be present instead.
func checkHTML(t *testing.T, html []byte) {
	t.Helper()
	if bytes.Contains(bytes.ToLower(html), []byte("<script")) {
		i := bytes.Index(bytes.ToLower(html), []byte("<script"))
		t.Errorf("report.html contains an executable <script: %q", html[max(0, i-80):min(len(html), i+80)])
	}
	if !bytes.Contains(html, []byte("&lt;script&gt;alert(1)&lt;/script&gt;")) {
		t.Errorf("report.html lacks the escaped hostile issuer")
	}
	if bytes.Contains(html, []byte("https://")) || bytes.Contains(html, []byte("src=")) {
		t.Errorf("report.html refers to external assets")
	}
}

func TestCompare(t *testing.T) {
	fx := makeFixture(t)
	tmp := t.TempDir()
	first := filepath.Join(tmp, "first")
	if _, err := Analyze(context.Background(), Options{Dirs: []string{fx.scan}, RootsFile: fx.roots, OutDir: first}); err != nil {
		t.Fatal(err)
	}
	// An older summary from a previous analyzer: a smaller scan, and one key
	// that did not exist yet.
	var old map[string]any
	data, _ := os.ReadFile(filepath.Join(first, "summary.json"))
	if err := json.Unmarshal(data, &old); err != nil {
		t.Fatal(err)
	}
	old["hosts"].(map[string]any)["total"] = 10
	delete(old["hosts"].(map[string]any), "greeted")
	oldPath := filepath.Join(tmp, "old-summary.json")
	if err := os.WriteFile(oldPath, []byte(mustJSON(t, old)), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, old string
		total     string
	}{
		{"summary.json", oldPath, `{"old":10,"new":17,"delta":7}`},
		{"scan directory", fx.scan, `{"old":17,"new":17,"delta":0}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(tmp, strings.ReplaceAll(tc.name, " ", "_"))
			_, err := Analyze(context.Background(), Options{Dirs: []string{fx.scan}, RootsFile: fx.roots, Compare: tc.old, OutDir: out})
			if err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(filepath.Join(out, "compare.json"))
			if err != nil {
				t.Fatal(err)
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, data); err != nil {
				t.Fatal(err)
			}
			var c map[string]map[string]json.RawMessage
			if err := json.Unmarshal(compact.Bytes(), &c); err != nil {
				t.Fatal(err)
			}
			if got := string(c["hosts"]["total"]); got != tc.total {
				t.Errorf("hosts.total = %s, want %s", got, tc.total)
			}
			for _, f := range hostFigures {
				if _, ok := c["hosts"][f.Key]; ok != (f.Needs == measuredBasics) {
					t.Errorf("compare.json lacks hosts.%s", f.Key)
				}
			}
			for _, f := range domainFigures {
				if f.Needs > measuredBasics {
					if got, ok := c["domains"][f.Key]; ok {
						t.Errorf("domains.%s = %s: neither scan measured it", f.Key, got)
					}
					continue
				}
				if got := string(c["domains"][f.Key]); !strings.HasSuffix(got, `"delta":0}`) {
					t.Errorf("domains.%s = %s, want no change", f.Key, got)
				}
			}
			wantGreeted := `{"old":14,"new":14,"delta":0}`
			if tc.old == oldPath {
				wantGreeted = `{"old":null,"new":14,"delta":null}`
			}
			if got := string(c["hosts"]["greeted"]); got != wantGreeted {
				t.Errorf("hosts.greeted = %s, want %s", got, wantGreeted)
			}
			var tv map[string]Delta
			if err := json.Unmarshal(c["top"]["tls_versions"], &tv); err != nil {
				t.Fatal(err)
			}
			if d := tv["TLSv1.3"]; d.Old == nil || *d.Old != 11 || d.Delta == nil || *d.Delta != 0 {
				t.Errorf("top.tls_versions = %s", c["top"]["tls_versions"])
			}
			html, err := os.ReadFile(filepath.Join(out, "report.html"))
			if err != nil {
				t.Fatal(err)
			}
			checkHTML(t, html)
			if !bytes.Contains(html, []byte("Comparison with an earlier scan")) {
				t.Errorf("report.html lacks the comparison")
			}
			md, _ := os.ReadFile(filepath.Join(out, "report.md"))
			want := "| hosts.total | 17 | 17 | +0 |"
			if tc.old == oldPath {
				want = "| hosts.skipped | 2 of 10 (20.0%) | 2 of 17 (11.8%) | +0 (-8.2 pp) |"
			}
			if !bytes.Contains(md, []byte(want)) {
				t.Errorf("report.md lacks %q", want)
			}
		})
	}
}

func TestProgress(t *testing.T) {
	fx := makeFixture(t)
	var progress bytes.Buffer
	if _, err := Analyze(context.Background(), Options{Dirs: []string{fx.scan}, RootsFile: fx.roots, Progress: &progress}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(progress.String(), "probes: 17 rows read") || !strings.Contains(progress.String(), "mx: 19 rows read") {
		t.Errorf("no progress:\n%s", progress.String())
	}
}

// Shards of one scan are merged: splitting the fixture's probe parts across
// two directories gives the same counts.
func TestShards(t *testing.T) {
	fx := makeFixture(t)
	shard := filepath.Join(t.TempDir(), "shard2")
	if err := os.MkdirAll(filepath.Join(shard, "probes"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(fx.scan, "probes", "part-00001.parquet"), filepath.Join(shard, "probes", "part-00000.parquet")); err != nil {
		t.Fatal(err)
	}
	s, err := Analyze(context.Background(), Options{Dirs: []string{fx.scan, shard}, RootsFile: fx.roots})
	if err != nil {
		t.Fatal(err)
	}
	checkCounts(t, "hosts", s.Hosts, wantHosts)
	checkCounts(t, "domains", s.Domains, wantDomains)
	if s.Scan.Status != "complete,unknown" || s.Scan.Ended != "" {
		t.Errorf("merged scan info: %+v", s.Scan)
	}
}

func TestSoftware(t *testing.T) {
	for _, tc := range []struct{ banner, ehlo, want string }{
		{"", "", ""},
		{"220 mx.google.com ESMTP a1si", "", "Google"},
		{"220 host ESMTP Postfix (Ubuntu)", "", "Postfix"},
		{"220-host ESMTP Exim 4.96 #2\r\n220 spam is not welcome", "", "Exim"},
		{"220 ****************", "", softwareCiscoMasked},
		{"220 ***", "", softwareUnknown},
		{"220 eximius.example ESMTP", "", softwareUnknown},
		{"220 host ESMTP", "250-host Hello, Haraka is at your service.", "Haraka"},
		{"220 host ESMTP netqmail", "", "qmail"},
		{"220 zimbra.example ESMTP Postfix", "", "Zimbra"},
		{"220 BN8NAM11FT036.mail.protection.outlook.com MICROSOFT ESMTP MAIL Service ready", "", "Microsoft ESMTP"},
		{"220 host ESMTP qmailer postfix_like", "", softwareUnknown},    // no word boundary after either
		{"220 host ESMTP", "250-host\r\n250-X-POSTFIX-LIKE", "Postfix"}, // '-' is a boundary
	} {
		if got := serverSoftware(tc.banner, tc.ehlo); got != tc.want {
			t.Errorf("serverSoftware(%q, %q) = %q, want %q", tc.banner, tc.ehlo, got, tc.want)
		}
	}
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func readParquet[T any](t *testing.T, path string) []T {
	t.Helper()
	var out []T
	if err := store.ReadBatches(context.Background(), path, func(rows []T) error {
		out = append(out, rows...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
