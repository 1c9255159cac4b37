package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/internal/clock"
	"github.com/mxsurvey/mxsurvey/scan/guard"
	"github.com/mxsurvey/mxsurvey/scan/pipeline"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
)

// WorkerConfig configures a worker: the options of its machine. What a
// scan sends, how fast, and what it records are the scan's (Spec).
type WorkerConfig struct {
	NATS NATS
	// ID names the worker in heartbeats and the manifest; default
	// HOST-PID-RANDOM.
	ID string
	// Resolvers are the recursive resolvers, HOST:PORT (empty:
	// /etc/resolv.conf).
	Resolvers []string
	// Concurrency bounds the probes in flight, DNSConcurrency the domains
	// resolved at once, over every scan the worker takes part in.
	Concurrency    int
	DNSConcurrency int
	// Allow and Block are the worker's own guard: it never contacts a
	// special-purpose address outside Allow, nor one in Block, whatever
	// the scan asks; such a target gets its skipped row from the worker.
	Allow []netip.Prefix
	Block []netip.Prefix
	// Dial replaces the prober's dialer (tests).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// worker is one "mxsurvey worker" process.
type worker struct {
	cfg        WorkerConfig
	n          names
	host       string
	nc         *nats.Conn
	js         jetstream.JetStream
	probeSlots chan struct{}
	dnsSlots   chan struct{}
	fetchSlots chan struct{} // policy fetches, as many as probes

	mu    sync.Mutex
	scans map[string]*scanRunner
	wg    sync.WaitGroup
}

// Work runs a worker until ctx ends: it takes part in every scan announced
// under its prefix whose tool and schema version are its own, and refuses
// the others (one line in its log, and a word in its heartbeat that the
// coordinator reports). When ctx ends it stops taking work, hands back the
// domain batches it holds, finishes the probes in flight and sends their
// rows, and returns nil. It fails with ErrNATS (wrapped) when NATS cannot
// be used at the start.
func Work(ctx context.Context, cfg WorkerConfig) error {
	if cfg.NATS.Prefix == "" {
		cfg.NATS.Prefix = DefaultPrefix
	}
	cfg.Concurrency = orDefault(cfg.Concurrency, pipeline.DefaultConcurrency)
	cfg.DNSConcurrency = orDefault(cfg.DNSConcurrency, pipeline.DefaultDNSConcurrency)
	host, _ := os.Hostname() // provenance only
	if cfg.ID == "" {
		cfg.ID = strings.NewReplacer(".", "-", " ", "-").Replace(fmt.Sprintf("%s-%d-%s", host, os.Getpid(), newID("")))
	}
	switch {
	case !idRE.MatchString(cfg.ID):
		return fmt.Errorf("%w: -id %q: want letters, digits, _ or -", pipeline.ErrConfig, cfg.ID)
	case cfg.Concurrency < 0 || cfg.DNSConcurrency < 0:
		return fmt.Errorf("%w: concurrency flags must be positive", pipeline.ErrConfig)
	}
	if err := cfg.NATS.check(); err != nil {
		return fmt.Errorf("%w: %w", pipeline.ErrConfig, err)
	}
	res, err := resolve.New(resolve.Config{Servers: cfg.Resolvers})
	if err != nil {
		return fmt.Errorf("%w: %w", pipeline.ErrConfig, err)
	}
	defer res.Close()
	w := &worker{cfg: cfg, n: names{prefix: cfg.NATS.Prefix}, host: host,
		probeSlots: make(chan struct{}, cfg.Concurrency), dnsSlots: make(chan struct{}, cfg.DNSConcurrency),
		fetchSlots: make(chan struct{}, cfg.Concurrency),
		scans:      map[string]*scanRunner{}}
	if w.nc, w.js, err = connect(ctx, cfg.NATS, "mxsurvey worker "+cfg.ID); err != nil {
		return err
	}
	defer w.nc.Close()
	if err := res.Check(ctx); err != nil {
		return err
	}
	kv, err := bucket(ctx, w.js, w.n)
	if err != nil {
		return err
	}
	watch, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("%w: watching %s: %w", ErrNATS, w.n.bucket(), err)
	}
	defer watch.Stop()
	slog.Info("worker ready", "id", cfg.ID, "nats", Redact(cfg.NATS.URL), "prefix", cfg.NATS.Prefix,
		"concurrency", cfg.Concurrency, "dns_concurrency", cfg.DNSConcurrency)
	hbCtx, stopHeartbeats := context.WithCancel(ctx)
	var hb sync.WaitGroup
	hb.Go(func() { w.heartbeats(hbCtx) })
	stop := func(err error) error {
		w.stop()
		stopHeartbeats()
		hb.Wait()
		w.nc.FlushTimeout(2 * time.Second) // a lost heartbeat or ack is repeated or redelivered
		slog.Info("worker stopped", "id", w.cfg.ID)
		return err
	}
	for {
		select {
		case e, ok := <-watch.Updates():
			if !ok {
				if ctx.Err() != nil {
					return stop(nil)
				}
				return stop(errors.New("the watch of the scans bucket ended"))
			}
			if e != nil {
				w.update(ctx, e)
			}
		case <-ctx.Done():
			return stop(nil)
		}
	}
}

// stop ends every scan runner gracefully: they stop taking work and return
// once what they hold is handed back or finished.
func (w *worker) stop() {
	w.mu.Lock()
	for _, r := range w.scans {
		r.stop()
	}
	w.mu.Unlock()
	w.wg.Wait()
}

// update follows the scans bucket: a scan announced is joined (or
// refused), a scan withdrawn is left.
func (w *worker) update(ctx context.Context, e jetstream.KeyValueEntry) {
	id := e.Key()
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.scans[id]
	if e.Operation() != jetstream.KeyValuePut {
		if r != nil {
			r.stop()
			delete(w.scans, id)
			slog.Info("scan withdrawn", "scan", id)
		}
		return
	}
	if r != nil {
		return // the coordinator was restarted: the runner carries on
	}
	var spec Spec
	if err := decode(e.Value(), &spec); err != nil || spec.Scan != id || !prefixRE.MatchString(id) {
		w.scans[id] = &scanRunner{refused: fmt.Sprintf("scan %s: unreadable announcement (%v)", id, err)}
		slog.Error("refusing scan", "scan", id, "why", w.scans[id].refused)
		return
	}
	if why := spec.compatible(); why != "" {
		w.scans[id] = &scanRunner{refused: why}
		slog.Error("refusing scan: " + why)
		return
	}
	r, err := w.newRunner(ctx, spec)
	if err != nil {
		w.scans[id] = &scanRunner{refused: err.Error()}
		slog.Error("refusing scan", "scan", id, "why", err)
		return
	}
	w.scans[id] = r
	slog.Info("joined scan", "scan", id, "ehlo_name", spec.Stages.Probe.EHLOName, "port", spec.Stages.Probe.Port)
	w.wg.Go(func() { r.run() })
}

// heartbeats says who the worker is and which scans it works on, every
// heartbeatEvery until ctx ends.
func (w *worker) heartbeats(ctx context.Context) {
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		hb := heartbeat{Worker: w.cfg.ID, Host: w.host, ToolVersion: survey.Version, SchemaVersion: survey.SchemaVersion,
			Concurrency: w.cfg.Concurrency, DNSConcurrency: w.cfg.DNSConcurrency, Scans: map[string]scanState{}}
		w.mu.Lock()
		for id, r := range w.scans {
			st := scanState{Refused: r.refused}
			if r.res != nil {
				st.DNS = r.res.Stats()
				st.DNSSEC = pipeline.DNSSECOption(r.spec.Stages.Policies, r.res)
			}
			hb.Scans[id] = st
		}
		w.mu.Unlock()
		if data, err := encode(&hb); err == nil {
			w.nc.Publish(w.n.heartbeat(w.cfg.ID), data) // a lost one is repeated in a second
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// scanRunner is a worker's part in one scan.
type scanRunner struct {
	w       *worker
	spec    Spec
	n       names
	refused string // why the worker does not take part ("" when it does)
	res     *resolve.Resolver
	st      *pipeline.Stages

	taking   context.Context // ends when the worker stops taking work for the scan
	stopOnce sync.Once
	cancel   context.CancelFunc
	inFlight context.Context // probes in flight finish under this

	batchMu  sync.Mutex
	batchCon jetstream.Consumer
	waiting  atomic.Int64 // domains of the batches held that wait for a DNS slot
	domains  atomic.Int64
	probes   atomic.Int64
}

func (w *worker) newRunner(ctx context.Context, spec Spec) (*scanRunner, error) {
	n := names{prefix: w.n.prefix, scan: spec.Scan}
	rc := spec.Resolve
	rc.Servers = w.cfg.Resolvers
	if spec.DNSRate > 0 {
		rc.Limiter = newTokens(w.nc, n.tokens())
	}
	res, err := resolve.New(rc)
	if err != nil {
		return nil, err
	}
	sc := spec.Stages
	sc.Probe.Dial = w.cfg.Dial
	sc.Guard = guard.New(w.cfg.Allow, w.cfg.Block)
	if spec.Rate > 0 {
		sc.FetchLimiter = newTokens(w.nc, n.connTokens())
	}
	st, err := pipeline.NewStages(sc, res)
	if err != nil {
		return nil, err
	}
	r := &scanRunner{w: w, spec: spec, n: n, res: res, st: st, inFlight: context.WithoutCancel(ctx)}
	r.taking, r.cancel = context.WithCancel(ctx)
	return r, nil
}

// stop makes the runner stop taking work; run returns once what it holds
// is handed back or finished.
func (r *scanRunner) stop() {
	if r.cancel != nil {
		r.stopOnce.Do(r.cancel)
	}
}

func (r *scanRunner) run() {
	defer r.res.Close() // its sockets; every lookup of the scan has ended below
	var wg sync.WaitGroup
	wg.Go(r.domainLoop)
	wg.Go(r.probeLoop)
	wg.Wait()
	slog.Info("left scan", "scan", r.spec.Scan, "domains", r.domains.Load(), "probes", r.probes.Load())
}

// domainLoop takes domain batches while fewer domains wait for a DNS slot
// than there are slots: so one slow domain (a resolver timing out) holds
// its own slot, not its batch's share of the worker.
func (r *scanRunner) domainLoop() {
	var batches sync.WaitGroup
	defer batches.Wait()
	for r.taking.Err() == nil {
		if r.waiting.Load() >= int64(cap(r.w.dnsSlots)) {
			clock.Sleep(r.taking, 20*time.Millisecond)
			continue
		}
		cons, err := r.batchConsumer()
		if err != nil {
			clock.Sleep(r.taking, time.Second)
			continue
		}
		msgs, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			r.resetBatchConsumer()
			clock.Sleep(r.taking, time.Second)
			continue
		}
		for msg := range msgs.Messages() {
			batches.Go(func() { r.resolveBatch(msg) })
		}
		if err := msgs.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			r.resetBatchConsumer()
			clock.Sleep(r.taking, 250*time.Millisecond)
		}
	}
}

func (r *scanRunner) batchConsumer() (jetstream.Consumer, error) {
	r.batchMu.Lock()
	defer r.batchMu.Unlock()
	if r.batchCon == nil {
		c, err := r.w.js.Consumer(r.taking, r.n.domainsStream(), r.n.domainsConsumer())
		if err != nil {
			return nil, err
		}
		r.batchCon = c
	}
	return r.batchCon, nil
}

// resetBatchConsumer forgets the consumer: a resumed coordinator made it
// anew.
func (r *scanRunner) resetBatchConsumer() {
	r.batchMu.Lock()
	r.batchCon = nil
	r.batchMu.Unlock()
}

// resolveBatch resolves one batch of domains, publishes their rows and
// only then acknowledges the batch. Stopped meanwhile, it hands the batch
// back.
func (r *scanRunner) resolveBatch(msg jetstream.Msg) {
	if r.taking.Err() != nil {
		msg.Nak()
		return
	}
	var b batch
	if err := decode(msg.Data(), &b); err != nil {
		slog.Warn("dropping a malformed batch", "err", err)
		msg.Term()
		return
	}
	// Word every third of the ack wait, so that only a worker gone
	// silent loses its batch.
	keep := time.NewTicker(max(r.spec.AckWait/3, 100*time.Millisecond))
	defer keep.Stop()
	resolved := make(chan struct{})
	go func() {
		for {
			select {
			case <-keep.C:
				msg.InProgress()
			case <-resolved:
				return
			}
		}
	}()
	rows := make([]pipeline.Rows, len(b.Tasks))
	ok := make([]bool, len(b.Tasks))
	var wg sync.WaitGroup
	r.waiting.Add(int64(len(b.Tasks)))
	for i, task := range b.Tasks {
		got := false
		select {
		case r.w.dnsSlots <- struct{}{}:
			got = true
		case <-r.taking.Done():
		}
		r.waiting.Add(-1)
		if !got || r.taking.Err() != nil {
			if got {
				<-r.w.dnsSlots
			}
			r.waiting.Add(-int64(len(b.Tasks) - i - 1))
			break
		}
		wg.Go(func() {
			rs, resolved := r.st.Resolve(r.taking, task)
			<-r.w.dnsSlots
			if resolved && rs.NeedsFetch() {
				// The policy fetch holds a slot of its own, not a
				// DNS one.
				select {
				case r.w.fetchSlots <- struct{}{}:
					resolved = r.st.Fetch(r.taking, &rs)
					<-r.w.fetchSlots
				case <-r.taking.Done():
					resolved = false
				}
			}
			rows[i], ok[i] = rs.Rows, resolved
		})
	}
	wg.Wait()
	close(resolved)
	for _, v := range ok {
		if !v {
			msg.Nak() // stopped meanwhile: another worker takes the batch
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.inFlight, time.Minute)
	defer cancel()
	id := msg.Headers().Get(jetstream.MsgIDHeader)
	if err := r.publishDomains(ctx, rows, id); err != nil {
		slog.Warn("handing back a batch", "err", err)
		msg.Nak()
		return
	}
	msg.Ack()
	r.domains.Add(int64(len(rows)))
}

// publishDomains sends the rows of a batch's domains in as few messages as
// the server's payload limit allows, each domain's rows in one message.
func (r *scanRunner) publishDomains(ctx context.Context, rows []pipeline.Rows, id string) error {
	limit := int(r.w.nc.MaxPayload()) * 3 / 4
	var part int
	var send func(rows []pipeline.Rows) error
	send = func(rows []pipeline.Rows) error {
		data, err := encode(&domainResult{Worker: r.w.cfg.ID, Domains: rows})
		if err != nil {
			return err
		}
		if len(data) > limit && len(rows) > 1 {
			if err := send(rows[:len(rows)/2]); err != nil {
				return err
			}
			return send(rows[len(rows)/2:])
		}
		part++
		return publish(ctx, r.w.js, r.n.mxResults(), data, fmt.Sprintf("%s/%d", id, part))
	}
	return send(rows)
}

// errLate refuses a connection whose start window has passed.
var errLate = errors.New("the start window has passed")

// probeLoop asks the coordinator for targets while the worker has free
// probe slots, and probes them.
func (r *scanRunner) probeLoop() {
	var probing sync.WaitGroup
	defer probing.Wait()
	for r.taking.Err() == nil {
		select {
		case r.w.probeSlots <- struct{}{}:
		case <-r.taking.Done():
			return
		}
		n := 1
	more:
		for n < maxGrant {
			select {
			case r.w.probeSlots <- struct{}{}:
				n++
			default:
				break more
			}
		}
		g, deadline, err := r.want(n)
		for range n - len(g.Leases) {
			<-r.w.probeSlots
		}
		if err != nil {
			if r.taking.Err() == nil {
				slog.Debug("asking for targets", "err", err)
				clock.Sleep(r.taking, 250*time.Millisecond)
			}
			continue
		}
		for _, l := range g.Leases {
			probing.Go(func() { r.probe(l, deadline) })
		}
	}
}

// want asks for n targets; deadline is when their start window closes, by
// this machine's clock: the send time plus how long the coordinator held
// the request plus the window, which is at most the window after the grant.
func (r *scanRunner) want(n int) (g grant, deadline time.Time, err error) {
	data, err := encode(&want{Worker: r.w.cfg.ID, N: n})
	if err != nil {
		return g, deadline, err
	}
	ctx, cancel := context.WithTimeout(r.taking, grantWait+5*time.Second)
	defer cancel()
	sent := time.Now()
	m, err := r.w.nc.RequestWithContext(ctx, r.n.want(), data)
	if err != nil {
		return g, deadline, err
	}
	if err := decode(m.Data, &g); err != nil {
		return grant{}, deadline, err
	}
	if len(g.Leases) > n {
		return grant{}, deadline, fmt.Errorf("granted %d targets for %d slots", len(g.Leases), n)
	}
	return g, sent.Add(g.Held + r.spec.StartWindow), nil
}

// probe probes a leased target and sends its row, or gives the lease back
// unused when the start window has passed or the worker was stopped
// before the row was complete. Its probe slot is free again once the
// connection has ended: the PTR lookup and the sending do not hold one.
func (r *scanRunner) probe(l lease, deadline time.Time) {
	ctx := r.inFlight
	row, ok := r.st.Probe(ctx, l.Target, func(context.Context) error {
		if time.Now().After(deadline) {
			return errLate
		}
		return nil
	})
	<-r.w.probeSlots
	res := probeResult{Worker: r.w.cfg.ID, Lease: l.ID, Target: l.Target}
	if ok && r.st.PTR(ctx, &row) {
		res.Row = &row
	}
	data, err := encode(&res)
	if err != nil {
		slog.Error("encoding a probe row", "err", err)
		return
	}
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := publish(pctx, r.w.js, r.n.probeResults(), data, l.ID); err != nil {
		slog.Warn("a probe row was lost; its lease runs out and the target is probed again", "target", l.Target.Key(), "err", err)
		return
	}
	if res.Row != nil {
		r.probes.Add(1)
	}
}
