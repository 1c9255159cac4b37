package main

// The polite tail: a scan with the scanner's default politeness (one
// connection at a time per address, -ip-interval 1s, -rate 200,
// -dns-rate 2000) of a lab world with realistic provider concentration and
// latency, measured against its polite lower bound (bench/politetail: the
// busiest address's probes plus its intervals). On the real internet that
// bound, not CPU, decides when a scan ends; the report shows the makespan
// next to it and the timeline of the busiest addresses.
//
// The world is sized so the bound is minutes, not hours: at 100,000
// domains the lab's defaults (55 providers, Zipf 1.0) put about 1,800
// targets on each tenant-style provider address (about an hour at 1 s
// apart); -providers 500 -zipf 0.6 spreads the market so the busiest
// address has a few hundred.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mxsurvey/mxsurvey/bench/internal/counts"
	"github.com/mxsurvey/mxsurvey/bench/politetail"
)

type politeConfig struct {
	sizes    string
	lab      string // extra lab flags
	latency  string
	interval time.Duration
}

func (p *politeConfig) flags() {
	flag.StringVar(&p.sizes, "polite-sizes", "100000", "lab sizes (domains) of the polite tail phase, space separated (1,000 with -smoke)")
	flag.StringVar(&p.lab, "polite-lab", "-providers 500 -zipf 0.6", "lab flags of the polite tail world")
	flag.StringVar(&p.latency, "polite-latency", "20ms-200ms", "lab latency of the polite tail phase (-smoke: -latency's)")
	flag.DurationVar(&p.interval, "polite-interval", time.Second, "scanner -ip-interval of the polite tail phase (50ms with -smoke)")
}

// PoliteResult is results/polite-N.json.
type PoliteResult struct {
	Size     int                  `json:"size"`
	Started  time.Time            `json:"started"`
	Machine  Machine              `json:"machine"`
	Commands string               `json:"commands"`
	LabArgv  []string             `json:"lab_argv"`
	Latency  string               `json:"latency"`
	Scan     Proc                 `json:"scan"`
	LoadAvg  [2]float64           `json:"load_avg"` // 1-minute load average before and after the scan
	Timeline *politetail.Timeline `json:"timeline"`
	Errors   []string             `json:"errors,omitempty"`
}

// runPolite runs the polite tail phase at each of its sizes.
func runPolite(ctx context.Context, c config) error {
	p := c.polite
	if c.smoke {
		p.sizes, p.latency, p.interval = "1000", c.latency, 50*time.Millisecond
	}
	var errs []error
	sizes, err := counts.Parse("polite-sizes", p.sizes)
	if err != nil {
		return err
	}
	for _, n := range sizes {
		res := politeSize(ctx, c, p, n)
		b, _ := json.MarshalIndent(res, "", " ")
		if err := os.WriteFile(filepath.Join(c.results, fmt.Sprintf("polite-%d.json", n)), b, 0o644); err != nil {
			return err
		}
		for _, e := range res.Errors {
			errs = append(errs, fmt.Errorf("polite %d: %s", n, e))
		}
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

func politeSize(ctx context.Context, c config, p politeConfig, n int) (res PoliteResult) {
	res = PoliteResult{Size: n, Started: time.Now().UTC(), Machine: machine(), Commands: c.commands, Latency: p.latency}
	fail := func(err error) bool {
		if err != nil {
			log.Printf("polite %d: %v", n, err)
			res.Errors = append(res.Errors, err.Error())
		}
		return err != nil
	}
	work := filepath.Join(c.work, fmt.Sprintf("polite-%d", n))
	log.Printf("polite %d: starting the lab (%s, latency %s)", n, p.lab, p.latency)
	lab, argv, err := startLab(ctx, []string{c.bin}, n, p.latency, work, 120*time.Second+time.Duration(n)*time.Millisecond, strings.Fields(p.lab)...)
	res.LabArgv = argv
	if fail(err) {
		return res
	}
	defer lab.stop()
	dir := filepath.Join(work, "scan")
	// The scanner's defaults except what a lab needs: its resolver and
	// ports, its loopback addresses allowed, a name.
	a := []string{c.bin, "scan", "-resolver", lab.DNS, "-port", fmt.Sprint(lab.Port), "-mta-sts-port", fmt.Sprint(lab.STSPort),
		"-allow", "127.0.0.0/8", "-ehlo-name", "scanner.mxsurvey.test", "-ip-interval", p.interval.String(), "-progress", "10s",
		"-o", dir, filepath.Join(lab.Dir, "domains.csv")}
	log.Printf("polite %d: scanning with default politeness (-ip-interval %v)", n, p.interval)
	res.LoadAvg[0] = loadAvg()
	res.Scan, _, err = run(ctx, "scan-polite", a, filepath.Join(work, "scan.log"), 2*time.Hour, lab.pid())
	res.LoadAvg[1] = loadAvg()
	if fail(err) {
		return res
	}
	if res.Timeline, err = politetail.Read(dir, 10); fail(err) {
		return res
	}
	t := res.Timeline
	log.Printf("polite %d: makespan %.1f s, polite lower bound %.1f s (%.2fx), %d targets at the busiest address",
		n, t.MakespanS(), t.BoundS(), div(t.MakespanS(), t.BoundS()), t.Busiest[0].Targets)
	return res
}

func loadPolite(results string) ([]PoliteResult, error) {
	paths, err := filepath.Glob(filepath.Join(results, "polite-*.json"))
	if err != nil {
		return nil, err
	}
	var rs []PoliteResult
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var r PoliteResult
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if r.Timeline != nil && len(r.Timeline.Busiest) > 0 {
			rs = append(rs, r)
		}
	}
	slices.SortFunc(rs, func(a, b PoliteResult) int { return a.Size - b.Size })
	return rs, nil
}

// politeReport is the report's section on the polite tail; "" without a
// result.
func politeReport(rs []PoliteResult) string {
	if len(rs) == 0 {
		return ""
	}
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("\n## The polite tail (default politeness, latency on)\n\n")
	p("One scan per size with the scanner's defaults (`-per-ip-concurrency 1 -ip-interval 1s -rate 200 -dns-rate 2000\n")
	p("-concurrency 1000`, policies and PTR on) of a lab whose providers put many customers' MX names on a few\n")
	p("addresses. The **polite lower bound** is computed from the dataset (bench/politetail): per address, its probes'\n")
	p("durations plus (targets − 1) intervals; the maximum over addresses. `-rate` gives another bound (connections / rate);\n")
	p("the world is sized (`-providers 500 -zipf 0.6` at 100,000 domains: the lab's defaults would put ~1,800 targets\n")
	p("on each tenant-style address, an hour of work) so that the busiest address has a few hundred targets and its bound\n")
	p("is minutes and the larger of the two. A single run per size on a shared machine: the load average is shown.\n\n")
	p("| domains | lab | latency | -ip-interval | connections | addresses | busiest address: targets | polite bound s | rate bound s | last domain resolved s | makespan s | makespan / bound | load avg (1 min) | measured |\n")
	p("|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
	for _, r := range rs {
		t := r.Timeline
		p("| %s | `%s` | %s | %v | %s | %s | %s | %s | %s | %s | %s | **%s** | %.1f–%.1f | %s |\n", num(r.Size), labFlags(r.LabArgv), r.Latency, t.Interval,
			num(t.Probes), num(t.Addresses), num(t.Busiest[0].Targets), f1(t.BoundS()), f1(t.RateBoundS()),
			f1(t.LastResolved.Sub(t.Started).Seconds()), f1(t.MakespanS()), f2(div(t.MakespanS(), t.BoundS())),
			r.LoadAvg[0], r.LoadAvg[1], r.Machine.Date)
	}
	p("\nRun as:\n\n")
	for _, r := range rs {
		p("- %s domains (commit %s): `%s`\n", num(r.Size), r.Machine.Commit, r.Commands)
	}
	for _, r := range rs {
		t := r.Timeline
		p("\n### The %d busiest addresses at %s domains\n\n", len(t.Busiest), num(r.Size))
		p("Seconds from the scan's start. *first resolved*: when resolution first gave a domain's MX host this address (the\n")
		p("scan could not know of it before). *idle* = (last − first) − bound: how long the address waited beyond its own\n")
		p("work and intervals between its first and last probe. The last probe ended at %s s, the scan at %s s.\n\n",
			f1(t.LastProbe.Sub(t.Started).Seconds()), f1(t.MakespanS()))
		p("| address | targets | probes s | bound s | first resolved | first probe | last probe ends | idle s |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, a := range t.Busiest {
			p("| %s | %d | %s | %s | %s | %s | %s | %s |\n", a.IP, a.Targets, f1(a.BusyS), f1(a.BoundS),
				since(t.Started, a.Resolved), f1(a.First.Sub(t.Started).Seconds()), f1(a.Last.Sub(t.Started).Seconds()),
				f1(a.Last.Sub(a.First).Seconds()-a.BoundS))
		}
	}
	return b.String()
}

// since is the time from start to t in seconds, "–" when t is unknown.
func since(start, t time.Time) string {
	if t.IsZero() {
		return "–"
	}
	return f1(t.Sub(start).Seconds())
}

// labFlags is what the lab's argv adds to the harness's standard lab.
func labFlags(argv []string) string {
	if i := slices.Index(argv, "-out"); i >= 0 && i+2 < len(argv) {
		return strings.Join(argv[i+2:], " ")
	}
	return ""
}

// politeTarget is the targets table's row, or "" without a result.
func politeTarget(rs []PoliteResult) string {
	if len(rs) == 0 {
		return ""
	}
	r := rs[len(rs)-1]
	ratio := div(r.Timeline.MakespanS(), r.Timeline.BoundS())
	verdict := "met"
	if r.Size < 100000 || ratio > 1.1 {
		verdict = "**missed**"
	}
	return fmt.Sprintf("| polite scan of 100,000 domains (default politeness, 20–200 ms latency) within 1.1x of its polite lower bound | %s domains: %.1f s against %.1f s, %.2fx | %s |\n",
		num(r.Size), r.Timeline.MakespanS(), r.Timeline.BoundS(), ratio, verdict)
}
