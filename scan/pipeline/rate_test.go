package pipeline

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/internal/connlog"
	"github.com/mxsurvey/mxsurvey/scan/probe"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
)

// TestRatesAreNeverExceeded measures the connection and DNS query rates a
// scan actually produces and checks them against -rate and -dns-rate:
// within any one-second window at most rate plus the limiter's burst.
func TestRatesAreNeverExceeded(t *testing.T) {
	const targets = 80
	var zone []string
	var list []byte
	for i := 0; i < targets; i++ {
		zone = append(zone, fmt.Sprintf("d%d.test. MX 10 mx.d%d.test.", i, i),
			fmt.Sprintf("mx.d%d.test. A 127.64.%d.%d", i, i/250, i%250+1))
		list = fmt.Appendf(list, "d%d.test\n", i)
	}
	d := startDNS(t, zone)
	in := filepath.Join(t.TempDir(), "d.txt")
	os.WriteFile(in, list, 0o644)
	var mu sync.Mutex
	var dials []time.Time
	const connRate, dnsRate = 40, 120
	cfg := Config{Input: in, Out: t.TempDir() + "/s", Resolve: resolve.Config{Servers: []string{d.addr}},
		Rate: connRate, DNSRate: dnsRate, PTR: true, Concurrency: 50, DNSConcurrency: 50,
		Allow: []netip.Prefix{netip.MustParsePrefix("127.64.0.0/16")},
		Probe: probe.Config{EHLOName: "scanner.test", Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			dials = append(dials, time.Now())
			mu.Unlock()
			return nil, syscall.ECONNREFUSED
		}}}
	start := time.Now()
	if _, err := Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	if len(dials) != targets {
		t.Fatalf("%d connections, want %d", len(dials), targets)
	}
	d.mu.Lock()
	queries := slices.Clone(d.times)
	d.mu.Unlock()
	// Connections are timed at the dial, right after the limiter. Queries
	// are timed where the test server handles them, after the kernel and
	// the scheduler (slow under -race, on a loaded machine), which bunches
	// them: judge them over two-second windows with 100 ms of jitter.
	connMax := connlog.MaxEventsInWindow(dials, time.Second)
	dnsMax := connlog.MaxEventsInWindow(queries, 2*time.Second)
	connLimit := connRate + Burst(connRate) + 1 // +1: a dial may lag its token by a scheduling slice
	dnsLimit := 2*dnsRate + Burst(dnsRate) + dnsRate/10
	t.Logf("%d connections and %d DNS queries in %v; busiest second: %d connections (limit %d); busiest two seconds: %d queries (limit %d)",
		len(dials), len(queries), el.Round(time.Millisecond), connMax, connLimit, dnsMax, dnsLimit)
	if connMax > connLimit {
		t.Errorf("connection rate exceeded: %d in one second, -rate %d", connMax, connRate)
	}
	if dnsMax > dnsLimit {
		t.Errorf("DNS rate exceeded: %d queries in two seconds, -dns-rate %d", dnsMax, dnsRate)
	}
	// The limits also bind: without them this scan takes milliseconds.
	if min := time.Duration(float64(targets-Burst(connRate)) / connRate * float64(time.Second)); el < min {
		t.Errorf("scan took %v, faster than -rate allows (%v)", el, min)
	}
}

// TestRateKeepsTheBusiestAddressBusy: under -rate, a target is handed out
// when its connection token is, so the scheduler's longest-queue-first
// choice holds. One address with 10 targets among 60 one-target addresses,
// 50 probers, -rate 20, -ip-interval 200ms: the busy address's connections
// follow each other at about the interval (a token comes every 50 ms).
// When probers took their target first and then queued for a token, each
// of the busy address's targets waited behind the other probers (2.7 s
// measured).
func TestRateKeepsTheBusiestAddressBusy(t *testing.T) {
	const interval, busyN, ones = 200 * time.Millisecond, 10, 60
	var zone []string
	var list []byte
	for i := 0; i < busyN; i++ {
		zone = append(zone, fmt.Sprintf("b%d.test. MX 10 mx.b%d.test.", i, i), fmt.Sprintf("mx.b%d.test. A 127.64.9.1", i))
		list = fmt.Appendf(list, "b%d.test\n", i)
	}
	for i := 0; i < ones; i++ {
		zone = append(zone, fmt.Sprintf("d%d.test. MX 10 mx.d%d.test.", i, i), fmt.Sprintf("mx.d%d.test. A 127.64.0.%d", i, i+1))
		list = fmt.Appendf(list, "d%d.test\n", i)
	}
	d := startDNS(t, zone)
	in := filepath.Join(t.TempDir(), "d.txt")
	os.WriteFile(in, list, 0o644)
	busy := "127.64.9.1:25"
	var mu sync.Mutex
	var dials []time.Time
	var last time.Time // of any connection
	cfg := Config{Input: in, Out: t.TempDir() + "/s", Resolve: resolve.Config{Servers: []string{d.addr}},
		Rate: 20, IPInterval: interval, Concurrency: 50, Policies: false,
		Allow: []netip.Prefix{netip.MustParsePrefix("127.64.0.0/16")},
		Probe: probe.Config{EHLOName: "scanner.test", Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			last = time.Now()
			if addr == busy {
				dials = append(dials, last)
			}
			mu.Unlock()
			return nil, syscall.ECONNREFUSED
		}}}
	if _, err := Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	tail := time.Since(last)
	if len(dials) != busyN {
		t.Fatalf("%d connections to the busy address, want %d", len(dials), busyN)
	}
	var worst time.Duration
	for i := 1; i < len(dials); i++ {
		worst = max(worst, dials[i].Sub(dials[i-1]))
	}
	t.Logf("busy address: longest gap between connections %v (interval %v); the scan ended %v after its last connection", worst, interval, tail)
	// A second of slack for a loaded machine; the old order took 2.5 s.
	if worst > interval+time.Second {
		t.Errorf("busy address idle %v between connections, want about %v", worst, interval)
	}
	// Once the scheduler is drained, the probers leave at once: when each
	// took a token first, the 50 of them kept the scan 2.5 s past its last
	// connection.
	if tail > time.Second {
		t.Errorf("the scan ended %v after its last connection", tail)
	}
}
