// Package pipeline runs one scan: input -> resolve -> targets -> probe ->
// write. Stages talk through bounded channels under one context, so a slow
// stage pushes back on the ones before it instead of growing memory, and a
// channel between two stages can later become a work queue between machines.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"

	"github.com/mxsurvey/mxsurvey/datasets"
	"github.com/mxsurvey/mxsurvey/internal/workers"
	"github.com/mxsurvey/mxsurvey/scan/guard"
	"github.com/mxsurvey/mxsurvey/scan/polite"
	"github.com/mxsurvey/mxsurvey/scan/probe"
	"github.com/mxsurvey/mxsurvey/scan/record"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
)

// ErrInterrupted is returned when the scan's context ended before the input
// was exhausted; the dataset is consistent and can be resumed.
var ErrInterrupted = errors.New("scan interrupted")

// Result summarises a finished (or interrupted) scan.
type Result struct {
	Manifest *record.Manifest
}

type target struct {
	ip     netip.Addr
	mxHost string
}

func (t target) key() string { return t.ip.String() + "|" + t.mxHost }

// run holds the state shared by the stages of one scan.
type run struct {
	cfg      Config
	resolver *resolve.Resolver
	prober   *probe.Prober
	policy   *guard.Policy
	connRate *rate.Limiter
	sched    *polite.Scheduler[target]

	mxRows    chan []record.MXRow
	probeRows chan record.ProbeRow

	targetsMu sync.Mutex
	targets   map[string]struct{} // (ip|mx_host) queued or done in this dataset

	ptrMu    sync.Mutex
	ptrCache map[netip.Addr][2]string

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
	var dnsLimiter *rate.Limiter
	if cfg.DNSRate > 0 {
		dnsLimiter = rate.NewLimiter(rate.Limit(cfg.DNSRate), burst(cfg.DNSRate))
	}
	if cfg.Rate > 0 {
		r.connRate = rate.NewLimiter(rate.Limit(cfg.Rate), burst(cfg.Rate))
	}
	var err error
	retries := cfg.DNSRetries
	if retries == 0 {
		retries = -1 // the resolver reads 0 as "its default"; here 0 means none
	}
	r.resolver, err = resolve.New(resolve.Config{Servers: cfg.Resolvers, Timeout: cfg.DNSTimeout,
		Retries: retries, Limiter: dnsLimiter})
	if err != nil {
		return nil, err
	}
	defer r.resolver.Close()
	r.prober, err = probe.New(probe.Config{Port: cfg.Port, EHLOName: cfg.EHLOName, Timeout: cfg.ProbeTimeout,
		StepTimeout: cfg.StepTimeout, CurvePreferences: cfg.TLSGroups, Dial: cfg.Dial})
	if err != nil {
		return nil, err
	}
	r.policy = guard.New(cfg.Allow, cfg.Block)

	in, err := datasets.Open(cfg.Input, cfg.Format)
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
	mxw, err := record.NewPartWriter[record.MXRow](cfg.Out+"/mx", record.PartOptions{})
	if err != nil {
		return nil, err
	}
	pw, err := record.NewPartWriter[record.ProbeRow](cfg.Out+"/probes", record.PartOptions{GroupRows: 2000})
	if err != nil {
		return nil, err
	}

	if cfg.Input != "-" {
		go func() {
			if n, err := datasets.Count(cfg.Input, cfg.Format); err == nil {
				r.c.inputTotal.Store(n)
			}
		}()
	}

	r.mxRows = make(chan []record.MXRow, 256)
	r.probeRows = make(chan record.ProbeRow, 256)
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

	stopManifest := r.keepManifest(m)
	stopProgress := r.progress()

	var writers errgroup.Group
	// The writers are the one place every row passes: text is made valid
	// UTF-8 there (Parquet STRING requires it; see record.MakeValidUTF8).
	writers.Go(func() error {
		return writeAll(mxw, r.mxRows, cfg.Checkpoint, cancelWork, func(rows []record.MXRow) []record.MXRow {
			for i := range rows {
				rows[i].MakeValidUTF8()
			}
			return rows
		})
	})
	writers.Go(func() error {
		return writeAll(pw, r.probeRows, cfg.Checkpoint, cancelWork, func(row record.ProbeRow) []record.ProbeRow {
			row.MakeValidUTF8()
			return []record.ProbeRow{row}
		})
	})

	domains := make(chan datasets.Entry, 4*cfg.DNSConcurrency)
	var readErr error
	var stages sync.WaitGroup
	stages.Add(1)
	go func() {
		defer stages.Done()
		defer close(domains)
		readErr = r.read(work, in, done, domains)
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
			for e := range domains {
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
	r.sched.Close()
	<-probing
	close(r.mxRows)
	close(r.probeRows)
	writeErr := writers.Wait()
	stopProgress()
	stopManifest()

	now := time.Now().UTC()
	m.Ended = &now
	r.fillManifest(m, mxw, pw)
	var runErr error
	switch {
	case writeErr != nil:
		m.Status, runErr = record.StatusFailed, writeErr
	case readErr != nil && !errors.Is(readErr, context.Canceled):
		m.Status, runErr = record.StatusFailed, readErr
	case ctx.Err() != nil:
		m.Status, runErr = record.StatusInterrupted, fmt.Errorf("%w: %v; rerun with -resume to continue", ErrInterrupted, context.Cause(ctx))
	default:
		m.Status = record.StatusComplete
	}
	if runErr != nil {
		m.Error = runErr.Error()
	}
	if err := record.WriteManifest(cfg.Out, m); err != nil && runErr == nil {
		runErr = err
	}
	r.summary(m)
	return &Result{Manifest: m}, runErr
}

func burst(perSecond float64) int {
	return max(1, int(perSecond/10))
}

// writeAll drains ch into w, committing the open part every checkpoint
// interval. It writes whatever has queued up in one call (rows of several
// domains or probes together): one row per call cost the writer a size
// check and a dispatch each, and a writer that falls behind keeps probes
// waiting with their rows. After a write error it keeps draining (so no
// stage blocks) but drops the open part, leaving only committed parts.
func writeAll[T, R any](w *record.PartWriter[R], ch <-chan T, checkpoint time.Duration, stop context.CancelCauseFunc, rows func(T) []R) error {
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

// read streams the input into domains: invalid lines become error rows at
// once, duplicates, other shards' domains and domains already in the
// dataset are skipped.
func (r *run) read(ctx context.Context, in *datasets.Reader, done *datasets.Dedup, domains chan<- datasets.Entry) error {
	seen := datasets.NewDedup()
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
			r.c.dnsStatus(record.DNSError)
			row := record.MXRow{Domain: e.Input, Rank: e.Rank, Input: e.Input, DNSStatus: record.DNSError,
				DNSError: e.Err, ResolvedAt: time.Now().UTC()}
			select {
			case r.mxRows <- []record.MXRow{row}:
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		select {
		case domains <- e:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// invalidKey keys an invalid input line by its text, apart from every
// valid domain name.
func invalidKey(input string) string { return "\x00invalid:" + input }

// resolveDomain resolves one domain, emits its mx rows as one batch (so they
// are committed together) and queues its new targets.
func (r *run) resolveDomain(ctx context.Context, e datasets.Entry) {
	if ctx.Err() != nil {
		return
	}
	d := r.resolver.Resolve(ctx, e.Domain)
	if ctx.Err() != nil {
		return // interrupted mid-lookup: the outcome is not the domain's, resume redoes it
	}
	now := time.Now().UTC()
	base := record.MXRow{Domain: e.Domain, Rank: e.Rank, Input: e.Input, DNSStatus: d.Status, DNSError: d.Error,
		ImplicitMX: d.ImplicitMX, CNAMEs: d.CNAMEs, ResolvedAt: now}
	var rows []record.MXRow
	var targets []target
	for _, h := range d.Hosts {
		hr := base
		hr.MXHost, hr.MXPreference, hr.MXHostStatus, hr.MXHostError = h.Name, int32(h.Preference), h.Status, h.Error
		if len(h.Addrs) == 0 {
			rows = append(rows, hr)
			continue
		}
		for _, a := range h.Addrs {
			ar := hr
			ar.IP = a.String()
			ar.IPVersion = 4
			if a.Is6() && !a.Is4In6() {
				ar.IPVersion = 6
			}
			rows = append(rows, ar)
			targets = append(targets, target{ip: a, mxHost: h.Name})
		}
	}
	if len(rows) == 0 {
		rows = append(rows, base)
	}
	r.c.resolved.Add(1)
	r.c.dnsStatus(d.Status)
	select {
	case r.mxRows <- rows:
	case <-ctx.Done():
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
		r.emitProbe(ctx, skippedRow(t, r.cfg.Port, record.ErrBlocked, reason))
		return
	}
	if t.ip.Is6() && !t.ip.Is4In6() && !r.cfg.IPv6 {
		r.emitProbe(ctx, skippedRow(t, r.cfg.Port, record.ErrIPv6Disabled, "IPv6 address recorded, not probed (no -ipv6)"))
		return
	}
	if err := r.sched.Add(ctx, t.ip, t); err != nil {
		return // interrupted: the target stays unprobed, resume finds it
	}
}

func skippedRow(t target, port int, class, reason string) record.ProbeRow {
	return record.ProbeRow{IP: t.ip.String(), Port: int32(port), MXHost: t.mxHost, StartedAt: time.Now().UTC(),
		Outcome: record.OutcomeSkipped, ErrorClass: class, Error: reason}
}

func (r *run) emitProbe(ctx context.Context, row record.ProbeRow) {
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
func (r *run) connect(ctx context.Context, t target, release func()) (row record.ProbeRow, ok bool) {
	r.c.inFlight.Add(1)
	defer func() {
		r.c.inFlight.Add(-1)
		release()
		if p := recover(); p != nil {
			slog.Error("probe worker panic", "target", t.key(), "panic", p, "stack", string(debug.Stack()))
			row = skippedRow(t, r.cfg.Port, record.ErrInternal, fmt.Sprint("internal error: ", p))
			row.Outcome, ok = record.OutcomeConnect, true
		}
	}()
	var ptrHost, ptrStatus string
	if r.cfg.PTR {
		ptrHost, ptrStatus = r.ptr(ctx, t.ip)
	}
	// The connection rate is taken right before the dial, after the PTR
	// lookup, so DNS waits cannot bunch connections together.
	if r.connRate != nil {
		if err := r.connRate.Wait(ctx); err != nil {
			return row, false
		}
	}
	row = r.prober.Probe(ctx, probe.Target{IP: t.ip, MXHost: t.mxHost})
	if ctx.Err() != nil {
		return row, false // abandoned by an interrupt: not a property of the server
	}
	row.PTRHost, row.PTRStatus = ptrHost, ptrStatus
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

// prepareOut creates the output directory, or on -resume reads what an
// earlier run committed: the domains done, and the targets referenced by
// committed mx rows that have no committed probe row.
func (r *run) prepareOut() (done *datasets.Dedup, carried []target, m *record.Manifest, err error) {
	done = datasets.NewDedup()
	old, merr := record.ReadManifest(r.cfg.Out)
	switch {
	case merr == nil && !r.cfg.Resume:
		return nil, nil, nil, fmt.Errorf("%s already holds a scan (status %s): use -resume to continue it, or another -o", r.cfg.Out, old.Status)
	case merr != nil && !errors.Is(merr, os.ErrNotExist):
		return nil, nil, nil, fmt.Errorf("output directory %s unusable: %w", r.cfg.Out, merr)
	}
	if err := os.MkdirAll(r.cfg.Out, 0o755); err != nil {
		return nil, nil, nil, fmt.Errorf("creating output directory: %w", err)
	}
	host, _ := os.Hostname()
	m = &record.Manifest{Tool: "mxsurvey", ToolVersion: record.Version, SchemaVersion: record.SchemaVersion,
		Args: r.cfg.Args, Options: r.cfg.options(), Host: host, Started: time.Now().UTC(), Status: record.StatusRunning}
	if old != nil {
		if old.SchemaVersion != record.SchemaVersion {
			return nil, nil, nil, fmt.Errorf("%s was written with schema version %d, this mxsurvey writes %d: resume with the same version", r.cfg.Out, old.SchemaVersion, record.SchemaVersion)
		}
		m.Started = old.Started
		m.Resumes = append(old.Resumes, time.Now().UTC())
		referenced := map[string]target{}
		err := record.ReadAll(r.cfg.Out+"/mx", func(row *record.MXRow) error {
			// A row cannot tell an invalid input line from a valid domain
			// whose resolution failed with "error" (a CNAME loop): mark
			// both keys done; neither can collide with the other kind.
			done.Seen(row.Domain)
			if row.DNSStatus == record.DNSError && row.MXHost == "" {
				done.Seen(invalidKey(row.Input))
			}
			if row.IP != "" {
				if ip, perr := netip.ParseAddr(row.IP); perr == nil {
					t := target{ip: ip, mxHost: row.MXHost}
					referenced[t.key()] = t
				}
			}
			r.c.resumedMXRows.Add(1)
			return nil
		})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("reading committed mx rows to resume: %w", err)
		}
		err = record.ReadAll(r.cfg.Out+"/probes", func(row *record.ProbeRow) error {
			k := row.IP + "|" + row.MXHost
			if ip, perr := netip.ParseAddr(row.IP); perr == nil {
				k = target{ip: ip, mxHost: row.MXHost}.key()
			}
			r.targets[k] = struct{}{}
			delete(referenced, k)
			r.c.resumedProbeRows.Add(1)
			return nil
		})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("reading committed probe rows to resume: %w", err)
		}
		for _, t := range referenced {
			carried = append(carried, t)
		}
		slog.Info("resuming", "dir", r.cfg.Out, "domains_done", done.Len(), "probes_done", len(r.targets), "targets_to_reprobe", len(carried))
	}
	if err := record.WriteManifest(r.cfg.Out, m); err != nil {
		return nil, nil, nil, err
	}
	return done, carried, m, nil
}

func (c *Config) options() map[string]any {
	groups := "go-default"
	if len(c.TLSGroups) > 0 {
		groups = ""
		for i, g := range c.TLSGroups {
			if i > 0 {
				groups += ","
			}
			groups += g.String()
		}
	}
	return map[string]any{
		"input": c.Input, "format": string(c.Format), "shard": c.Shard.String(),
		"resolvers": c.Resolvers, "dns_timeout": c.DNSTimeout.String(), "dns_retries": c.DNSRetries,
		"dns_concurrency": c.DNSConcurrency, "dns_rate": c.DNSRate, "ptr": c.PTR,
		"concurrency": c.Concurrency, "rate": c.Rate, "per_ip_concurrency": c.PerIPConcurrency,
		"ip_interval": c.IPInterval.String(), "port": c.Port, "ehlo_name": c.EHLOName,
		"probe_timeout": c.ProbeTimeout.String(), "step_timeout": c.StepTimeout.String(),
		"checkpoint": c.Checkpoint.String(), "ipv6": c.IPv6, "tls_groups": groups, "allow": prefixes(c.Allow), "blocklist_entries": len(c.Block),
	}
}

func prefixes(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// keepManifest rewrites the manifest every 30 seconds so a killed scan
// leaves its counts behind.
func (r *run) keepManifest(m *record.Manifest) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				snapshot := *m
				r.fillCounts(&snapshot)
				if err := record.WriteManifest(r.cfg.Out, &snapshot); err != nil {
					slog.Warn("updating manifest", "err", err)
				}
			}
		}
	}()
	return func() { close(quit); wg.Wait() }
}

func (r *run) fillManifest(m *record.Manifest, mxw *record.PartWriter[record.MXRow], pw *record.PartWriter[record.ProbeRow]) {
	r.fillCounts(m)
	mxParts, _ := record.Parts(r.cfg.Out + "/mx")
	probeParts, _ := record.Parts(r.cfg.Out + "/probes")
	m.Parts = map[string]int{"mx": len(mxParts), "probes": len(probeParts)}
	_, mxRows := mxw.Committed()
	_, probeRows := pw.Committed()
	m.Counts["mx_rows_written"] = mxRows
	m.Counts["probe_rows_written"] = probeRows
}
