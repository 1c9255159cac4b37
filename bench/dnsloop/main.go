// Command dnsloop is the bare reference for the resolver's CPU cost: with N
// queries in flight it sends miekg/dns UDP exchanges (EDNS0 1232, RD, as the
// scanner's resolver does; a new socket per query, as dns.Client does)
// to one server: for each domain an MX query, then A and AAAA of the first MX
// host in the answer, then PTR of the first A answer. Nothing is interpreted
// beyond that. It reports the process CPU spent inside the loop per exchange
// as JSON on stdout. Bounded by -n exchanges and -duration.
//
//	dnsloop -server HOST:PORT -domains FILE [-c 200] [-n 100000] [-duration 60s]
package main

import (
	"github.com/mxsurvey/mxsurvey/bench/internal/rusage"

	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Result is what dnsloop prints.
type Result struct {
	InFlight     int     `json:"in_flight"`
	Exchanges    int64   `json:"exchanges"`
	Errors       int64   `json:"errors"`
	FirstError   string  `json:"first_error,omitempty"`
	WallSec      float64 `json:"wall_s"`
	UserSec      float64 `json:"user_s"`
	SysSec       float64 `json:"sys_s"`
	CPUPerExchUs float64 `json:"cpu_per_exchange_us"`
	ExchPerS     float64 `json:"exchanges_per_s"`
}

func main() {
	var (
		server   = flag.String("server", "", "DNS server HOST:PORT (required)")
		file     = flag.String("domains", "", "domain list, one per line or rank,domain (required)")
		inflight = flag.Int("c", 200, "domains in flight")
		total    = flag.Int64("n", 100000, "stop after this many exchanges")
		dur      = flag.Duration("duration", 60*time.Second, "stop after this long")
		timeout  = flag.Duration("timeout", time.Second, "per exchange")
	)
	flag.Parse()
	domains, err := readDomains(*file)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dnsloop:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	c := &dns.Client{Net: "udp", Timeout: *timeout, UDPSize: 1232}
	var next, n, bad atomic.Int64
	var firstErr atomic.Value
	ex := func(name string, qt uint16) *dns.Msg {
		if n.Add(1) > *total {
			cancel()
			return nil
		}
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qt)
		m.RecursionDesired = true
		m.SetEdns0(1232, false)
		r, _, err := c.ExchangeContext(ctx, m, *server)
		if err != nil {
			if ctx.Err() == nil {
				bad.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			}
			return nil
		}
		return r
	}
	u0, s0 := rusage.CPU()
	start := time.Now()
	var wg sync.WaitGroup
	for range *inflight {
		wg.Go(func() {
			for ctx.Err() == nil {
				d := domains[int(next.Add(1)-1)%len(domains)]
				r := ex(d, dns.TypeMX)
				if r == nil {
					continue
				}
				var host string
				for _, rr := range r.Answer {
					if mx, ok := rr.(*dns.MX); ok && mx.Mx != "." {
						host = mx.Mx
						break
					}
				}
				if host == "" {
					continue
				}
				a := ex(host, dns.TypeA)
				ex(host, dns.TypeAAAA)
				if a == nil {
					continue
				}
				for _, rr := range a.Answer {
					if ar, ok := rr.(*dns.A); ok {
						if rev, err := dns.ReverseAddr(ar.A.String()); err == nil {
							ex(rev, dns.TypePTR)
						}
						break
					}
				}
			}
		})
	}
	wg.Wait()
	wall := time.Since(start).Seconds()
	u1, s1 := rusage.CPU()
	done := min(n.Load(), *total)
	r := Result{InFlight: *inflight, Exchanges: done - bad.Load(), Errors: bad.Load(), WallSec: wall, UserSec: u1 - u0, SysSec: s1 - s0}
	if e, _ := firstErr.Load().(string); e != "" {
		r.FirstError = e
	}
	if r.Exchanges > 0 {
		r.CPUPerExchUs = (r.UserSec + r.SysSec) / float64(r.Exchanges) * 1e6
		r.ExchPerS = float64(r.Exchanges) / wall
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(r)
	if r.Exchanges == 0 {
		os.Exit(1)
	}
}

func readDomains(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ds []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' {
			continue
		}
		if i := strings.LastIndexByte(l, ','); i >= 0 {
			l = l[i+1:]
		}
		if l == "domain" { // the CSV header
			continue
		}
		ds = append(ds, l)
	}
	if len(ds) == 0 {
		return nil, fmt.Errorf("%s: no domains", path)
	}
	return ds, sc.Err()
}
