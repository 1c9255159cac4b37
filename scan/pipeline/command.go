package pipeline

import (
	"github.com/mxsurvey/mxsurvey/internal/cli"

	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/mxsurvey/mxsurvey/datasets"
	"github.com/mxsurvey/mxsurvey/scan/guard"
)

// ErrUsage marks errors in the command line: the caller exits 2.
var ErrUsage = cli.ErrUsage

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

const usage = `usage: mxsurvey scan [flags] DOMAINS

Resolve the MX hosts of every domain in DOMAINS (a file, or - for stdin;
one domain per line or "rank,domain" CSV; gzip is detected), probe every
(address, MX host) once with SMTP STARTTLS, and write a Parquet dataset
(docs/schema.md) into -o DIR.

Be a good guest: set -ehlo-name to a name whose PTR and web page explain
the scan, keep -rate and the per-address limits modest, honour opt-outs
with -blocklist.

Flags:
`

// Command is the "mxsurvey scan" subcommand.
func Command(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("scan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var (
		cfg       Config
		resolvers listFlag
		allow     listFlag
		format    = fs.String("format", "auto", "input format: auto (list or rank,domain CSV per line), list, csv, zone (a DNS zone file: its delegated names)")
		shard     = fs.String("shard", "", "scan only the K-th of N hash slices of the input, as K/N (e.g. 1/4)")
		groups    = fs.String("tls-groups", "default", "TLS key exchange groups offered, in order: default (Go's: X25519MLKEM768, SecP256r1MLKEM768, SecP384r1MLKEM1024, X25519, P-256, P-384, P-521) or a list such as X25519,P-256 (docs/schema.md's names; x25519,p256 also accepted)")
		blocklist = fs.String("blocklist", "", "file of CIDRs or addresses never to contact (one per line, # comments)")
		quiet     = fs.Bool("quiet", false, "no progress lines or summary on stderr")
	)
	fs.StringVar(&cfg.Out, "o", "", "output directory for the dataset (required)")
	fs.BoolVar(&cfg.Resume, "resume", false, "continue the interrupted or killed scan in -o: domains and targets already committed are not redone")
	fs.DurationVar(&cfg.Checkpoint, "checkpoint", 0, "commit the open Parquet parts at least this often: the most work a crash can lose (default 30s)")
	fs.Var(&resolvers, "resolver", "recursive DNS resolver HOST:PORT (repeatable; default: /etc/resolv.conf)")
	fs.DurationVar(&cfg.DNSTimeout, "dns-timeout", 0, "per DNS query attempt (default 3s)")
	fs.IntVar(&cfg.DNSRetries, "dns-retries", 2, "extra attempts after a DNS timeout or SERVFAIL, with backoff")
	fs.IntVar(&cfg.DNSConcurrency, "dns-concurrency", 200, "domains resolved at once")
	fs.Float64Var(&cfg.DNSRate, "dns-rate", 2000, "DNS queries per second, all resolvers together (0 = unlimited)")
	fs.BoolVar(&cfg.PTR, "ptr", true, "look up the PTR name of every probed address")
	fs.IntVar(&cfg.Concurrency, "concurrency", 1000, "probes in flight")
	fs.Float64Var(&cfg.Rate, "rate", 200, "new SMTP connections per second (0 = unlimited)")
	fs.IntVar(&cfg.PerIPConcurrency, "per-ip-concurrency", 1, "connections at once to one address")
	fs.DurationVar(&cfg.IPInterval, "ip-interval", 0, "minimum time between the end of one connection to an address and the next (default 1s)")
	fs.IntVar(&cfg.Port, "port", 25, "SMTP port")
	fs.StringVar(&cfg.EHLOName, "ehlo-name", "", "name sent in EHLO/HELO (required: name your scanner)")
	fs.DurationVar(&cfg.ProbeTimeout, "timeout", 0, "deadline for one whole probe (default 30s)")
	fs.DurationVar(&cfg.StepTimeout, "step-timeout", 0, "deadline for each step: connect, each reply, the TLS handshake (default 10s)")
	fs.BoolVar(&cfg.IPv6, "ipv6", false, "probe IPv6 addresses too (they are always recorded)")
	fs.Var(&allow, "allow", "CIDR that may be contacted although special-purpose, e.g. 127.0.0.0/8 for a lab (repeatable)")
	fs.DurationVar(&cfg.ProgressEvery, "progress", 0, "interval between progress lines on stderr (default 5s)")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	var err error
	if cfg.Format, err = datasets.ParseFormat(*format); err != nil {
		return fmt.Errorf("%w: -format: %v", ErrUsage, err)
	}
	switch fs.NArg() {
	case 0:
		return fmt.Errorf("%w: no domain list given: mxsurvey scan [flags] DOMAINS (a file, or - for stdin)", ErrUsage)
	case 1:
		cfg.Input = fs.Arg(0)
	default:
		return fmt.Errorf("%w: one domain list expected, got %d arguments (flags go before the list)", ErrUsage, fs.NArg())
	}
	if *shard != "" {
		if cfg.Shard, err = ParseShard(*shard); err != nil {
			return fmt.Errorf("%w: %v", ErrUsage, err)
		}
	}
	if cfg.TLSGroups, err = ParseTLSGroups(*groups); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	for _, a := range allow {
		p, err := guard.ParsePrefix(a)
		if err != nil {
			return fmt.Errorf("%w: -allow: %v", ErrUsage, err)
		}
		cfg.Allow = append(cfg.Allow, p)
	}
	if *blocklist != "" {
		if cfg.Block, err = guard.ReadBlocklist(*blocklist); err != nil {
			return fmt.Errorf("%w: %v", ErrUsage, err)
		}
	}
	for _, r := range resolvers {
		if _, err := netip.ParseAddrPort(r); err != nil {
			if _, aerr := netip.ParseAddr(r); aerr != nil {
				return fmt.Errorf("%w: -resolver %q: want IP:PORT (or IP for port 53)", ErrUsage, r)
			}
		}
	}
	cfg.Resolvers = resolvers
	if cfg.IPInterval == 0 && !flagSet(fs, "ip-interval") {
		cfg.IPInterval = defaultIPInterval
	}
	if !*quiet {
		cfg.Progress = stderr
	}
	cfg.Args = append([]string{"scan"}, args...)
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	_, err = Run(ctx, cfg)
	return err
}

const defaultIPInterval = 1_000_000_000 // 1s

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}
