// Package pipeline runs one scan: input -> resolve -> targets -> probe ->
// write. Stages talk through bounded channels under one context, so a slow
// stage pushes back on the ones before it instead of growing memory.
//
// A scan has two halves, so that the same code runs it on one machine or
// spread over many (package cluster): Scan holds what needs the whole scan
// in view (the input and what of it is done, target deduplication, the
// per-address schedule, the writers, the manifest), and Stages do the work
// that talks to the network (resolve a domain into rows, probe a target
// into a row). Run wires them together in one process.
//
// It writes the dataset that package survey defines, through package store.
// Its Config embeds the prober's and the resolver's configurations, and the
// manifest records them from their tags. By file: pipeline.go wires a local
// scan, scan.go is the Scan, stages.go the Stages, sink.go the writers,
// rows.go maps outcomes to rows, resume.go reads what an earlier run
// committed, manifest.go writes the manifest, progress.go counts and
// reports. Command-line flags are the command's (cmd/mxsurvey).
package pipeline

import (
	"context"
	"errors"
	"sync"

	"github.com/mxsurvey/mxsurvey/datasets/domains"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/scan/guard"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
)

// ErrInterrupted is returned when the scan's context ended before the input
// was exhausted; the dataset is consistent and can be resumed.
var ErrInterrupted = errors.New("scan interrupted")

// Result summarises a finished (or interrupted) scan.
type Result struct {
	Manifest *survey.Manifest
}

// Run performs the scan described by cfg on this machine. It returns
// ErrInterrupted (wrapped) when ctx ended first; the manifest then says
// "interrupted".
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rc := cfg.Resolve
	if l := NewLimiter(cfg.DNSRate); l != nil {
		rc.Limiter = l
	}
	res, err := resolve.New(rc)
	if err != nil {
		return nil, err
	}
	sc := cfg.StageConfig()
	sc.Guard = guard.New(cfg.Allow, cfg.Block)
	st, err := NewStages(sc, res)
	if err != nil {
		return nil, err
	}
	s, err := Open(ctx, cfg, Wiring{Before: res.Check, DNSStats: res.Stats})
	if err != nil {
		return nil, err
	}
	work := s.Context()
	// The connection rate is taken right before the dial, after the
	// address's turn came, so waits elsewhere cannot bunch connections.
	var beforeDial func(context.Context) error
	if l := NewLimiter(cfg.Rate); l != nil {
		beforeDial = l.Wait
	}

	names := make(chan domains.Entry, 4*cfg.DNSConcurrency)
	var readErr error
	var stages sync.WaitGroup
	stages.Go(func() {
		defer close(names)
		readErr = s.Read(work, func(ctx context.Context, e domains.Entry) error {
			select {
			case names <- e:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	})
	var resolvers sync.WaitGroup
	for range cfg.DNSConcurrency {
		resolvers.Go(func() {
			for e := range names {
				if rows, ok := st.Resolve(work, e); ok {
					s.AcceptDomain(work, rows, nil)
				}
			}
		})
	}
	var probers sync.WaitGroup
	for range cfg.Concurrency {
		probers.Go(func() {
			for {
				t, release, ok := s.Next(work)
				if !ok {
					return
				}
				s.Probing(1)
				row, ok := st.Probe(work, t, beforeDial)
				release()
				s.Probing(-1)
				if ok && st.PTR(work, &row) {
					s.AcceptProbe(work, row, nil)
				}
			}
		})
	}
	resolvers.Wait()
	stages.Wait()
	s.CloseQueue()
	probers.Wait()
	return s.Finish(ctx, readErr)
}
