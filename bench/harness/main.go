// Command harness is mxsurvey's performance benchmark (scripts/bench.sh,
// `make bench`). For each lab size it starts the lab, the scanner, the
// analyzer and the bare reference loops (bench/tlsloop, bench/dnsloop) as
// separate processes, measures each one's wall time, CPU (rusage of the
// child) and memory (ru_maxrss plus VmRSS sampled every 100 ms; the lab's CPU
// over each step from /proc/PID/stat), stores the figures as JSON in
// -results, and renders every size found there into a Markdown report.
//
// After the sizes, the synth phase (synth.go) analyzes a synthetic real-like
// scan of a million probe rows (bench/synthscan, written once and kept in
// -synth-dir) on one core and on every core, and compares their outputs.
//
// Every step is bounded in time; the loops are bounded in count and time.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mxsurvey/mxsurvey/bench/internal/counts"
	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

type config struct {
	bin, tlsloop, dnsloop, profiled string
	sizes                           []int
	runs                            int
	work, results, report, analysis string
	latency                         string
	concOn, concOff, loopC          int
	profileSize, rateSize           int
	analyzeRows                     int64
	smoke                           bool
	commands                        string
	rendering                       bool // -render: -commands, when given, says how the results were made
	phases                          map[string]bool
	flightPerIP                     int
	flightLatency                   string
	// The field phase (field.go).
	anchors, noAnchors      string
	fieldDomains, fieldRuns int
	fieldConc               int
	synthRows               int64
	synthDir                string
	polite                  politeConfig
}

func main() {
	var c config
	var sizes string
	flag.StringVar(&c.bin, "bin", "bin/mxsurvey", "mxsurvey binary")
	flag.StringVar(&c.tlsloop, "tlsloop", "bin/bench/tlsloop", "tlsloop binary")
	flag.StringVar(&c.dnsloop, "dnsloop", "bin/bench/dnsloop", "dnsloop binary")
	flag.StringVar(&c.profiled, "profiled", "bin/bench/profiled", "profiling wrapper binary")
	flag.StringVar(&sizes, "sizes", "10000 100000", "lab sizes (domains), space separated")
	flag.IntVar(&c.runs, "runs", 3, "runs per size (figures are medians)")
	flag.StringVar(&c.work, "work", "out/bench/work", "scratch directory (labs, scans, logs, profiles)")
	flag.StringVar(&c.results, "results", "out/bench/results", "directory of size-N.json results (kept across invocations)")
	flag.StringVar(&c.report, "report", "BENCHMARKS.md", "Markdown report to write (from every size in -results)")
	flag.StringVar(&c.analysis, "analysis", "bench/analysis.md", "hand-written analysis appended to the report, if present")
	flag.StringVar(&c.latency, "latency", "50ms-200ms", "lab latency for the latency-on runs")
	flag.IntVar(&c.concOn, "concurrency-on", 10000, "scanner -concurrency with latency on")
	flag.IntVar(&c.concOff, "concurrency-off", 1000, "scanner -concurrency with latency off")
	flag.IntVar(&c.loopC, "loop-c", 1000, "handshakes in flight in tlsloop")
	flag.IntVar(&c.profileSize, "profile-size", -1, "size at which CPU/heap profiles are taken (-1: the largest of -sizes, 0: none)")
	flag.IntVar(&c.rateSize, "rate-size", -1, "size at which the -rate/-dns-rate check runs (-1: the smallest of -sizes, 0: none)")
	flag.Int64Var(&c.analyzeRows, "analyze-rows", 1000000, "also analyze at least this many probe rows (copies of the largest scan as shards; 0: skip)")
	flag.BoolVar(&c.smoke, "smoke", false, "smoke run: results and report go to -work only")
	flag.StringVar(&c.commands, "commands", "", "text describing how this was invoked (for the report)")
	render := flag.Bool("render", false, "only render the report from -results (with -commands: how those results were made, for results from several invocations)")
	phases := flag.String("phases", "field,off,on,flight,synth,polite", "phases to run: field (side by side with zgrab2 and zdns on the proving ground), "+
		"off (latency off), on (latency on), flight (latency on, no per-address limit), "+
		"synth (the analyzer on a synthetic real-like scan, once, after the sizes), polite (the polite tail, polite.go, at -polite-sizes); "+
		"the figures of phases not run are kept from an earlier size-N.json or field.json")
	flag.Int64Var(&c.synthRows, "synth-rows", 1_000_000, "probe rows of the synthetic scan of the synth phase (bench/synthscan; 2,000 with -smoke)")
	flag.StringVar(&c.synthDir, "synth-dir", "out/bench/synth", "where the synthetic scan is written once and kept")
	flag.IntVar(&c.flightPerIP, "flight-per-ip", 10000, "scanner -per-ip-concurrency in the flight phase")
	flag.StringVar(&c.flightLatency, "flight-latency", "3s-6s", "lab latency of the flight phase: slow enough that -concurrency-on probes are in flight at once")
	flag.StringVar(&c.anchors, "anchors", "", "directory holding the zgrab2 and zdns binaries (../shared/anchors/build.sh); empty: the field phase measures mxsurvey alone")
	flag.StringVar(&c.noAnchors, "no-anchors", "", "why -anchors is empty, for the report")
	flag.IntVar(&c.fieldDomains, "field-domains", 20000, "domains of the proving ground (field phase)")
	flag.IntVar(&c.fieldRuns, "field-runs", 0, "rounds of the field phase (0: -runs)")
	flag.IntVar(&c.fieldConc, "field-concurrency", 200, "concurrency of every tool in the field phase")
	c.polite.flags()
	flag.Parse()
	c.phases = map[string]bool{}
	for _, ph := range strings.Split(*phases, ",") {
		c.phases[strings.TrimSpace(ph)] = true
	}
	log.SetFlags(log.Ltime)
	log.SetPrefix("bench: ")
	var err error
	if c.sizes, err = counts.Parse("sizes", sizes); err != nil {
		log.Fatal(err)
	}
	if c.fieldRuns <= 0 {
		c.fieldRuns = c.runs
	}
	if *render {
		c.rendering = true
		if err := writeReport(c); err != nil {
			log.Fatal(err)
		}
		return
	}
	if len(c.sizes) == 0 && !c.phases["field"] {
		log.Fatal("no sizes")
	}
	if c.profileSize < 0 && len(c.sizes) > 0 {
		c.profileSize = c.sizes[len(c.sizes)-1]
	}
	if c.rateSize < 0 && len(c.sizes) > 0 {
		c.rateSize = c.sizes[0]
	}
	if c.smoke {
		c.synthRows = min(c.synthRows, 2000)
		c.synthDir = filepath.Join(c.work, "synth")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, d := range []string{c.work, c.results} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			log.Fatal(err)
		}
	}
	failed := false
	if c.phases["field"] && ctx.Err() == nil {
		fr := benchField(ctx, c, filepath.Join(c.work, "field"))
		fr.Machine, fr.Commands = machine(), c.commands
		b, _ := json.MarshalIndent(fr, "", " ")
		if err := os.WriteFile(filepath.Join(c.results, "field.json"), b, 0o644); err != nil {
			log.Fatal(err)
		}
		for _, e := range fr.Errors {
			failed = true
			log.Printf("field: FAILED: %s", e)
		}
	}
	todo := c.sizes
	if !c.phases["off"] && !c.phases["on"] && !c.phases["flight"] {
		todo = nil
	}
	for i, n := range todo {
		res := benchSize(ctx, c, n, i == len(c.sizes)-1)
		res.Machine = machine()
		res.Commands = c.commands
		path := filepath.Join(c.results, fmt.Sprintf("size-%d.json", n))
		res = merge(c, path, res)
		b, _ := json.MarshalIndent(res, "", " ")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			log.Fatal(err)
		}
		log.Printf("size %d: results in %s", n, path)
		if len(res.Errors) > 0 {
			failed = true
			for _, e := range res.Errors {
				log.Printf("size %d: FAILED: %s", n, e)
			}
		}
		if ctx.Err() != nil {
			break
		}
	}
	if c.phases["synth"] && c.synthRows > 0 && ctx.Err() == nil {
		if err := runSynth(ctx, c); err != nil {
			log.Printf("synth: FAILED: %v", err)
			failed = true
		}
	}
	if c.phases["polite"] && ctx.Err() == nil {
		if err := runPolite(ctx, c); err != nil {
			log.Printf("polite: FAILED: %v", err)
			failed = true
		}
	}
	if err := writeReport(c); err != nil {
		log.Fatal(err)
	}
	log.Printf("report: %s", c.report)
	if failed || ctx.Err() != nil {
		os.Exit(1)
	}
}

// SizeResult is everything measured at one lab size.
type SizeResult struct {
	Size       int                 `json:"size"`
	Runs       int                 `json:"runs"`
	Started    time.Time           `json:"started"`
	Ended      time.Time           `json:"ended"`
	Machine    Machine             `json:"machine"`
	Commands   string              `json:"commands"`
	Config     map[string]string   `json:"config"`
	LabOff     *LabStats           `json:"lab_off,omitempty"`
	LabOn      *LabStats           `json:"lab_on,omitempty"`
	LabFlight  *LabStats           `json:"lab_flight,omitempty"`
	Off        []OffRun            `json:"off"`
	On         []ScanFig           `json:"on"`
	Flight     *ScanFig            `json:"flight,omitempty"`
	FlightNote string              `json:"flight_note,omitempty"`
	Rate       *ScanFig            `json:"rate,omitempty"`
	AnalyzeBig *AnalyzeFig         `json:"analyze_big,omitempty"`
	Profiles   map[string]string   `json:"profiles,omitempty"`
	MemPeaks   map[string]MemPeak  `json:"mem_peaks,omitempty"`
	Errors     []string            `json:"errors,omitempty"`
	Argv       map[string][]string `json:"argv"`
}

// MemPeak is the runtime's view at the scanner's heap+stack peak (profiled runs).
type MemPeak struct {
	HeapInuse  uint64 `json:"heap_inuse"`
	StackInuse uint64 `json:"stack_inuse"`
	Sys        uint64 `json:"sys"`
	Goroutines int    `json:"goroutines"`
}

// OffRun is one latency-off run: everything side by side.
type OffRun struct {
	Scan    ScanFig     `json:"scan"`
	ScanX   ScanFig     `json:"scan_x25519"`
	DNSOnly ScanFig     `json:"dns_only"`
	TLS     *LoopFig    `json:"tlsloop"`
	TLSX    *LoopFig    `json:"tlsloop_x25519"`
	DNS     *LoopFig    `json:"dnsloop"`
	Analyze *AnalyzeFig `json:"analyze"`
}

// ScanFig is one measured scan.
type ScanFig struct {
	Proc       Proc             `json:"proc"`
	Counts     map[string]int64 `json:"counts"`
	Outcomes   map[string]int64 `json:"outcomes"`
	Errors     map[string]int64 `json:"error_classes"`
	ScanS      float64          `json:"scan_s"` // manifest ended - started
	DNS        map[string]int64 `json:"dns_statuses"`
	MXBytes    int64            `json:"mx_bytes"`
	ProbeBytes int64            `json:"probe_bytes"`
	Dir        string           `json:"dir"`
}

// LoopFig is a tlsloop or dnsloop result.
type LoopFig struct {
	Proc      Proc    `json:"proc"`
	Count     int64   `json:"count"`
	Errors    int64   `json:"errors"`
	FirstErr  string  `json:"first_error,omitempty"`
	WallS     float64 `json:"wall_s"`
	CPUS      float64 `json:"cpu_s"` // inside the loop
	PerOpUs   float64 `json:"cpu_per_op_us"`
	OpsPerS   float64 `json:"ops_per_s"`
	InFlight  int     `json:"in_flight"`
	GroupsArg string  `json:"groups,omitempty"`
}

// AnalyzeFig is one measured analysis.
type AnalyzeFig struct {
	Proc      Proc  `json:"proc"`
	ProbeRows int64 `json:"probe_rows"`
	MXRows    int64 `json:"mx_rows"`
	Leaves    int64 `json:"leaves_parsed"`
	Shards    int   `json:"shards"`
}

func (s ScanFig) n(k string) float64 { return float64(s.Counts[k]) }

func scanTimeout(n int) time.Duration {
	return min(120*time.Second+time.Duration(n)*4*time.Millisecond, 30*time.Minute)
}

func benchSize(ctx context.Context, c config, n int, largest bool) (res SizeResult) {
	res = SizeResult{Size: n, Runs: c.runs, Started: time.Now().UTC(), Profiles: map[string]string{},
		MemPeaks: map[string]MemPeak{}, Argv: map[string][]string{}, Config: map[string]string{
			"latency_on": c.latency, "latency_flight": c.flightLatency, "concurrency_on": fmt.Sprint(c.concOn), "concurrency_off": fmt.Sprint(c.concOff),
			"loop_in_flight": fmt.Sprint(c.loopC)}}
	defer func() { res.Ended = time.Now().UTC() }()
	work := filepath.Join(c.work, fmt.Sprintf("size-%d", n))
	_ = os.RemoveAll(work)
	if err := os.MkdirAll(work, 0o755); err != nil {
		res.Errors = append(res.Errors, err.Error())
		return res
	}
	fail := func(err error) bool {
		if err != nil {
			log.Printf("size %d: %v", n, err)
			res.Errors = append(res.Errors, err.Error())
			return true
		}
		return false
	}
	prof := n == c.profileSize
	labStartTimeout := 120*time.Second + time.Duration(n)*time.Millisecond
	mx := []string{c.bin}
	if prof {
		mx = []string{c.profiled}
	}

	if c.phases["off"] {
		if !benchOff(ctx, c, n, largest, work, &res, fail, prof, labStartTimeout, mx) {
			return res
		}
	}
	if c.phases["on"] || c.phases["flight"] {
		benchOn(ctx, c, n, work, &res, fail, prof, labStartTimeout)
	}
	return res
}

func scanArgs(lab *Lab, conc int) []string {
	return []string{"-resolver", lab.DNS, "-port", fmt.Sprint(lab.Port), "-mta-sts-port", fmt.Sprint(lab.STSPort),
		"-allow", "127.0.0.0/8", "-allow", "::1/128", "-ipv6",
		"-ehlo-name", "scanner.mxsurvey.test", "-rate", "0", "-dns-rate", "0", "-ip-interval", "0",
		"-timeout", "10s", "-step-timeout", "5s", "-progress", "1s", "-concurrency", fmt.Sprint(conc)}
}

func scanner(ctx context.Context, n int, work string, res *SizeResult, lab *Lab) func(name string, pre []string, args ...string) (ScanFig, error) {
	domains := filepath.Join(lab.Dir, "domains.csv")
	return func(name string, pre []string, args ...string) (ScanFig, error) {
		dir := filepath.Join(work, name)
		_ = os.RemoveAll(dir)
		a := append(append(append(append([]string{}, pre...), "scan"), args...), "-o", dir, domains)
		res.Argv[name] = a
		log.Printf("size %d: %s", n, name)
		p, _, err := run(ctx, name, a, filepath.Join(work, name+".log"), scanTimeout(n), lab.pid())
		f := ScanFig{Proc: p, Dir: dir}
		if err != nil {
			return f, err
		}
		return f, readManifest(&f)
	}
}

// benchOff is the latency-off phase: the CPU is the limit. It reports
// whether the run may go on.
func benchOff(ctx context.Context, c config, n int, largest bool, work string, resp *SizeResult, fail func(error) bool, prof bool,
	labStartTimeout time.Duration, mx []string) bool {
	res := resp
	_ = mx
	log.Printf("size %d: starting the lab (latency off)", n)
	labArgv := mx
	if prof {
		labArgv = []string{c.profiled, "-cpuprofile", filepath.Join(work, "lab.cpu.prof")}
	}
	lab, argv, err := startLab(ctx, labArgv, n, "0", filepath.Join(work, "off"), labStartTimeout)
	res.Argv["lab_off"] = argv
	if fail(err) {
		return false
	}
	log.Printf("size %d: lab ready in %.1fs (dns %s, smtp port %d)", n, lab.StartS, lab.DNS, lab.Port)
	domains := filepath.Join(lab.Dir, "domains.csv")
	base := func(conc int) []string { return scanArgs(lab, conc) }
	scan := scanner(ctx, n, work, res, lab)
	var lastScan ScanFig
	for r := range c.runs {
		if ctx.Err() != nil {
			break
		}
		var o OffRun
		var err error
		log.Printf("size %d: latency off, run %d/%d", n, r+1, c.runs)
		if o.Scan, err = scan("scan-off", []string{c.bin}, base(c.concOff)...); fail(err) {
			break
		}
		lastScan = o.Scan
		if o.ScanX, err = scan("scan-off-x25519", []string{c.bin}, append(base(c.concOff), "-tls-groups", "x25519")...); fail(err) {
			break
		}
		// No -allow: every lab address is special-purpose, so every target is
		// recorded as blocked without a connection. What is left is DNS.
		dnsOnly := []string{"-resolver", lab.DNS, "-ehlo-name", "scanner.mxsurvey.test", "-rate", "0", "-dns-rate", "0", "-progress", "1s"}
		if o.DNSOnly, err = scan("scan-dns-only", []string{c.bin}, dnsOnly...); fail(err) {
			break
		}
		targets := filepath.Join(work, "targets.txt")
		ok, err := writeTargets(o.Scan.Dir, targets)
		if fail(err) {
			break
		}
		o.TLS, o.TLSX = tlsLoops(ctx, c, work, targets, c.loopC, min(max(ok, 1000), 20000), "60s", lab.pid(), res.Argv, fail)
		nQ := min(max(o.Scan.Counts["dns_queries"], 1000), 100000)
		a := []string{c.dnsloop, "-server", lab.DNS, "-domains", domains, "-c", "200", "-n", fmt.Sprint(nQ), "-duration", "60s"}
		res.Argv["dnsloop"] = a
		if o.DNS, err = loop(ctx, "dnsloop", a, filepath.Join(work, "dnsloop.log"), lab.pid()); fail(err) {
			break
		}
		if o.Analyze, err = analyze(ctx, c, work, "analyze", []string{c.bin}, lab.Dir, []string{o.Scan.Dir}); fail(err) {
			break
		}
		res.Argv["analyze"] = o.Analyze.Proc.Argv
		res.Off = append(res.Off, o)
	}
	if prof && lastScan.Dir != "" && ctx.Err() == nil {
		pre := []string{c.profiled, "-cpuprofile", filepath.Join(work, "scan.cpu.prof"), "-memprofile", filepath.Join(work, "scan.heap.prof")}
		if _, err := scan("scan-off-profiled", pre, base(c.concOff)...); !fail(err) {
			res.Profiles["scan_cpu"] = pprofTop(filepath.Join(work, "scan.cpu.prof"), false)
			res.Profiles["scan_cpu_cum"] = pprofTop(filepath.Join(work, "scan.cpu.prof"), true)
			res.Profiles["scan_heap_off"] = pprofHeap(filepath.Join(work, "scan.heap.prof"))
			res.MemPeaks["scan_off"] = readPeak(filepath.Join(work, "scan.heap.prof.json"))
		}
		pre = []string{c.profiled, "-cpuprofile", filepath.Join(work, "analyze.cpu.prof"), "-memprofile", filepath.Join(work, "analyze.heap.prof")}
		if _, err := analyze(ctx, c, work, "analyze-profiled", pre, lab.Dir, []string{lastScan.Dir}); !fail(err) {
			res.Profiles["analyze_cpu"] = pprofTop(filepath.Join(work, "analyze.cpu.prof"), false)
			res.Profiles["analyze_heap"] = pprofHeap(filepath.Join(work, "analyze.heap.prof"))
		}
	}
	if n == c.rateSize && ctx.Err() == nil {
		a := base(c.concOff)
		for i := range a {
			switch a[i] {
			case "-rate":
				a[i+1] = "200"
			case "-dns-rate":
				a[i+1] = "500"
			}
		}
		if f, err := scan("scan-rate", []string{c.bin}, a...); !fail(err) {
			res.Rate = &f
		}
	}
	if largest && c.analyzeRows > 0 && lastScan.Dir != "" && ctx.Err() == nil {
		if rows := lastScan.Counts["probe_rows_written"]; rows > 0 {
			k := int((c.analyzeRows + rows - 1) / rows)
			var dirs []string
			for i := range k {
				d := filepath.Join(work, fmt.Sprintf("shards/copy-%03d", i))
				if fail(linkTree(lastScan.Dir, d)) {
					break
				}
				dirs = append(dirs, d)
			}
			if len(dirs) == k {
				af, err := analyze(ctx, c, work, "analyze-big", []string{c.bin}, lab.Dir, dirs)
				if !fail(err) {
					res.AnalyzeBig = af
				}
			}
			_ = os.RemoveAll(filepath.Join(work, "shards"))
		}
	}
	st := lab.stop()
	st.Argv = res.Argv["lab_off"]
	res.LabOff = &st
	if prof {
		res.Profiles["lab_cpu"] = pprofTop(filepath.Join(work, "lab.cpu.prof"), false)
	}
	return ctx.Err() == nil
}

// benchOn is the latency-on phase: thousands of probes in flight, as on the
// internet; with "flight", one more scan without the per-address limit, on
// a lab slow enough (-flight-latency) that the CPU is not what bounds the
// probes in flight.
func benchOn(ctx context.Context, c config, n int, work string, res *SizeResult, fail func(error) bool, prof bool, labStartTimeout time.Duration) {
	if c.phases["on"] {
		log.Printf("size %d: starting the lab (latency %s)", n, c.latency)
		lab, argv, err := startLab(ctx, []string{c.bin}, n, c.latency, filepath.Join(work, "on"), labStartTimeout)
		res.Argv["lab_on"] = argv
		if fail(err) {
			return
		}
		scan := scanner(ctx, n, work, res, lab)
		for r := range c.runs {
			if ctx.Err() != nil {
				break
			}
			log.Printf("size %d: latency on, run %d/%d", n, r+1, c.runs)
			f, err := scan("scan-on", []string{c.bin}, scanArgs(lab, c.concOn)...)
			if fail(err) {
				break
			}
			res.On = append(res.On, f)
		}
		if prof && ctx.Err() == nil {
			pre := []string{c.profiled, "-memprofile", filepath.Join(work, "scan-on.heap.prof"), "-mem-every", "500ms"}
			if _, err := scan("scan-on-profiled", pre, scanArgs(lab, c.concOn)...); !fail(err) {
				res.Profiles["scan_heap_on"] = pprofHeap(filepath.Join(work, "scan-on.heap.prof"))
				res.MemPeaks["scan_on"] = readPeak(filepath.Join(work, "scan-on.heap.prof.json"))
			}
		}
		st := lab.stop()
		st.Argv = res.Argv["lab_on"]
		res.LabOn = &st
	}
	if !c.phases["flight"] || c.flightPerIP <= 1 || ctx.Err() != nil {
		return
	}
	log.Printf("size %d: starting the lab (latency %s)", n, c.flightLatency)
	lab, argv, err := startLab(ctx, []string{c.bin}, n, c.flightLatency, filepath.Join(work, "flight"), labStartTimeout)
	res.Argv["lab_flight"] = argv
	if fail(err) {
		return
	}
	// Politeness caps in-flight probes at the number of distinct busy
	// addresses; lifting the per-address limit lets the queue into flight.
	// Five slow replies make a probe last up to five times the latency: the
	// deadlines grow with it, so only the lab's tarpits time out.
	step, whole := 5*time.Second, 10*time.Second
	parts := strings.Split(c.flightLatency, "-") // "3s-6s" or "5s": the highest is last
	if hi, err := time.ParseDuration(parts[len(parts)-1]); err == nil {
		step, whole = step+2*hi, whole+8*hi
	}
	args := append(scanArgs(lab, c.concOn), "-per-ip-concurrency", fmt.Sprint(c.flightPerIP),
		"-timeout", whole.String(), "-step-timeout", step.String())
	scan := scanner(ctx, n, work, res, lab)
	f, err := scan("scan-on-flight", []string{c.bin}, args...)
	if !fail(err) {
		res.Flight = &f
		res.FlightNote = fmt.Sprintf("-per-ip-concurrency %d, lab latency %s", c.flightPerIP, c.flightLatency)
	}
	if prof && ctx.Err() == nil {
		pre := []string{c.profiled, "-memprofile", filepath.Join(work, "scan-flight.heap.prof"), "-mem-every", "500ms"}
		if _, err := scan("scan-flight-profiled", pre, args...); !fail(err) {
			res.Profiles["scan_heap_flight"] = pprofHeap(filepath.Join(work, "scan-flight.heap.prof"))
			res.MemPeaks["scan_flight"] = readPeak(filepath.Join(work, "scan-flight.heap.prof.json"))
		}
	}
	st := lab.stop()
	st.Argv = argv
	res.LabFlight = &st
}

// merge keeps, from an earlier result of the same size, the figures of the
// phases this invocation did not run.
func merge(c config, path string, res SizeResult) SizeResult {
	b, err := os.ReadFile(path)
	if err != nil {
		return res
	}
	var old SizeResult
	if json.Unmarshal(b, &old) != nil {
		return res
	}
	for k, v := range old.Argv {
		if _, ok := res.Argv[k]; !ok {
			res.Argv[k] = v
		}
	}
	for k, v := range old.Profiles {
		if _, ok := res.Profiles[k]; !ok {
			res.Profiles[k] = v
		}
	}
	for k, v := range old.MemPeaks {
		if _, ok := res.MemPeaks[k]; !ok {
			res.MemPeaks[k] = v
		}
	}
	if !c.phases["off"] {
		res.Off, res.Rate, res.AnalyzeBig, res.LabOff, res.Runs = old.Off, old.Rate, old.AnalyzeBig, old.LabOff, old.Runs
		res.Started, res.Commands = old.Started, old.Commands
	}
	if !c.phases["on"] {
		res.On, res.LabOn = old.On, old.LabOn
	}
	if !c.phases["flight"] {
		res.Flight, res.FlightNote, res.LabFlight = old.Flight, old.FlightNote, old.LabFlight
	}
	return res
}

// tlsLoops runs tlsloop with Go's default groups and with X25519 against
// the targets file, n handshakes each, and returns both (nil when one failed).
func tlsLoops(ctx context.Context, c config, work, targets string, inFlight int, n int64, dur string, labPID int,
	argv map[string][]string, fail func(error) bool) (def, x *LoopFig) {
	for _, g := range []string{"default", "x25519"} {
		a := []string{c.tlsloop, "-targets", targets, "-c", fmt.Sprint(inFlight), "-n", fmt.Sprint(n), "-duration", dur, "-tls-groups", g}
		argv["tlsloop-"+g] = a
		lf, err := loop(ctx, "tlsloop-"+g, a, filepath.Join(work, "tlsloop-"+g+".log"), labPID)
		if fail(err) {
			continue
		}
		lf.GroupsArg = g
		if g == "default" {
			def = lf
		} else {
			x = lf
		}
	}
	return def, x
}

func loop(ctx context.Context, name string, argv []string, logPath string, labPID int) (*LoopFig, error) {
	log.Printf("  %s", name)
	p, out, err := run(ctx, name, argv, logPath, 3*time.Minute, labPID)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	var r struct {
		Groups     string  `json:"groups"`
		InFlight   int     `json:"in_flight"`
		Handshakes int64   `json:"handshakes"`
		Exchanges  int64   `json:"exchanges"`
		Errors     int64   `json:"errors"`
		FirstError string  `json:"first_error"`
		WallS      float64 `json:"wall_s"`
		UserS      float64 `json:"user_s"`
		SysS       float64 `json:"sys_s"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("%s: output: %v", name, err)
	}
	f := &LoopFig{Proc: p, Count: r.Handshakes + r.Exchanges, Errors: r.Errors, FirstErr: r.FirstError, WallS: r.WallS,
		CPUS: r.UserS + r.SysS, InFlight: r.InFlight}
	if f.Count > 0 {
		f.PerOpUs = f.CPUS / float64(f.Count) * 1e6
		f.OpsPerS = float64(f.Count) / f.WallS
	}
	// A loop that mostly fails measures failures, not handshakes.
	if f.Errors > f.Count/20 {
		return f, fmt.Errorf("%s: %d errors for %d successes (first: %s)", name, f.Errors, f.Count, f.FirstErr)
	}
	return f, nil
}

var (
	reRows   = regexp.MustCompile(`analyze: (probes|mx): (\d+) rows read`)
	reLeaves = regexp.MustCompile(`leaves_parsed=(\d+)`)
)

func analyze(ctx context.Context, c config, work, name string, pre []string, labDir string, dirs []string) (*AnalyzeFig, error) {
	log.Printf("  %s (%d scan dirs)", name, len(dirs))
	return analyzeDirs(ctx, work, name, name, pre, filepath.Join(labDir, "ca.pem"), dirs, 15*time.Minute)
}

// analyzeDirs runs "mxsurvey analyze" over dirs into work/NAME-report and
// reads the rows and leaves it counted from its log (work/NAME.log); step
// names the process in the figures.
func analyzeDirs(ctx context.Context, work, name, step string, pre []string, roots string, dirs []string, timeout time.Duration) (*AnalyzeFig, error) {
	out := filepath.Join(work, name+"-report")
	_ = os.RemoveAll(out)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return nil, err
	}
	argv := append(append(append([]string{}, pre...), "analyze", "-roots", roots, "-o", out), dirs...)
	p, _, err := run(ctx, step, argv, filepath.Join(work, name+".log"), timeout, 0)
	f := &AnalyzeFig{Proc: p, Shards: len(dirs)}
	if err != nil {
		return f, err
	}
	b, _ := os.ReadFile(p.Log)
	for _, m := range reRows.FindAllStringSubmatch(string(b), -1) {
		v, _ := strconv.ParseInt(m[2], 10, 64)
		if m[1] == "probes" {
			f.ProbeRows = max(f.ProbeRows, v)
		} else {
			f.MXRows = max(f.MXRows, v)
		}
	}
	if m := reLeaves.FindStringSubmatch(string(b)); m != nil {
		f.Leaves, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return f, nil
}

func readManifest(f *ScanFig) error {
	m, err := store.ReadManifest(f.Dir)
	if err != nil {
		return err
	}
	f.DNS = m.DNSStatuses
	if m.Status != survey.StatusComplete || m.Ended == nil {
		return fmt.Errorf("%s: manifest status %q", f.Dir, m.Status)
	}
	f.Counts, f.Outcomes, f.Errors = m.Counts, m.Outcomes, m.ErrorClasses
	f.ScanS = m.Ended.Sub(m.Started).Seconds()
	f.MXBytes = duBytes(survey.MXDir(f.Dir))
	f.ProbeBytes = duBytes(survey.ProbesDir(f.Dir))
	return nil
}

func duBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

func linkTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		t := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(t, 0o755)
		}
		return os.Link(p, t)
	})
}

func readPeak(path string) MemPeak {
	var p MemPeak
	b, _ := os.ReadFile(path)
	_ = json.Unmarshal(b, &p)
	return p
}
