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

	"github.com/mxsurvey/mxsurvey/datasets/survey"
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
	rc := cfg.ResolveConfig()
	if l := NewLimiter(cfg.DNSRate); l != nil {
		rc.Limiter = l
	}
	res, err := resolve.New(rc)
	if err != nil {
		return nil, err
	}
	// The connection rate is taken right before each dial, after the
	// address's turn came, so waits elsewhere cannot bunch connections;
	// policy fetches take it too.
	connRate := NewLimiter(cfg.Rate)
	var beforeDial func(context.Context) error
	sc := cfg.StageConfig()
	if connRate != nil {
		beforeDial, sc.FetchLimiter = connRate.Wait, connRate
	}
	var s *Scan
	sc.TLSADone = func(host string) bool { return s.TLSAWritten(host) }
	st, err := NewStages(sc, res)
	if err != nil {
		return nil, err
	}
	s, err = Open(ctx, cfg, Wiring{Before: res.Check, DNSStats: res.Stats,
		Manifest: func(m *survey.Manifest) { m.Options["dnssec"] = DNSSECOption(cfg.Policies, res) }})
	if err != nil {
		return nil, err
	}
	work := s.Context()

	tasks := make(chan Task, 4*cfg.DNSConcurrency)
	var readErr error
	var stages sync.WaitGroup
	stages.Go(func() {
		defer close(tasks)
		readErr = s.Read(work, func(ctx context.Context, t Task) error {
			select {
			case tasks <- t:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	})
	// A policy fetch holds a slot of its own, not a resolver: a slow
	// policy server must not stall the DNS stage.
	fetchSlots := make(chan struct{}, cfg.Concurrency)
	var resolvers, fetches sync.WaitGroup
	for range cfg.DNSConcurrency {
		resolvers.Go(func() {
			for t := range tasks {
				rs, ok := st.Resolve(work, t)
				switch {
				case !ok:
				case rs.NeedsFetch():
					select {
					case fetchSlots <- struct{}{}:
					case <-work.Done():
						continue
					}
					fetches.Go(func() {
						defer func() { <-fetchSlots }()
						if st.Fetch(work, &rs) {
							s.AcceptDomain(work, rs.Rows, nil)
						}
					})
				default:
					s.AcceptDomain(work, rs.Rows, nil)
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
	fetches.Wait()
	s.CloseQueue()
	probers.Wait()
	return s.Finish(ctx, readErr)
}
