package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"sync"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/internal/gcmem"
	"github.com/mxsurvey/mxsurvey/scan/guard"
	"github.com/mxsurvey/mxsurvey/scan/policy"
	"github.com/mxsurvey/mxsurvey/scan/probe"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
	"github.com/mxsurvey/mxsurvey/scan/stsfetch"
)

// Stages are the steps of a scan that talk to the network: resolving a
// domain into its rows (with policies on, its policy records and its MX
// hosts' TLSA records too, and the MTA-STS policy fetch), probing a target
// into its row. A local scan (Run) calls them in-process; a cluster worker
// calls the same ones for its coordinator. They decide nothing that needs
// the whole scan: deduplication, scheduling and writing are the Scan's.
type Stages struct {
	res     *resolve.Resolver
	prober  *probe.Prober
	fetcher *stsfetch.Fetcher // nil: policies off
	guard   *guard.Policy
	port    int
	ptr     bool
	// tlsaDone says which MX hosts' tlsa rows the Scan already holds
	// (committed by an earlier run): they are not asked again.
	tlsaDone func(host string) bool

	ptrMu    sync.Mutex
	ptrCache map[netip.Addr][2]string

	tlsaMu      sync.Mutex
	tlsaCache   map[string]*tlsaLookup
	tlsaSweepAt int // cache size at which finished lookups the Scan holds are dropped
}

// StageConfig configures Stages: the scan's options for the work that
// talks to the network. A cluster's coordinator sends it to the workers as
// JSON, so an option added here reaches them; the fields tagged `json:"-"`
// are each process's own.
type StageConfig struct {
	Probe    probe.Config    `json:"probe"`
	PTR      bool            `json:"ptr"` // look up the PTR name of every probed address
	Policies bool            `json:"policies"`
	STS      stsfetch.Config `json:"sts"`  // the policy fetch: its port; the rest follows Probe
	IPv6     bool            `json:"ipv6"` // policy fetches may use IPv6 addresses
	// Allow and Block are the scan's guard, checked right before every
	// connection (probe and policy fetch).
	Allow []netip.Prefix `json:"allow"`
	Block []netip.Prefix `json:"block"`
	// Guard, when set, is checked on top of the scan's: a worker's own
	// allow list and blocklist, which no scan can widen.
	Guard *guard.Policy `json:"-"`
	// FetchLimiter paces the policy fetches' connections: the scan's
	// connection rate, which the probes share.
	FetchLimiter resolve.Limiter `json:"-"`
	// TLSADone says which MX hosts' tlsa rows the Scan already holds.
	TLSADone func(host string) bool `json:"-"`
}

// StageConfig is the configuration of the scan's Stages, without the
// process's own fields.
func (c Config) StageConfig() StageConfig {
	return StageConfig{Probe: c.Probe, PTR: c.PTR, Policies: c.Policies, STS: c.STS, IPv6: c.IPv6, Allow: c.Allow, Block: c.Block}
}

// ResolveConfig is the configuration of the scan's resolvers, without
// their servers' pace (Limiter): DNSSEC with policies on.
func (c Config) ResolveConfig() resolve.Config {
	rc := c.Resolve
	rc.DNSSEC = c.Policies
	return rc
}

// NewStages returns the stages of a scan resolving with res. It fails
// (wrapping ErrConfig) when the probe or fetch configuration is impossible.
func NewStages(cfg StageConfig, res *resolve.Resolver) (*Stages, error) {
	p, err := probe.New(cfg.Probe)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err) // e.g. an EHLO name with a space
	}
	g := guard.New(cfg.Allow, cfg.Block)
	if cfg.Guard != nil {
		g = g.And(cfg.Guard)
	}
	st := &Stages{res: res, prober: p, guard: g, port: cfg.Probe.WithDefaults().Port, ptr: cfg.PTR,
		tlsaDone: cfg.TLSADone, ptrCache: map[netip.Addr][2]string{}, tlsaCache: map[string]*tlsaLookup{}}
	if cfg.Policies {
		pc := cfg.Probe.WithDefaults()
		sc := cfg.STS
		sc.Timeout, sc.StepTimeout = pc.Timeout, pc.StepTimeout
		sc.MinTLSVersion, sc.MaxTLSVersion = pc.MinTLSVersion, pc.MaxTLSVersion
		sc.CurvePreferences = pc.CurvePreferences
		sc.UserAgent = fmt.Sprintf("%s/%s (%s)", survey.Tool, survey.Version, pc.EHLOName)
		sc.Guard, sc.IPv6, sc.Limiter, sc.Dial = g, cfg.IPv6, cfg.FetchLimiter, pc.Dial
		if st.fetcher, err = stsfetch.New(sc, res); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	if st.tlsaDone == nil {
		st.tlsaDone = func(string) bool { return false }
	}
	return st, nil
}

// DNSSECOption is the manifest's "dnssec": whether the DNSSEC columns were
// filled from a trusted AD bit.
func DNSSECOption(policies bool, res *resolve.Resolver) string {
	switch {
	case !policies:
		return survey.DNSSECOff
	case res.TrustsAD():
		return survey.DNSSECTrusted
	}
	return survey.DNSSECUntrusted
}

// Resolved is a domain resolved; its Rows are complete unless NeedsFetch.
type Resolved struct {
	Rows Rows
}

// NeedsFetch says the domain's MTA-STS record asks for its policy, which
// Fetch gets: an HTTPS connection, which callers make from a slot of its
// own, so that a slow policy server holds that slot, not a DNS one.
func (r *Resolved) NeedsFetch() bool {
	return len(r.Rows.Policies) == 1 && policy.WantsFetch(&r.Rows.Policies[0])
}

// Resolve resolves one domain into its rows; false when ctx ended
// meanwhile (the outcome is then not the domain's: it is redone later).
// With policies on it asks the domain's MTA-STS and TLS-RPT records beside
// its MX lookup (unless the task says the Scan holds them), and adds the
// tlsa row of each MX host, looked up once per process. A Task.TLSAHost
// gives that host's tlsa row, its addresses resolved first as an MX host's
// are (RFC 7672 §2.2.2 follows their CNAMEs).
func (st *Stages) Resolve(ctx context.Context, task Task) (Resolved, bool) {
	if ctx.Err() != nil {
		return Resolved{}, false
	}
	if task.TLSAHost != "" {
		if st.fetcher == nil {
			return Resolved{}, false // not a task of a scan without policies
		}
		row, ok, _ := st.tlsa(ctx, st.res.LookupHost(ctx, task.TLSAHost), false)
		return Resolved{Rows: Rows{TLSA: []survey.TLSARow{row}}}, ok
	}
	// The policy records are asked meanwhile, their row filled in place: a
	// channel of rows held a second copy of each.
	var pols []survey.PolicyRow
	var polDone chan struct{}
	if st.fetcher != nil && !task.SkipPolicies {
		pols, polDone = make([]survey.PolicyRow, 1), make(chan struct{})
		go func() {
			defer close(polDone)
			pols[0] = policy.Records(ctx, st.res, task.Entry.Domain)
		}()
	}
	d := st.res.Resolve(ctx, task.Entry.Domain)
	var rs Resolved
	if st.fetcher != nil {
		for _, h := range d.Hosts {
			row, ok, held := st.tlsa(ctx, h, true)
			if held {
				continue
			}
			if !ok {
				return Resolved{}, false
			}
			rs.Rows.TLSA = append(rs.Rows.TLSA, row)
		}
	}
	if polDone != nil {
		<-polDone
		rs.Rows.Policies = pols
	}
	if ctx.Err() != nil {
		return Resolved{}, false
	}
	rs.Rows.MX = mxRows(task.Entry, d, time.Now().UTC())
	return rs, true
}

// Fetch fetches the domain's MTA-STS policy into its policies row; false
// when ctx ended meanwhile.
func (st *Stages) Fetch(ctx context.Context, r *Resolved) bool {
	row := &r.Rows.Policies[0]
	st.fetcher.Fetch(ctx, row.Domain, row)
	return ctx.Err() == nil
}

// tlsaLookup is one MX host's TLSA lookup, shared by every domain that has
// the host.
type tlsaLookup struct {
	done chan struct{}
	row  survey.TLSARow
	ok   bool
}

// tlsa returns the tlsa row of an MX host, looking it up the first time a
// domain names it; the domains that name it meanwhile wait for that
// lookup. With skipHeld, a host whose row the Scan already holds is not
// asked again: held, no row.
//
// A finished lookup stays cached only until the Scan holds its row: the
// cache is swept each time it has doubled since the last sweep. Kept for
// the whole scan, the rows were the largest part of the scanner's memory
// at 1,000,000 domains (211 MB of 595 MB live, one row per MX host). A
// domain that finds no entry checks the Scan again under the same lock, so
// a swept host is never looked up twice.
func (st *Stages) tlsa(ctx context.Context, h resolve.Host, skipHeld bool) (row survey.TLSARow, ok, held bool) {
	if ctx.Err() != nil {
		return survey.TLSARow{}, false, false
	}
	st.tlsaMu.Lock()
	l, found := st.tlsaCache[h.Name]
	if !found {
		if skipHeld && st.tlsaDone(h.Name) {
			st.tlsaMu.Unlock()
			return survey.TLSARow{}, false, true
		}
		if len(st.tlsaCache) >= st.tlsaSweepAt {
			st.sweepTLSA()
		}
		if len(st.tlsaCache) >= 1_000_000 {
			clear(st.tlsaCache) // a bound, not an LRU: a host asked again is one more query
		}
		l = &tlsaLookup{done: make(chan struct{})}
		st.tlsaCache[h.Name] = l
	}
	st.tlsaMu.Unlock()
	if !found {
		l.row = policy.TLSA(ctx, st.res, h)
		l.ok = ctx.Err() == nil
		if !l.ok {
			// Interrupted: not the host's answer. The next domain asks.
			st.tlsaMu.Lock()
			if st.tlsaCache[h.Name] == l {
				delete(st.tlsaCache, h.Name)
			}
			st.tlsaMu.Unlock()
		}
		close(l.done)
	}
	select {
	case <-l.done:
	case <-ctx.Done():
		return survey.TLSARow{}, false, false
	}
	if !l.ok {
		return st.tlsa(ctx, h, skipHeld)
	}
	return l.row, true, false
}

// sweepTLSA drops the finished lookups of hosts whose row the Scan holds;
// st.tlsaMu is held.
func (st *Stages) sweepTLSA() {
	for host, l := range st.tlsaCache {
		select {
		case <-l.done:
			if l.ok && st.tlsaDone(host) {
				delete(st.tlsaCache, host)
			}
		default: // in flight: domains may be waiting for it
		}
	}
	st.tlsaSweepAt = max(2*len(st.tlsaCache), 1024)
}

// Probe probes one target into its row. beforeDial runs right before the
// connection and may refuse it (a rate limiter's wait, a cluster worker's
// start window); a refusal or the end of ctx returns false and no row, as
// the connection was not made or not completed. An address the guard
// refuses gets its skipped row without a connection. A panic here (in our
// code: the prober recovers its own) is recorded as data rather than
// ending the scan.
func (st *Stages) Probe(ctx context.Context, t Target, beforeDial func(context.Context) error) (row survey.ProbeRow, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			slog.Error("probe worker panic", "target", t.Key(), "panic", p, "stack", string(debug.Stack()))
			row = skippedRow(t, st.port, survey.ErrInternal, fmt.Sprint("internal error: ", p))
			row.Outcome = survey.OutcomeConnect
			ok = true
		}
	}()
	if allowed, reason := st.guard.Check(t.IP); !allowed {
		return skippedRow(t, st.port, survey.ErrBlocked, reason), true
	}
	if beforeDial != nil {
		if err := beforeDial(ctx); err != nil {
			return survey.ProbeRow{}, false
		}
	}
	defer gcmem.Open()() // thousands of probes waiting on servers: memory, not CPU, is their cost
	row = st.prober.Probe(ctx, probe.Target{IP: t.IP, MXHost: t.MXHost})
	if ctx.Err() != nil {
		return survey.ProbeRow{}, false // abandoned by an interrupt: not a property of the server
	}
	return row, true
}

// PTR fills the row's PTR columns (with PTR lookups on), once per address
// however many MX names share it. It runs after the connection has ended,
// so that a slow reverse zone neither holds a connection slot nor bunches
// connections together. False when ctx ended meanwhile: the row's PTR
// columns would then say so rather than what the DNS holds, and the row
// must not be kept.
func (st *Stages) PTR(ctx context.Context, row *survey.ProbeRow) bool {
	if !st.ptr || row.Outcome == survey.OutcomeSkipped {
		return true
	}
	ip, err := netip.ParseAddr(row.IP)
	if err != nil {
		return true
	}
	st.ptrMu.Lock()
	v, ok := st.ptrCache[ip]
	st.ptrMu.Unlock()
	if !ok {
		name, status := st.res.PTR(ctx, ip)
		if ctx.Err() != nil {
			return false
		}
		v = [2]string{name, status}
		st.ptrMu.Lock()
		if len(st.ptrCache) >= 1_000_000 {
			clear(st.ptrCache) // a bound, not an LRU: PTR lookups are cheap to redo
		}
		st.ptrCache[ip] = v
		st.ptrMu.Unlock()
	}
	row.PTRHost, row.PTRStatus = v[0], v[1]
	return true
}
