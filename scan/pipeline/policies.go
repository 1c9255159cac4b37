package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/domains"
	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/scan/policy"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
	"github.com/mxsurvey/mxsurvey/scan/stsfetch"
)

// The policies stage (Config.Policies): per domain the MTA-STS and TLS-RPT
// TXT records, asked beside its MX lookup, and the MTA-STS policy fetch
// when a record asks for it; per MX host, the first time the scan sees it,
// its TLSA records. The rows are written in batches with the domain's mx
// rows (see batch), which is what makes "mx rows committed" mean "domain
// done" for -resume.

// batch is what one step of a domain hands the writer, in the order the
// tables are written: the tlsa rows of MX hosts whose lookups it made, its
// policies row, its mx rows. The mx writer commits the other two before
// each of its parts (store.CommitBefore), so a domain whose mx rows are
// committed has its policies row committed, and the tlsa row of each of its
// MX hosts, since a domain waits for the lookups of its hosts that another
// domain started and those rows are handed over before that wait ends.
type batch struct {
	tlsa   []survey.TLSARow
	policy []survey.PolicyRow
	mx     []survey.MXRow
}

// policyState is the policies stage's share of a run.
type policyState struct {
	fetcher *stsfetch.Fetcher // nil: policies off
	// fetchSlots bounds the domains waiting on a policy fetch, so a slow
	// HTTPS server holds a slot, not a DNS worker; fetches waits for them.
	fetchSlots chan struct{}
	fetches    sync.WaitGroup

	hostsMu sync.Mutex
	hosts   map[string]chan struct{} // MX host -> closed once its tlsa row is with the writer

	// done are the domains whose policies row an earlier run committed
	// without their mx rows: resolved again, not asked again. Read-only
	// once the scan runs.
	done map[string]bool

	rows, tlsaRows, fetched, resumedRows, resumedTLSA atomic.Int64
}

// startPolicies prepares the stage when cfg asks for it.
func (r *run) startPolicies() error {
	r.pol.hosts = map[string]chan struct{}{}
	r.pol.done = map[string]bool{}
	if !r.cfg.Policies {
		return nil
	}
	sc := r.cfg.STS
	sc.Timeout, sc.StepTimeout = r.cfg.Probe.Timeout, r.cfg.Probe.StepTimeout
	sc.MinTLSVersion, sc.MaxTLSVersion = r.cfg.Probe.MinTLSVersion, r.cfg.Probe.MaxTLSVersion
	sc.CurvePreferences = r.cfg.Probe.CurvePreferences
	sc.UserAgent = fmt.Sprintf("%s/%s (%s)", survey.Tool, survey.Version, r.cfg.Probe.EHLOName)
	sc.Guard, sc.IPv6, sc.Limiter, sc.Dial = r.policy, r.cfg.IPv6, r.connRate, r.cfg.Probe.Dial
	var err error
	if r.pol.fetcher, err = stsfetch.New(sc, r.resolver); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	r.pol.fetchSlots = make(chan struct{}, r.cfg.Concurrency)
	return nil
}

// dnssecOption is the manifest's "dnssec": whether the DNSSEC columns were
// filled from a trusted AD bit.
func (r *run) dnssecOption() string {
	switch {
	case !r.cfg.Policies:
		return survey.DNSSECOff
	case r.resolver.TrustsAD():
		return survey.DNSSECTrusted
	}
	return survey.DNSSECUntrusted
}

// checkResumePolicies refuses to resume a scan made with the other
// -policies setting: its domains would end with and without policy rows.
func (r *run) checkResumePolicies(old *survey.Manifest) error {
	was, _ := old.Options["policies"].(bool) // absent: a scan before the option, which had none
	if was != r.cfg.Policies {
		return fmt.Errorf("%s was scanned with -policies=%v: resume with the same setting", r.cfg.Out, was)
	}
	return nil
}

// resumePolicies reads the tlsa and policies rows an earlier run
// committed: their MX hosts are not asked again, and a domain whose
// policies row is there without its mx rows keeps that row.
func (r *run) resumePolicies(done *domains.Dedup) error {
	if !r.cfg.Policies {
		return nil
	}
	closed := make(chan struct{})
	close(closed)
	err := store.ReadAll(survey.TLSADir(r.cfg.Out), func(row *survey.TLSARow) error {
		r.pol.hosts[row.MXHost] = closed
		r.pol.resumedTLSA.Add(1)
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading committed tlsa rows to resume: %w", err)
	}
	err = store.ReadAll(survey.PoliciesDir(r.cfg.Out), func(row *survey.PolicyRow) error {
		if !done.Has(row.Domain) {
			r.pol.done[row.Domain] = true
		}
		r.pol.resumedRows.Add(1)
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading committed policies rows to resume: %w", err)
	}
	return nil
}

// lookupPolicies starts a domain's TXT lookups beside its MX lookup; the
// returned function waits for them. It returns nil when there is nothing
// to do: policies off, or the row committed by an earlier run.
func (r *run) lookupPolicies(ctx context.Context, domain string) func() *survey.PolicyRow {
	if r.pol.fetcher == nil || r.pol.done[domain] {
		return nil
	}
	ch := make(chan survey.PolicyRow, 1)
	go func() { ch <- policy.Records(ctx, r.resolver, domain) }()
	return func() *survey.PolicyRow {
		row := <-ch
		return &row
	}
}

// lookupTLSA makes sure every MX host of d has its tlsa row with the
// writer: it looks up the hosts first seen here, at once, and waits for
// the lookups of those another domain started. It reports false when ctx
// ended first.
func (r *run) lookupTLSA(ctx context.Context, d resolve.Domain) bool {
	if r.pol.fetcher == nil || len(d.Hosts) == 0 {
		return true
	}
	var wait []chan struct{}
	var mine []int
	r.pol.hostsMu.Lock()
	for i, h := range d.Hosts {
		if ch, ok := r.pol.hosts[h.Name]; ok {
			wait = append(wait, ch)
			continue
		}
		ch := make(chan struct{})
		r.pol.hosts[h.Name] = ch
		wait = append(wait, ch)
		mine = append(mine, i)
	}
	r.pol.hostsMu.Unlock()
	var wg sync.WaitGroup
	for _, i := range mine {
		wg.Go(func() {
			h := d.Hosts[i]
			row := policy.TLSA(ctx, r.resolver, h)
			if ctx.Err() != nil {
				return // interrupted: not the host's answer; nobody waits past ctx
			}
			select {
			case r.batches <- batch{tlsa: []survey.TLSARow{row}}:
				r.pol.tlsaRows.Add(1)
				r.pol.hostsMu.Lock()
				close(r.pol.hosts[h.Name])
				r.pol.hostsMu.Unlock()
			case <-ctx.Done():
			}
		})
	}
	wg.Wait()
	for _, ch := range wait {
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// emitDomain hands a domain's batch to the writer once its policies row is
// complete: at once when no fetch is due, else from a goroutine holding a
// fetch slot. It reports false when ctx ended first.
func (r *run) emitDomain(ctx context.Context, b batch, pol func() *survey.PolicyRow) bool {
	if pol == nil {
		return r.emit(ctx, b)
	}
	row := pol()
	if ctx.Err() != nil {
		return false
	}
	b.policy = []survey.PolicyRow{*row}
	if !policy.WantsFetch(row) {
		return r.emit(ctx, b)
	}
	select {
	case r.pol.fetchSlots <- struct{}{}:
	case <-ctx.Done():
		return false
	}
	r.pol.fetches.Go(func() {
		defer func() { <-r.pol.fetchSlots }()
		r.pol.fetcher.Fetch(ctx, row.Domain, &b.policy[0])
		r.pol.fetched.Add(1)
		if ctx.Err() != nil {
			return // abandoned by an interrupt: resume redoes the domain
		}
		r.emit(ctx, b)
	})
	return true
}

// emit hands b to the writer.
func (r *run) emit(ctx context.Context, b batch) bool {
	select {
	case r.batches <- b:
		r.pol.rows.Add(int64(len(b.policy)))
		return true
	case <-ctx.Done():
		return false
	}
}

// tables are the writers of the tables a domain fills, owned by one
// goroutine; policy and tlsa are nil with policies off.
type tables struct {
	mx     *store.PartWriter[survey.MXRow]
	policy *store.PartWriter[survey.PolicyRow]
	tlsa   *store.PartWriter[survey.TLSARow]
}

func (r *run) openTables() (*tables, error) {
	var t tables
	var err error
	if t.mx, err = store.NewPartWriter[survey.MXRow](survey.MXDir(r.cfg.Out), store.PartOptions{}); err != nil {
		return nil, err
	}
	if !r.cfg.Policies {
		return &t, nil
	}
	if t.policy, err = store.NewPartWriter[survey.PolicyRow](survey.PoliciesDir(r.cfg.Out), store.PartOptions{GroupRows: 2000}); err != nil {
		return nil, err
	}
	if t.tlsa, err = store.NewPartWriter[survey.TLSARow](survey.TLSADir(r.cfg.Out), store.PartOptions{}); err != nil {
		return nil, err
	}
	t.mx.CommitBefore(t.tlsa, t.policy)
	return &t, nil
}

// Write writes each batch's rows in the order that keeps a domain whole.
func (t *tables) Write(bs []batch) error {
	for _, b := range bs {
		if len(b.tlsa) > 0 {
			if err := t.tlsa.Write(b.tlsa); err != nil {
				return err
			}
		}
		if len(b.policy) > 0 {
			if err := t.policy.Write(b.policy); err != nil {
				return err
			}
		}
		if err := t.mx.Write(b.mx); err != nil {
			return err
		}
	}
	return nil
}

// CommitIfOlder commits each table's open part older than age (the mx
// part's commit commits the others first).
func (t *tables) CommitIfOlder(age time.Duration) error {
	for _, w := range t.writers() {
		if err := w.CommitIfOlder(age); err != nil {
			return err
		}
	}
	return nil
}

func (t *tables) Close() error {
	var errs []error
	for _, w := range t.writers() {
		errs = append(errs, w.Close())
	}
	return errors.Join(errs...)
}

func (t *tables) Abort() {
	for _, w := range t.writers() {
		w.Abort()
	}
}

// committed reports the rows made visible, by table.
func (t *tables) committed() map[string]int64 {
	m := map[string]int64{}
	_, m[survey.MXTable] = t.mx.Committed()
	if t.policy != nil {
		_, m[survey.PoliciesTable] = t.policy.Committed()
		_, m[survey.TLSATable] = t.tlsa.Committed()
	}
	return m
}

// partWriter is what tables and writeAll need of a store.PartWriter,
// whatever its row type.
type partWriter interface {
	CommitIfOlder(time.Duration) error
	Close() error
	Abort()
}

// writers lists the open writers, mx first: its commits order the others.
func (t *tables) writers() []partWriter {
	if t.policy == nil {
		return []partWriter{t.mx}
	}
	return []partWriter{t.mx, t.policy, t.tlsa}
}
