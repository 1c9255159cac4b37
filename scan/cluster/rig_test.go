package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/mxsurvey/mxsurvey/internal/connlog"
	"github.com/mxsurvey/mxsurvey/lab"
	"github.com/mxsurvey/mxsurvey/scan/pipeline"
	"github.com/mxsurvey/mxsurvey/scan/probe"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
	"github.com/mxsurvey/mxsurvey/scan/stsfetch"
)

// startNATS runs a NATS server in this process, JetStream in a file store
// under t.TempDir(), on a free loopback port, and returns its URL.
func startNATS(t *testing.T, mod func(*server.Options)) string {
	t.Helper()
	o := &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true}
	if mod != nil {
		mod(o)
	}
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server did not start")
	}
	t.Cleanup(s.Shutdown)
	return s.ClientURL()
}

// syncBuffer is the lab's connection log, read while the lab writes it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// since returns the connections logged after offset, and the log's length.
func (s *syncBuffer) since(t *testing.T, offset int) ([]connlog.Conn, int) {
	t.Helper()
	s.mu.Lock()
	data := bytes.Clone(s.b.Bytes()[offset:])
	n := s.b.Len()
	s.mu.Unlock()
	conns, err := connlog.Read(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return conns, n
}

type labRig struct {
	lab *lab.Lab
	log *syncBuffer
}

// startLab runs a lab without its hostile cases (their bytes depend on
// timing, and the tests here compare two scans byte for byte).
func startLab(t *testing.T, domains int) *labRig {
	t.Helper()
	log := &syncBuffer{}
	l, err := lab.Start(context.Background(), lab.Config{
		WorldParams: lab.WorldParams{Domains: domains, Seed: 11, Cases: map[string]float64{lab.GroupHostile: 0}},
		DNSAddr:     "127.0.0.1:0", OutDir: t.TempDir(), NoTruth: true, ConnLog: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return &labRig{lab: l, log: log}
}

var labRanges = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// scanConfig is a scan of the lab, with timeouts that a loaded machine
// running the race detector does not reach by accident (two scans
// compared row for row must not differ by one; the lab's first RSA
// handshake waits for its key): without the hostile cases, no lab server
// makes a scan wait for a timeout.
func (l *labRig) scanConfig(out string) pipeline.Config {
	return pipeline.Config{Input: l.lab.DomainsPath(), Out: out, Checkpoint: 200 * time.Millisecond,
		Resolve:        resolve.Config{Servers: []string{l.lab.DNSAddr}, Timeout: 5 * time.Second, Retries: 3},
		DNSConcurrency: 10, Concurrency: 60, PTR: true, IPv6: true, Allow: labRanges, Policies: true,
		Probe: probe.Config{EHLOName: "scanner.mxsurvey.test", Port: l.lab.SMTPPort, Timeout: 60 * time.Second, StepTimeout: 30 * time.Second},
		STS:   stsfetch.Config{Port: l.lab.MTASTSPort}}
}

// worker is one Work running in this process.
type testWorker struct {
	cancel context.CancelFunc
	done   chan error
}

// startWorkers runs n workers against url, each dialing from its own
// loopback address (127.0.0.11, .12, ...) so that the lab's log tells
// them apart; mod may change a worker's configuration.
func startWorkers(t *testing.T, url string, n int, resolver string, mod func(i int, c *WorkerConfig)) []*testWorker {
	t.Helper()
	var ws []*testWorker
	for i := range n {
		src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(11+i))}
		cfg := WorkerConfig{NATS: NATS{URL: url}, ID: "w" + strconv.Itoa(i+1), Resolvers: []string{resolver},
			Concurrency: 20, DNSConcurrency: 10, Allow: labRanges,
			Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				d := net.Dialer{}
				if ap, err := netip.ParseAddrPort(addr); err == nil && ap.Addr().Is4() {
					d.LocalAddr = src
				}
				return d.DialContext(ctx, network, addr)
			}}
		if mod != nil {
			mod(i, &cfg)
		}
		ctx, cancel := context.WithCancel(context.Background())
		w := &testWorker{cancel: cancel, done: make(chan error, 1)}
		go func() { w.done <- Work(ctx, cfg) }()
		ws = append(ws, w)
	}
	t.Cleanup(func() { stopWorkers(t, ws) })
	return ws
}

// stopWorkers stops workers the way SIGTERM does and expects a clean exit.
func stopWorkers(t *testing.T, ws []*testWorker) {
	t.Helper()
	for _, w := range ws {
		w.cancel()
	}
	for i, w := range ws {
		select {
		case err := <-w.done:
			if err != nil {
				t.Errorf("worker %d: %v", i+1, err)
			}
			w.done <- nil // stopped: a second stop sees nil
		case <-time.After(30 * time.Second):
			t.Errorf("worker %d did not stop within 30 s", i+1)
		}
	}
}

// coordinate runs a cluster scan of cfg over url with test-sized timings.
func coordinate(ctx context.Context, url string, cfg pipeline.Config, mod func(*CoordinatorConfig)) (*pipeline.Result, error) {
	cc := CoordinatorConfig{NATS: NATS{URL: url}, Scan: cfg, Batch: 20, AckWait: 2 * time.Second, StartWindow: 300 * time.Millisecond}
	if mod != nil {
		mod(&cc)
	}
	return Coordinate(ctx, cc)
}

func mustComplete(t *testing.T, res *pipeline.Result, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if res.Manifest.Status != "complete" {
		t.Fatalf("manifest status %s", res.Manifest.Status)
	}
}

func outDir(t *testing.T, name string) string { return filepath.Join(t.TempDir(), name) }

func isErr(err, target error) string {
	if errors.Is(err, target) {
		return ""
	}
	return fmt.Sprintf("error %v is not %v", err, target)
}
