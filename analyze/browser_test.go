package analyze

// report.html in a real browser: Debian's Chromium, headless, at a phone's
// width and a desktop's. A script added to a copy of the report measures
// every chart's text against its SVG's box as laid out with the machine's
// fonts (the layout in chart.go only estimates widths); the screenshots of
// the unmodified report are kept for review.
//
// Headless Chromium's window is at least 500 px wide, so the report is
// shown in an iframe of the width under test: inside it, the viewport (and
// the report's width=device-width) is that width. The check's result
// travels to the outer page by postMessage; --virtual-time-budget lets it
// arrive before --dump-dom prints the outer page.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"image"
	"image/png"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// screenshotDir is where the screenshots stay after the test, relative to
// the analyze package; MXSURVEY_SCREENSHOTS overrides it. Not under
// out/test, which make test's lab scan empties.
const screenshotDir = "../out/screenshots"

// checkScript measures the laid-out page and appends the result, as JSON,
// in <pre id="mxsurvey-check">, which chromium --dump-dom prints.
const checkScript = `<script>
(function () {
  const out = {viewport: innerWidth, pageWidth: document.documentElement.scrollWidth,
    pageHeight: document.documentElement.scrollHeight, charts: 0, texts: 0, minFontPx: 1e9, problems: []};
  for (const svg of document.querySelectorAll("svg.chart")) {
    out.charts++;
    const box = svg.getBoundingClientRect();
    const scale = box.width / svg.viewBox.baseVal.width;
    const title = svg.querySelector("title").textContent;
    if (box.left < -0.5 || box.right > innerWidth + 0.5) {
      out.problems.push(title + ": the chart spans " + box.left + " to " + box.right + " px of a " + innerWidth + " px viewport");
    }
    for (const t of svg.querySelectorAll("text")) {
      out.texts++;
      out.minFontPx = Math.min(out.minFontPx, parseFloat(getComputedStyle(t).fontSize) * scale);
      const r = t.getBoundingClientRect();
      const over = Math.max(box.left - r.left, r.right - box.right, box.top - r.top, r.bottom - box.bottom);
      if (over > 0.5) {
        out.problems.push(title + ": text " + JSON.stringify(t.textContent) + " extends " + over.toFixed(1) + " px beyond its SVG");
      }
    }
  }
  parent.postMessage(JSON.stringify(out), "*");
})();
</script>`

// framePage shows src in an iframe width x height px and collects the
// check's message in <pre id="mxsurvey-check">.
func framePage(src string, width, height int) string {
	return fmt.Sprintf(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><style>html,body{margin:0}iframe{border:0;display:block}</style>
<script>addEventListener("message", e => { document.getElementById("mxsurvey-check").textContent = e.data; });</script>
</head><body><iframe src=%q width="%d" height="%d"></iframe><pre id="mxsurvey-check"></pre></body></html>`, src, width, height)
}

var reCheck = regexp.MustCompile(`(?s)<pre id="mxsurvey-check">(.*?)</pre>`)

// pageCheck is checkScript's result.
type pageCheck struct {
	Viewport   float64  `json:"viewport"`
	PageWidth  float64  `json:"pageWidth"`
	PageHeight float64  `json:"pageHeight"`
	Charts     int      `json:"charts"`
	Texts      int      `json:"texts"`
	MinFontPx  float64  `json:"minFontPx"`
	Problems   []string `json:"problems"`
}

// findChromium returns Debian's chromium, or skips the test with one line
// (fails it under CI=true, where scripts/install-deps.sh installs it).
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("report browser test: chromium is required under CI=true; run: sudo bash scripts/install-deps.sh")
	}
	t.Skip("report browser test: chromium not installed; run: sudo bash scripts/install-deps.sh")
	return ""
}

// chromium runs one headless Chromium with a fresh profile, bounded in time.
func chromium(ctx context.Context, t *testing.T, bin string, width, height int, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--virtual-time-budget=5000",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
		"--hide-scrollbars", "--user-data-dir=" + t.TempDir(), fmt.Sprintf("--window-size=%d,%d", width, height)}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, tail(stderr.String(), 2000))
	}
	return string(out)
}

// cropPNG writes the top-left width x height pixels of the PNG src to dst.
func cropPNG(src, dst string, width, height int) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		return fmt.Errorf("reading chromium's screenshot: %w", err)
	}
	r := image.Rect(0, 0, width, height).Intersect(img.Bounds())
	sub, ok := img.(interface {
		SubImage(image.Rectangle) image.Image
	})
	if !ok {
		return fmt.Errorf("screenshot of type %T cannot be cut", img)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, sub.SubImage(r)); err != nil {
		return err
	}
	return os.WriteFile(dst, b.Bytes(), 0o644)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// bigScan makes the fixture's scan 150 times over, each copy on its own
// addresses and domains, so that the report's counts have four digits
// ("450 of 1500 (30.0%)") as a real survey's do.
func bigScan(t *testing.T, fx fixture) string {
	t.Helper()
	const copies = 150
	shift := func(ip string, k int) string {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return ip // no address
		}
		b := a.As16()
		if a.Is4() {
			b[14] = byte(k) // the third octet
			return netip.AddrFrom16(b).Unmap().String()
		}
		b[5] = byte(k)
		return netip.AddrFrom16(b).String()
	}
	dir := filepath.Join(t.TempDir(), "scan")
	var probes []survey.ProbeRow
	var mx []survey.MXRow
	parts, _ := filepath.Glob(filepath.Join(fx.scan, "probes", "part-*.parquet")) // the pattern is valid
	for _, p := range parts {
		probes = append(probes, readParquet[survey.ProbeRow](t, p)...)
	}
	parts, _ = filepath.Glob(filepath.Join(fx.scan, "mx", "part-*.parquet"))
	for _, p := range parts {
		mx = append(mx, readParquet[survey.MXRow](t, p)...)
	}
	var allProbes []survey.ProbeRow
	var allMX []survey.MXRow
	for k := range copies {
		for _, r := range probes {
			r.IP = shift(r.IP, k)
			allProbes = append(allProbes, r)
		}
		for _, r := range mx {
			r.IP, r.Domain = shift(r.IP, k), fmt.Sprintf("c%d-%s", k, r.Domain)
			allMX = append(allMX, r)
		}
	}
	// With policies measured, so that the report's policy section and its
	// chart are checked too: every MX RRset secure, a quarter of the MX hosts
	// with a bogus TLSA lookup (dnssec-invalid under DANE), every domain an
	// MTA-STS record whose policy host never answered (sts-policy-fetch-error).
	var tlsa []survey.TLSARow
	var pols []survey.PolicyRow
	seen := map[string]bool{}
	for i := range allMX {
		r := &allMX[i]
		r.MXDNSSEC = survey.DNSSECSecure
		if r.MXHost != "" && !seen[r.MXHost] {
			seen[r.MXHost] = true
			if len(seen)%4 == 0 {
				tlsa = append(tlsa, survey.TLSARow{MXHost: r.MXHost, TLSAStatus: survey.DNSServfail, TLSADNSSEC: survey.DNSSECBogus})
			}
		}
		if !seen["domain "+r.Domain] {
			seen["domain "+r.Domain] = true
			pols = append(pols, survey.PolicyRow{Domain: r.Domain, MTASTSStatus: survey.DNSOK, MTASTSTXT: []string{"v=STSv1; id=1"},
				STSFetched: true, STSErrorClass: survey.ErrTimeout})
		}
	}
	writeRows(t, filepath.Join(dir, "probes", "part-00000.parquet"), allProbes)
	writeRows(t, filepath.Join(dir, "mx", "part-00000.parquet"), allMX)
	writeRows(t, filepath.Join(dir, "tlsa", "part-00000.parquet"), tlsa)
	writeRows(t, filepath.Join(dir, "policies", "part-00000.parquet"), pols)
	m, err := store.ReadManifest(fx.scan)
	if err != nil {
		t.Fatal(err)
	}
	m.Options = map[string]any{"policies": true, "dnssec": survey.DNSSECTrusted}
	if err := store.WriteManifest(dir, m); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestReportInBrowser(t *testing.T) {
	bin := findChromium(t)
	ctx := context.Background()
	out := filepath.Join(t.TempDir(), "report")
	fx := makeFixture(t)
	if _, err := Analyze(ctx, Options{Dirs: []string{bigScan(t, fx)}, RootsFile: fx.roots, OutDir: out}); err != nil {
		t.Fatal(err)
	}
	report, err := os.ReadFile(filepath.Join(out, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(report), "of 1500 (") {
		t.Fatalf("the report's counts are not in the thousands")
	}
	checked := filepath.Join(out, "checked.html")
	page := strings.Replace(string(report), "</body>", checkScript+"\n</body>", 1)
	if err := os.WriteFile(checked, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	frame := func(t *testing.T, name, src string, width, height int) string {
		t.Helper()
		p := filepath.Join(out, name)
		if err := os.WriteFile(p, []byte(framePage(src, width, height)), 0o644); err != nil {
			t.Fatal(err)
		}
		return "file://" + p
	}
	shots := screenshotDir
	if d := os.Getenv("MXSURVEY_SCREENSHOTS"); d != "" {
		shots = d
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	wantCharts := 1 + len(topDefs) + 1 // the headline, the top lists, the RFC 8460 result types
	for _, width := range []int{390, 1280} {
		t.Run(fmt.Sprint(width), func(t *testing.T) {
			window := max(width, 500) // headless Chromium's narrowest window
			dom := chromium(ctx, t, bin, window, 1000, "--dump-dom", frame(t, fmt.Sprintf("check-%d.html", width), "checked.html", width, 900))
			m := reCheck.FindStringSubmatch(dom)
			if m == nil {
				t.Fatalf("no check result in chromium's DOM:\n%s", tail(dom, 2000))
			}
			var c pageCheck
			if err := json.Unmarshal([]byte(html.UnescapeString(m[1])), &c); err != nil {
				t.Fatalf("check result %q: %v", m[1], err)
			}
			t.Logf("%d px: %d charts, %d texts, smallest chart text %.1f px, page %.0f x %.0f px",
				width, c.Charts, c.Texts, c.MinFontPx, c.PageWidth, c.PageHeight)
			if c.Viewport != float64(width) {
				t.Errorf("viewport %v px, want %d (window size ignored?)", c.Viewport, width)
			}
			if c.Charts < wantCharts || c.Texts < 2*wantCharts {
				t.Errorf("%d charts with %d texts, want at least %d charts", c.Charts, c.Texts, wantCharts)
			}
			for _, p := range c.Problems {
				t.Error(p)
			}
			if c.PageWidth > c.Viewport+0.5 {
				t.Errorf("the page is %.0f px wide in a %.0f px viewport: it scrolls sideways", c.PageWidth, c.Viewport)
			}
			if c.MinFontPx < 9 {
				t.Errorf("chart text shrinks to %.1f px: unreadable", c.MinFontPx)
			}
			// The screenshot of the report as written, the whole page high,
			// cut to the iframe.
			height := min(int(c.PageHeight)+1, 16000)
			raw := filepath.Join(out, fmt.Sprintf("raw-%d.png", width))
			chromium(ctx, t, bin, window, height, "--screenshot="+raw, frame(t, fmt.Sprintf("shot-%d.html", width), "report.html", width, height))
			shot, err := filepath.Abs(filepath.Join(shots, fmt.Sprintf("report-%d.png", width)))
			if err != nil {
				t.Fatal(err)
			}
			if err := cropPNG(raw, shot, width, height); err != nil {
				t.Fatal(err)
			}
			t.Logf("screenshot: %s", shot)
		})
	}
}
