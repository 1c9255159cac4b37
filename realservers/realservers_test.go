package realservers

// The scan of the lab with `mxsurvey scan` and the analysis of that scan
// with `mxsurvey analyze` (the command as users run it, built by the test),
// checked against the independent evidence of evidence_test.go and the
// truth of lab_test.go's specs.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/mxsurvey/mxsurvey/analyze"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// tls13Suites are the TLS 1.3 cipher suites (RFC 8446 §B.4) Go can negotiate.
// The suite is the client's choice among the server's (Postfix leaves
// tls_preempt_cipherlist off), so the scanner's need not equal openssl's.
var tls13Suites = []string{"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// mxsurvey runs the mxsurvey command, built once per test binary, and
// returns its error with what it wrote to stderr.
func mxsurvey(ctx context.Context, t *testing.T, args ...string) error {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mxsurvey-realservers-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "mxsurvey")
		if out, err := exec.Command("go", "build", "-o", binPath, "../cmd/mxsurvey").CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building mxsurvey: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("mxsurvey %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return nil
}

// readParts reads every DIR/part-*.parquet of one table.
func readParts[T any](t *testing.T, dir string) []T {
	t.Helper()
	parts, err := filepath.Glob(filepath.Join(dir, "part-*.parquet"))
	if err != nil || len(parts) == 0 {
		t.Fatalf("no parquet parts in %s (%v)", dir, err)
	}
	var rows []T
	for _, p := range parts {
		r, err := parquet.ReadFile[T](p)
		if err != nil {
			t.Fatalf("reading %s: %v", p, err)
		}
		rows = append(rows, r...)
	}
	return rows
}

// lines splits stored reply text into its lines, whatever line terminator
// the scanner kept ("\r\n" as received, "\n", or none on the last line).
func lines(s string) []string {
	s = strings.TrimRight(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// testScan scans the lab's zone and checks every row.
func testScan(ctx context.Context, t *testing.T, l *lab, ev map[string]*evidence) {
	domains := []string{multiMXDomain}
	for _, s := range l.servers {
		domains = append(domains, s.Domain)
	}
	sort.Strings(domains)
	in := filepath.Join(l.dir, "domains.txt")
	writeFile(t, in, strings.Join(domains, "\n")+"\n", 0o644)
	out := filepath.Join(l.dir, "scan")

	args := []string{
		"-resolver", fmt.Sprintf("%s:%d", dnsAddr, dnsPort),
		"-port", fmt.Sprint(l.port),
		"-allow", "127.0.0.0/8",
		"-ehlo-name", ehloName,
		"-timeout", "20s", "-step-timeout", "5s", "-dns-timeout", "2s",
		"-o", out, "-quiet", in,
	}
	scanCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	started := time.Now()
	if err := mxsurvey(scanCtx, t, append([]string{"scan"}, args...)...); err != nil {
		t.Fatal(err)
	}
	finished := time.Now()
	t.Logf("scan took %v", finished.Sub(started).Round(time.Millisecond))

	t.Run("mx", func(t *testing.T) {
		rows := readParts[survey.MXRow](t, survey.MXDir(out))
		type key struct{ domain, host string }
		got := map[key]survey.MXRow{}
		for _, r := range rows {
			got[key{r.Domain, r.MXHost}] = r
		}
		want := map[key]struct {
			ip   string
			pref int32
		}{}
		for _, s := range l.servers {
			want[key{s.Domain, s.MX}] = struct {
				ip   string
				pref int32
			}{s.IP, 10}
		}
		want[key{multiMXDomain, l.servers[0].MX}] = struct {
			ip   string
			pref int32
		}{l.servers[0].IP, 10}
		want[key{multiMXDomain, l.servers[1].MX}] = struct {
			ip   string
			pref int32
		}{l.servers[1].IP, 20}
		if len(rows) != len(want) {
			t.Errorf("%d mx rows, want %d: %+v", len(rows), len(want), rows)
		}
		for k, w := range want {
			r, ok := got[k]
			if !ok {
				t.Errorf("no mx row for %s -> %s", k.domain, k.host)
				continue
			}
			if r.DNSStatus != survey.DNSOK || r.MXHostStatus != survey.DNSOK || r.IP != w.ip ||
				r.MXPreference != w.pref || r.ImplicitMX || r.IPVersion != 4 {
				t.Errorf("%s -> %s: %+v, want ok/ok %s pref %d", k.domain, k.host, r, w.ip, w.pref)
			}
		}
	})

	probes := readParts[survey.ProbeRow](t, survey.ProbesDir(out))
	byIP := map[string]survey.ProbeRow{}
	for _, r := range probes {
		if _, dup := byIP[r.IP]; dup {
			t.Errorf("two probe rows for %s (targets are (ip, mx_host), each server has one MX name)", r.IP)
		}
		byIP[r.IP] = r
	}
	if len(probes) != len(l.servers) {
		t.Errorf("%d probe rows, want %d", len(probes), len(l.servers))
	}
	for _, s := range l.servers {
		t.Run("probe/"+s.Key, func(t *testing.T) {
			r, ok := byIP[s.IP]
			if !ok {
				t.Fatalf("no probe row for %s (%s)", s.IP, s.MX)
			}
			checkProbe(t, s, ev[s.Key], l.docGroups, r, started, finished)
		})
	}

	t.Run("analyze", func(t *testing.T) { testAnalyze(ctx, t, l, out) })
}

// checkProbe compares one probe row with the evidence and the lab's truth.
func checkProbe(t *testing.T, s serverSpec, e *evidence, docGroups []docGroup, r survey.ProbeRow, started, finished time.Time) {
	errorf := func(field string, got, want any) {
		t.Helper()
		t.Errorf("%s = %#v, want %#v", field, got, want)
	}
	if r.Outcome != survey.OutcomeOK || r.ErrorClass != survey.ErrNone || r.Error != "" {
		t.Fatalf("outcome %q error_class %q error %q", r.Outcome, r.ErrorClass, r.Error)
	}
	if r.Port != int32(smtpPort()) || r.MXHost != s.MX || r.PTRHost != s.PTR {
		t.Errorf("port %d mx_host %q ptr_host %q, want %d %q %q", r.Port, r.MXHost, r.PTRHost, smtpPort(), s.MX, s.PTR)
	}
	if r.StartedAt.Before(started.Add(-time.Second)) || r.StartedAt.After(finished) {
		t.Errorf("started_at %v outside the scan [%v, %v]", r.StartedAt, started, finished)
	}

	// The greeting, line by line as the server sent it (the raw capture),
	// Exim's per-connection timestamp masked.
	got, want := lines(r.Banner), e.Raw.Greeting
	if s.BannerVaries {
		got, want = mapStrings(got, maskExim), mapStrings(want, maskExim)
	}
	if !slices.Equal(got, want) {
		errorf("banner", r.Banner, strings.Join(e.Raw.Greeting, "\r\n")+"\r\n")
	}
	if r.BannerCode != 220 {
		errorf("banner_code", r.BannerCode, 220)
	}
	if r.BannerHost != s.BannerHost {
		errorf("banner_host", r.BannerHost, s.BannerHost)
	}

	// EHLO before TLS.
	if r.EHLONameSent != ehloName || r.EHLOVerb != "EHLO" || r.EHLOCode != 250 {
		t.Errorf("ehlo_name_sent %q ehlo_verb %q ehlo_code %d", r.EHLONameSent, r.EHLOVerb, r.EHLOCode)
	}
	if !slices.Equal(lines(r.EHLOReply), e.Raw.EHLO) {
		errorf("ehlo_reply", r.EHLOReply, e.Raw.EHLO)
	}
	if r.EHLOHost != s.EHLOHost {
		errorf("ehlo_host", r.EHLOHost, s.EHLOHost)
	}
	if want := extensions(e.Raw.EHLO); !slices.Equal(r.EHLOExtensions, want) {
		errorf("ehlo_extensions", r.EHLOExtensions, want)
	}
	for _, kw := range []string{"STARTTLS", "PIPELINING", "SIZE", "8BITMIME"} {
		if !hasKeyword(r.EHLOExtensions, kw) {
			t.Errorf("ehlo_extensions %q lack %s", r.EHLOExtensions, kw)
		}
	}
	if !r.STARTTLSOffered || r.STARTTLSCode != 220 || !slices.Equal(lines(r.STARTTLSReply), e.Raw.STARTTLS) {
		t.Errorf("starttls_offered %v code %d reply %q, want true 220 %q", r.STARTTLSOffered, r.STARTTLSCode, r.STARTTLSReply, e.Raw.STARTTLS)
	}

	// TLS: the version and the group equal openssl s_client's; the suite is
	// the client's pick, so it must be a TLS 1.3 suite, as Go's own capture got.
	if normTLSVersion(r.TLSVersion) != normTLSVersion(e.SClient.Protocol) {
		errorf("tls_version", r.TLSVersion, e.SClient.Protocol+" (openssl s_client)")
	}
	if normTLSVersion(r.TLSVersion) != normTLSVersion(e.Finger.Protocol) {
		errorf("tls_version", r.TLSVersion, e.Finger.Protocol+" (posttls-finger)")
	}
	if !slices.Contains(tls13Suites, r.TLSCipher) {
		errorf("tls_cipher", r.TLSCipher, tls13Suites)
	}
	if r.TLSCipher != e.Raw.TLSCipher {
		t.Logf("tls_cipher %s; the test's Go client got %s, openssl %s", r.TLSCipher, e.Raw.TLSCipher, e.SClient.Cipher)
	}
	if g, ok := docGroupByKeyLine(docGroups, e.SClient.KeyLine); !ok || r.TLSGroup != g.Name {
		errorf("tls_group", r.TLSGroup, fmt.Sprintf("docs/schema.md's name for openssl's %q: %q", e.SClient.KeyLine, g.Name))
	}

	// The certificate: fingerprint equal to openssl's, posttls-finger's and
	// the lab's own file; the chain as sent, in order.
	if normFingerprint(r.CertSHA256) != e.SClientFP {
		errorf("cert_sha256", r.CertSHA256, e.SClientFP+" (openssl x509 -fingerprint -sha256)")
	}
	if normFingerprint(r.CertSHA256) != e.Finger.Fingerprint || e.SClientFP != e.FileFP {
		t.Errorf("cert_sha256 %s, posttls-finger %s, lab file %s", r.CertSHA256, e.Finger.Fingerprint, e.FileFP)
	}
	var chainFP []string
	for _, der := range r.CertChain {
		chainFP = append(chainFP, sha256Hex(der))
	}
	if !slices.Equal(chainFP, e.ChainFP) {
		errorf("cert_chain fingerprints", chainFP, e.ChainFP)
	}
	if r.CertSubjectCN != s.CertCN || !slices.Equal(r.CertSANDNS, s.CertSAN) || len(r.CertSANIP) != 0 {
		t.Errorf("cert_subject_cn %q cert_san_dns %q cert_san_ip %q, want %q %q none", r.CertSubjectCN, r.CertSANDNS, r.CertSANIP, s.CertCN, s.CertSAN)
	}
	if r.CertSelfSigned != s.SelfSigned {
		errorf("cert_self_signed", r.CertSelfSigned, s.SelfSigned)
	}
	if s.CASigned != strings.Contains(r.CertIssuer, caName) {
		t.Errorf("cert_issuer %q (CA-signed: %v)", r.CertIssuer, s.CASigned)
	}
	if r.CertKeyType != s.KeyType || int(r.CertKeyBits) != s.KeyBits {
		t.Errorf("cert key %s %d, want %s %d", r.CertKeyType, r.CertKeyBits, s.KeyType, s.KeyBits)
	}
	if r.CertParseError != "" || r.CertNotBefore.IsZero() || !r.CertNotAfter.After(r.CertNotBefore) {
		t.Errorf("cert_parse_error %q not_before %v not_after %v", r.CertParseError, r.CertNotBefore, r.CertNotAfter)
	}

	// EHLO after TLS: same host, no STARTTLS.
	if r.PostTLSEHLOCode != 250 || r.PostTLSEHLOHost != s.EHLOHost {
		t.Errorf("post_tls_ehlo_code %d host %q, want 250 %q", r.PostTLSEHLOCode, r.PostTLSEHLOHost, s.EHLOHost)
	}
	if !slices.Equal(lines(r.PostTLSEHLOReply), e.Raw.PostTLS) {
		errorf("post_tls_ehlo_reply", r.PostTLSEHLOReply, e.Raw.PostTLS)
	}
	if want := extensions(e.Raw.PostTLS); !slices.Equal(r.PostTLSEHLOExtensions, want) {
		errorf("post_tls_ehlo_extensions", r.PostTLSEHLOExtensions, want)
	}
	if hasKeyword(r.PostTLSEHLOExtensions, "STARTTLS") {
		t.Errorf("post_tls_ehlo_extensions %q list STARTTLS", r.PostTLSEHLOExtensions)
	}
	if r.BytesRead <= 0 {
		errorf("bytes_read", r.BytesRead, "> 0")
	}
}

func mapStrings[T any](in []T, f func(T) string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = f(s)
	}
	return out
}

// testAnalyze runs `mxsurvey analyze` on the scan with the test CA as the
// only root and checks hosts.parquet and domains.parquet against the specs.
func testAnalyze(ctx context.Context, t *testing.T, l *lab, scanDir string) {
	report := filepath.Join(l.dir, "report")
	actx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := mxsurvey(actx, t, "analyze", "-roots", l.caFile, "-quiet", "-o", report, scanDir); err != nil {
		t.Fatal(err)
	}
	hosts, err := parquet.ReadFile[analyze.HostRow](filepath.Join(report, "hosts.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	byIP := map[string]analyze.HostRow{}
	for _, h := range hosts {
		byIP[h.IP] = h
	}
	for _, s := range l.servers {
		h, ok := byIP[s.IP]
		if !ok {
			t.Errorf("%s: no host row for %s", s.Key, s.IP)
			continue
		}
		// What each candidate name is, and whether the certificate covers it,
		// from the specs: the CA-signed wildcard *.real.test covers every
		// one-label name under real.test.
		covers := func(name string) bool {
			if name == "" {
				return false
			}
			for _, san := range s.CertSAN {
				if san == name {
					return true
				}
				if strings.HasPrefix(san, "*.") && strings.Count(name, ".") == strings.Count(san, ".") &&
					strings.HasSuffix(name, san[1:]) {
					return true
				}
			}
			return false
		}
		want := analyze.HostRow{
			WithCert: true, Trusted: s.Trusted, SelfSigned: s.SelfSigned, Wildcard: s.Wildcard,
			WildcardUsed: s.WildcardUsed, MatchMX: s.MatchesMX, MatchBanner: s.MatchesBanner,
			MatchEHLO: covers(s.EHLOHost), MatchPostTLS: covers(s.EHLOHost), MatchPTR: covers(s.PTR),
			ValidForMX: s.Trusted && s.MatchesMX,
		}
		if covers(s.MX) != s.MatchesMX || covers(s.BannerHost) != s.MatchesBanner {
			t.Fatalf("%s: the specs contradict themselves", s.Key)
		}
		got := analyze.HostRow{
			WithCert: h.WithCert, Trusted: h.Trusted, SelfSigned: h.SelfSigned, Wildcard: h.Wildcard,
			WildcardUsed: h.WildcardUsed, MatchMX: h.MatchMX, MatchBanner: h.MatchBanner,
			MatchEHLO: h.MatchEHLO, MatchPostTLS: h.MatchPostTLS, MatchPTR: h.MatchPTR, ValidForMX: h.ValidForMX,
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: analyzer says\n%+v\nwant\n%+v", s.Key, got, want)
		}
		if h.Expired || h.NotYetValid || h.CNOnly {
			t.Errorf("%s: expired %v not_yet_valid %v cn_only %v", s.Key, h.Expired, h.NotYetValid, h.CNOnly)
		}
		wantSoftware := map[string]string{"postfix": "Postfix", "exim": "Exim"}[s.Software]
		if h.ServerSoftware != wantSoftware {
			t.Errorf("%s: server_software %q, want %q", s.Key, h.ServerSoftware, wantSoftware)
		}
	}
	if _, err := os.Stat(filepath.Join(report, "domains.parquet")); err != nil {
		t.Fatal(err)
	}
	domains, err := parquet.ReadFile[analyze.DomainRow](filepath.Join(report, "domains.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	valid := map[string]bool{multiMXDomain: true} // primary mx1: CA-signed for its name
	for _, s := range l.servers {
		valid[s.Domain] = s.Trusted && s.MatchesMX
	}
	for _, d := range domains {
		w, ok := valid[d.Domain]
		if !ok {
			t.Errorf("unexpected domain row %+v", d)
			continue
		}
		if d.PrimaryMXValid != w || !d.STARTTLSAllMX {
			t.Errorf("%s: primary_mx_valid %v starttls_all_mx %v, want %v true", d.Domain, d.PrimaryMXValid, d.STARTTLSAllMX, w)
		}
	}
	if len(domains) != len(valid) {
		t.Errorf("%d domain rows, want %d", len(domains), len(valid))
	}
}
