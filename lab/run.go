package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/mxsurvey/mxsurvey/lab/world"
)

// Check reports what makes cfg impossible (no output directory, world
// parameters that cannot be met), before anything is bound or written.
func (cfg Config) Check() error {
	if err := cfg.checkOutDir(); err != nil {
		return err
	}
	_, err := world.New(cfg.WorldParams)
	return err
}

func (cfg Config) checkOutDir() error {
	if cfg.OutDir == "" {
		return errors.New("lab: an output directory is required")
	}
	return nil
}

// Run starts a lab (Start), says on out where it serves, and serves for d
// once serving (0: until ctx ends), or until ctx ends. A lab stopped while it writes its truth (TruthBackground)
// finishes the truth files first, so that a script that scans and then
// stops the lab still gets the whole truth.
func Run(ctx context.Context, cfg Config, d time.Duration, out io.Writer) error {
	l, err := Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer l.Close()
	if d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	fmt.Fprintf(out, "lab: %d domains, seed %d, serving after %.2fs\n", l.Info.Domains, l.Info.Seed, l.Info.StartSeconds)
	fmt.Fprintf(out, "lab: dns %s (udp+tcp), smtp 0.0.0.0:%d (tcp4), mta-sts https 0.0.0.0:%d (tcp4)\n", l.DNSAddr, l.SMTPPort, l.MTASTSPort)
	fmt.Fprintf(out, "lab: files in %s: %s %s %s %s %s %s\n", l.Dir, DomainsFile, CAFile, InfoFile, TruthDomainsFile, TruthHostsFile, TruthTLSAFile)
	truthDone := make(chan error, 1)
	if l.truthDone != nil {
		go func() { truthDone <- l.WaitTruth(context.Background()) }()
	}
	for pending := l.truthDone != nil; ; {
		select {
		case err := <-truthDone:
			pending = false
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "lab: truth files complete after %.2fs (%d targets)\n", l.Info.TruthSeconds, l.Info.Targets)
			continue
		case <-ctx.Done():
		}
		if pending {
			fmt.Fprintln(out, "lab: finishing the truth files before stopping")
			if err := <-truthDone; err != nil {
				return err
			}
		}
		break
	}
	fmt.Fprintln(out, "lab: stopping")
	return l.Close()
}
