package resolve

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/mxsurvey/mxsurvey/scan/record"
)

// ednsSize is the EDNS0 UDP payload we advertise: the DNS Flag Day 2020
// value, large enough for most MX answers and small enough to avoid IP
// fragmentation; larger answers come back truncated and go to TCP.
const ednsSize = 1232

// backoffBase is the first retry delay; each further retry doubles it.
const backoffBase = 100 * time.Millisecond

var (
	errQuestionMismatch = errors.New("reply question does not match the query")
	errNotResponse      = errors.New("reply is not a response to a query")
	errRateDeadline     = errors.New("rate limiter wait would pass the deadline")
)

// chainResult is the outcome of one question after following CNAMEs.
type chainResult struct {
	status string
	reason string
	rrs    []dns.RR // records of the asked type owned by the chain's last name
	cnames []string // CNAME targets followed, display form
	ttl    uint32   // smallest TTL among rrs and the CNAMEs followed
}

// lookup asks for (name, qtype) and follows CNAMEs: first within each
// answer (recursive resolvers usually include the whole chain), then by
// asking for the last target when its records are missing. Each new query
// needs a new CNAME hop, so MaxCNAME bounds the queries too.
func (r *Resolver) lookup(ctx context.Context, name string, qtype uint16) chainResult {
	var res chainResult
	res.ttl = ^uint32(0)
	cur := name
	for {
		msg, status, reason := r.query(ctx, cur, qtype)
		if msg == nil {
			res.status, res.reason = status, fmt.Sprintf("%s %s: %s", dns.TypeToString[qtype], display(cur), reason)
			return res
		}
		hops := 0
		for {
			var next string
			for _, rr := range msg.Answer {
				h := rr.Header()
				if h.Class != dns.ClassINET || !strings.EqualFold(h.Name, cur) {
					continue // not on our chain: ignore, never trust
				}
				if h.Rrtype == qtype {
					res.rrs = append(res.rrs, rr)
					res.ttl = min(res.ttl, h.Ttl)
				} else if c, ok := rr.(*dns.CNAME); ok && next == "" {
					next = dns.CanonicalName(c.Target)
					res.ttl = min(res.ttl, h.Ttl)
				}
			}
			if len(res.rrs) > 0 || next == "" {
				break
			}
			if next == name || containsName(res.cnames, display(next)) {
				res.status, res.reason = record.DNSError, fmt.Sprintf("cname loop at %s", display(next))
				return res
			}
			if len(res.cnames) >= r.maxCNAME {
				res.status, res.reason = record.DNSError, fmt.Sprintf("cname chain longer than %d", r.maxCNAME)
				return res
			}
			res.cnames = append(res.cnames, display(next))
			cur = next
			hops++
		}
		if status == record.DNSNXDomain {
			// The name, or the last CNAME target, does not exist.
			res.rrs = nil
			res.status, res.reason = status, fmt.Sprintf("%s %s: NXDOMAIN", dns.TypeToString[qtype], display(cur))
			return res
		}
		if len(res.rrs) > 0 || hops == 0 {
			res.status = record.DNSOK // with no rrs: NODATA
			return res
		}
		// The answer stopped at a CNAME target without its records: ask
		// for the target itself.
	}
}

func containsName(names []string, s string) bool {
	for _, n := range names {
		if n == s {
			return true
		}
	}
	return false
}

// query asks one question with retries and classifies the outcome. The
// message is returned only for NOERROR (status ok) and NXDOMAIN, the two
// replies whose content we use.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, string, string) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	m.SetEdns0(ednsSize, false)
	first := int(r.next.Add(1))
	status, reason := record.DNSError, "no attempt made"
	for attempt := 0; attempt <= r.retries; attempt++ {
		if attempt > 0 {
			r.stats.retries.Add(1)
			if err := sleep(ctx, backoff(attempt)); err != nil {
				s, why := ctxStatus(ctx)
				return nil, s, why
			}
			m.Id = dns.Id()
		}
		server := r.servers[(first+attempt)%len(r.servers)]
		resp, err := r.exchange(ctx, m, server)
		if err != nil {
			if errors.Is(err, errRateDeadline) {
				return nil, record.DNSTimeout, err.Error()
			}
			if ctx.Err() != nil {
				s, why := ctxStatus(ctx)
				return nil, s, why
			}
			status, reason = classify(err), err.Error()
			continue
		}
		switch resp.Rcode {
		case dns.RcodeSuccess:
			return resp, record.DNSOK, ""
		case dns.RcodeNameError:
			return resp, record.DNSNXDomain, "NXDOMAIN"
		case dns.RcodeServerFailure:
			status, reason = record.DNSServfail, "SERVFAIL"
			continue
		case dns.RcodeRefused:
			// A resolver refusing us is policy, not a transient failure.
			return nil, record.DNSRefused, "REFUSED"
		default:
			return nil, record.DNSError, "rcode " + dns.RcodeToString[resp.Rcode]
		}
	}
	if r.retries > 0 {
		reason = fmt.Sprintf("%s (after %d attempts)", reason, r.retries+1)
	}
	return nil, status, reason
}

// exchange sends m to server once over UDP, and over TCP to the same
// server when the UDP reply is truncated (RFC 1035 §4.2.1). Each send waits
// on the limiter.
func (r *Resolver) exchange(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error) {
	resp, err := r.exchangeUDP(ctx, m, server)
	if err == nil && resp.Truncated {
		r.stats.tcpFallbacks.Add(1)
		resp, err = r.exchangeOnce(ctx, r.tcp, m, server)
	}
	if err == nil {
		err = checkReply(m, resp)
	}
	if err != nil && classify(err) == record.DNSTimeout && ctx.Err() == nil {
		r.stats.timeouts.Add(1)
	}
	return resp, err
}

// exchangeUDP sends m once over the server's shared UDP sockets.
func (r *Resolver) exchangeUDP(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error) {
	if err := r.send(ctx); err != nil {
		return nil, err
	}
	resp, err := r.udpServers[server].exchange(ctx, m, r.timeout)
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return resp, err
}

// send waits for the limiter and counts the query about to be sent.
func (r *Resolver) send(ctx context.Context) error {
	if r.limiter != nil {
		if err := r.limiter.Wait(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return errRateDeadline
		}
	}
	r.stats.queries.Add(1)
	return nil
}

// exchangeOnce sends m once on a socket of its own (TCP, and the check).
func (r *Resolver) exchangeOnce(ctx context.Context, c *dns.Client, m *dns.Msg, server string) (*dns.Msg, error) {
	if err := r.send(ctx); err != nil {
		return nil, err
	}
	co, err := c.DialContext(ctx, server)
	if err != nil {
		return nil, err
	}
	defer co.Close()
	// miekg/dns honours the context's deadline but not its cancellation:
	// closing the socket ends a blocked read at once.
	stop := context.AfterFunc(ctx, func() { co.Close() })
	defer stop()
	resp, _, err := c.ExchangeWithConnContext(ctx, m, co)
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return resp, err
}

// checkReply rejects replies that do not answer our question: miekg/dns
// checks the ID, and the question guards against a confused or spoofing
// server reusing an ID. Error replies may omit the question (RFC 1035 does
// not require it there), so only success and NXDOMAIN must carry it.
func checkReply(q, resp *dns.Msg) error {
	if !resp.Response || resp.Opcode != dns.OpcodeQuery {
		return errNotResponse
	}
	if len(resp.Question) == 0 && resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError {
		return nil
	}
	if len(resp.Question) != 1 {
		return errQuestionMismatch
	}
	a, b := resp.Question[0], q.Question[0]
	if a.Qtype != b.Qtype || a.Qclass != b.Qclass || !strings.EqualFold(a.Name, b.Name) {
		return errQuestionMismatch
	}
	return nil
}

// classify maps a transport error onto the status vocabulary by type,
// never by message text.
func classify(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return record.DNSTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return record.DNSTimeout
	}
	return record.DNSError
}

// ctxStatus is the outcome of a lookup cut short by its context: a
// deadline is a timeout; a cancellation is not a DNS result at all, so it
// is an error the caller should not record as data.
func ctxStatus(ctx context.Context) (string, string) {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return record.DNSTimeout, "context deadline exceeded"
	}
	return record.DNSError, "canceled"
}

// backoff returns the delay before retry number attempt (1-based):
// backoffBase doubled per retry, with jitter in [d/2, d) so that many
// lookups failing together do not retry in lockstep.
func backoff(attempt int) time.Duration {
	d := backoffBase << min(attempt-1, 6)
	return d/2 + rand.N(d/2)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Check asks every configured server one question ("." NS) and fails when
// one of them gives no reply at all, so a scan with a dead or mistyped
// resolver stops before it sends a single probe instead of recording a
// million timeouts. Any reply, REFUSED included, shows the server is there.
func (r *Resolver) Check(ctx context.Context) error {
	m := new(dns.Msg)
	m.SetQuestion(".", dns.TypeNS)
	m.RecursionDesired = true
	for _, server := range r.servers {
		var err error
		for attempt := 0; attempt <= max(r.retries, 1); attempt++ {
			m.Id = dns.Id()
			if _, err = r.exchangeOnce(ctx, r.udp, m, server); err == nil {
				break
			}
			if _, err = r.exchangeOnce(ctx, r.tcp, m, server); err == nil {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("resolver %s does not answer (%v): check -resolver, or that a resolver runs there", server, err)
		}
	}
	return nil
}
