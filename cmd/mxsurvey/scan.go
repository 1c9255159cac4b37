package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/domains"
	"github.com/mxsurvey/mxsurvey/scan/cluster"
	"github.com/mxsurvey/mxsurvey/scan/guard"
	"github.com/mxsurvey/mxsurvey/scan/pipeline"
	"github.com/mxsurvey/mxsurvey/scan/probe"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
	"github.com/mxsurvey/mxsurvey/scan/stsfetch"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

const scanUsage = `usage: mxsurvey scan [flags] DOMAINS

Resolve the MX hosts of every domain in DOMAINS (a file, or - for stdin;
one domain per line or "rank,domain" CSV; gzip is detected), probe every
(address, MX host) once with SMTP STARTTLS, record the domains' transport
security policies (DANE TLSA, MTA-STS, TLS-RPT; -policies=false skips
them), and write a Parquet dataset (docs/schema.md) into -o DIR.

Be a good guest: set -ehlo-name to a name whose PTR and web page explain
the scan, keep -rate and the per-address limits modest, honour opt-outs
with -blocklist.

Flags:
`

// The command's defaults are those of a polite internet scan (README,
// "Running a real scan responsibly"); a zero pipeline.Config means no limit.
const (
	defaultRate       = 200         // new SMTP connections per second
	defaultDNSRate    = 2000        // DNS queries per second
	defaultIPInterval = time.Second // between two connections to one address
)

// scanCommand is "mxsurvey scan".
func scanCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("scan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, scanUsage)
		fs.PrintDefaults()
	}
	var (
		cfg    pipeline.Config
		format = fs.String("format", "auto", "input format: auto (list or rank,domain CSV per line), list, csv, zone (a DNS zone file: its delegated names)")
		shard  = fs.String("shard", "", "scan only the K-th of N hash slices of the input, as K/N (e.g. 1/4); per-address limits and rates then hold per shard only (divide them by N, or use -nats)")
		groups = fs.String("tls-groups", "default", "TLS key exchange groups offered, in order: default (Go's: X25519MLKEM768, SecP256r1MLKEM768, SecP384r1MLKEM1024, X25519, P-256, P-384, P-521) or a list such as X25519,P-256 (docs/schema.md's names; x25519,p256 also accepted)")
		quiet  = fs.Bool("quiet", false, "no progress lines or summary on stderr")
		guards = addGuardFlags(fs)
		nats   = addNATSFlags(fs, "coordinate a scan over the workers of this NATS server (nats://HOST:4222, tls://...; docs/distributed.md) instead of scanning from this machine")
		cc     cluster.CoordinatorConfig
	)
	fs.IntVar(&cc.Batch, "nats-batch", cluster.DefaultBatch, "with -nats: domains per message to the workers")
	fs.DurationVar(&cc.AckWait, "nats-ack-wait", cluster.DefaultAckWait, "with -nats: a domain batch a worker holds this long without word goes to another worker")
	fs.DurationVar(&cc.StartWindow, "nats-start-window", cluster.DefaultStartWindow, "with -nats: a worker connects within this of the grant of a target, or gives it back")
	fs.StringVar(&cfg.Out, "o", "", "output directory for the dataset (required)")
	fs.BoolVar(&cfg.Resume, "resume", false, "continue the interrupted or killed scan in -o: domains and targets already committed are not redone")
	fs.DurationVar(&cfg.Checkpoint, "checkpoint", pipeline.DefaultCheckpoint, "commit the open Parquet parts at least this often: the most work a crash can lose")
	fs.Var((*listFlag)(&cfg.Resolve.Servers), "resolver", "recursive DNS resolver HOST:PORT (repeatable; default: /etc/resolv.conf; with -nats: each worker's own)")
	fs.DurationVar(&cfg.Resolve.Timeout, "dns-timeout", resolve.DefaultTimeout, "per DNS query attempt")
	fs.IntVar(&cfg.Resolve.Retries, "dns-retries", resolve.DefaultRetries, "extra attempts after a DNS timeout or SERVFAIL, with backoff")
	fs.IntVar(&cfg.DNSConcurrency, "dns-concurrency", pipeline.DefaultDNSConcurrency, "domains resolved at once (with -nats: each worker's own)")
	fs.Float64Var(&cfg.DNSRate, "dns-rate", defaultDNSRate, "DNS queries per second, all resolvers together (0 = unlimited)")
	fs.BoolVar(&cfg.PTR, "ptr", true, "look up the PTR name of every probed address")
	fs.IntVar(&cfg.Concurrency, "concurrency", pipeline.DefaultConcurrency, "probes in flight (with -nats: each worker's own)")
	fs.Float64Var(&cfg.Rate, "rate", defaultRate, "new SMTP connections per second (0 = unlimited)")
	fs.IntVar(&cfg.PerIPConcurrency, "per-ip-concurrency", pipeline.DefaultPerIPConcurrency, "connections at once to one address")
	fs.DurationVar(&cfg.IPInterval, "ip-interval", defaultIPInterval, "minimum time between the end of one connection to an address and the next")
	fs.IntVar(&cfg.Probe.Port, "port", probe.DefaultPort, "SMTP port")
	fs.StringVar(&cfg.Probe.EHLOName, "ehlo-name", "", "name sent in EHLO/HELO (required: name your scanner)")
	fs.DurationVar(&cfg.Probe.Timeout, "timeout", probe.DefaultTimeout, "deadline for one whole probe")
	fs.DurationVar(&cfg.Probe.StepTimeout, "step-timeout", probe.DefaultStepTimeout, "deadline for each step: connect, each reply, the TLS handshake")
	fs.BoolVar(&cfg.IPv6, "ipv6", false, "probe IPv6 addresses too (they are always recorded)")
	fs.BoolVar(&cfg.Policies, "policies", true, "record DNSSEC statuses, TLSA records per MX host, MTA-STS and TLS-RPT records per domain, and fetch MTA-STS policies (the tlsa and policies tables)")
	fs.IntVar(&cfg.STS.Port, "mta-sts-port", stsfetch.DefaultPort, "HTTPS port of MTA-STS policy fetches (labs)")
	fs.BoolVar(&cfg.Resolve.TrustAD, "trust-ad", false, "trust the AD bit of resolvers not on loopback (only over a channel you trust to a validating resolver you trust; with -nats: each worker's resolvers)")
	fs.DurationVar(&cfg.ProgressEvery, "progress", pipeline.DefaultProgressEvery, "interval between progress lines on stderr")

	if done, err := parseFlags(fs, args); done {
		return err
	}
	var err error
	if cfg.Format, err = domains.ParseFormat(*format); err != nil {
		return fmt.Errorf("%w: -format: %v", errUsage, err)
	}
	switch fs.NArg() {
	case 0:
		return fmt.Errorf("%w: no domain list given: mxsurvey scan [flags] DOMAINS (a file, or - for stdin)", errUsage)
	case 1:
		cfg.Input = fs.Arg(0)
	default:
		return fmt.Errorf("%w: one domain list expected, got %d arguments (flags go before the list)", errUsage, fs.NArg())
	}
	if *shard != "" {
		if cfg.Shard, err = pipeline.ParseShard(*shard); err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	if cfg.Probe.CurvePreferences, err = pipeline.ParseTLSGroups(*groups); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if cfg.Allow, cfg.Block, err = guards.parse(); err != nil {
		return err
	}
	if err := checkResolvers(cfg.Resolve.Servers); err != nil {
		return err
	}
	if !*quiet {
		cfg.Progress = stderr
	}
	cfg.Args = append([]string{"scan"}, args...)
	if nats.URL != "" {
		cc.NATS, cc.Scan = *nats, cfg
		_, err = cluster.Coordinate(ctx, cc)
	} else {
		_, err = pipeline.Run(ctx, cfg)
	}
	if errors.Is(err, pipeline.ErrConfig) {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return err
}

// guardFlags are -allow and -blocklist, of scan and worker.
type guardFlags struct {
	allow     listFlag
	blocklist *string
}

func addGuardFlags(fs *flag.FlagSet) *guardFlags {
	g := &guardFlags{}
	fs.Var(&g.allow, "allow", "CIDR that may be contacted although special-purpose, e.g. 127.0.0.0/8 for a lab (repeatable)")
	g.blocklist = fs.String("blocklist", "", "file of CIDRs or addresses never to contact (one per line, # comments)")
	return g
}

func (g *guardFlags) parse() (allow, block []netip.Prefix, err error) {
	for _, a := range g.allow {
		p, err := guard.ParsePrefix(a)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: -allow: %v", errUsage, err)
		}
		allow = append(allow, p)
	}
	if *g.blocklist != "" {
		if block, err = guard.ReadBlocklist(*g.blocklist); err != nil {
			return nil, nil, fmt.Errorf("%w: %v", errUsage, err)
		}
	}
	return allow, block, nil
}

// checkResolvers rejects a -resolver that is not an address: a name would
// need a resolver to be found.
func checkResolvers(servers []string) error {
	for _, r := range servers {
		if _, err := netip.ParseAddrPort(r); err != nil {
			if _, aerr := netip.ParseAddr(r); aerr != nil {
				return fmt.Errorf("%w: -resolver %q: want IP:PORT (or IP for port 53)", errUsage, r)
			}
		}
	}
	return nil
}

// addNATSFlags adds -nats and the options of the connection to NATS, of
// scan and worker.
func addNATSFlags(fs *flag.FlagSet, usage string) *cluster.NATS {
	n := &cluster.NATS{}
	fs.StringVar(&n.URL, "nats", "", usage)
	fs.StringVar(&n.Creds, "nats-creds", "", "NATS credentials file (JWT and NKey seed)")
	fs.StringVar(&n.CA, "nats-ca", "", "PEM file of the CAs to verify the NATS server's certificate with (tls:// URLs)")
	fs.StringVar(&n.Cert, "nats-cert", "", "client certificate for NATS servers that ask for one (with -nats-key)")
	fs.StringVar(&n.Key, "nats-key", "", "key of -nats-cert")
	fs.StringVar(&n.Prefix, "nats-prefix", cluster.DefaultPrefix, "names of the NATS streams, bucket and subjects: scan and workers must agree")
	return n
}
