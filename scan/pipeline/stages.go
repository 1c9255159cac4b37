package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"sync"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/domains"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/scan/guard"
	"github.com/mxsurvey/mxsurvey/scan/probe"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
)

// Stages are the steps of a scan that talk to the network: resolving a
// domain into its rows, probing a target into its row. A local scan (Run)
// calls them in-process; a cluster worker calls the same ones for its
// coordinator. They decide nothing that needs the whole scan: deduplication,
// scheduling and writing are the Scan's.
type Stages struct {
	res    *resolve.Resolver
	prober *probe.Prober
	guard  *guard.Policy
	port   int
	ptr    bool

	ptrMu    sync.Mutex
	ptrCache map[netip.Addr][2]string
}

// StageConfig configures Stages: the scan's options for the work that
// talks to the network. A cluster's coordinator sends it to the workers as
// JSON, so an option added here reaches them; Guard is each machine's own.
type StageConfig struct {
	Probe probe.Config `json:"probe"`
	PTR   bool         `json:"ptr"` // look up the PTR name of every probed address
	// Guard is checked again right before every connection: a worker's own
	// allow list and blocklist hold whatever the scan asked.
	Guard *guard.Policy `json:"-"`
}

// StageConfig is the configuration of the scan's Stages (without Guard).
func (c Config) StageConfig() StageConfig {
	return StageConfig{Probe: c.Probe, PTR: c.PTR}
}

// NewStages returns the stages of a scan resolving with res. It fails
// (wrapping ErrConfig) when the probe configuration is impossible.
func NewStages(cfg StageConfig, res *resolve.Resolver) (*Stages, error) {
	p, err := probe.New(cfg.Probe)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err) // e.g. an EHLO name with a space
	}
	g := cfg.Guard
	if g == nil {
		g = guard.New(nil, nil)
	}
	return &Stages{res: res, prober: p, guard: g, port: cfg.Probe.WithDefaults().Port, ptr: cfg.PTR,
		ptrCache: map[netip.Addr][2]string{}}, nil
}

// Resolve resolves one domain into its rows; false when ctx ended
// meanwhile (the outcome is then not the domain's: it is redone later).
func (st *Stages) Resolve(ctx context.Context, e domains.Entry) (Rows, bool) {
	if ctx.Err() != nil {
		return Rows{}, false
	}
	d := st.res.Resolve(ctx, e.Domain)
	if ctx.Err() != nil {
		return Rows{}, false
	}
	return Rows{MX: mxRows(e, d, time.Now().UTC())}, true
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
