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
	"time"

	"golang.org/x/time/rate"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/internal/workers"
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
	defer res.Close()
	// The connection rate is taken before a target is handed out (probeAll);
	// policy fetches take it too.
	connRate := NewLimiter(cfg.Rate)
	sc := cfg.StageConfig()
	if connRate != nil {
		sc.FetchLimiter = connRate
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
	probing := make(chan struct{})
	go func() {
		defer close(probing)
		probeAll(work, cfg.Concurrency, s, st, connRate)
	}()
	resolvers.Wait()
	stages.Wait()
	fetches.Wait()
	s.CloseQueue()
	<-probing
	return s.Finish(ctx, readErr)
}

// probeAll takes targets from the scan's queue while fewer than concurrency
// are in progress and probes each on a worker. Workers start on demand and
// end when idle, so the scan's goroutines, and the stacks they grew, follow
// the probes in progress rather than -concurrency: 10,000 probers kept
// their stacks through the scan even while most of them waited for work.
func probeAll(ctx context.Context, concurrency int, s *Scan, st *Stages, connRate *rate.Limiter) {
	probers := workers.New(proberIdle)
	defer probers.Stop()
	slots := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		slots <- struct{}{} // freed by a probe that ends, also when ctx ends
		// Under -rate the connection token comes first and the target
		// second, so the scheduler chooses (longest queue first) when the
		// connection can start. Taken the other way round, every waiting
		// probe held a target while it queued for a token: at -rate 200
		// with 1,000 probes a target waited 5 s for its connection, and the
		// busiest address with it, every time.
		if connRate != nil {
			if err := connRate.Wait(ctx); err != nil {
				return
			}
		}
		t, release, ok := s.Next(ctx)
		if !ok {
			return
		}
		wg.Add(1)
		probers.Go(func() {
			defer func() { <-slots; wg.Done() }()
			s.Probing(1)
			row, ok := st.Probe(ctx, t, nil)
			// The address and the in-flight count are released as soon as
			// the connection ends, not after the row has reached the writer;
			// the address's interval counts from here. The PTR lookup
			// follows, so no DNS wait sits between token and dial.
			release()
			s.Probing(-1)
			if ok && st.PTR(ctx, &row) {
				s.AcceptProbe(ctx, row, nil)
			}
		})
	}
}

// proberIdle is how long a probe worker waits for the next target.
const proberIdle = 2 * time.Second
