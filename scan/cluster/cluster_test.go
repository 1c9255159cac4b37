package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/internal/connlog"
	"github.com/mxsurvey/mxsurvey/internal/datasetcheck"
	"github.com/mxsurvey/mxsurvey/scan/pipeline"
	"github.com/mxsurvey/mxsurvey/scan/probe"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
)

// TestClusterScanIsTheLocalScan scans one lab twice, on one machine and
// with three workers, under -per-ip-concurrency 1 and an -ip-interval:
// the datasets must be the same row for row (times aside), the lab's own
// log must show no address served twice at once or twice within the
// interval, and the busiest address must have been probed by more than one
// worker (or politeness across workers was not put to the test).
func TestClusterScanIsTheLocalScan(t *testing.T) {
	l := startLab(t, 200)
	const interval = 100 * time.Millisecond
	local := outDir(t, "local")
	cfg := l.scanConfig(local)
	cfg.IPInterval = interval
	res, err := pipeline.Run(context.Background(), cfg)
	mustComplete(t, res, err)
	_, mark := l.log.since(t, 0)

	url := startNATS(t, nil)
	startWorkers(t, url, 3, l.lab.DNSAddr, nil)
	dist := outDir(t, "cluster")
	cfg = l.scanConfig(dist)
	cfg.IPInterval = interval
	res, err = coordinate(context.Background(), url, cfg, nil)
	mustComplete(t, res, err)

	diffs, err := datasetcheck.Diff(local, dist, 20)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Error(d)
	}
	// The policy stage ran on the workers, on the scan's -mta-sts-port (the
	// stage configuration they were sent): policies were fetched.
	if fetched, err := datasetcheck.PoliciesFetched(dist); err != nil || fetched == 0 {
		t.Error("no MTA-STS policy fetched with status 200: the policy stage was not exercised")
	}
	conns, _ := l.log.since(t, mark)
	p := connlog.Judge(conns)
	for _, v := range p.Violations(1, interval) {
		t.Error(v)
	}
	clients := map[string]bool{}
	for _, c := range conns {
		if c.Addr == p.Busiest {
			clients[c.Client] = true
		}
	}
	t.Logf("%d connections to %d addresses; busiest %s: %d connections from %d workers; max open %d, min start gap %v, min idle %v",
		p.Conns, p.Addrs, p.Busiest, p.BusiestConns, len(clients), p.MaxOpen, p.MinStartGap, p.MinIdle)
	if len(clients) < 2 {
		t.Errorf("the busiest address was probed by %d worker(s): politeness across workers untested", len(clients))
	}
	m := res.Manifest
	var domains, probes int64
	for _, w := range m.Workers {
		domains += w.Domains
		probes += w.Probes
	}
	if len(m.Workers) != 3 || domains != m.Counts["domains_resolved"] || probes == 0 {
		t.Errorf("manifest workers %+v: want 3, %d domains in all", m.Workers, m.Counts["domains_resolved"])
	}
	if m.Options["nats_scan"] == "" || m.Options["concurrency"] != "per worker" {
		t.Errorf("manifest options %v: want the NATS scan and per-worker concurrency", m.Options)
	}

	// The state a coordinator killed between a domain's mx commit and its
	// tlsa commit leaves: the resumed coordinator has the workers look up
	// the TLSA records of the hosts that committed mx rows name without a
	// tlsa row, and the dataset is again the local scan's.
	parts, _ := store.Parts(survey.TLSADir(dist))
	for _, p := range parts[:len(parts)/2+1] {
		os.Remove(p)
	}
	cfg.Resume = true
	res, err = coordinate(context.Background(), url, cfg, nil)
	mustComplete(t, res, err)
	if n := res.Manifest.Counts["tlsa_rows_written"]; n == 0 {
		t.Error("resumed: no tlsa row written")
	}
	if diffs, err = datasetcheck.Diff(local, dist, 20); err != nil {
		t.Fatal(err)
	}
	for _, d := range diffs {
		t.Error("resumed:", d)
	}
	checkOnce(t, cfg.Input, dist)
}

// countingDNS answers dN.test MX, mx.dN.test A (127.64.0.N) and nothing
// else, and logs when each query arrives: the server's own view of the
// scan's DNS rate.
type countingDNS struct {
	addr string
	mu   sync.Mutex
	at   []time.Time
}

func startCountingDNS(t *testing.T) *countingDNS {
	t.Helper()
	c := &countingDNS{}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.addr = pc.LocalAddr().String()
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		c.mu.Lock()
		c.at = append(c.at, time.Now())
		c.mu.Unlock()
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		name, qt := q.Question[0].Name, q.Question[0].Qtype
		var n int
		switch {
		case qt == dns.TypeMX && scan(name, "d%d.test.", &n):
			rr, _ := dns.NewRR(name + " 60 IN MX 10 mx." + name)
			m.Answer = append(m.Answer, rr)
		case qt == dns.TypeA && scan(name, "mx.d%d.test.", &n):
			rr, _ := dns.NewRR(name + " 60 IN A 127.64." + strconv.Itoa(n/250) + "." + strconv.Itoa(n%250+1))
			m.Answer = append(m.Answer, rr)
		case qt == dns.TypeAAAA && scan(name, "mx.d%d.test.", &n):
		default:
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return c
}

// TestRatesHoldForTheWholeScan: -rate and -dns-rate bound the whole scan,
// not each worker. Three workers scan 80 domains against a DNS server and
// SMTP listener that log every query and connection as it arrives; in any
// one-second window the counts stay within what docs/distributed.md proves
// (rate × (1 s + slack) + burst, slack being 0.25 s for DNS tokens and the
// start window plus grantCollect for connections), where three workers
// each pacing themselves would triple the rate.
func TestRatesHoldForTheWholeScan(t *testing.T) {
	const domains, connRate, dnsRate = 80, 40, 120
	d := startCountingDNS(t)
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var accepts []time.Time
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepts = append(accepts, time.Now())
			mu.Unlock()
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	var list []byte
	for i := range domains {
		list = append(list, "d"+strconv.Itoa(i)+".test\n"...)
	}
	in := filepath.Join(t.TempDir(), "d.txt")
	os.WriteFile(in, list, 0o644)

	url := startNATS(t, nil)
	startWorkers(t, url, 3, d.addr, nil)
	cfg := pipeline.Config{Input: in, Out: outDir(t, "s"), Rate: connRate, DNSRate: dnsRate, PTR: true, Policies: true,
		Resolve: resolve.Config{Servers: []string{d.addr}, Timeout: time.Second, Retries: 1},
		Allow:   labRanges,
		Probe:   probe.Config{EHLOName: "scanner.test", Port: ln.Addr().(*net.TCPAddr).Port, Timeout: 2 * time.Second}}
	start := time.Now()
	res, err := coordinate(context.Background(), url, cfg, nil)
	mustComplete(t, res, err)
	el := time.Since(start)

	mu.Lock()
	conns := len(accepts)
	connMax := connlog.MaxEventsInWindow(accepts, time.Second)
	mu.Unlock()
	d.mu.Lock()
	queries := len(d.at)
	dnsMax := connlog.MaxEventsInWindow(d.at, time.Second)
	d.mu.Unlock()
	startWindow := 300 * time.Millisecond // coordinate's
	// The bounds, and a tenth of the rate for the kernel and the Go
	// scheduler between the limiter and the server's clock.
	connLimit := int(connRate*(1+(grantCollect+startWindow).Seconds())) + pipeline.Burst(connRate) + connRate/10
	dnsLimit := int(dnsRate*(1+tokenValidity.Seconds())) + pipeline.Burst(dnsRate) + dnsRate/10
	t.Logf("%d connections and %d DNS queries in %v; busiest second: %d connections (bound %d), %d queries (bound %d)",
		conns, queries, el.Round(time.Millisecond), connMax, connLimit, dnsMax, dnsLimit)
	if conns != domains {
		t.Errorf("%d connections, want %d", conns, domains)
	}
	if connMax > connLimit {
		t.Errorf("connection rate exceeded: %d in one second, bound %d for -rate %d", connMax, connLimit, connRate)
	}
	if dnsMax > dnsLimit {
		t.Errorf("DNS rate exceeded: %d queries in one second, bound %d for -dns-rate %d", dnsMax, dnsLimit, dnsRate)
	}
	// The limits also bind: without them this scan takes milliseconds.
	if min := time.Duration(float64(queries-pipeline.Burst(dnsRate)) / dnsRate * float64(time.Second)); el < min {
		t.Errorf("scan took %v, faster than -dns-rate allows (%v)", el, min)
	}
}

// TestWorkTakenOver: a worker that takes a domain batch and grants of
// targets and then falls silent (it died) loses them: the batch after the
// ack wait, the targets after their lease. The scan completes with every
// domain and target once, and the lab sees no address served twice at once.
func TestWorkTakenOver(t *testing.T) {
	l := startLab(t, 150)
	url := startNATS(t, nil)
	cfg := l.scanConfig(outDir(t, "s"))
	cfg.Probe.Timeout, cfg.Probe.StepTimeout = time.Second, time.Second
	cfg.IPInterval = 50 * time.Millisecond

	// The dead worker: it takes one batch and every grant it can for a
	// second, and never answers.
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	var leased, batches atomic.Int64
	stolen := make(chan struct{})
	go func() {
		kv := waitBucket(t, js)
		w, _ := kv.WatchAll(context.Background())
		defer w.Stop()
		var scan string
		for e := range w.Updates() {
			if e != nil {
				scan = e.Key()
				break
			}
		}
		n := names{prefix: DefaultPrefix, scan: scan}
		cons, err := js.Consumer(context.Background(), n.domainsStream(), n.domainsConsumer())
		if err == nil {
			if msgs, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second)); err == nil {
				for range msgs.Messages() {
					batches.Add(1)
				}
			}
		}
		close(stolen)
		for end := time.Now().Add(20 * time.Second); leased.Load() < 5 && time.Now().Before(end); {
			data, _ := encode(&want{Worker: "dead", N: 5})
			m, err := nc.Request(n.want(), data, 3*time.Second)
			if err != nil {
				continue
			}
			var g grant
			if decode(m.Data, &g) == nil {
				leased.Add(int64(len(g.Leases)))
			}
		}
	}()
	// The live worker starts once the dead one holds a batch.
	go func() {
		<-stolen
		startWorkers(t, url, 1, l.lab.DNSAddr, nil)
	}()
	_, mark := l.log.since(t, 0)
	start := time.Now()
	res, err := coordinate(context.Background(), url, cfg, func(c *CoordinatorConfig) { c.AckWait = time.Second })
	mustComplete(t, res, err)
	t.Logf("the dead worker held %d batch(es) and %d leases; scan complete in %v", batches.Load(), leased.Load(), time.Since(start).Round(time.Millisecond))
	if batches.Load() != 1 || leased.Load() == 0 {
		t.Fatalf("the dead worker took %d batches and %d leases: nothing was taken over", batches.Load(), leased.Load())
	}
	checkOnce(t, cfg.Input, cfg.Out)
	conns, _ := l.log.since(t, mark)
	for _, v := range connlog.Judge(conns).Violations(1, cfg.IPInterval) {
		t.Error(v)
	}
}

func waitBucket(t *testing.T, js jetstream.JetStream) jetstream.KeyValue {
	for range 100 {
		if kv, err := js.KeyValue(context.Background(), DefaultPrefix+"_scans"); err == nil {
			return kv
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Error("no scans bucket")
	return nil
}

// checkOnce holds the dataset in dir to its input
// (datasetcheck.ExactlyOnce).
func checkOnce(t *testing.T, input, dir string) {
	t.Helper()
	_, problems, err := datasetcheck.ExactlyOnce(input, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// TestRefusedScan: a worker refuses a scan of another schema (one log line,
// a word in its heartbeat, no traffic), and a coordinator whose only
// workers refuse its scan gives up with ErrRefused.
func TestRefusedScan(t *testing.T) {
	url := startNATS(t, nil)
	d := startCountingDNS(t)
	var dials atomic.Int64
	ws := startWorkers(t, url, 1, d.addr, func(_ int, c *WorkerConfig) {
		c.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return nil, os.ErrPermission
		}
	})
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	refused := make(chan string, 16)
	sub, _ := nc.Subscribe(DefaultPrefix+".workers.*", func(m *nats.Msg) {
		var hb heartbeat
		if decode(m.Data, &hb) == nil {
			if st, ok := hb.Scans["sfuture"]; ok {
				refused <- st.Refused
			}
		}
	})
	defer sub.Unsubscribe()
	js, _ := jetstream.New(nc)
	kv := waitBucket(t, js)
	spec, _ := encode(&Spec{Scan: "sfuture", Tool: survey.Tool, ToolVersion: survey.Version, SchemaVersion: survey.SchemaVersion + 1,
		Stages: pipeline.StageConfig{Probe: probe.Config{EHLOName: "x.test"}}})
	if _, err := kv.Put(context.Background(), "sfuture", spec); err != nil {
		t.Fatal(err)
	}
	select {
	case why := <-refused:
		if !strings.Contains(why, "schema") {
			t.Errorf("refusal %q does not name the schema", why)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the worker did not refuse a scan of another schema")
	}

	if dials.Load() != 0 {
		t.Errorf("%d connections attempted for a refused scan", dials.Load())
	}
	stopWorkers(t, ws)

	// A coordinator whose only worker refuses: the heartbeats of a worker
	// of another version, as it sends them.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		w, _ := kv.WatchAll(context.Background())
		defer w.Stop()
		var scan string
		for e := range w.Updates() {
			if e != nil && e.Key() != "sfuture" && e.Operation() == jetstream.KeyValuePut {
				scan = e.Key()
				break
			}
		}
		for {
			hb, _ := encode(&heartbeat{Worker: "old", ToolVersion: "v0.0.1", Scans: map[string]scanState{scan: {Refused: "another version"}}})
			nc.Publish(DefaultPrefix+".workers.old", hb)
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	in := filepath.Join(t.TempDir(), "d.txt")
	os.WriteFile(in, []byte("a.test\n"), 0o644)
	cfg := pipeline.Config{Input: in, Out: outDir(t, "s"), Resolve: resolve.Config{Servers: []string{d.addr}},
		Probe: probe.Config{EHLOName: "scanner.test"}}
	_, err = coordinate(context.Background(), url, cfg, func(c *CoordinatorConfig) { c.refuseGrace = time.Second })
	if msg := isErr(err, ErrRefused); msg != "" {
		t.Fatal(msg)
	}
	t.Log(err)
}

// TestNATSFaults: a server that cannot be reached, one without JetStream,
// and credentials it refuses all fail Coordinate and Work with ErrNATS,
// before the output directory is made and before any DNS or SMTP traffic.
func TestNATSFaults(t *testing.T) {
	closed := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return "nats://" + ln.Addr().String()
	}()
	noJS := startNATS(t, func(o *server.Options) { o.JetStream = false })
	auth := startNATS(t, func(o *server.Options) { o.Username, o.Password = "scanner", "right" })
	authURL := strings.Replace(auth, "nats://", "nats://scanner:wrong@", 1)
	d := startCountingDNS(t)
	in := filepath.Join(t.TempDir(), "d.txt")
	os.WriteFile(in, []byte("d1.test\n"), 0o644)
	for _, tt := range []struct{ name, url, want string }{
		{"unreachable", closed, "cannot connect"},
		{"no JetStream", noJS, "no JetStream"},
		{"wrong credentials", authURL, "uthorization"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := outDir(t, "s")
			cfg := pipeline.Config{Input: in, Out: out, Resolve: resolve.Config{Servers: []string{d.addr}},
				Probe: probe.Config{EHLOName: "scanner.test"}}
			_, err := coordinate(context.Background(), tt.url, cfg, nil)
			if msg := isErr(err, ErrNATS); msg != "" || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("coordinator: %v, want ErrNATS saying %q", err, tt.want)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("the output directory was made: %v", err)
			}
			err = Work(context.Background(), WorkerConfig{NATS: NATS{URL: tt.url}, Resolvers: []string{d.addr}})
			if msg := isErr(err, ErrNATS); msg != "" || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("worker: %v, want ErrNATS saying %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "wrong") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.at) != 0 {
		t.Errorf("%d DNS queries sent", len(d.at))
	}
}

func scan(s, format string, n *int) bool {
	var v int
	if _, err := fmt.Sscanf(s, format, &v); err != nil {
		return false
	}
	*n = v
	return true
}

// TestWorkerTakesOnlyItsScans: a worker takes scans only from the bucket
// of its prefix in the account its credentials give it. Workers of another
// account and of another prefix on the same server never touch the scan;
// one of the right account and prefix does it alone.
func TestWorkerTakesOnlyItsScans(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "nats.conf")
	os.WriteFile(conf, []byte(`listen: 127.0.0.1:-1
jetstream { store_dir: "`+t.TempDir()+`" }
accounts {
  A { jetstream: enabled, users: [{user: a, password: a}] }
  B { jetstream: enabled, users: [{user: b, password: b}] }
}
`), 0o644)
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	opts.NoLog, opts.NoSigs = true, true
	url := startNATS(t, func(o *server.Options) { *o = *opts })
	inAccount := func(user string) string { return strings.Replace(url, "nats://", "nats://"+user+":"+user+"@", 1) }
	d := startCountingDNS(t)
	dials := map[string]*atomic.Int64{}
	counting := func(i int, c *WorkerConfig) {
		n := &atomic.Int64{}
		dials[c.ID] = n
		c.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			n.Add(1)
			return nil, os.ErrPermission
		}
		switch i {
		case 0:
			c.NATS.URL = inAccount("a")
		case 1:
			c.NATS.URL, c.NATS.Prefix = inAccount("b"), "other"
		default:
			c.NATS.URL = inAccount("b")
		}
	}
	startWorkers(t, url, 2, d.addr, counting)
	in := filepath.Join(t.TempDir(), "d.txt")
	os.WriteFile(in, []byte("d1.test\n"), 0o644)
	cfg := pipeline.Config{Input: in, Resolve: resolve.Config{Servers: []string{d.addr}}, Allow: labRanges,
		Probe: probe.Config{EHLOName: "scanner.test", Timeout: time.Second}}
	cfg.Out = outDir(t, "unserved")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := coordinate(ctx, inAccount("b"), cfg, nil); !errors.Is(err, pipeline.ErrInterrupted) {
		t.Fatalf("a scan no worker may take: %v, want it interrupted by the test's deadline", err)
	}
	startWorkers(t, url, 1, d.addr, func(_ int, c *WorkerConfig) {
		c.ID = "right"
		counting(2, c)
	})
	cfg.Out = outDir(t, "served")
	res, err := coordinate(context.Background(), inAccount("b"), cfg, nil)
	mustComplete(t, res, err)
	for id, n := range dials {
		want := int64(0)
		if id == "right" {
			want = 1
		}
		if n.Load() != want {
			t.Errorf("worker %s made %d connections, want %d", id, n.Load(), want)
		}
	}
	if w := res.Manifest.Workers; len(w) != 1 || w[0].ID != "right" {
		t.Errorf("manifest workers %+v, want the right one alone", w)
	}
}
