// Package pipeline runs one scan: input -> resolve -> targets -> probe ->
// write. Stages talk through bounded channels under one context, so a slow
// stage pushes back on the ones before it instead of growing memory, and a
// channel between two stages can later become a work queue between machines.
//
// It writes the dataset that package survey defines, through package store.
// Its Config embeds the prober's and the resolver's configurations, and the
// manifest records them from their tags. By file: pipeline.go wires the
// stages, rows.go maps outcomes to rows, resume.go reads what an earlier run
// committed, manifest.go writes the manifest, progress.go counts and reports.
// Command-line flags are the command's (cmd/mxsurvey).
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/mxsurvey/mxsurvey/datasets/domains"
	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/internal/workers"
	"github.com/mxsurvey/mxsurvey/scan/guard"
	"github.com/mxsurvey/mxsurvey/scan/polite"
	"github.com/mxsurvey/mxsurvey/scan/probe"

	"github.com/mxsurvey/mxsurvey/scan/resolve"
)

// ErrInterrupted is returned when the scan's context ended before the input
// was exhausted; the dataset is consistent and can be resumed.
var ErrInterrupted = errors.New("scan interrupted")

// Result summarises a finished (or interrupted) scan.
type Result struct {
	Manifest *survey.Manifest
}

type target struct {
	ip     netip.Addr
	mxHost string
}

func (t target) key() string { return survey.TargetKey(t.ip.String(), t.mxHost) }

// run holds the state shared by the stages of one scan.
type run struct {
	cfg      Config
	resolver *resolve.Resolver
	prober   *probe.Prober
	policy   *guard.Policy
	connRate *rate.Limiter
	sched    *polite.Scheduler[target]

	batches   chan batch // a domain's rows, for the tables it fills (policies.go)
	probeRows chan survey.ProbeRow

	targetsMu sync.Mutex
	targets   map[string]struct{} // (ip|mx_host) queued or done in this dataset

	ptrMu    sync.Mutex
	ptrCache map[netip.Addr][2]string

	pol policyState

	c counters
}

// Run performs the scan described by cfg. It returns ErrInterrupted (wrapped)
// when ctx ended first; the manifest then says "interrupted".
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &run{cfg: cfg, targets: map[string]struct{}{}, ptrCache: map[netip.Addr][2]string{}}
	r.c.init()
	if cfg.Rate > 0 {
		r.connRate = rate.NewLimiter(rate.Limit(cfg.Rate), burst(cfg.Rate))
	}
	rc := cfg.Resolve
	if cfg.DNSRate > 0 {
		rc.Limiter = rate.NewLimiter(rate.Limit(cfg.DNSRate), burst(cfg.DNSRate))
	}
	var err error
	rc.DNSSEC = cfg.Policies
	if r.resolver, err = resolve.New(rc); err != nil {
		return nil, err
	}
	defer r.resolver.Close()
	if r.prober, err = probe.New(cfg.Probe); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err) // e.g. an EHLO name with a space
	}
	r.policy = guard.New(cfg.Allow, cfg.Block)
	if err := r.startPolicies(); err != nil {
		return nil, err
	}

	in, err := domains.Open(cfg.Input, cfg.Format)
	if err != nil {
		return nil, fmt.Errorf("opening input: %w", err)
	}
	defer in.Close()
	if err := r.resolver.Check(ctx); err != nil {
		return nil, err
	}

	done, carried, m, err := r.prepareOut()
	if err != nil {
		return nil, err
	}
	tw, err := r.openTables()
	if err != nil {
		return nil, err
	}
	pw, err := store.NewPartWriter[survey.ProbeRow](survey.ProbesDir(cfg.Out), store.PartOptions{GroupRows: 2000})
	if err != nil {
		return nil, err
	}

	if cfg.Input != "-" {
		go func() {
			if n, err := domains.Count(cfg.Input, cfg.Format); err == nil {
				r.c.inputTotal.Store(n)
			}
		}()
	}

	r.batches = make(chan batch, 256)
	r.probeRows = make(chan survey.ProbeRow, 256)
	// The work context ends with the caller's, or when a writer fails (a
	// full disk must stop the scan, not let it probe into the void); the
	// writers outlive it so that everything finished is still committed.
	work, cancelWork := context.WithCancelCause(ctx)
	defer cancelWork(nil)
	// The queue must hold the backlog of the busiest addresses (a provider
	// whose per-domain MX names share a few addresses has tens of thousands
	// of targets waiting their turn) so that resolution, and every other
	// address, keeps going meanwhile; a target costs under 100 bytes.
	r.sched = polite.New[target](work, cfg.PerIPConcurrency, cfg.IPInterval, max(100*cfg.Concurrency, 250_000))

	stopManifest := every(manifestEvery, func() { r.refreshManifest(m) })
	stopProgress := func() {}
	if cfg.Progress != nil {
		stopProgress = every(cfg.ProgressEvery, func() { fmt.Fprintln(cfg.Progress, r.progressLine()) })
	}

	var writers errgroup.Group
	writers.Go(func() error {
		return writeAll(tw, r.batches, cfg.Checkpoint, cancelWork, func(b batch) []batch { return []batch{b} })
	})
	writers.Go(func() error {
		return writeAll(pw, r.probeRows, cfg.Checkpoint, cancelWork, func(row survey.ProbeRow) []survey.ProbeRow {
			return []survey.ProbeRow{row}
		})
	})

	names := make(chan domains.Entry, 4*cfg.DNSConcurrency)
	var readErr error
	var stages sync.WaitGroup
	stages.Add(1)
	go func() {
		defer stages.Done()
		defer close(names)
		readErr = r.read(work, in, done, names)
	}()
	// Targets referenced by committed mx rows of an earlier run but without a
	// committed probe row (lost when that run was killed) are probed first.
	for _, t := range carried {
		r.addTarget(work, t)
	}
	var resolvers sync.WaitGroup
	for i := 0; i < cfg.DNSConcurrency; i++ {
		resolvers.Add(1)
		go func() {
			defer resolvers.Done()
			for e := range names {
				r.resolveDomain(work, e)
			}
		}()
	}
	probing := make(chan struct{})
	go func() {
		defer close(probing)
		r.probeAll(work)
	}()
	resolvers.Wait()
	stages.Wait()
	r.pol.fetches.Wait()
	r.sched.Close()
	<-probing
	close(r.batches)
	close(r.probeRows)
	writeErr := writers.Wait()
	stopProgress()
	stopManifest()

	now := time.Now().UTC()
	m.Ended = &now
	r.fillManifest(m, tw, pw)
	var runErr error
	switch {
	case writeErr != nil:
		m.Status, runErr = survey.StatusFailed, writeErr
	case readErr != nil && !errors.Is(readErr, context.Canceled):
		m.Status, runErr = survey.StatusFailed, readErr
	case ctx.Err() != nil:
		m.Status, runErr = survey.StatusInterrupted, fmt.Errorf("%w: %v; rerun with -resume to continue", ErrInterrupted, context.Cause(ctx))
	default:
		m.Status = survey.StatusComplete
	}
	if runErr != nil {
		m.Error = runErr.Error()
	}
	if err := store.WriteManifest(cfg.Out, m); err != nil && runErr == nil {
		runErr = err
	}
	r.summary(m)
	return &Result{Manifest: m}, runErr
}

func burst(perSecond float64) int {
	return max(1, int(perSecond/10))
}

// writeAll drains ch into w (a store.PartWriter, or the tables of
// policies.go), committing the open part every checkpoint interval. It
// writes whatever has queued up in one call (rows of several domains or
// probes together): one row per call cost the writer a size check and a
// dispatch each, and a writer that falls behind keeps probes waiting with
// their rows. After a write error it keeps draining (so no stage blocks) but
// drops the open part, leaving only committed parts.
func writeAll[T, R any](w interface {
	partWriter
	Write([]R) error
}, ch <-chan T, checkpoint time.Duration, stop context.CancelCauseFunc, rows func(T) []R) error {
	var firstErr error
	fail := func(err error) {
		firstErr = err
		w.Abort()
		stop(err)
	}
	tick := time.NewTicker(max(checkpoint/4, 10*time.Millisecond))
	defer tick.Stop()
	var batch []R
	for {
		select {
		case v, ok := <-ch:
			if !ok {
				if firstErr != nil {
					return firstErr
				}
				return w.Close()
			}
			batch = append(batch[:0], rows(v)...)
			open := true
			for open && len(batch) < maxWriteBatch {
				select {
				case v, open = <-ch:
					if open {
						batch = append(batch, rows(v)...)
					}
				default:
					open = false // nothing more queued; a closed ch is seen above next time
				}
			}
			if firstErr == nil {
				if err := w.Write(batch); err != nil {
					fail(err)
				}
			}
			clear(batch) // the rows' strings and chains are not kept alive by the batch
		case <-tick.C:
			if firstErr == nil {
				if err := w.CommitIfOlder(checkpoint); err != nil {
					fail(err)
				}
			}
		}
	}
}

// maxWriteBatch bounds the rows written in one call.
const maxWriteBatch = 1024

// read streams the input into names: invalid lines become error rows at
// once, duplicates, other shards' domains and domains already in the
// dataset are skipped.
func (r *run) read(ctx context.Context, in *domains.Reader, done *domains.Dedup, names chan<- domains.Entry) error {
	seen := domains.NewDedup()
	for {
		e, err := in.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading input: %w", err)
		}
		r.c.read.Add(1)
		key := e.Domain
		if e.Err != "" {
			key = invalidKey(e.Input)
		}
		if !r.cfg.Shard.includes(key) {
			continue
		}
		if seen.Seen(key) {
			r.c.duplicates.Add(1)
			continue
		}
		if done.Seen(key) {
			r.c.resumedSkip.Add(1)
			continue
		}
		if e.Err != "" {
			r.c.invalid.Add(1)
			r.c.dnsStatus(survey.DNSError)
			select {
			case r.batches <- batch{mx: []survey.MXRow{invalidRow(e, time.Now().UTC())}}:
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		select {
		case names <- e:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// resolveDomain resolves one domain, emits its mx rows as one batch (so they
// are committed together), with its policies row and after the tlsa rows of
// its MX hosts (policies.go), and queues its new targets.
func (r *run) resolveDomain(ctx context.Context, e domains.Entry) {
	if ctx.Err() != nil {
		return
	}
	pol := r.lookupPolicies(ctx, e.Domain)
	d := r.resolver.Resolve(ctx, e.Domain)
	if ctx.Err() != nil || !r.lookupTLSA(ctx, d) {
		return // interrupted mid-lookup: the outcome is not the domain's, resume redoes it
	}
	rows, targets := mxRows(e, d, time.Now().UTC())
	r.c.resolved.Add(1)
	r.c.dnsStatus(d.Status)
	if !r.emitDomain(ctx, batch{mx: rows}, pol) {
		return
	}
	r.c.mxRows.Add(int64(len(rows)))
	for _, t := range targets {
		r.addTarget(ctx, t)
	}
}

// addTarget queues t unless it is already queued or done; targets that must
// not be contacted get their row at once.
func (r *run) addTarget(ctx context.Context, t target) {
	k := t.key()
	r.targetsMu.Lock()
	if _, ok := r.targets[k]; ok {
		r.targetsMu.Unlock()
		return
	}
	r.targets[k] = struct{}{}
	r.targetsMu.Unlock()
	r.c.targets.Add(1)
	if ok, reason := r.policy.Check(t.ip); !ok {
		r.emitProbe(ctx, skippedRow(t, r.cfg.Probe.Port, survey.ErrBlocked, reason))
		return
	}
	if t.ip.Is6() && !t.ip.Is4In6() && !r.cfg.IPv6 {
		r.emitProbe(ctx, skippedRow(t, r.cfg.Probe.Port, survey.ErrIPv6Disabled, "IPv6 address recorded, not probed (no -ipv6)"))
		return
	}
	if err := r.sched.Add(ctx, t.ip, t); err != nil {
		return // interrupted: the target stays unprobed, resume finds it
	}
}

func (r *run) emitProbe(ctx context.Context, row survey.ProbeRow) {
	select {
	case r.probeRows <- row:
		r.c.probe(row)
	case <-ctx.Done():
	}
}

// probeAll takes targets from the scheduler while fewer than Concurrency
// are in progress and probes each on a worker. Workers start on demand and
// end when idle, so the scan's goroutines, and the stacks they grew, follow
// the probes in progress rather than -concurrency: 10,000 probers kept
// their stacks through the scan even while most of them waited for work.
func (r *run) probeAll(ctx context.Context) {
	probers := workers.New(proberIdle)
	defer probers.Stop()
	slots := make(chan struct{}, r.cfg.Concurrency)
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
		if r.connRate != nil {
			if err := r.connRate.Wait(ctx); err != nil {
				return
			}
		}
		t, release, ok := r.sched.Next(ctx)
		if !ok {
			return
		}
		wg.Add(1)
		probers.Go(func() {
			defer func() { <-slots; wg.Done() }()
			r.probeOne(ctx, t, release)
		})
	}
}

// proberIdle is how long a probe worker waits for the next target.
const proberIdle = 2 * time.Second

// probeOne probes one target and hands its row to the writer.
func (r *run) probeOne(ctx context.Context, t target, release func()) {
	if row, ok := r.connect(ctx, t, release); ok {
		r.emitProbe(ctx, row)
	}
}

// connect runs the probe's connection. The address and the in-flight count
// are released as soon as it ends, not after the row has reached the
// writer: with 10,000 probes in flight on a busy machine, a third of them
// were finished rows waiting for the writer, holding their address, their
// goroutine and its stack. A panic here (in our code, not the prober's,
// which recovers its own) is recorded as data rather than ending the scan.
// ok is false when the scan was interrupted: no row.
func (r *run) connect(ctx context.Context, t target, release func()) (row survey.ProbeRow, ok bool) {
	r.c.inFlight.Add(1)
	defer func() {
		r.c.inFlight.Add(-1)
		release()
		if p := recover(); p != nil {
			slog.Error("probe worker panic", "target", t.key(), "panic", p, "stack", string(debug.Stack()))
			row = skippedRow(t, r.cfg.Probe.Port, survey.ErrInternal, fmt.Sprint("internal error: ", p))
			row.Outcome, ok = survey.OutcomeConnect, true
		}
	}()
	row = r.prober.Probe(ctx, probe.Target{IP: t.ip, MXHost: t.mxHost})
	release() // the address's interval counts from here; polite's done may be called again
	if ctx.Err() != nil {
		return row, false // abandoned by an interrupt: not a property of the server
	}
	// The PTR lookup follows the connection, so no DNS wait sits between
	// the connection token and the dial.
	if r.cfg.PTR {
		row.PTRHost, row.PTRStatus = r.ptr(ctx, t.ip)
	}
	return row, true
}

// ptr looks up an address once per scan however many MX names share it.
func (r *run) ptr(ctx context.Context, ip netip.Addr) (string, string) {
	r.ptrMu.Lock()
	v, ok := r.ptrCache[ip]
	r.ptrMu.Unlock()
	if ok {
		return v[0], v[1]
	}
	name, status := r.resolver.PTR(ctx, ip)
	r.ptrMu.Lock()
	if len(r.ptrCache) >= 1_000_000 {
		clear(r.ptrCache) // a bound, not an LRU: PTR lookups are cheap to redo
	}
	r.ptrCache[ip] = [2]string{name, status}
	r.ptrMu.Unlock()
	return name, status
}
