package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/time/rate"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/scan/pipeline"
)

// CoordinatorConfig configures the coordinator of a cluster scan.
type CoordinatorConfig struct {
	NATS NATS
	// Scan is the scan, as for a local one. Its resolvers and its
	// concurrency of probes and DNS lookups are the workers' own and
	// ignored here; its rates and per-address limits hold for the whole
	// scan.
	Scan pipeline.Config
	// Batch is the number of domains per message (DefaultBatch).
	Batch int
	// AckWait is how long a worker may hold a domain batch without word
	// before it goes to another worker (DefaultAckWait): the bound on how
	// long a dead worker's domains wait.
	AckWait time.Duration
	// StartWindow is how long after its grant a probe may still connect
	// (DefaultStartWindow); it covers the grant's trip to the worker.
	StartWindow time.Duration

	refuseGrace time.Duration // refuseGrace unless set (tests)
}

// Defaults of CoordinatorConfig.
const (
	DefaultBatch       = 100
	DefaultAckWait     = 30 * time.Second
	DefaultStartWindow = 500 * time.Millisecond
)

// Timing of grants and leases.
const (
	// leaseMargin is added to a lease beyond the start window and the probe
	// timeout: scheduling delays of the worker and the server, and clock
	// rates that differ by far less.
	leaseMargin = 2 * time.Second
	// grantWait is the longest a want is held when no target is ready.
	grantWait = time.Second
	// grantCollect bounds how long a want keeps collecting ready targets
	// after its first, which bounds how far connections can bunch.
	grantCollect = 20 * time.Millisecond
	// maxGrant bounds the targets of one grant.
	maxGrant = 256
	// tokenValidity is how long leased DNS tokens may be spent.
	tokenValidity = 250 * time.Millisecond
	// refuseGrace is how long the coordinator waits, after a worker
	// refused the scan, for one that does not before it gives up.
	refuseGrace = 10 * time.Second
)

// ErrRefused is returned when every worker that answered refused the scan
// (a different version or schema): the command exits 3.
var ErrRefused = errors.New("every worker refused the scan")

type coordinator struct {
	cfg  CoordinatorConfig
	n    names
	run  string
	nc   *nats.Conn
	js   jetstream.JetStream
	kv   jetstream.KeyValue
	scan *pipeline.Scan
	work context.Context

	connRate  *rate.Limiter
	dnsRate   *rate.Limiter
	leases    *leases
	workers   *workerTable
	grantFrom time.Time // a resumed coordinator grants nothing before this
	wants     chan struct{}

	mu          sync.Mutex
	outstanding map[string]struct{} // tasks published and not yet accepted, by pipeline.Task.Key
	room        chan struct{}       // signalled when outstanding shrinks
	readDone    bool
	allIn       chan struct{} // closed when the input is read and every domain accepted
	allInOnce   sync.Once

	batches atomic.Int64
	fatal   chan error
}

// Coordinate runs a scan spread over the workers listening on cfg.NATS and
// writes its dataset in cfg.Scan.Out, as pipeline.Run would on one machine.
// It fails with ErrNATS (wrapped) before any traffic when NATS cannot be
// used, with pipeline.ErrConfig for an impossible configuration, with
// ErrRefused when every worker refuses the scan, and with
// pipeline.ErrInterrupted when ctx ends first (resume with Scan.Resume).
func Coordinate(ctx context.Context, cfg CoordinatorConfig) (*pipeline.Result, error) {
	if cfg.NATS.Prefix == "" {
		cfg.NATS.Prefix = DefaultPrefix
	}
	cfg.Batch = orDefault(cfg.Batch, DefaultBatch)
	cfg.AckWait = orDefault(cfg.AckWait, DefaultAckWait)
	cfg.StartWindow = orDefault(cfg.StartWindow, DefaultStartWindow)
	cfg.refuseGrace = orDefault(cfg.refuseGrace, refuseGrace)
	if err := cfg.NATS.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", pipeline.ErrConfig, err)
	}
	if cfg.Batch < 1 || cfg.AckWait < time.Second || cfg.StartWindow < 0 {
		return nil, fmt.Errorf("%w: -nats-batch must be positive and -nats-ack-wait at least 1s", pipeline.ErrConfig)
	}
	if err := cfg.Scan.Validate(); err != nil {
		return nil, err
	}
	c := &coordinator{cfg: cfg, n: names{prefix: cfg.NATS.Prefix, scan: newID("s")}, run: newID("r"),
		connRate: pipeline.NewLimiter(cfg.Scan.Rate), dnsRate: pipeline.NewLimiter(cfg.Scan.DNSRate),
		outstanding: map[string]struct{}{}, room: make(chan struct{}, 1), allIn: make(chan struct{}),
		wants: make(chan struct{}, 4096), fatal: make(chan error, 1)}
	var earlier []survey.Worker
	if cfg.Scan.Resume {
		// A resumed scan keeps its ID, so the rows its workers sent
		// while no coordinator ran are still read. And it grants nothing
		// until every connection the crashed run may have granted is
		// over, and the address has rested.
		if m, err := store.ReadManifest(cfg.Scan.Out); err == nil {
			if id, ok := m.Options["nats_scan"].(string); ok && prefixRE.MatchString(id) {
				c.n.scan = id
			}
			earlier = m.Workers
		}
		c.grantFrom = time.Now().Add(c.leaseTime() + cfg.Scan.IPInterval)
	}
	c.workers = newWorkerTable(c.n.scan, earlier)
	defer func() {
		if c.nc != nil {
			c.nc.Close()
		}
	}()
	s, err := pipeline.Open(ctx, cfg.Scan, pipeline.Wiring{
		Before:      c.connect,
		Redelivered: true,
		DNSStats:    c.workers.dnsStats,
		Note:        c.note,
		Manifest:    c.manifest,
	})
	if err != nil {
		return nil, err
	}
	c.scan, c.work = s, s.Context()
	c.leases = newLeases(c.run, c.leaseTime(), c.takeBack, s.Probing)
	return c.coordinate(ctx)
}

// orDefault is v, or def when v is zero.
func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

func newID(kind string) string {
	b := make([]byte, 6)
	rand.Read(b) // never fails (crypto/rand)
	return kind + hex.EncodeToString(b)
}

// leaseTime is how long a granted target holds its address: the worker
// connects within the start window of the grant, and its probe's deadline
// closes the connection within the probe timeout of that.
func (c *coordinator) leaseTime() time.Duration {
	return c.cfg.StartWindow + c.cfg.Scan.Probe.Timeout + leaseMargin
}

// connect is the scan's check before its output directory is touched: the
// NATS server must be reachable, take the credentials and have JetStream.
func (c *coordinator) connect(ctx context.Context) error {
	nc, js, err := connect(ctx, c.cfg.NATS, "mxsurvey coordinator "+c.n.scan)
	if err != nil {
		return err
	}
	c.nc, c.js = nc, js
	if err := streams(ctx, js, c.n); err != nil {
		return err
	}
	c.kv, err = bucket(ctx, js, c.n)
	return err
}

func (c *coordinator) coordinate(ctx context.Context) (*pipeline.Result, error) {
	if err := c.prepareStreams(ctx); err != nil {
		return c.scan.Finish(ctx, err)
	}
	var subs []*nats.Subscription
	subscribe := func(subj string, h nats.MsgHandler) error {
		sub, err := c.nc.Subscribe(subj, h)
		if err == nil {
			subs = append(subs, sub)
		}
		return err
	}
	var handlers sync.WaitGroup
	err := subscribe(c.n.heartbeats(), c.heard)
	if err == nil {
		err = subscribe(c.n.want(), func(m *nats.Msg) {
			select {
			case c.wants <- struct{}{}:
				handlers.Go(func() {
					defer func() { <-c.wants }()
					c.serveWant(m)
				})
			default: // flooded: the worker asks again after its timeout
			}
		})
	}
	if err == nil && c.dnsRate != nil {
		err = subscribe(c.n.tokens(), c.serveTokens(c.dnsRate))
	}
	if err == nil && c.connRate != nil && c.cfg.Scan.Policies {
		err = subscribe(c.n.connTokens(), c.serveTokens(c.connRate))
	}
	if err == nil {
		err = c.announce(ctx)
	}
	if err != nil {
		return c.scan.Finish(ctx, err)
	}
	stopConsumers, consumed := c.consumeResults()

	var readErr error
	var reader sync.WaitGroup
	reader.Go(func() {
		if readErr = c.read(); readErr != nil {
			c.fail(readErr)
		}
	})
	watch := time.NewTicker(time.Second)
	defer watch.Stop()
	allIn := c.allIn
	var fatal error
wait:
	for {
		select {
		case <-allIn:
			c.scan.CloseQueue()
			allIn = nil
		case <-c.scan.Drained():
			break wait
		case fatal = <-c.fatal:
			break wait
		case <-watch.C:
			if why, ok := c.workers.refusedOnly(time.Now(), c.cfg.refuseGrace); ok {
				fatal = fmt.Errorf("%w: %s", ErrRefused, why)
				break wait
			}
		}
	}
	complete := fatal == nil && ctx.Err() == nil && c.work.Err() == nil
	for _, s := range subs {
		s.Unsubscribe()
	}
	// A fatal error ends the work; the rows accepted so far are
	// committed, and what was not acknowledged comes again on -resume.
	if fatal != nil {
		c.scan.Stop(fatal)
	}
	stopConsumers()
	<-consumed
	reader.Wait()
	handlers.Wait()
	if fatal != nil && readErr == nil {
		readErr = fatal
	}
	res, err := c.scan.Finish(ctx, readErr)
	// The acknowledgements of the last committed rows; with the server
	// gone they are lost, and the rows come again and are dropped.
	c.nc.FlushTimeout(2 * time.Second)
	c.cleanUp(complete)
	if errors.Is(fatal, ErrRefused) {
		err = fatal
	}
	return res, err
}

// fail ends the scan's work with err (once).
func (c *coordinator) fail(err error) {
	select {
	case c.fatal <- err:
	default:
	}
}

// prepareStreams creates the scan's consumers. A resumed scan first drops
// its pending domain batches (the input is read again, and what the dataset
// holds is skipped); the rows its workers sent meanwhile stay in the
// results stream and are read.
func (c *coordinator) prepareStreams(ctx context.Context) error {
	if c.cfg.Scan.Resume {
		ds, err := c.js.Stream(ctx, c.n.domainsStream())
		if err != nil {
			return fmt.Errorf("opening stream %s: %w", c.n.domainsStream(), err)
		}
		if err := ds.DeleteConsumer(ctx, c.n.domainsConsumer()); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("dropping the pending batches: %w", err)
		}
		if err := ds.Purge(ctx, jetstream.WithPurgeSubject(c.n.domains())); err != nil {
			return fmt.Errorf("dropping the pending batches: %w", err)
		}
	}
	for _, cc := range []struct {
		stream string
		cfg    jetstream.ConsumerConfig
	}{
		{c.n.domainsStream(), jetstream.ConsumerConfig{Durable: c.n.domainsConsumer(), FilterSubject: c.n.domains(),
			AckPolicy: jetstream.AckExplicitPolicy, AckWait: c.cfg.AckWait, MaxDeliver: -1}},
		// The coordinator acknowledges a result once its rows are
		// committed, up to a checkpoint later: the ack wait covers that,
		// and nothing bounds the results pending.
		{c.n.resultsStream(), jetstream.ConsumerConfig{Durable: c.n.mxConsumer(), FilterSubject: c.n.mxResults(),
			AckPolicy: jetstream.AckExplicitPolicy, AckWait: c.cfg.Scan.Checkpoint + time.Minute, MaxDeliver: -1, MaxAckPending: -1}},
		{c.n.resultsStream(), jetstream.ConsumerConfig{Durable: c.n.probesConsumer(), FilterSubject: c.n.probeResults(),
			AckPolicy: jetstream.AckExplicitPolicy, AckWait: c.cfg.Scan.Checkpoint + time.Minute, MaxDeliver: -1, MaxAckPending: -1}},
	} {
		if _, err := c.js.CreateOrUpdateConsumer(ctx, cc.stream, cc.cfg); err != nil {
			return fmt.Errorf("%w: creating consumer %s: %w", ErrNATS, cc.cfg.Durable, err)
		}
	}
	return nil
}

// announce puts the scan in the bucket, where workers find it.
func (c *coordinator) announce(ctx context.Context) error {
	sc := c.cfg.Scan
	spec := Spec{Scan: c.n.scan, Run: c.run, Tool: survey.Tool, ToolVersion: survey.Version, SchemaVersion: survey.SchemaVersion,
		Stages: sc.StageConfig(), Resolve: sc.ResolveConfig(), DNSRate: sc.DNSRate, Rate: sc.Rate,
		StartWindow: c.cfg.StartWindow, AckWait: c.cfg.AckWait, Batch: c.cfg.Batch}
	spec.Resolve.Servers = nil
	data, err := encode(&spec)
	if err != nil {
		return err
	}
	if _, err := c.kv.Put(ctx, c.n.scan, data); err != nil {
		return fmt.Errorf("announcing scan %s: %w", c.n.scan, err)
	}
	slog.Info("scan announced", "scan", c.n.scan, "nats", Redact(c.cfg.NATS.URL), "prefix", c.n.prefix)
	return nil
}

// cleanUp withdraws the scan: workers stop working on it. A complete scan
// also leaves nothing in the streams; an unfinished one leaves its results
// for -resume.
func (c *coordinator) cleanUp(complete bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.kv.Purge(ctx, c.n.scan); err != nil {
		slog.Warn("withdrawing scan", "scan", c.n.scan, "err", err)
	}
	if !complete {
		return
	}
	for _, sc := range []struct{ stream, consumer, subject string }{
		{c.n.domainsStream(), c.n.domainsConsumer(), c.n.domains()},
		{c.n.resultsStream(), c.n.mxConsumer(), c.n.mxResults()},
		{c.n.resultsStream(), c.n.probesConsumer(), c.n.probeResults()},
	} {
		if s, err := c.js.Stream(ctx, sc.stream); err == nil {
			s.DeleteConsumer(ctx, sc.consumer)
			s.Purge(ctx, jetstream.WithPurgeSubject(sc.subject))
		}
	}
}

// read publishes the input in batches, at most window domains ahead of
// the rows accepted.
func (c *coordinator) read() error {
	var cur []pipeline.Task
	flush := func(ctx context.Context) error {
		if len(cur) == 0 {
			return nil
		}
		data, err := encode(&batch{Tasks: cur})
		if err != nil {
			return err
		}
		id := c.n.scan + "." + c.run + "." + strconv.FormatInt(c.batches.Add(1), 10)
		cur = cur[:0]
		return publish(ctx, c.js, c.n.domains(), data, id)
	}
	err := c.scan.Read(c.work, func(ctx context.Context, t pipeline.Task) error {
		if !c.publishing(ctx, t) {
			return ctx.Err()
		}
		cur = append(cur, t)
		if len(cur) >= c.cfg.Batch {
			return flush(ctx)
		}
		return nil
	})
	if err == nil {
		err = flush(c.work)
	}
	c.mu.Lock()
	if err == nil {
		c.readDone = true
	}
	c.checkAllIn()
	c.mu.Unlock()
	return err
}

// publishing records the task (a domain, or a host's TLSA lookup) as
// published, waiting while window tasks are; false when ctx ended, or when
// it was accepted meanwhile (rows of an earlier run's batch), which is
// then not published again.
func (c *coordinator) publishing(ctx context.Context, t pipeline.Task) bool {
	key := t.Key()
	for {
		c.mu.Lock()
		if len(c.outstanding) < c.windowSize() {
			c.outstanding[key] = struct{}{}
			c.mu.Unlock()
			break
		}
		c.mu.Unlock()
		select {
		case <-c.room:
		case <-time.After(time.Second): // the window grows with the workers
		case <-ctx.Done():
			return false
		}
	}
	// AcceptDomain marks a task done before accepted() forgets it: seen
	// done here, it is forgotten; not seen done, accepted() comes later.
	if c.scan.Done(t) {
		c.accepted(key)
		return false
	}
	return true
}

// windowSize is how many domains may be published and not yet accepted:
// enough to keep every worker's DNS lookups busy, not the whole input.
func (c *coordinator) windowSize() int {
	return max(20_000, 4*c.workers.dnsConcurrency(time.Now()))
}

// accepted forgets a published task (pipeline.Task.Key) whose rows have
// been accepted.
func (c *coordinator) accepted(key string) {
	c.mu.Lock()
	delete(c.outstanding, key)
	c.checkAllIn()
	c.mu.Unlock()
	select {
	case c.room <- struct{}{}:
	default:
	}
}

// checkAllIn closes allIn once the input is read and every domain
// accepted. c.mu held.
func (c *coordinator) checkAllIn() {
	if c.readDone && len(c.outstanding) == 0 {
		c.allInOnce.Do(func() { close(c.allIn) })
	}
}
