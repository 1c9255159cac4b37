package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/lab"
	"github.com/mxsurvey/mxsurvey/scan/pipeline"
	"github.com/mxsurvey/mxsurvey/scan/probe"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
	"github.com/mxsurvey/mxsurvey/scan/stsfetch"

	"github.com/mxsurvey/mxsurvey/scan/smtpreply"
)

// Bounds the hostile scan must stay within.
const (
	// With a 2 s step, a few ordinary handshakes timed out under make
	// check's parallel load once the policy fetches joined the probes.
	hostileProbeTimeout = 6 * time.Second
	hostileStepTimeout  = 3 * time.Second
	hostileScanBound    = 60 * time.Second
	hostileHeapBound    = 200 << 20 // HeapInuse after GC, lab (same process) included
	// maxErrorText is the documented cap of error and cert_parse_error
	// (docs/schema.md: 1 KiB); the prober's constant is unexported.
	maxErrorText = 1024
)

// scanLab starts a lab in-process with the given world, scans it with the
// given probe deadlines (the policy fetches' too) and policies on, and
// returns the directories and the scan's duration. DNS deadlines are
// generous: the tests share two cores with others.
func scanLab(t *testing.T, wp lab.WorldParams, probeTimeout, stepTimeout time.Duration) (labDir, scanDir string, took time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	labDir = filepath.Join(t.TempDir(), "lab")
	l, err := lab.Start(ctx, lab.Config{WorldParams: wp, DNSAddr: "127.0.0.1:0", SMTPPort: 0, OutDir: labDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	scanDir = filepath.Join(t.TempDir(), "scan")
	cfg := pipeline.Config{Input: l.DomainsPath(), Out: scanDir,
		Resolve:        resolve.Config{Servers: []string{l.DNSAddr}, Timeout: 2 * time.Second, Retries: 2},
		DNSConcurrency: 50, PTR: true, Concurrency: 200, IPv6: true, Policies: true, STS: stsfetch.Config{Port: l.MTASTSPort},
		Probe: probe.Config{Port: l.SMTPPort, EHLOName: "scanner.mxsurvey.test", Timeout: probeTimeout, StepTimeout: stepTimeout},
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}
	t0 := time.Now()
	res, err := pipeline.Run(ctx, cfg)
	took = time.Since(t0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest.Status != survey.StatusComplete {
		t.Fatalf("scan status %s", res.Manifest.Status)
	}
	// The truth's DNSSEC statuses assume the AD bit was read.
	if got := res.Manifest.Options["dnssec"]; got != survey.DNSSECTrusted {
		t.Fatalf("manifest dnssec %v, the truth assumes %s", got, survey.DNSSECTrusted)
	}
	return labDir, scanDir, took
}

// heapWatch samples HeapInuse until stopped and returns the peak.
func heapWatch() (stop func() uint64) {
	var (
		peak uint64
		wg   sync.WaitGroup
	)
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() uint64 { close(done); wg.Wait(); return peak }
}

// TestHostilePeers scans a small world holding every hostile case of the lab
// with short probe deadlines, and holds the scan to the truth and to the
// documented bounds: time, caps on stored text, the chain cap, memory, and an
// HTML report that does not carry the servers' markup.
func TestHostilePeers(t *testing.T) {
	// The truth's assumptions about the scanner's caps are the scanner's
	// documented defaults.
	for name, pair := range map[string][2]int{
		"reply lines": {lab.AssumeMaxReplyLines, smtpreply.DefaultMaxLines},
		"reply bytes": {lab.AssumeMaxReplyBytes, smtpreply.DefaultMaxBytes},
		"line bytes":  {lab.AssumeMaxLineBytes, smtpreply.DefaultMaxLineBytes},
		"chain":       {lab.AssumeMaxChainCerts, probe.DefaultMaxChainCerts},
		"MX hosts":    {lab.AssumeMaxMX, resolve.DefaultMaxMX},
		"TXT records": {lab.AssumeMaxTXTRecords, resolve.MaxRecords},
		"TXT bytes":   {lab.AssumeMaxTXTBytes, resolve.MaxTXTBytes},
		"body kept":   {lab.AssumeMaxBodyKept, stsfetch.MaxBodyKept},
		"body read":   {lab.AssumeMaxBodyRead, stsfetch.MaxBodyRead},
	} {
		if pair[0] != pair[1] {
			t.Errorf("lab assumes %s cap %d, the scanner's is %d", name, pair[0], pair[1])
		}
	}

	stop := heapWatch()
	labDir, scanDir, took := scanLab(t, lab.WorldParams{Domains: 300, Seed: 23,
		Cases: map[string]float64{"default": 0, lab.GroupHostile: 0.001}}, hostileProbeTimeout, hostileStepTimeout)
	peak := stop()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("scan took %v; heap in use: peak %d MiB, after GC %d MiB", took.Round(time.Millisecond), peak>>20, ms.HeapInuse>>20)
	if took > hostileScanBound {
		t.Errorf("scan took %v, bound %v", took, hostileScanBound)
	}
	if ms.HeapInuse > hostileHeapBound {
		t.Errorf("heap in use after GC %d MiB, bound %d MiB", ms.HeapInuse>>20, hostileHeapBound>>20)
	}

	truth, err := lab.ReadTruth(labDir)
	if err != nil {
		t.Fatal(err)
	}
	// Every hostile case is in the world.
	inWorld := map[string]bool{}
	for _, d := range truth.Domains {
		for _, c := range d.Cases {
			inWorld[c] = true
		}
	}
	for _, c := range lab.HostileCaseNames() {
		if !inWorld[c] {
			t.Errorf("hostile case %s not in the world", c)
		}
	}

	// Every row against the truth; per hostile case the raw text, the
	// bounds and the special columns.
	checked := map[string]int{}
	reachable, _ := checkAgainstTruth(t, truth, scanDir, func(h lab.TruthHost, p survey.ProbeRow) {
		k := survey.TargetKey(h.IP, h.MXHost)
		c := h.Cases[len(h.Cases)-1]
		if checked[c] == 0 && slices.Contains(lab.HostileCaseNames(), c) {
			t.Logf("%-30s %s/%s in %d ms, %d bytes read, banner %q, error %q", c, p.Outcome, p.ErrorClass, p.DurationMS, p.BytesRead, clip(p.Banner), clip(p.Error))
		}
		checked[c]++
		for _, diff := range compareRaw(h, p) {
			t.Errorf("%s %v: %s", k, h.Cases, diff)
		}
		for _, diff := range checkBounds(p) {
			t.Errorf("%s %v: %s", k, h.Cases, diff)
		}
		switch c {
		case "cert_chain_50":
			if p.CertChainLen != 50 || len(p.CertChain) != probe.DefaultMaxChainCerts {
				t.Errorf("%s: cert_chain_len %d, %d certificates stored; want 50 and %d", k, p.CertChainLen, len(p.CertChain), probe.DefaultMaxChainCerts)
			}
		case "cert_parse_leaf_tls12", "cert_parse_intermediate_tls12":
			if len(p.CertChain) != h.CertChainLen || fmt.Sprintf("%x", sha256.Sum256(p.CertChain[0])) != h.CertSHA256 || p.CertParseError == "" && h.CertSubjectCN == "" {
				t.Errorf("%s: %d certificates kept, parse error %q; truth %d, %s", k, len(p.CertChain), p.CertParseError, h.CertChainLen, h.CertSHA256)
			}
		case "cert_parse_leaf_tls13":
			if len(p.CertChain) != 0 {
				t.Errorf("%s: %d certificates recovered from an encrypted handshake", k, len(p.CertChain))
			}
		}
	})
	for _, c := range lab.HostileCaseNames() {
		if checked[c] == 0 && !strings.HasPrefix(c, "dns_") {
			t.Errorf("no probe row compared for %s", c)
		}
	}
	t.Logf("compared %d targets; per case: %v", len(reachable), checked)

	// The policies rows of the bad inputs (10,000 TXT records, a policy of
	// 2 MiB, a silent policy host, ...) stay within the documented caps and
	// the fetch's deadline.
	fetched := 0
	if err := store.ReadAll(survey.PoliciesDir(scanDir), func(r *survey.PolicyRow) error {
		for _, diff := range checkPolicyBounds(r) {
			t.Errorf("policies %s: %s", r.Domain, diff)
		}
		if r.STSFetched {
			fetched++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d policies fetched", fetched)

	// The analysis: figures equal the truth's, and the HTML report carries
	// no markup of the servers'.
	reportDir := analyzeAgainstTruth(t, truth, labDir, scanDir, reachable)
	html, err := os.ReadFile(filepath.Join(reportDir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(html, []byte("<script>alert(1)")) {
		t.Error("report.html holds a server's <script> unescaped")
	}
	t.Logf("report.html: %d bytes, escaped server script present: %v", len(html),
		bytes.Contains(html, []byte("&lt;script&gt;alert(1)")))
}

// compareRaw holds the stored server text against what the lab knows of it.
func compareRaw(h lab.TruthHost, p survey.ProbeRow) []string {
	var diffs []string
	for _, want := range h.Raw {
		// Text columns hold valid UTF-8 (invalid bytes become U+FFFD); the
		// greeting's exact bytes are in banner_raw when that changed it.
		wantBytes := want.Bytes
		var got string
		switch want.Column {
		case "banner":
			got = p.Banner
			if len(p.BannerRaw) > 0 {
				got = string(p.BannerRaw)
				if p.Banner != strings.ToValidUTF8(got, "\uFFFD") {
					diffs = append(diffs, fmt.Sprintf("banner %q is not banner_raw made valid", clip(p.Banner)))
				}
			}
		case "ehlo_reply":
			got = p.EHLOReply
			wantBytes = []byte(strings.ToValidUTF8(string(want.Bytes), "\uFFFD"))
		default:
			diffs = append(diffs, "truth states unknown column "+want.Column)
			continue
		}
		if !utf8.ValidString(p.Banner) || !utf8.ValidString(p.EHLOReply) {
			diffs = append(diffs, "a text column holds invalid UTF-8")
		}
		switch {
		case want.Exact:
			if got != string(wantBytes) {
				diffs = append(diffs, fmt.Sprintf("%s = %q, truth %q", want.Column, clip(got), clip(string(wantBytes))))
			}
		default:
			n := min(len(got), len(wantBytes))
			if got[:n] != string(wantBytes[:n]) || want.Capped && got == "" {
				diffs = append(diffs, fmt.Sprintf("%s = %q, not a prefix of or prefixed by the truth's %q", want.Column, clip(got), clip(string(wantBytes))))
			}
		}
	}
	return diffs
}

// checkBounds holds a row to the documented caps and deadlines.
func checkBounds(p survey.ProbeRow) []string {
	var diffs []string
	for name, v := range map[string]string{"banner": p.Banner, "ehlo_refusal": p.EHLORefusal, "ehlo_reply": p.EHLOReply,
		"starttls_reply": p.STARTTLSReply, "post_tls_ehlo_reply": p.PostTLSEHLOReply} {
		if len(v) > smtpreply.DefaultMaxBytes {
			diffs = append(diffs, fmt.Sprintf("%s of %d bytes, cap %d", name, len(v), smtpreply.DefaultMaxBytes))
		}
	}
	for name, v := range map[string]string{"error": p.Error, "cert_parse_error": p.CertParseError} {
		if len(v) > maxErrorText {
			diffs = append(diffs, fmt.Sprintf("%s of %d bytes, cap %d", name, len(v), maxErrorText))
		}
	}
	if len(p.CertChain) > probe.DefaultMaxChainCerts {
		diffs = append(diffs, fmt.Sprintf("%d certificates stored, cap %d", len(p.CertChain), probe.DefaultMaxChainCerts))
	}
	if p.Outcome != survey.OutcomeSkipped && time.Duration(p.DurationMS)*time.Millisecond > hostileProbeTimeout+2*time.Second {
		diffs = append(diffs, fmt.Sprintf("probe took %d ms, timeout %v", p.DurationMS, hostileProbeTimeout))
	}
	if p.BytesRead > probe.DefaultMaxProbeBytes {
		diffs = append(diffs, fmt.Sprintf("read %d bytes, cap %d", p.BytesRead, probe.DefaultMaxProbeBytes))
	}
	return diffs
}

// checkPolicyBounds holds a policies row to the documented caps and the
// fetch's deadline.
func checkPolicyBounds(r *survey.PolicyRow) []string {
	var diffs []string
	for name, txt := range map[string][]string{"mta_sts_txt": r.MTASTSTXT, "tlsrpt_txt": r.TLSRPTTXT} {
		if len(txt) > resolve.MaxRecords {
			diffs = append(diffs, fmt.Sprintf("%s holds %d records, cap %d", name, len(txt), resolve.MaxRecords))
		}
		for _, s := range txt {
			if len(s) > resolve.MaxTXTBytes {
				diffs = append(diffs, fmt.Sprintf("%s record of %d bytes, cap %d", name, len(s), resolve.MaxTXTBytes))
			}
		}
	}
	if len(r.STSBody) > stsfetch.MaxBodyKept || r.STSBodyLen > stsfetch.MaxBodyRead || len(r.STSError) > maxErrorText {
		diffs = append(diffs, fmt.Sprintf("body %d bytes kept, %d read, error %d bytes", len(r.STSBody), r.STSBodyLen, len(r.STSError)))
	}
	if time.Duration(r.STSDurationMS)*time.Millisecond > hostileProbeTimeout+2*time.Second {
		diffs = append(diffs, fmt.Sprintf("fetch took %d ms, timeout %v", r.STSDurationMS, hostileProbeTimeout))
	}
	return diffs
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + fmt.Sprintf("...(%d bytes)", len(s))
	}
	return s
}
