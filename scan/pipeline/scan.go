package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/mxsurvey/mxsurvey/datasets/domains"
	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/internal/gcmem"
	"github.com/mxsurvey/mxsurvey/scan/guard"
	"github.com/mxsurvey/mxsurvey/scan/polite"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
)

// Scan is the part of one scan that only one process may hold, because it
// needs the whole scan in view: the input and what of it is done, the
// deduplication of targets, the per-address schedule, the counters, the
// dataset's part writers and its manifest. The stages that talk to the
// network (Stages) feed it rows and take targets from it: in-process in a
// local scan (Run), over NATS in a cluster (package cluster), through the
// same methods.
type Scan struct {
	cfg    Config
	wiring Wiring
	in     *domains.Reader
	policy *guard.Policy
	sched  *polite.Scheduler[Target]
	sink   *sink
	m      *survey.Manifest

	work       context.Context
	cancelWork context.CancelCauseFunc

	targetsMu sync.Mutex
	// targets are the (ip|mx_host) keys queued or done in this dataset, and
	// tlsaHosts the MX hosts whose tlsa row is written (policies on): sets
	// of hashes (domains.Dedup), since they grow with the scan.
	targets *domains.Dedup

	doneMu sync.Mutex
	done   *domains.Dedup // domains committed by an earlier run, and accepted by this one when Redelivered
	probed *domains.Dedup // Redelivered: targets whose probe row was accepted

	tlsaMu    sync.Mutex
	tlsaHosts *domains.Dedup
	// polDone are the domains whose policies row an earlier run committed
	// without their mx rows: resolved again, their policies not asked
	// again. Read-only once the scan runs.
	polDone map[string]bool
	// tlsaMissing are the MX hosts that an earlier run's committed mx rows
	// reference without a committed tlsa row: Read emits their lookups
	// first.
	tlsaMissing []string

	carried  []Target
	carrying sync.WaitGroup

	floorMu   sync.Mutex
	stopFloor func() // the heap floor's, once the input is counted
	finished  bool

	stopManifest, stopProgress func()
	c                          counters
}

// Wiring is what the code driving a Scan tells it.
type Wiring struct {
	// Before runs once the input is open and before the output directory
	// is touched: a check of the resolver or the cluster, so that a dead
	// one leaves nothing behind.
	Before func(ctx context.Context) error
	// Redelivered says rows may be given more than once (a cluster's
	// messages are delivered at least once): the Scan then remembers every
	// domain and target accepted and drops repeats.
	Redelivered bool
	// DNSStats are the DNS counters of the scan's resolvers, for progress
	// and the manifest.
	DNSStats func() resolve.Stats
	// Note is appended to every progress line (a cluster's live workers).
	Note func() string
	// Manifest adds the wiring's own facts to the manifest before each
	// write (a cluster's workers and NATS options).
	Manifest func(*survey.Manifest)
}

// Open starts a scan of cfg: it checks cfg, opens the input, runs
// w.Before, creates or (cfg.Resume) continues the dataset in cfg.Out, and
// starts the writers. Its context, Context(), ends with ctx or when a
// writer fails.
func Open(ctx context.Context, cfg Config, w Wiring) (*Scan, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	in, err := domains.Open(cfg.Input, cfg.Format)
	if err != nil {
		return nil, fmt.Errorf("opening input: %w", err)
	}
	s := &Scan{cfg: cfg, wiring: w, in: in, policy: guard.New(cfg.Allow, cfg.Block), targets: domains.NewDedup(),
		tlsaHosts: domains.NewDedup(), polDone: map[string]bool{}}
	if w.DNSStats == nil {
		s.wiring.DNSStats = func() resolve.Stats { return resolve.Stats{} }
	}
	if w.Redelivered {
		s.probed = domains.NewDedup()
	}
	s.c.init()
	fail := func(err error) (*Scan, error) {
		in.Close()
		return nil, err
	}
	if w.Before != nil {
		if err := w.Before(ctx); err != nil {
			return fail(err)
		}
	}
	if err := s.prepareOut(); err != nil {
		return fail(err)
	}
	s.work, s.cancelWork = context.WithCancelCause(ctx)
	// The work context ends with the caller's, or when a writer fails (a
	// full disk must stop the scan, not let it probe into the void); the
	// writers outlive it so that everything finished is still committed.
	if s.sink, err = newSink(cfg.Out, cfg.Policies, cfg.Checkpoint, s.cancelWork); err != nil {
		s.cancelWork(err)
		return fail(err)
	}
	if cfg.Input != "-" {
		go func() {
			if n, err := inputTotal(cfg); err == nil {
				s.c.inputTotal.Store(n)
				s.setHeapFloor(n)
			}
		}()
	}
	// The queue must hold the backlog of the busiest addresses (a provider
	// whose per-domain MX names share a few addresses has tens of thousands
	// of targets waiting their turn) so that resolution, and every other
	// address, keeps going meanwhile; a target costs under 100 bytes.
	s.sched = polite.New[Target](s.work, cfg.PerIPConcurrency, cfg.IPInterval, max(100*cfg.Concurrency, 250_000))
	// Targets referenced by committed mx rows of an earlier run but without
	// a committed probe row (lost when that run was killed) are queued
	// first, from a goroutine: more of them than the queue holds must wait
	// for the probes, not block the start.
	s.carrying.Go(func() {
		for _, t := range s.carried {
			s.addTarget(s.work, t)
		}
		s.carried = nil
	})
	s.stopManifest = every(manifestEvery, s.refreshManifest)
	s.stopProgress = func() {}
	if cfg.Progress != nil {
		s.stopProgress = every(cfg.ProgressEvery, func() { fmt.Fprintln(cfg.Progress, s.progressLine()) })
	}
	return s, nil
}

// Context is the scan's work context: it ends with Open's context, or when
// a writer failed.
func (s *Scan) Context() context.Context { return s.work }

// Stop ends the scan's work context with cause: what is in flight is
// abandoned, what was accepted is still committed by Finish.
func (s *Scan) Stop(cause error) { s.cancelWork(cause) }

// Config is the scan's configuration with its defaults applied.
func (s *Scan) Config() Config { return s.cfg }

// Read streams the input, calling emit with every valid domain that is not
// done yet: invalid lines become error rows at once; duplicates, other
// shards' domains and domains already in the dataset are skipped. On
// -resume it emits the TLSA lookups an earlier run's committed mx rows
// still lack first (Task.TLSAHost). It returns nil at the end of the input.
func (s *Scan) Read(ctx context.Context, emit func(context.Context, Task) error) error {
	defer s.in.Close()
	for _, h := range s.tlsaMissing {
		if err := emit(ctx, Task{TLSAHost: h}); err != nil {
			return err
		}
	}
	s.tlsaMissing = nil
	seen := domains.NewDedup()
	for {
		e, err := s.in.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading input: %w", err)
		}
		s.c.read.Add(1)
		key := entryKey(e)
		if !s.cfg.Shard.includes(key) {
			continue
		}
		if seen.Seen(key) {
			s.c.duplicates.Add(1)
			continue
		}
		s.doneMu.Lock()
		done := s.done.Has(key)
		s.doneMu.Unlock()
		if done {
			s.c.resumedSkip.Add(1)
			continue
		}
		if e.Err != "" {
			s.c.invalid.Add(1)
			s.c.dnsStatus(survey.DNSError)
			if !s.sink.write(ctx, &Rows{MX: []survey.MXRow{invalidRow(e, time.Now().UTC())}}, nil) {
				return ctx.Err()
			}
			continue
		}
		if err := emit(ctx, Task{Entry: e, SkipPolicies: s.polDone[e.Domain]}); err != nil {
			return err
		}
	}
}

// AcceptDomain takes the rows of one resolved domain: it writes them
// (ack, if not nil, completes when they are committed) and queues the
// domain's new targets. It reports false for a repeat of a domain already
// accepted (Wiring.Redelivered), whose rows are dropped, and when ctx ended
// first. It takes the answer of a Task.TLSAHost too (rows with one tlsa
// row and no mx rows), reporting true unless ctx ended.
func (s *Scan) AcceptDomain(ctx context.Context, rows Rows, ack *Ack) bool {
	if len(rows.MX) == 0 {
		return s.acceptTLSA(ctx, rows, ack)
	}
	if s.wiring.Redelivered {
		s.doneMu.Lock()
		repeat := s.done.Seen(rows.MX[0].Domain)
		s.doneMu.Unlock()
		if repeat {
			return false
		}
	}
	rows.TLSA = s.newTLSA(rows.TLSA)
	if !s.sink.write(ctx, &rows, ack) {
		return false
	}
	s.c.resolved.Add(1)
	s.c.dnsStatus(rows.MX[0].DNSStatus)
	s.c.mxRows.Add(int64(len(rows.MX)))
	s.c.policies(rows)
	for _, t := range TargetsOf(rows.MX) {
		s.addTarget(ctx, t)
	}
	return true
}

// AcceptProbe takes the row of one probed target and writes it (ack, if
// not nil, completes when it is committed). It reports false for a repeat
// of a target already accepted (Wiring.Redelivered), whose row is dropped,
// and when ctx ended first.
func (s *Scan) AcceptProbe(ctx context.Context, row survey.ProbeRow, ack *Ack) bool {
	if s.probed != nil {
		s.doneMu.Lock()
		repeat := s.probed.Seen(survey.TargetKey(row.IP, row.MXHost))
		s.doneMu.Unlock()
		if repeat {
			return false
		}
	}
	if !s.sink.write(ctx, &Rows{Probes: []survey.ProbeRow{row}}, ack) {
		return false
	}
	s.c.probe(row)
	return true
}

// acceptTLSA writes the tlsa row of a Task.TLSAHost, unless a domain
// accepted meanwhile (or a repeat of the answer) brought the host's row.
func (s *Scan) acceptTLSA(ctx context.Context, rows Rows, ack *Ack) bool {
	if len(rows.TLSA) != 1 || len(rows.Policies) > 0 || len(rows.Probes) > 0 {
		return false
	}
	if rows.TLSA = s.newTLSA(rows.TLSA); len(rows.TLSA) == 0 {
		return true
	}
	if !s.sink.write(ctx, &rows, ack) {
		return false
	}
	s.c.pol.tlsaRows.Add(1)
	return true
}

// newTLSA keeps the tlsa rows of hosts whose row is not written yet, and
// counts them as written: they go with the first domain that has them.
func (s *Scan) newTLSA(rows []survey.TLSARow) []survey.TLSARow {
	var out []survey.TLSARow
	s.tlsaMu.Lock()
	defer s.tlsaMu.Unlock()
	for _, r := range rows {
		if !s.tlsaHosts.Seen(r.MXHost) {
			out = append(out, r)
		}
	}
	return out
}

// TLSAWritten reports whether the tlsa row of an MX host is in the
// dataset or on its way there (StageConfig.TLSADone).
func (s *Scan) TLSAWritten(host string) bool {
	s.tlsaMu.Lock()
	defer s.tlsaMu.Unlock()
	return s.tlsaHosts.Has(host)
}

// Probed reports whether t's row has been accepted (Wiring.Redelivered).
func (s *Scan) Probed(t Target) bool {
	s.doneMu.Lock()
	defer s.doneMu.Unlock()
	return s.probed != nil && s.probed.Has(t.Key())
}

// addTarget queues t unless it is already queued or done; targets that must
// not be contacted get their row at once.
func (s *Scan) addTarget(ctx context.Context, t Target) {
	s.targetsMu.Lock()
	seen := s.targets.Seen(t.Key())
	s.targetsMu.Unlock()
	if seen {
		return
	}
	s.c.targets.Add(1)
	if ok, reason := s.policy.Check(t.IP); !ok {
		s.AcceptProbe(ctx, skippedRow(t, s.cfg.Probe.Port, survey.ErrBlocked, reason), nil)
		return
	}
	if t.IP.Is6() && !t.IP.Is4In6() && !s.cfg.IPv6 {
		s.AcceptProbe(ctx, skippedRow(t, s.cfg.Probe.Port, survey.ErrIPv6Disabled, "IPv6 address recorded, not probed (no -ipv6)"), nil)
		return
	}
	if err := s.sched.Add(ctx, t.IP, t); err != nil {
		return // interrupted: the target stays unprobed, resume finds it
	}
}

// Next returns the next target whose address is free and rested, and the
// function to call once its connection has ended (polite.Scheduler.Next).
// ok is false when the queue is closed and drained, or ctx ended.
func (s *Scan) Next(ctx context.Context) (t Target, release func(), ok bool) {
	return s.sched.Next(ctx)
}

// Requeue puts back a target whose probe will not come (a cluster worker
// gave it back or its lease ran out): it is queued again before its slot is
// released, so that the queue is never seen drained meanwhile.
func (s *Scan) Requeue(ctx context.Context, t Target, release func()) {
	defer release()
	_ = s.sched.Add(ctx, t.IP, t) // fails only when ctx ended: resume finds the target
}

// Queued reports the targets waiting for their turn.
func (s *Scan) Queued() int {
	pending, _ := s.sched.Stats()
	return pending
}

// Probing adds delta to the count of probes in flight that progress lines
// show.
func (s *Scan) Probing(delta int64) { s.c.inFlight.Add(delta) }

// CloseQueue says every domain has been accepted: no target will be added
// but requeued ones, and Next reports false once the queue is drained.
func (s *Scan) CloseQueue() {
	s.carrying.Wait()
	s.sched.Close()
}

// Drained is closed when the queue has been closed and every target taken
// from it has been released (or the scan's context ended).
func (s *Scan) Drained() <-chan struct{} { return s.sched.Done() }

// Finish commits what was written, stops the scan's tickers and writes the
// final manifest: complete, or failed with readErr or a write error, or
// interrupted when ctx ended first. It returns the scan's error, which
// wraps ErrInterrupted for an interruption.
func (s *Scan) Finish(ctx context.Context, readErr error) (*Result, error) {
	defer s.setHeapFloor(-1)
	writeErr := s.sink.close()
	s.stopProgress()
	s.stopManifest()
	s.cancelWork(nil)

	m := s.m
	now := time.Now().UTC()
	m.Ended = &now
	s.fillManifest(m)
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
	if err := store.WriteManifest(s.cfg.Out, m); err != nil && runErr == nil {
		runErr = err
	}
	s.summary(m)
	return &Result{Manifest: m}, runErr
}

// heapBytesPerDomain is the heap a scan grows to, per input entry, before
// the collector runs. The live heap grows with the scan (the sets of
// domains, targets and MX hosts, the caches, the queues: 170 MB at the end
// of a 1,000,000-domain lab scan), and at the runtime's own setting the
// collector ran whenever the heap had doubled from a few MiB, walking those
// sets each time: 625 collections in that scan, 18% of the scanner's CPU.
// With the floor: 255 collections, 9% of its CPU, and a peak RSS of 581 MiB
// (716 MiB before, when the sets held strings).
const (
	heapBytesPerDomain = 512
	maxScanHeapFloor   = 1 << 30
)

// setHeapFloor sets the scan's heap floor for n input entries
// (gcmem.HeapFloor), or, with n < 0, ends it: no floor is set after
// Finish.
func (s *Scan) setHeapFloor(n int64) {
	s.floorMu.Lock()
	defer s.floorMu.Unlock()
	switch {
	case n < 0:
		s.finished = true
		if s.stopFloor != nil {
			s.stopFloor()
			s.stopFloor = nil
		}
	case !s.finished && s.stopFloor == nil:
		s.stopFloor = gcmem.HeapFloor(uint64(min(n*heapBytesPerDomain, maxScanHeapFloor)))
	}
}

// NewLimiter is the scan's pace for a rate per second (0: none): the
// limiter behind -rate and -dns-rate, with a burst of a tenth of a second.
func NewLimiter(perSecond float64) *rate.Limiter {
	if perSecond <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(perSecond), Burst(perSecond))
}

// Burst is the burst of NewLimiter(perSecond).
func Burst(perSecond float64) int {
	return max(1, int(perSecond/10))
}

// Done reports whether t's answer is in the dataset: its domain committed
// by an earlier run, or accepted by this one (Wiring.Redelivered); its
// host's tlsa row written.
func (s *Scan) Done(t Task) bool {
	if t.TLSAHost != "" {
		return s.TLSAWritten(t.TLSAHost)
	}
	s.doneMu.Lock()
	defer s.doneMu.Unlock()
	return s.done.Has(t.Entry.Domain)
}
