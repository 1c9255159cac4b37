package pipeline

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/scan/probe"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
)

var testZone = []string{
	"a.test. MX 10 mx1.a.test.",
	"a.test. MX 20 mx.shared.test.",
	"b.test. MX 10 mx.shared.test.",
	"mx1.a.test. A 127.61.0.1",
	"mx.shared.test. A 127.61.0.2",
	"null.test. MX 0 .",
	"implicit.test. A 127.61.0.3",
	"blocked.test. MX 10 mx.blocked.test.",
	"mx.blocked.test. A 10.0.0.1",
	"mx.blocked.test. A 169.254.169.254",
	"v6.test. MX 10 mx.v6.test.",
	"mx.v6.test. AAAA 2a00:1450:4001::1b",
	"refused.test. MX 10 mx.refused.test.",
	"mx.refused.test. A 127.61.0.9",
	"noaddr.test. MX 10 mx.noaddr.test.",
	"1.0.61.127.in-addr.arpa. PTR mx1.a.test.",
	"loop.test. CNAME loop2.test.",
	"loop2.test. CNAME loop.test.",
}

const testInput = `# test list
1,a.test
2,b.test
3,B.TEST.
4,null.test
5,implicit.test
6,nx.test
7,blocked.test
8,v6.test
9,refused.test
10,noaddr.test
11,servfail.test
12,not a domain!
13,loop.test
`

type lab struct {
	dns   *fakeDNS
	port  int
	smtps []*smtpServer
	input string
}

func startTestWorld(t *testing.T, delay time.Duration, extraZone ...string) *lab {
	t.Helper()
	d := startDNS(t, append(slices.Clone(testZone), extraZone...))
	s1 := startSMTP(t, "127.61.0.1", 0, "mx1.a.test", delay)
	s2 := startSMTP(t, "127.61.0.2", s1.port, "mx.shared.test", delay)
	s3 := startSMTP(t, "127.61.0.3", s1.port, "implicit.test", delay)
	in := filepath.Join(t.TempDir(), "domains.csv")
	if err := os.WriteFile(in, []byte(testInput), 0o644); err != nil {
		t.Fatal(err)
	}
	return &lab{dns: d, port: s1.port, smtps: []*smtpServer{s1, s2, s3}, input: in}
}

func (l *lab) config(out string) Config {
	return Config{Input: l.input, Out: out, Resolve: resolve.Config{Servers: []string{l.dns.addr}, Timeout: 300 * time.Millisecond},
		Probe: probe.Config{Port: l.port, EHLOName: "scanner.test", Timeout: 5 * time.Second, StepTimeout: 2 * time.Second},
		PTR:   true, Concurrency: 8, DNSConcurrency: 4,
		Allow: []netip.Prefix{netip.MustParsePrefix("127.61.0.0/16")}}
}

func readDataset(t *testing.T, dir string) (map[string][]survey.MXRow, map[string]survey.ProbeRow) {
	t.Helper()
	mx := map[string][]survey.MXRow{}
	if err := store.ReadAll(survey.MXDir(dir), func(r *survey.MXRow) error {
		mx[r.Domain] = append(mx[r.Domain], *r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	probes := map[string]survey.ProbeRow{}
	if err := store.ReadAll(survey.ProbesDir(dir), func(r *survey.ProbeRow) error {
		k := survey.TargetKey(r.IP, r.MXHost)
		if _, dup := probes[k]; dup {
			t.Errorf("target %s has two probe rows", k)
		}
		probes[k] = *r
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return mx, probes
}

func TestScanWritesTheDataset(t *testing.T) {
	l := startTestWorld(t, 0)
	out := t.TempDir() + "/scan"
	res, err := Run(context.Background(), l.config(out))
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest.Status != survey.StatusComplete {
		t.Fatalf("status %s", res.Manifest.Status)
	}
	mx, probes := readDataset(t, out)

	type mxWant struct {
		status, host, hostStatus, ip string
		pref                         int32
		implicit                     bool
	}
	want := map[string][]mxWant{
		"a.test":        {{"ok", "mx1.a.test", "ok", "127.61.0.1", 10, false}, {"ok", "mx.shared.test", "ok", "127.61.0.2", 20, false}},
		"b.test":        {{"ok", "mx.shared.test", "ok", "127.61.0.2", 10, false}},
		"null.test":     {{"null_mx", "", "", "", 0, false}},
		"implicit.test": {{"ok", "implicit.test", "ok", "127.61.0.3", 0, true}},
		"nx.test":       {{"nxdomain", "", "", "", 0, false}},
		"blocked.test":  {{"ok", "mx.blocked.test", "ok", "10.0.0.1", 10, false}, {"ok", "mx.blocked.test", "ok", "169.254.169.254", 10, false}},
		"v6.test":       {{"ok", "mx.v6.test", "ok", "2a00:1450:4001::1b", 10, false}},
		"refused.test":  {{"ok", "mx.refused.test", "ok", "127.61.0.9", 10, false}},
		"noaddr.test":   {{"ok", "mx.noaddr.test", "nxdomain", "", 10, false}},
		"servfail.test": {{"servfail", "", "", "", 0, false}},
		"not a domain!": {{"error", "", "", "", 0, false}},
		"loop.test":     {{"error", "", "", "", 0, false}},
	}
	if len(mx) != len(want) {
		t.Errorf("domains in mx rows: %d, want %d (duplicate B.TEST. must be scanned once)", len(mx), len(want))
	}
	for d, ws := range want {
		rows := mx[d]
		sort.Slice(rows, func(i, j int) bool { return rows[i].MXPreference < rows[j].MXPreference || rows[i].IP < rows[j].IP })
		if len(rows) != len(ws) {
			t.Errorf("%s: %d rows, want %d: %+v", d, len(rows), len(ws), rows)
			continue
		}
		for i, w := range ws {
			r := rows[i]
			got := mxWant{r.DNSStatus, r.MXHost, r.MXHostStatus, r.IP, r.MXPreference, r.ImplicitMX}
			if got != w {
				t.Errorf("%s row %d = %+v, want %+v", d, i, got, w)
			}
			if r.ResolvedAt.IsZero() {
				t.Errorf("%s: resolved_at not set", d)
			}
		}
	}
	if r := mx["a.test"][0]; r.Rank != 1 || r.Input != "a.test" || r.IPVersion != 4 {
		t.Errorf("a.test rank/input/ip_version = %d %q %d", r.Rank, r.Input, r.IPVersion)
	}
	if r := mx["not a domain!"][0]; r.DNSError == "" || r.Rank != 12 {
		t.Errorf("invalid line row: %+v", r)
	}
	if r := mx["v6.test"][0]; r.IPVersion != 6 {
		t.Errorf("v6 ip_version = %d", r.IPVersion)
	}

	type probeWant struct{ outcome, class string }
	pw := map[string]probeWant{
		"127.61.0.1|mx1.a.test":           {"ok", ""},
		"127.61.0.2|mx.shared.test":       {"ok", ""},
		"127.61.0.3|implicit.test":        {"ok", ""},
		"10.0.0.1|mx.blocked.test":        {"skipped", "blocked"},
		"169.254.169.254|mx.blocked.test": {"skipped", "blocked"},
		"2a00:1450:4001::1b|mx.v6.test":   {"skipped", "ipv6_disabled"},
		"127.61.0.9|mx.refused.test":      {"connect", "refused"},
	}
	if len(probes) != len(pw) {
		t.Errorf("%d probe rows, want %d (one per (ip, mx_host)): %v", len(probes), len(pw), keys(probes))
	}
	for k, w := range pw {
		p, ok := probes[k]
		if !ok {
			t.Errorf("no probe row for %s", k)
			continue
		}
		if p.Outcome != w.outcome || p.ErrorClass != w.class {
			t.Errorf("%s: outcome %s/%s, want %s/%s (error %q)", k, p.Outcome, p.ErrorClass, w.outcome, w.class, p.Error)
		}
		if p.Port != int32(l.port) {
			t.Errorf("%s: port %d", k, p.Port)
		}
	}
	// The shared MX host was probed once for two domains.
	if n := l.smtps[1].accepted.Load(); n != 1 {
		t.Errorf("mx.shared.test accepted %d connections, want 1", n)
	}
	p := probes["127.61.0.1|mx1.a.test"]
	if p.PTRHost != "mx1.a.test" || p.PTRStatus != "ok" || p.BannerHost != "mx1.a.test" ||
		p.EHLONameSent != "scanner.test" || !p.STARTTLSOffered || p.TLSVersion != "TLS 1.3" ||
		p.CertSubjectCN != "mx1.a.test" || !p.CertSelfSigned || p.PostTLSEHLOHost != "mx1.a.test" || len(p.CertChain) != 1 {
		t.Errorf("probe row of mx1.a.test not filled as expected: %+v", p)
	}
	if p := probes["127.61.0.2|mx.shared.test"]; p.PTRHost != "" || p.PTRStatus != "nxdomain" {
		t.Errorf("shared ptr = %q %q", p.PTRHost, p.PTRStatus)
	}
	m := res.Manifest
	if m.Counts["duplicates"] != 1 || m.Counts["invalid"] != 1 || m.Counts["targets"] != 7 || m.Counts["probe_rows_written"] != 7 {
		t.Errorf("manifest counts = %v", m.Counts)
	}
	if m.ErrorClasses["blocked"] != 2 || m.Outcomes["ok"] != 3 {
		t.Errorf("manifest outcomes = %v classes = %v", m.Outcomes, m.ErrorClasses)
	}
	onDisk, err := store.ReadManifest(out)
	if err != nil || onDisk.Status != survey.StatusComplete || onDisk.Ended == nil || onDisk.SchemaVersion != survey.SchemaVersion {
		t.Fatalf("manifest on disk: %+v, %v", onDisk, err)
	}

	// The output directory is not silently overwritten.
	if _, err := Run(context.Background(), l.config(out)); err == nil || !strings.Contains(err.Error(), "-resume") {
		t.Errorf("second run into the same directory: %v", err)
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestInterruptAndResume interrupts a scan while probes are in flight, then
// resumes it: the final dataset holds every domain and every target exactly
// once, and nothing committed is redone.
func TestInterruptAndResume(t *testing.T) {
	l := startTestWorld(t, 300*time.Millisecond)
	out := t.TempDir() + "/scan"
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once the first server has a connection: probes are in flight.
		for l.smtps[0].accepted.Load()+l.smtps[1].accepted.Load() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	res, err := Run(ctx, l.config(out))
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("interrupted run: err = %v", err)
	}
	if res.Manifest.Status != survey.StatusInterrupted {
		t.Fatalf("status %s", res.Manifest.Status)
	}
	_, probes := readDataset(t, out)
	for k, p := range probes {
		if p.ErrorClass == survey.ErrCanceled {
			t.Errorf("%s: a probe abandoned by the interrupt was written as data", k)
		}
	}
	before := l.dns.count("a.test", "MX")
	cfg := l.config(out)
	cfg.Resume = true
	res, err = Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest.Status != survey.StatusComplete || len(res.Manifest.Resumes) != 1 {
		t.Fatalf("resumed manifest: %+v", res.Manifest)
	}
	mx, probes := readDataset(t, out)
	if len(mx) != 12 {
		t.Errorf("after resume %d domains, want 12: %v", len(mx), keys(mx))
	}
	if len(probes) != 7 {
		t.Errorf("after resume %d targets, want 7: %v", len(probes), keys(probes))
	}
	if got := len(mx["a.test"]); got != 2 {
		t.Errorf("a.test has %d rows after resume, want 2", got)
	}
	if before > 0 && res.Manifest.Counts["resumed_mx_rows"] > 0 && l.dns.count("a.test", "MX") != before {
		// a.test was committed before the interrupt only if its rows were; then it must not be asked again.
		committed := false
		for _, r := range mx["a.test"] {
			committed = committed || !r.ResolvedAt.After(res.Manifest.Resumes[0])
		}
		if committed {
			t.Errorf("a.test was committed but resolved again on resume")
		}
	}
}

// TestResumeProbesTargetsLostInTheKill builds the state a kill -9 leaves:
// mx rows committed, their targets' probe rows not. Resume must probe them
// without resolving the committed domains again.
func TestResumeProbesTargetsLostInTheKill(t *testing.T) {
	l := startTestWorld(t, 0)
	out := t.TempDir() + "/scan"
	if _, err := Run(context.Background(), l.config(out)); err != nil {
		t.Fatal(err)
	}
	// Forget every probe row, as if the probes part never got committed.
	parts, _ := store.Parts(survey.ProbesDir(out))
	for _, p := range parts {
		os.Remove(p)
	}
	os.WriteFile(filepath.Join(survey.ProbesDir(out), ".part-00009.parquet.tmp"), []byte("partial"), 0o644)
	asked := l.dns.count("a.test", "MX")
	cfg := l.config(out)
	cfg.Resume = true
	res, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if l.dns.count("a.test", "MX") != asked {
		t.Errorf("committed domain a.test was resolved again")
	}
	if res.Manifest.Counts["resumed_skipped"] != 12 {
		t.Errorf("resumed_skipped = %d, want 12", res.Manifest.Counts["resumed_skipped"])
	}
	mx, probes := readDataset(t, out)
	if len(mx) != 12 || len(probes) != 7 {
		t.Errorf("after resume: %d domains, %d targets; want 12, 7", len(mx), len(probes))
	}
	// A valid domain whose resolution ended in "error" looks like an invalid
	// line in the data; resume must still know it is done.
	for d, rows := range mx {
		if len(rows) > 2 || (d != "a.test" && d != "blocked.test" && len(rows) > 1) {
			t.Errorf("%s has %d rows after resume: scanned twice", d, len(rows))
		}
	}
	if _, err := os.Stat(filepath.Join(survey.ProbesDir(out), ".part-00009.parquet.tmp")); !os.IsNotExist(err) {
		t.Errorf("temporary part of the killed run still there")
	}
}
