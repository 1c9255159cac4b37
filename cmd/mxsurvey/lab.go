package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mxsurvey/mxsurvey/internal/gcmem"
	"github.com/mxsurvey/mxsurvey/lab"
	"github.com/mxsurvey/mxsurvey/lab/world"
)

// labCommand is `mxsurvey lab`: start a lab, report where it is, serve until
// the context ends or -duration passes. A bad command line is a usage
// error (exit 2) before anything is bound or written.
func labCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lab", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg       lab.Config
		latency   string
		cases     string
		hostile   bool
		truthWait bool
		duration  time.Duration
		connLog   string
	)
	fs.IntVar(&cfg.Domains, "domains", 10000, "number of domains")
	fs.Int64Var(&cfg.Seed, "seed", 1, "world seed: same seed, same world")
	fs.StringVar(&cfg.DNSAddr, "dns", "127.0.0.53:5353", "DNS listen address, UDP and TCP (port 0: a free port)")
	fs.IntVar(&cfg.SMTPPort, "smtp-port", 2525, "SMTP port on 0.0.0.0, tcp4 (0: a free port)")
	fs.IntVar(&cfg.MTASTSPort, "mta-sts-port", 8443, "HTTPS port of the MTA-STS policy hosts on 0.0.0.0, tcp4 (0: a free port; a scan's -mta-sts-port)")
	fs.StringVar(&cfg.OutDir, "out", "", "directory for domains.csv, ca.pem, lab.json and the truth files (required)")
	fs.StringVar(&latency, "latency", "0", "SMTP per-reply delay: 0 (off), a duration (50ms) or a range (20ms-200ms) drawn per address")
	fs.StringVar(&cases, "cases", "", "case shares, e.g. cert_banner_only=0.05,dns_timeout=0; default=X sets the rest, hostile=X the hostile group (built-in default "+fmt.Sprint(world.DefaultCaseShare)+", most hostile peers "+fmt.Sprint(world.HostileCaseShare)+", at least 1-3 domains each)")
	fs.BoolVar(&hostile, "hostile", false, "only the hostile cases (and background domains): -cases default=0,hostile="+fmt.Sprint(hostileOnlyShare)+" unless -cases sets those")
	fs.Float64Var(&cfg.ProviderShare, "provider-share", 0.70, "share of non-case domains hosted by providers")
	fs.Float64Var(&cfg.HostingShare, "hosting-share", 0.15, "share of non-case domains on shared hosting; the rest run their own MX")
	fs.IntVar(&cfg.Providers, "providers", 0, "number of providers (0: domains/2000+5, at most 500)")
	fs.Float64Var(&cfg.Zipf, "zipf", 1.0, "Zipf exponent of the providers' market shares")
	fs.IntVar(&cfg.TenantPool, "tenant-pool", 0, "make every provider tenant-like (per-domain MX on 2 of a shared pool) with this many addresses; "+
		"the benchmark's proving ground is -tenant-pool 200 -providers 1 -provider-share 1 -hosting-share 0 -cases default=0,hostile=0")
	fs.BoolVar(&cfg.NoTruth, "no-truth", false, "do not write the truth files (load tests)")
	fs.BoolVar(&truthWait, "truth-wait", false, "write lab.json only once the truth files are written (default: serve and write lab.json at once, truth_ready when the truth files appear)")
	fs.DurationVar(&duration, "duration", 0, "stop after this long (0: until interrupted)")
	fs.StringVar(&connLog, "conn-log", "", "file getting one line per SMTP connection as it ends: address dialed, start and end in Unix nanoseconds, client address")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: mxsurvey lab -out DIR [flags]\n\n"+
			"Starts a simulated mail internet on loopback: authoritative DNS for .test and\n"+
			"the reverse zones (answering as a validating resolver would), SMTP servers and\n"+
			"MTA-STS policy hosts on 127.x.y.z, and writes the domain list, the lab CA bundle\n"+
			"and the ground truth into DIR.\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprintf(fs.Output(), "\nCases (names for -cases):\n")
		for _, c := range world.AllCases() {
			mark := ""
			if c.Hostile {
				mark = " [hostile]"
			}
			fmt.Fprintf(fs.Output(), "  %-30s %s%s\n", c.Name, c.Desc, mark)
		}
	}
	if done, err := parseFlags(fs, args); done {
		return err
	}
	if err := noArguments(fs); err != nil {
		return err
	}
	if cfg.OutDir == "" {
		return fmt.Errorf("%w: -out DIR is required (mxsurvey lab -h)", errUsage)
	}
	if duration < 0 {
		return fmt.Errorf("%w: -duration %v: want 0 (until interrupted) or more", errUsage, duration)
	}
	var err error
	if cfg.LatencyMin, cfg.LatencyMax, err = parseLatency(latency); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if cfg.Cases, err = world.ParseCases(cases); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if hostile {
		for k, v := range map[string]float64{"default": 0, world.GroupHostile: hostileOnlyShare} {
			if _, set := cfg.Cases[k]; !set {
				cfg.Cases[k] = v
			}
		}
	}
	if err := cfg.Check(); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	cfg.TruthBackground = !truthWait
	if connLog != "" {
		f, err := os.Create(connLog)
		if err != nil {
			return fmt.Errorf("lab: -conn-log: %w", err)
		}
		defer f.Close()
		cfg.ConnLog = f
	}
	defer gcmem.HeapFloor(labHeapFloor)()
	return lab.Run(ctx, cfg, duration, stdout)
}

// labHeapFloor is the heap the lab grows to before collecting
// (gcmem.HeapFloor). Its live heap stays at tens of MiB while it answers
// a million connections, so the runtime's own setting collected six times a
// second (606 collections while a 200,000-domain scan ran, a tenth of the
// lab's CPU), on the cores the scanner it serves shares.
const labHeapFloor = 256 << 20

// hostileOnlyShare is each hostile case's share under -hostile.
const hostileOnlyShare = 0.001

// parseLatency reads -latency: "0", "50ms" or "20ms-200ms".
func parseLatency(s string) (lo, hi time.Duration, err error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "0" {
		return 0, 0, nil
	}
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = time.ParseDuration(a); err != nil {
		return 0, 0, fmt.Errorf("-latency %q: %w", s, err)
	}
	hi = lo
	if isRange {
		if hi, err = time.ParseDuration(b); err != nil {
			return 0, 0, fmt.Errorf("-latency %q: %w", s, err)
		}
	}
	if lo < 0 || hi < lo {
		return 0, 0, fmt.Errorf("-latency %q: want 0 <= min <= max", s)
	}
	return lo, hi, nil
}
