package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/internal/connlog"
	"github.com/mxsurvey/mxsurvey/internal/datasetcheck"
)

// The cluster tests run every part as its own process, as users run them:
// nats-server built from its module, the lab, workers and the coordinator
// built from cmd/mxsurvey. They kill them with SIGKILL and check the
// dataset and, from the lab's connection log, the servers' view.

// proc is a process of a test; its output goes to a file shown when the
// test fails.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func startProc(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, log: filepath.Join(t.TempDir(), name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("--- %s (%s):\n%s", name, strings.Join(args, " "), tail(p.output(), 3000))
		}
	})
	return p
}

func (p *proc) kill() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Kill()
		<-p.done
	}
}

// wait waits for the process to exit and returns its exit status (-1 when
// it was still running after d: it is then killed).
func (p *proc) wait(d time.Duration) int {
	select {
	case <-p.done:
	case <-time.After(d):
		p.kill()
		return -1
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		return -1
	}
	return 0
}

func (p *proc) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// natsProc is a nats-server process with its file store in a directory
// that outlives restarts.
type natsProc struct {
	bin, store string
	port       int
	args       []string
	p          *proc
	restarts   int
}

func startNATSProc(t *testing.T, args ...string) *natsProc {
	t.Helper()
	n := &natsProc{bin: build(t, "nats-server", "github.com/nats-io/nats-server/v2"), store: t.TempDir(), port: freePort(t), args: args}
	n.start(t)
	return n
}

func (n *natsProc) url() string { return "nats://127.0.0.1:" + strconv.Itoa(n.port) }

func (n *natsProc) start(t *testing.T) {
	t.Helper()
	args := append([]string{"-a", "127.0.0.1", "-p", strconv.Itoa(n.port), "-sd", n.store}, n.args...)
	n.p = startProc(t, fmt.Sprintf("nats-server-%d", n.restarts), n.bin, args...)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(n.port)); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("nats-server does not listen after 30 s")
		}
	}
}

// restart kills the server with SIGKILL and starts it again on its store.
func (n *natsProc) restart(t *testing.T, down time.Duration) {
	n.p.kill()
	time.Sleep(down)
	n.restarts++
	n.start(t)
}

// clusterLab is a lab process without the hostile cases (whose bytes and
// timings vary from run to run) and with its connection log.
func clusterLab(t *testing.T, bin string, domains int, extra ...string) (*labProcess, string) {
	connLog := filepath.Join(t.TempDir(), "conn.log")
	return startLabProcess(t, bin, domains, append([]string{"-cases", "hostile=0", "-conn-log", connLog}, extra...)...), connLog
}

// labScanArgs are the flags of a scan of l (coordinator or local), with
// timeouts no lab server without hostile cases reaches, even on a machine
// loaded by other work.
func labScanArgs(l *labProcess, out string, extra ...string) []string {
	args := []string{"scan", "-resolver", l.info.DNS, "-port", strconv.Itoa(l.info.SMTPPort),
		"-mta-sts-port", strconv.Itoa(l.info.MTASTSPort),
		"-allow", "127.0.0.0/8", "-allow", "::1/128", "-ipv6", "-ehlo-name", "scanner.mxsurvey.test",
		"-rate", "0", "-dns-rate", "0", "-timeout", "30s", "-step-timeout", "15s",
		"-dns-timeout", "2s", "-dns-retries", "2", "-checkpoint", "300ms", "-progress", "2s", "-o", out}
	return append(append(args, extra...), l.domains)
}

// startWorker runs "mxsurvey worker" against the lab's resolver.
func startWorker(t *testing.T, bin, url string, l *labProcess, id string, extra ...string) *proc {
	args := append([]string{"worker", "-nats", url, "-resolver", l.info.DNS, "-allow", "127.0.0.0/8", "-allow", "::1/128",
		"-concurrency", "40", "-dns-concurrency", "30", "-id", id}, extra...)
	return startProc(t, "worker-"+id, bin, args...)
}

func readConns(t *testing.T, path string) []connlog.Conn {
	t.Helper()
	conns, err := connlog.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return conns
}

func checkPolite(t *testing.T, conns []connlog.Conn, interval time.Duration) {
	t.Helper()
	p := connlog.Judge(conns)
	t.Logf("lab log: %d connections to %d addresses, busiest %d; max open to one address %d, shortest start gap %v, shortest idle %v",
		p.Conns, p.Addrs, p.BusiestConns, p.MaxOpen, p.MinStartGap, p.MinIdle)
	for _, v := range p.Violations(1, interval) {
		t.Error(v)
	}
	if p.BusiestConns < 10 {
		t.Errorf("the busiest address had %d connections: politeness untested", p.BusiestConns)
	}
}

// TestClusterSameAsLocal: a scan of a lab by three worker processes and a
// coordinator gives the dataset a local scan of the same lab gives, row
// for row (datasetcheck.Diff), and the same summary.json; the lab's log
// shows no address served twice at once or twice within -ip-interval.
func TestClusterSameAsLocal(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster processes: skipped in -short mode")
	}
	bin := buildBinary(t)
	l, connLog := clusterLab(t, bin, 1000)
	n := startNATSProc(t, "-js")
	for i := range 3 {
		startWorker(t, bin, n.url(), l, "w"+strconv.Itoa(i+1))
	}
	const interval = 200 * time.Millisecond
	polite := []string{"-per-ip-concurrency", "1", "-ip-interval", interval.String()}
	dist := filepath.Join(t.TempDir(), "cluster")
	start := time.Now()
	coord := startProc(t, "coordinator", bin, labScanArgs(l, dist, append([]string{"-nats", n.url()}, polite...)...)...)
	if code := coord.wait(5 * time.Minute); code != 0 {
		t.Fatalf("coordinator: exit %d", code)
	}
	t.Logf("cluster scan in %v", time.Since(start).Round(time.Millisecond))
	clusterConns := readConns(t, connLog)
	local := filepath.Join(t.TempDir(), "local")
	start = time.Now()
	// The local scan gets the three workers' concurrency together, not
	// the default (200 domains, 1000 probes at once): its bursts of
	// queries overflowed the lab's UDP socket on a loaded machine, and a
	// SERVFAIL case whose last retry is lost is a timeout in one dataset
	// only.
	same := append([]string{"-dns-concurrency", "90", "-concurrency", "120"}, polite...)
	if code := startProc(t, "local", bin, labScanArgs(l, local, same...)...).wait(5 * time.Minute); code != 0 {
		t.Fatalf("local scan: exit %d", code)
	}
	t.Logf("local scan in %v", time.Since(start).Round(time.Millisecond))

	diffs, err := datasetcheck.Diff(local, dist, 30)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Error(d)
	}
	// The policy stage ran on the workers, on the scan's -mta-sts-port.
	if fetched, err := datasetcheck.PoliciesFetched(dist); err != nil || fetched == 0 {
		t.Errorf("%d MTA-STS policies fetched with status 200 (%v): the policy stage was not exercised", fetched, err)
	}
	sums := map[string][]byte{}
	for _, dir := range []string{local, dist} {
		rep := dir + "-report"
		if code := startProc(t, "analyze-"+filepath.Base(dir), bin, "analyze", "-quiet", "-roots", filepath.Join(filepath.Dir(l.domains), "ca.pem"), "-o", rep, dir).wait(2 * time.Minute); code != 0 {
			t.Fatalf("analyze %s: exit %d", dir, code)
		}
		sums[dir] = summaryWithoutScan(t, filepath.Join(rep, "summary.json"))
	}
	if !bytes.Equal(sums[local], sums[dist]) {
		t.Errorf("summary.json differs:\nlocal   %s\ncluster %s", tail(string(sums[local]), 500), tail(string(sums[dist]), 500))
	}
	checkPolite(t, clusterConns, interval)
	m, err := store.ReadManifest(dist)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Workers) != 3 {
		t.Errorf("manifest lists %d workers, want 3: %+v", len(m.Workers), m.Workers)
	}
}

// summaryWithoutScan is summary.json without its scan block (times and
// directories) but with the versions and status of that block.
func summaryWithoutScan(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	scan, _ := s["scan"].(map[string]any)
	s["scan"] = []any{scan["tool_version"], scan["schema_version"], scan["status"]}
	out, _ := json.Marshal(s)
	return out
}

// TestClusterSurvivesCrashes kills, at random moments, worker processes
// (restarting them), the coordinator (resuming it with -resume) and the
// NATS server (restarting it on its file store), interrupts the
// coordinator once (exit 130, then -resume), and kills one worker for
// good. The dataset must hold every domain and target exactly once in whole
// Parquet files, the lab's log must show the per-address limits held
// throughout (across workers, crashes and restarts), and the workers left
// must stop cleanly on SIGTERM.
func TestClusterSurvivesCrashes(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster processes: skipped in -short mode")
	}
	bin := buildBinary(t)
	size := 3000
	if v := os.Getenv("MXSURVEY_CLUSTER_KILL_DOMAINS"); v != "" {
		size, _ = strconv.Atoi(v)
	}
	l, connLog := clusterLab(t, bin, size, "-latency", "5ms-20ms")
	n := startNATSProc(t, "-js")
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 2))
	t.Logf("random moments seeded with %d", seed)

	var mu sync.Mutex
	workers := map[int]*proc{}
	next := 0
	startOne := func() {
		mu.Lock()
		defer mu.Unlock()
		next++
		workers[next] = startWorker(t, bin, n.url(), l, "w"+strconv.Itoa(next))
	}
	for range 3 {
		startOne()
	}
	killOne := func(restart bool) string {
		mu.Lock()
		var ids []int
		for id := range workers {
			ids = append(ids, id)
		}
		id := ids[rng.IntN(len(ids))]
		workers[id].kill()
		delete(workers, id)
		mu.Unlock()
		if restart {
			startOne()
		}
		return "w" + strconv.Itoa(id)
	}

	const interval = 50 * time.Millisecond
	out := filepath.Join(t.TempDir(), "scan")
	args := func(extra ...string) []string {
		return labScanArgs(l, out, append([]string{"-nats", n.url(), "-nats-ack-wait", "3s", "-timeout", "5s", "-step-timeout", "5s",
			"-per-ip-concurrency", "1", "-ip-interval", interval.String()}, extra...)...)
	}
	start := time.Now()
	coord := startProc(t, "coordinator-0", bin, args()...)
	// The crashes, in a random order, each after a random pause.
	events := []string{"worker", "worker", "worker", "nats", "coordinator", "interrupt"}
	rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	events = append(events, "worker for good")
	resumes := 0
	for _, ev := range events {
		select {
		case <-coord.done:
			t.Logf("the scan ended before %q", ev)
			continue
		case <-time.After(time.Duration(300+rng.IntN(1500)) * time.Millisecond):
		}
		switch ev {
		case "worker":
			t.Logf("%v: killed worker %s, restarted", time.Since(start).Round(time.Millisecond), killOne(true))
		case "worker for good":
			t.Logf("%v: killed worker %s for good", time.Since(start).Round(time.Millisecond), killOne(false))
		case "nats":
			n.restart(t, 500*time.Millisecond)
			t.Logf("%v: nats-server killed and restarted", time.Since(start).Round(time.Millisecond))
		case "coordinator":
			coord.kill()
			resumes++
			coord = startProc(t, "coordinator-"+strconv.Itoa(resumes), bin, args("-resume")...)
			t.Logf("%v: coordinator killed, resumed", time.Since(start).Round(time.Millisecond))
		case "interrupt":
			coord.cmd.Process.Signal(syscall.SIGINT)
			code := coord.wait(time.Minute)
			if m, err := store.ReadManifest(out); code != 130 || err != nil || m.Status != survey.StatusInterrupted {
				t.Fatalf("coordinator after SIGINT: exit %d, manifest %v %v; want 130, interrupted", code, m, err)
			}
			resumes++
			coord = startProc(t, "coordinator-"+strconv.Itoa(resumes), bin, args("-resume")...)
			t.Logf("%v: coordinator interrupted (exit 130), resumed", time.Since(start).Round(time.Millisecond))
		}
	}
	if code := coord.wait(5 * time.Minute); code != 0 {
		t.Fatalf("coordinator: exit %d", code)
	}
	t.Logf("scan complete after %v", time.Since(start).Round(time.Millisecond))
	m, err := store.ReadManifest(out)
	if err != nil || m.Status != survey.StatusComplete {
		t.Fatalf("manifest: %+v, %v", m, err)
	}
	domains, targets, parts := checkExactlyOnce(t, l.domains, out)
	t.Logf("%d domains, %d targets in %d mx parts; workers in the manifest: %d", domains, targets, parts, len(m.Workers))
	checkPolite(t, readConns(t, connLog), interval)
	checkStreamsEmpty(t, n.url())
	mu.Lock()
	defer mu.Unlock()
	for id, w := range workers {
		w.cmd.Process.Signal(syscall.SIGTERM)
		if code := w.wait(time.Minute); code != 0 {
			t.Errorf("worker w%d: exit %d after SIGTERM, want 0", id, code)
		}
	}
}

// checkStreamsEmpty: a complete scan leaves nothing behind in NATS.
func checkStreamsEmpty(t *testing.T, url string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, name := range []string{"mxsurvey_domains", "mxsurvey_results"} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs != 0 || info.State.Consumers != 0 {
			t.Errorf("stream %s holds %d messages and %d consumers after a complete scan", name, info.State.Msgs, info.State.Consumers)
		}
	}
}

// TestClusterFaults: a NATS URL nothing listens on, a server without
// JetStream, credentials it refuses, an unreadable credentials file: one
// line, exit 2, no output directory. A worker of another version: the
// coordinator exits 3 naming it, the worker says why in one line. No SMTP
// connection in any of them.
func TestClusterFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster processes: skipped in -short mode")
	}
	bin := buildBinary(t)
	l, connLog := clusterLab(t, bin, 200)
	closed := "nats://127.0.0.1:" + strconv.Itoa(freePort(t))
	noJS := startNATSProc(t)
	auth := startNATSProc(t, "-js", "--user", "scanner", "--pass", "right")
	wrong := strings.Replace(auth.url(), "nats://", "nats://scanner:wrong@", 1)
	badCreds := filepath.Join(t.TempDir(), "bad.creds")
	os.WriteFile(badCreds, []byte("not a credentials file\n"), 0o600)
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"unreachable", []string{"-nats", closed}, "cannot connect"},
		{"no JetStream", []string{"-nats", noJS.url()}, "no JetStream"},
		{"wrong password", []string{"-nats", wrong}, "uthorization"},
		{"bad credentials file", []string{"-nats", auth.url(), "-nats-creds", badCreds}, "cannot connect"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "scan")
			c := startProc(t, "coordinator", bin, labScanArgs(l, out, tt.args...)...)
			w := startProc(t, "worker", bin, append([]string{"worker", "-resolver", l.info.DNS}, tt.args...)...)
			for _, p := range []*proc{c, w} {
				if code := p.wait(time.Minute); code != 2 {
					t.Errorf("%s: exit %d, want 2", p.name, code)
				}
				lines := strings.Split(strings.TrimSpace(p.output()), "\n")
				if len(lines) != 1 || !strings.Contains(lines[0], tt.want) || strings.Contains(lines[0], "wrong") {
					t.Errorf("%s said %q: want one line saying %q, without the password", p.name, lines, tt.want)
				}
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("the output directory was made: %v", err)
			}
		})
	}
	t.Run("version mismatch", func(t *testing.T) {
		other := build(t, "mxsurvey-other", "../cmd/mxsurvey", "-ldflags", "-X github.com/mxsurvey/mxsurvey/datasets/survey.buildVersion=v0.0.0-other")
		n := startNATSProc(t, "-js")
		w := startWorker(t, other, n.url(), l, "old")
		out := filepath.Join(t.TempDir(), "scan")
		c := startProc(t, "coordinator", bin, labScanArgs(l, out, "-nats", n.url())...)
		if code := c.wait(2 * time.Minute); code != 3 {
			t.Fatalf("coordinator: exit %d, want 3", code)
		}
		last := lastLine(c.output())
		if !strings.Contains(last, "every worker refused the scan") || !strings.Contains(last, "worker old") || !strings.Contains(last, "v0.0.0-other") {
			t.Errorf("coordinator's last line %q: want every worker refused, naming worker old and its version", last)
		}
		if refusals := strings.Count(w.output(), "refusing scan"); refusals != 1 {
			t.Errorf("the worker said %d times that it refuses the scan, want once:\n%s", refusals, w.output())
		}
	})
	if conns := readConns(t, connLog); len(conns) != 0 {
		t.Errorf("%d SMTP connections made", len(conns))
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
