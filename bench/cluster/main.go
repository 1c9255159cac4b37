// Command cluster is the benchmark of a scan spread over worker processes
// (scripts/bench.sh, `make bench`; docs/distributed.md). For each number of
// workers it starts a lab with latency on (every reply step delayed, as on
// the internet), a nats-server on a fresh file store, the workers (each
// with the same -concurrency) and the coordinator, all as separate
// processes, and measures the scan's throughput, the coordinator's CPU and
// peak memory per domain, the bytes through NATS per domain (the server's
// /varz counters), and how busy the machine's cores were (CPU of every
// process over the wall time). It writes the figures as JSON and a
// Markdown section for BENCHMARKS.md.
//
// Every process is bounded in time; the lab is bounded in size.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mxsurvey/mxsurvey/bench/internal/counts"
)

type config struct {
	bin, nats           string
	domains, runs       int
	workers             []int
	conc, dnsConc       int
	latency, work, json string
	report, commands    string
}

// Run is one scan with a number of workers.
type Run struct {
	Workers       int     `json:"workers"`
	Domains       int     `json:"domains"`
	WallS         float64 `json:"wall_s"`
	CoordCPUS     float64 `json:"coordinator_cpu_s"`
	CoordRSSKiB   int64   `json:"coordinator_max_rss_kib"`
	WorkersCPUS   float64 `json:"workers_cpu_s"`
	WorkerRSSKiB  int64   `json:"worker_max_rss_kib"` // the largest worker's
	NATSCPUS      float64 `json:"nats_cpu_s"`
	LabCPUS       float64 `json:"lab_cpu_s"`
	NATSInBytes   int64   `json:"nats_in_bytes"`         // from clients to the server
	NATSOutBytes  int64   `json:"nats_out_bytes"`        // from the server to clients
	NATSStoreByte int64   `json:"nats_store_peak_bytes"` // the file store, sampled every second
	Probes        int64   `json:"probes"`
	// Load is the machine's 1-minute load average at the end: the cores
	// are shared with whatever else runs.
	Load float64 `json:"load_average"`
	// PeakProbeRate is the highest probe rate over any 4 s of the
	// coordinator's progress lines: the steady state, without the start
	// (every domain resolved at once) and the tail.
	PeakProbeRate float64 `json:"peak_probes_per_s"`
}

// Results are the figures of one invocation.
type Results struct {
	Date        string `json:"date"`
	NProc       int    `json:"nproc"`
	Latency     string `json:"latency"`
	Concurrency int    `json:"concurrency_per_worker"`
	DNSConc     int    `json:"dns_concurrency_per_worker"`
	Commands    string `json:"commands"`
	Runs        []Run  `json:"runs"`
}

func main() {
	var c config
	var workers string
	flag.StringVar(&c.bin, "bin", "bin/bench/mxsurvey", "mxsurvey binary")
	flag.StringVar(&c.nats, "nats-server", "bin/bench/nats-server", "nats-server binary")
	flag.IntVar(&c.domains, "domains", 10000, "lab size")
	flag.StringVar(&workers, "workers", "1 2 4", "numbers of worker processes, space separated")
	flag.IntVar(&c.runs, "runs", 3, "runs per number of workers (figures are medians)")
	flag.IntVar(&c.conc, "concurrency", 50, "-concurrency of each worker")
	flag.IntVar(&c.dnsConc, "dns-concurrency", 50, "-dns-concurrency of each worker")
	flag.StringVar(&c.latency, "latency", "50ms", "lab latency per reply step")
	flag.StringVar(&c.work, "work", "out/bench/cluster", "scratch directory")
	flag.StringVar(&c.json, "results", "out/bench/results/cluster.json", "results file")
	flag.StringVar(&c.report, "report", "out/bench/cluster.md", "Markdown section to write")
	flag.StringVar(&c.commands, "commands", "", "how this was invoked (for the report)")
	flag.Parse()
	log.SetFlags(log.Ltime)
	log.SetPrefix("bench cluster: ")
	var err error
	if c.workers, err = counts.Parse("workers", workers); err != nil {
		log.Fatal(err)
	}
	res := Results{Date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), NProc: runtime.NumCPU(), Latency: c.latency,
		Concurrency: c.conc, DNSConc: c.dnsConc, Commands: c.commands}
	for r := range c.runs {
		for _, n := range c.workers {
			run, err := scan(c, n, filepath.Join(c.work, fmt.Sprintf("w%d-r%d", n, r)))
			if err != nil {
				log.Fatalf("%d workers, run %d: %v", n, r+1, err)
			}
			log.Printf("%d workers, run %d: %d domains in %.1f s (%.0f/s), coordinator %.2f s CPU, %d MiB; NATS %.1f KiB/domain",
				n, r+1, run.Domains, run.WallS, float64(run.Domains)/run.WallS, run.CoordCPUS, run.CoordRSSKiB>>10,
				float64(run.NATSInBytes+run.NATSOutBytes)/float64(run.Domains)/1024)
			res.Runs = append(res.Runs, run)
		}
	}
	for _, p := range []string{c.json, c.report} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			log.Fatal(err)
		}
	}
	b, _ := json.MarshalIndent(res, "", " ")
	if err := os.WriteFile(c.json, b, 0o644); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(c.report, []byte(render(res)), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("results in %s, report section in %s", c.json, c.report)
}

// proc is a child process whose rusage is read when it ends.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func start(dir, name, bin string, args ...string) (*proc, error) {
	f, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	p := &proc{cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// stop ends the process with SIGTERM (SIGKILL after 30 s) and returns its
// CPU seconds and peak RSS.
func (p *proc) stop() (cpu float64, rssKiB int64) {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	return usage(p.cmd.ProcessState)
}

func usage(ps *os.ProcessState) (cpu float64, rssKiB int64) {
	if ps == nil {
		return 0, 0
	}
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		rssKiB = ru.Maxrss
	}
	return ps.UserTime().Seconds() + ps.SystemTime().Seconds(), rssKiB
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// scan runs one cluster scan of a fresh lab with n workers.
func scan(c config, n int, dir string) (Run, error) {
	run := Run{Workers: n, Domains: c.domains}
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return run, err
	}
	labDir := filepath.Join(dir, "lab")
	// Without the hostile cases, whose timeouts would make a tail that no
	// number of workers shortens.
	lab, err := start(dir, "lab", c.bin, "lab", "-domains", strconv.Itoa(c.domains), "-seed", "1", "-dns", "127.0.0.1:0",
		"-smtp-port", "0", "-latency", c.latency, "-cases", "hostile=0", "-no-truth", "-out", labDir)
	if err != nil {
		return run, err
	}
	defer lab.stop()
	var info struct {
		DNS  string `json:"dns"`
		Port int    `json:"smtp_port"`
	}
	for deadline := time.Now().Add(2 * time.Minute); info.Port == 0; time.Sleep(100 * time.Millisecond) {
		if b, err := os.ReadFile(filepath.Join(labDir, "lab.json")); err == nil {
			json.Unmarshal(b, &info)
		}
		if time.Now().After(deadline) {
			return run, fmt.Errorf("lab not ready within 2 minutes (%s)", dir)
		}
	}
	port, err := freePort()
	if err != nil {
		return run, err
	}
	mon, err := freePort()
	if err != nil {
		return run, err
	}
	store := filepath.Join(dir, "nats")
	nats, err := start(dir, "nats-server", c.nats, "-js", "-sd", store, "-a", "127.0.0.1", "-p", strconv.Itoa(port),
		"-m", strconv.Itoa(mon))
	if err != nil {
		return run, err
	}
	defer nats.stop()
	url := "nats://127.0.0.1:" + strconv.Itoa(port)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := varz(mon); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return run, fmt.Errorf("nats-server not ready within 30 s")
		}
	}
	var ws []*proc
	for i := range n {
		w, err := start(dir, fmt.Sprintf("worker-%d", i+1), c.bin, "worker", "-nats", url, "-resolver", info.DNS,
			"-allow", "127.0.0.0/8", "-allow", "::1/128", "-concurrency", strconv.Itoa(c.conc),
			"-dns-concurrency", strconv.Itoa(c.dnsConc), "-id", fmt.Sprintf("w%d", i+1))
		if err != nil {
			return run, err
		}
		ws = append(ws, w)
	}
	v0, err := varz(mon)
	if err != nil {
		return run, err
	}
	// Throughput of workers, not of politeness: no per-address or global
	// limit (the lab's providers share a few addresses).
	t0 := time.Now()
	coord, err := start(dir, "coordinator", c.bin, "scan", "-nats", url, "-resolver", info.DNS, "-port", strconv.Itoa(info.Port),
		"-allow", "127.0.0.0/8", "-allow", "::1/128", "-ipv6", "-ehlo-name", "scanner.mxsurvey.test",
		"-rate", "0", "-dns-rate", "0", "-ip-interval", "0", "-per-ip-concurrency", "100000",
		"-timeout", "10s", "-step-timeout", "5s", "-dns-timeout", "2s", "-progress", "1s",
		"-o", filepath.Join(dir, "scan"), filepath.Join(labDir, "domains.csv"))
	if err != nil {
		return run, err
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
wait:
	for deadline := time.After(time.Hour); ; {
		select {
		case <-coord.done:
			break wait
		case <-tick.C:
			run.NATSStoreByte = max(run.NATSStoreByte, du(store))
		case <-deadline:
			coord.stop()
			return run, fmt.Errorf("the scan did not end within an hour")
		}
	}
	run.WallS = time.Since(t0).Seconds()
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Sscan(string(b), &run.Load)
	}
	if !coord.cmd.ProcessState.Success() {
		return run, fmt.Errorf("coordinator: %v (log %s)", coord.cmd.ProcessState, filepath.Join(dir, "coordinator.log"))
	}
	run.CoordCPUS, run.CoordRSSKiB = usage(coord.cmd.ProcessState)
	run.PeakProbeRate = peakRate(filepath.Join(dir, "coordinator.log"), 4)
	v1, err := varz(mon)
	if err != nil {
		return run, err
	}
	run.NATSInBytes, run.NATSOutBytes = v1.InBytes-v0.InBytes, v1.OutBytes-v0.OutBytes
	for _, w := range ws {
		cpu, rss := w.stop()
		run.WorkersCPUS += cpu
		run.WorkerRSSKiB = max(run.WorkerRSSKiB, rss)
	}
	run.NATSCPUS, _ = nats.stop()
	run.LabCPUS, _ = lab.stop()
	var m struct {
		Counts map[string]int64 `json:"counts"`
	}
	if b, err := os.ReadFile(filepath.Join(dir, "scan", "manifest.json")); err == nil && json.Unmarshal(b, &m) == nil {
		run.Probes = m.Counts["probe_rows_written"]
	}
	return run, nil
}

var reTick = regexp.MustCompile(`^mxsurvey: (\d+)s .* probes (\d+) done`)

// peakRate is the highest rate of probes done over any window of at least
// win seconds between the progress lines of log.
func peakRate(log string, win int) float64 {
	b, err := os.ReadFile(log)
	if err != nil {
		return 0
	}
	var ts, ps []int
	for _, l := range strings.Split(string(b), "\n") {
		if m := reTick.FindStringSubmatch(l); m != nil {
			t, _ := strconv.Atoi(m[1])
			p, _ := strconv.Atoi(m[2])
			ts, ps = append(ts, t), append(ps, p)
		}
	}
	best := 0.0
	for i := range ts {
		for j := i + 1; j < len(ts); j++ {
			if ts[j]-ts[i] >= win {
				best = max(best, float64(ps[j]-ps[i])/float64(ts[j]-ts[i]))
				break
			}
		}
	}
	return best
}

type varzInfo struct {
	InBytes  int64 `json:"in_bytes"`
	OutBytes int64 `json:"out_bytes"`
}

func varz(port int) (varzInfo, error) {
	var v varzInfo
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/varz")
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	return v, json.NewDecoder(resp.Body).Decode(&v)
}

func du(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	xs = slices.Clone(xs)
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

// render is the Markdown section: medians per number of workers.
func render(r Results) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "## A scan over worker processes (NATS JetStream)\n\n")
	fmt.Fprintf(&b, "A lab of %d domains (`-cases hostile=0`: no server makes a probe wait for its timeout) with latency %s per reply step, scanned by a coordinator and 1..N `mxsurvey worker` processes "+
		"(each `-concurrency %d -dns-concurrency %d`) through one nats-server, all on this machine (%d cores); no per-address or global "+
		"limit, so the workers' throughput is measured, not the politeness tail. Medians of %d runs (%s). docs/distributed.md has the design.\n\n",
		r.Runs[0].Domains, r.Latency, r.Concurrency, r.DNSConc, r.NProc, len(r.Runs)/max(1, countWorkers(r)), r.Date)
	fmt.Fprintf(&b, "| workers | wall | domains/s | speed-up | probes/s, best 4 s | speed-up | coordinator CPU/domain | coordinator peak RSS | NATS bytes/domain (in+out) | NATS store peak | CPU used, all processes | machine load |\n")
	fmt.Fprintf(&b, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var base, peakBase float64
	for _, n := range workerCounts(r) {
		var wall, ccpu, crss, bytesPer, store, busy, load, peak []float64
		for _, run := range r.Runs {
			if run.Workers != n {
				continue
			}
			d := float64(run.Domains)
			wall = append(wall, run.WallS)
			ccpu = append(ccpu, run.CoordCPUS/d)
			crss = append(crss, float64(run.CoordRSSKiB))
			bytesPer = append(bytesPer, float64(run.NATSInBytes+run.NATSOutBytes)/d)
			store = append(store, float64(run.NATSStoreByte))
			busy = append(busy, (run.CoordCPUS+run.WorkersCPUS+run.NATSCPUS+run.LabCPUS)/run.WallS)
			load = append(load, run.Load)
			peak = append(peak, run.PeakProbeRate)
		}
		rate := float64(r.Runs[0].Domains) / median(wall)
		if base == 0 {
			base, peakBase = rate/float64(n), median(peak)/float64(n)
		}
		fmt.Fprintf(&b, "| %d | %.1f s | %.0f | %.2fx | %.0f | %.2fx | %.0f µs | %.0f MiB | %.1f KiB | %.1f MiB | %.2f of %d cores | %.1f |\n",
			n, median(wall), rate, rate/base, median(peak), median(peak)/peakBase, median(ccpu)*1e6, median(crss)/1024, median(bytesPer)/1024,
			median(store)/(1<<20), median(busy), r.NProc, median(load))
	}
	fmt.Fprintf(&b, "\nSpeed-up is against one worker, of the whole scan (wall) and of its steady state (the best 4 s of probes, without the "+
		"start, where every domain is resolved at once, and the tail); the target is at least 0.8 x the number of workers while the cores are not saturated "+
		"(CPU used: of this benchmark's processes; the lab's servers run on the same cores as the scanners here, on the internet they do not; "+
		"machine load: the 1-minute load average at the end of the run, everything else on the machine included). "+
		"NATS bytes are the server's in_bytes + out_bytes (/varz) over the scan; messages are zstd-compressed JSON. "+
		"The store holds only what is not yet acknowledged.\n")
	if r.Commands != "" {
		fmt.Fprintf(&b, "\nRun with: `%s`\n", r.Commands)
	}
	return b.String()
}

func workerCounts(r Results) []int {
	var ns []int
	for _, run := range r.Runs {
		if !slices.Contains(ns, run.Workers) {
			ns = append(ns, run.Workers)
		}
	}
	slices.Sort(ns)
	return ns
}

func countWorkers(r Results) int { return len(workerCounts(r)) }
