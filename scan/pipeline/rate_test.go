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

	"github.com/mxsurvey/mxsurvey/scan/probe"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
)

// maxInWindow is the most events within any window of length w.
func maxInWindow(ts []time.Time, w time.Duration) int {
	ts = slices.Clone(ts)
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	most, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= w {
			j++
		}
		most = max(most, i-j+1)
	}
	return most
}

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
	connMax := maxInWindow(dials, time.Second)
	dnsMax := maxInWindow(queries, 2*time.Second)
	connLimit := connRate + burst(connRate) + 1 // +1: a dial may lag its token by a scheduling slice
	dnsLimit := 2*dnsRate + burst(dnsRate) + dnsRate/10
	t.Logf("%d connections and %d DNS queries in %v; busiest second: %d connections (limit %d); busiest two seconds: %d queries (limit %d)",
		len(dials), len(queries), el.Round(time.Millisecond), connMax, connLimit, dnsMax, dnsLimit)
	if connMax > connLimit {
		t.Errorf("connection rate exceeded: %d in one second, -rate %d", connMax, connRate)
	}
	if dnsMax > dnsLimit {
		t.Errorf("DNS rate exceeded: %d queries in two seconds, -dns-rate %d", dnsMax, dnsRate)
	}
	// The limits also bind: without them this scan takes milliseconds.
	if min := time.Duration(float64(targets-burst(connRate)) / connRate * float64(time.Second)); el < min {
		t.Errorf("scan took %v, faster than -rate allows (%v)", el, min)
	}
}
