package cluster

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/internal/clock"
	"github.com/mxsurvey/mxsurvey/scan/pipeline"
)

// consumeResults reads the rows workers send, until stop is called; done
// is closed when no handler runs any more.
func (c *coordinator) consumeResults() (stop func(), done <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { c.consume(ctx, c.n.mxConsumer(), c.onDomains) })
	wg.Go(func() { c.consume(ctx, c.n.probesConsumer(), c.onProbe) })
	ch := make(chan struct{})
	go func() {
		wg.Wait()
		close(ch)
	}()
	return cancel, ch
}

// consume hands every message of one consumer to handle, one at a time,
// through reconnections, until ctx ends.
func (c *coordinator) consume(ctx context.Context, consumer string, handle func(jetstream.Msg)) {
	for ctx.Err() == nil {
		it, err := c.messages(ctx, consumer)
		if err != nil {
			slog.Warn("reading results", "consumer", consumer, "err", err)
			clock.Sleep(ctx, time.Second)
			continue
		}
		for {
			msg, err := it.Next(jetstream.NextContext(ctx))
			if err == nil {
				handle(msg)
				continue
			}
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				break
			}
			slog.Debug("reading results", "consumer", consumer, "err", err)
			clock.Sleep(ctx, 100*time.Millisecond)
		}
		it.Stop()
	}
}

func (c *coordinator) messages(ctx context.Context, consumer string) (jetstream.MessagesContext, error) {
	cons, err := c.js.Consumer(ctx, c.n.resultsStream(), consumer)
	if err != nil {
		return nil, err
	}
	// A batch's rows are tens of KB: 100 messages buffered keep the
	// coordinator busy without holding megabytes (1000 held 23 MB).
	return cons.Messages(jetstream.PullMaxMessages(100))
}

// onDomains takes the rows of a batch's domains (and TLSA lookups of
// hosts, on -resume). The message is acknowledged once every row kept from
// it is committed; a domain already in the dataset (the batch was
// delivered twice) is dropped.
func (c *coordinator) onDomains(msg jetstream.Msg) {
	var r domainResult
	if err := decode(msg.Data(), &r); err != nil {
		slog.Warn("dropping a malformed result", "subject", msg.Subject(), "err", err)
		msg.Term()
		return
	}
	ack := pipeline.NewAck(func() { msg.Ack() })
	var kept int64
	for _, rows := range r.Domains {
		if c.scan.AcceptDomain(c.work, rows, ack) {
			if len(rows.MX) > 0 {
				kept++
			}
			c.accepted(rows.Key())
		}
	}
	c.workers.credit(r.Worker, kept, 0)
	ack.Release()
}

// onProbe takes the row of a leased target, ending the lease: the worker
// publishes it after its connection ended, so the address is free. A lease
// given back unused puts the target back in the queue.
func (c *coordinator) onProbe(msg jetstream.Msg) {
	var r probeResult
	if err := decode(msg.Data(), &r); err != nil || (r.Row != nil && survey.TargetKey(r.Row.IP, r.Row.MXHost) != r.Target.Key()) {
		slog.Warn("dropping a malformed result", "subject", msg.Subject(), "err", err)
		msg.Term()
		return
	}
	h := c.leases.take(r.Lease, r.Target)
	if r.Row == nil {
		if h != nil {
			go c.takeBack(h.t, h.release) // may wait for room in the queue
		}
		msg.Ack()
		return
	}
	if h != nil {
		h.release()
	}
	ack := pipeline.NewAck(func() { msg.Ack() })
	if c.scan.AcceptProbe(c.work, *r.Row, ack) {
		c.workers.credit(r.Worker, 0, 1)
	}
	ack.Release()
}
