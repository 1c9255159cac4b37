package cluster

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/mxsurvey/mxsurvey/internal/clock"
)

// tokens paces a worker's DNS queries by the scan's one limiter, which the
// coordinator holds (resolve.Limiter): each query spends a token leased
// from it. A lease of N tokens is asked for at s and answered at r with
// (Wait, Valid); the coordinator reserved the tokens at some g between s
// and r, from g+Wait on. The worker spends them only from r+Wait until
// s+Wait+Valid, which lies within [g+Wait, g+Wait+Valid] whatever the
// network delays were: no clock is shared, only durations are measured,
// each on one machine. Tokens unspent by then are dropped.
type tokens struct {
	nc      *nats.Conn
	subject string

	mu       sync.Mutex
	n        int       // tokens left of the current lease
	from     time.Time // first use, by this machine's monotonic clock
	until    time.Time // no use from then on
	spent    int       // of the current lease
	size     int       // tokens to ask for next
	fetching chan struct{}
}

func newTokens(nc *nats.Conn, subject string) *tokens {
	return &tokens{nc: nc, subject: subject, size: 8}
}

// maxTokenRequest bounds one lease (the coordinator bounds it by its burst
// as well).
const maxTokenRequest = 256

var errNoTokens = errors.New("no DNS query tokens before the deadline")

// Wait takes one token, waiting for a lease if none is left. It fails only
// when ctx ends, or would end before the next lease becomes usable.
func (p *tokens) Wait(ctx context.Context) error {
	for {
		p.mu.Lock()
		now := time.Now()
		switch {
		case p.n > 0 && !now.Before(p.from) && now.Before(p.until):
			p.n--
			p.spent++
			p.mu.Unlock()
			return nil
		case p.n > 0 && now.Before(p.from):
			wait := p.from.Sub(now)
			p.mu.Unlock()
			if dl, ok := ctx.Deadline(); ok && dl.Before(now.Add(wait)) {
				return errNoTokens
			}
			if err := clock.Sleep(ctx, wait); err != nil {
				return err
			}
			continue
		case p.fetching != nil:
			ch := p.fetching
			p.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		// Ask for about twice what the last lease served, so a busy
		// worker asks a few times a second and an idle one wastes little.
		if p.spent > 0 {
			p.size = min(max(2*p.spent, 1), maxTokenRequest)
		}
		p.n, p.spent = 0, 0
		p.fetching = make(chan struct{})
		size := p.size
		p.mu.Unlock()

		g, sent, received, err := p.lease(ctx, size)
		p.mu.Lock()
		if err == nil {
			p.n, p.from, p.until = g.N, received.Add(g.Wait), sent.Add(g.Wait+g.Valid)
		}
		close(p.fetching)
		p.fetching = nil
		p.mu.Unlock()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// No coordinator answers (it restarts, NATS reconnects):
			// wait, as a query must not fail for it.
			slog.Debug("leasing DNS tokens", "err", err)
			if err := clock.Sleep(ctx, 250*time.Millisecond); err != nil {
				return err
			}
		}
	}
}

func (p *tokens) lease(ctx context.Context, n int) (g tokenGrant, sent, received time.Time, err error) {
	data, err := encode(&tokenRequest{N: n})
	if err != nil {
		return g, sent, received, err
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	sent = time.Now()
	m, err := p.nc.RequestWithContext(rctx, p.subject, data)
	received = time.Now()
	if err != nil {
		return g, sent, received, err
	}
	err = decode(m.Data, &g)
	return g, sent, received, err
}
