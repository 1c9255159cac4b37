// Command tlsloop is the bare reference for the prober's CPU cost: with N
// connections in flight it connects to SMTP servers, reads the 220 greeting,
// sends EHLO, STARTTLS, runs a crypto/tls client handshake (no verification,
// the scanner's curve preferences, SNI = MX host) and closes. Nothing is
// parsed or recorded. It reports the process CPU spent inside the loop per
// completed handshake as JSON on stdout.
//
// The loop is bounded twice: -n handshakes and -duration of wall time.
//
//	tlsloop -targets FILE [-c 200] [-n 20000] [-duration 60s] [-tls-groups default|x25519,...]
//
// FILE holds one target per line: "IP:PORT MXHOST".
package main

import (
	"github.com/mxsurvey/mxsurvey/bench/internal/rusage"

	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxsurvey/mxsurvey/scan/pipeline"
)

type target struct{ addr, name string }

// Result is what tlsloop prints.
type Result struct {
	Groups         string  `json:"groups"`
	InFlight       int     `json:"in_flight"`
	Targets        int     `json:"targets"`
	Handshakes     int64   `json:"handshakes"`
	Errors         int64   `json:"errors"`
	FirstError     string  `json:"first_error,omitempty"`
	WallSec        float64 `json:"wall_s"`
	UserSec        float64 `json:"user_s"`
	SysSec         float64 `json:"sys_s"`
	CPUPerHandshUs float64 `json:"cpu_per_handshake_us"`
	HandshakesPerS float64 `json:"handshakes_per_s"`
}

func main() {
	var (
		file     = flag.String("targets", "", "file of \"IP:PORT MXHOST\" lines (required)")
		inflight = flag.Int("c", 200, "connections in flight")
		total    = flag.Int64("n", 20000, "stop after this many attempts")
		dur      = flag.Duration("duration", 60*time.Second, "stop after this long")
		groups   = flag.String("tls-groups", "default", "key exchange groups, as mxsurvey scan -tls-groups")
		ehlo     = flag.String("ehlo-name", "tlsloop.mxsurvey.test", "EHLO name")
		step     = flag.Duration("step-timeout", 5*time.Second, "deadline per step")
	)
	flag.Parse()
	curves, err := pipeline.ParseTLSGroups(*groups)
	if err != nil {
		fatal(err)
	}
	targets, err := readTargets(*file)
	if err != nil {
		fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()

	var next, ok, bad atomic.Int64
	var firstErr atomic.Value
	u0, s0 := rusage.CPU()
	start := time.Now()
	var wg sync.WaitGroup
	for range *inflight {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= *total {
					return
				}
				t := targets[int(i)%len(targets)]
				if err := once(ctx, t, curves, *ehlo, *step); err != nil {
					if ctx.Err() != nil {
						return
					}
					bad.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	wall := time.Since(start).Seconds()
	u1, s1 := rusage.CPU()
	r := Result{Groups: *groups, InFlight: *inflight, Targets: len(targets), Handshakes: ok.Load(), Errors: bad.Load(),
		WallSec: wall, UserSec: u1 - u0, SysSec: s1 - s0}
	if e, _ := firstErr.Load().(string); e != "" {
		r.FirstError = e
	}
	if r.Handshakes > 0 {
		r.CPUPerHandshUs = (r.UserSec + r.SysSec) / float64(r.Handshakes) * 1e6
		r.HandshakesPerS = float64(r.Handshakes) / wall
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(r)
	if r.Handshakes == 0 {
		os.Exit(1)
	}
}

func once(ctx context.Context, t target, curves []tls.CurveID, ehlo string, step time.Duration) error {
	d := net.Dialer{Timeout: step}
	c, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(4 * step))
	br := bufio.NewReader(c)
	if err := reply(br, "220"); err != nil {
		return fmt.Errorf("greeting: %w", err)
	}
	if _, err := fmt.Fprintf(c, "EHLO %s\r\n", ehlo); err != nil {
		return err
	}
	if err := reply(br, "250"); err != nil {
		return fmt.Errorf("ehlo: %w", err)
	}
	if _, err := c.Write([]byte("STARTTLS\r\n")); err != nil {
		return err
	}
	if err := reply(br, "220"); err != nil {
		return fmt.Errorf("starttls: %w", err)
	}
	if br.Buffered() > 0 {
		return errors.New("bytes after the STARTTLS reply")
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, CurvePreferences: curves, ServerName: t.name})
	if err := tc.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	return nil
}

// reply reads one (possibly multi-line) SMTP reply and checks its code.
func reply(br *bufio.Reader, code string) error {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if len(line) < 4 || line[:3] != code {
			return fmt.Errorf("unexpected reply %q", strings.TrimSpace(line))
		}
		if line[3] != '-' {
			return nil
		}
	}
}

func readTargets(path string) ([]target, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var ts []target
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) == 2 {
			ts = append(ts, target{f[0], f[1]})
		}
	}
	if len(ts) == 0 {
		return nil, fmt.Errorf("%s: no targets", path)
	}
	return ts, nil
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "tlsloop:", err)
	os.Exit(2)
}
