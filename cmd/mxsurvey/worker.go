package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/mxsurvey/mxsurvey/scan/cluster"
	"github.com/mxsurvey/mxsurvey/scan/pipeline"
)

const workerUsage = `usage: mxsurvey worker -nats URL [flags]

Take part in the scans a coordinator ("mxsurvey scan -nats URL ...")
announces on the NATS server: resolve batches of domains and probe the
targets the coordinator grants, until SIGINT or SIGTERM (then stop taking
work, hand back the domain batches held, finish the probes in flight, and
exit 0). What a scan sends and how fast is the scan's; the resolver, the
concurrency and the addresses this machine may contact are the worker's.
A worker refuses a scan run by another version of mxsurvey (docs/distributed.md).

Flags:
`

// workerCommand is "mxsurvey worker".
func workerCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, workerUsage)
		fs.PrintDefaults()
	}
	var cfg cluster.WorkerConfig
	nats := addNATSFlags(fs, "NATS server to take work from (nats://HOST:4222, tls://...; required)")
	guards := addGuardFlags(fs)
	fs.StringVar(&cfg.ID, "id", "", "name of this worker in logs and manifests (default HOST-PID-RANDOM)")
	fs.Var((*listFlag)(&cfg.Resolvers), "resolver", "recursive DNS resolver HOST:PORT (repeatable; default: /etc/resolv.conf)")
	fs.IntVar(&cfg.Concurrency, "concurrency", pipeline.DefaultConcurrency, "probes in flight, all scans together")
	fs.IntVar(&cfg.DNSConcurrency, "dns-concurrency", pipeline.DefaultDNSConcurrency, "domains resolved at once, all scans together")
	if done, err := parseFlags(fs, args); done {
		return err
	}
	if err := noArguments(fs); err != nil {
		return err
	}
	if nats.URL == "" {
		return fmt.Errorf("%w: -nats URL is required", errUsage)
	}
	var err error
	if cfg.Allow, cfg.Block, err = guards.parse(); err != nil {
		return err
	}
	if err := checkResolvers(cfg.Resolvers); err != nil {
		return err
	}
	cfg.NATS = *nats
	err = cluster.Work(ctx, cfg)
	if errors.Is(err, pipeline.ErrConfig) {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return err
}
