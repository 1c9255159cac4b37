package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/time/rate"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/internal/clock"
	"github.com/mxsurvey/mxsurvey/scan/pipeline"
)

// serveWant answers a worker's request for targets with targets whose
// address is free and rested, each under a lease, and each taken against
// the scan's connection rate. It waits up to grantWait for the first; after
// it, only targets ready at once, with a rate token ready at once, and for
// at most grantCollect: so a connection starts no sooner than its token was
// taken, and no later than grantCollect plus the start window after it.
func (c *coordinator) serveWant(m *nats.Msg) {
	received := time.Now()
	var w want
	if err := decode(m.Data, &w); err != nil || m.Reply == "" {
		slog.Warn("dropping a malformed want", "err", err)
		return
	}
	ctx := c.work
	if wait := time.Until(c.grantFrom); wait > 0 {
		// A resumed coordinator: connections the crashed one granted
		// may still be open.
		if clock.Sleep(ctx, min(wait, grantWait)) != nil {
			return
		}
		if time.Now().Before(c.grantFrom) {
			c.respond(m, received, nil)
			return
		}
	}
	n := min(max(w.N, 1), maxGrant)
	type granted struct {
		t       pipeline.Target
		release func()
	}
	var got []granted
	first, cancel := context.WithTimeout(ctx, grantWait)
	t, release, ok := c.scan.Next(first)
	cancel()
	if ok && c.connRate != nil {
		if err := c.connRate.Wait(ctx); err != nil {
			c.scan.Requeue(ctx, t, release)
			ok = false
		}
	}
	var start time.Time
	for ok {
		if c.scan.Probed(t) {
			release() // given back or run out, and answered after all
		} else {
			got = append(got, granted{t, release})
		}
		if start.IsZero() {
			start = time.Now()
		}
		if len(got) >= n || ctx.Err() != nil || time.Since(start) > grantCollect {
			break
		}
		var res *rate.Reservation
		if c.connRate != nil {
			if res = c.connRate.Reserve(); res.Delay() > 0 {
				res.Cancel()
				break
			}
		}
		next, cancel := context.WithTimeout(ctx, time.Millisecond)
		t, release, ok = c.scan.Next(next)
		cancel()
		if !ok && res != nil {
			res.Cancel()
		}
	}
	leases := make([]lease, len(got))
	for i, g := range got {
		leases[i] = c.leases.grant(g.t, g.release)
	}
	c.respond(m, received, leases)
}

func (c *coordinator) respond(m *nats.Msg, received time.Time, leases []lease) {
	data, err := encode(&grant{Held: time.Since(received), Leases: leases})
	if err == nil {
		err = m.Respond(data)
	}
	if err != nil {
		// The leases run out and their targets are queued again.
		slog.Warn("answering a want", "err", err)
	}
}

// takeBack queues again a target whose lease ran out or was given back
// unused, unless its row came meanwhile.
func (c *coordinator) takeBack(t pipeline.Target, release func()) {
	if c.scan.Probed(t) {
		release()
		return
	}
	c.scan.Requeue(c.work, t, release)
}

// serveTokens leases tokens of one of the scan's limiters (-dns-rate for
// DNS queries, -rate for the connections of policy fetches): a worker
// spends them from Wait after it has the answer until Valid after it
// asked, so tokens spent in any window W number at most rate × (W +
// tokenValidity) + burst (docs/distributed.md).
func (c *coordinator) serveTokens(lim *rate.Limiter) nats.MsgHandler {
	return func(m *nats.Msg) {
		var req tokenRequest
		if err := decode(m.Data, &req); err != nil || m.Reply == "" {
			slog.Warn("dropping a malformed token request", "err", err)
			return
		}
		n := min(max(req.N, 1), lim.Burst())
		now := time.Now()
		r := lim.ReserveN(now, n)
		data, err := encode(&tokenGrant{N: n, Wait: r.DelayFrom(now), Valid: tokenValidity})
		if err == nil {
			err = m.Respond(data)
		}
		if err != nil {
			slog.Warn("answering a token request", "err", err)
		}
	}
}

// heard takes a worker's heartbeat.
func (c *coordinator) heard(m *nats.Msg) {
	var hb heartbeat
	if err := decode(m.Data, &hb); err != nil || hb.Worker == "" {
		return
	}
	if why := c.workers.heard(hb, time.Now()); why != "" {
		slog.Warn("a worker refuses the scan", "worker", hb.Worker, "host", hb.Host, "why", why)
	}
}

// note is the cluster's part of a progress line.
func (c *coordinator) note() string {
	working, refusing := c.workers.live(time.Now())
	s := fmt.Sprintf("workers %d", working)
	if refusing > 0 {
		s += fmt.Sprintf(" (%d refuse the scan)", refusing)
	}
	return s
}

// manifest adds the cluster's facts to the scan's manifest: the NATS
// options, and the workers that took part in place of the machine options
// the coordinator does not use.
func (c *coordinator) manifest(m *survey.Manifest) {
	m.Options["nats_url"] = Redact(c.cfg.NATS.URL)
	m.Options["nats_prefix"] = c.n.prefix
	m.Options["nats_scan"] = c.n.scan
	m.Options["nats_batch"] = c.cfg.Batch
	m.Options["nats_ack_wait"] = c.cfg.AckWait.String()
	m.Options["nats_start_window"] = c.cfg.StartWindow.String()
	for _, own := range []string{"resolvers", "concurrency", "dns_concurrency"} {
		m.Options[own] = "per worker"
	}
	m.Options["dnssec"] = c.workers.dnssec(c.cfg.Scan.Policies)
	m.Workers = c.workers.manifest()
}
