package resolve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/internal/clock"
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
	// unauthenticated: a reply used came without the AD bit (dnssec.go).
	unauthenticated bool
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
		msg, status, reason := r.query(ctx, cur, qtype, false)
		if msg == nil {
			res.status, res.reason = status, fmt.Sprintf("%s %s: %s", dns.TypeToString[qtype], display(cur), reason)
			return res
		}
		res.unauthenticated = res.unauthenticated || !msg.AuthenticatedData
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
				res.status, res.reason = survey.DNSError, fmt.Sprintf("cname loop at %s", display(next))
				return res
			}
			if len(res.cnames) >= r.maxCNAME {
				res.status, res.reason = survey.DNSError, fmt.Sprintf("cname chain longer than %d", r.maxCNAME)
				return res
			}
			res.cnames = append(res.cnames, display(next))
			cur = next
			hops++
		}
		if status == survey.DNSNXDomain {
			// The name, or the last CNAME target, does not exist.
			res.rrs = nil
			res.status, res.reason = status, fmt.Sprintf("%s %s: NXDOMAIN", dns.TypeToString[qtype], display(cur))
			return res
		}
		if len(res.rrs) > 0 || hops == 0 {
			res.status = survey.DNSOK // with no rrs: NODATA
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
// replies whose content we use. With Config.DNSSEC the query carries the DO
// bit; cd sets CD, asking the resolver not to validate, in one attempt
// (dnssec.go).
func (r *Resolver) query(ctx context.Context, name string, qtype uint16, cd bool) (*dns.Msg, string, string) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	m.CheckingDisabled = cd
	m.SetEdns0(ednsSize, r.dnssec)
	first := int(r.next.Add(1))
	status, reason := survey.DNSError, "no attempt made"
	retries := r.retries
	if cd {
		retries = 0 // it asks again after a SERVFAIL that was retried already (dnssec.go)
	}
	for attempt := 0; attempt <= retries; attempt++ {
		if attempt > 0 {
			r.stats.retries.Add(1)
			if err := clock.Sleep(ctx, backoff(attempt)); err != nil {
				s, why := ctxStatus(ctx)
				return nil, s, why
			}
			m.Id = dns.Id()
		}
		server := r.servers[(first+attempt)%len(r.servers)]
		resp, err := r.exchange(ctx, m, server)
		if err != nil {
			if errors.Is(err, errRateDeadline) {
				return nil, survey.DNSTimeout, err.Error()
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
			return resp, survey.DNSOK, ""
		case dns.RcodeNameError:
			return resp, survey.DNSNXDomain, "NXDOMAIN"
		case dns.RcodeServerFailure:
			status, reason = survey.DNSServfail, "SERVFAIL"
			continue
		case dns.RcodeRefused:
			// A resolver refusing us is policy, not a transient failure.
			return nil, survey.DNSRefused, "REFUSED"
		default:
			return nil, survey.DNSError, "rcode " + dns.RcodeToString[resp.Rcode]
		}
	}
	if retries > 0 {
		reason = fmt.Sprintf("%s (after %d attempts)", reason, retries+1)
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
	if err != nil && classify(err) == survey.DNSTimeout && ctx.Err() == nil {
		r.stats.timeouts.Add(1)
	}
	return resp, err
}

// exchangeUDP sends m once over the server's shared UDP sockets.
func (r *Resolver) exchangeUDP(ctx context.Context, m *dns.Msg, server string) (*dns.Msg, error) {
	if err := r.send(ctx); err != nil {
		return nil, err
	}
	resp, err := r.udpServers[server].exchange(ctx, m)
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
		return survey.DNSTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return survey.DNSTimeout
	}
	return survey.DNSError
}

// ctxStatus is the outcome of a lookup cut short by its context: a
// deadline is a timeout; a cancellation is not a DNS result at all, so it
// is an error the caller should not record as data.
func ctxStatus(ctx context.Context) (string, string) {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return survey.DNSTimeout, "context deadline exceeded"
	}
	return survey.DNSError, "canceled"
}

// backoff returns the delay before retry number attempt (1-based):
// backoffBase doubled per retry, with jitter in [d/2, d) so that many
// lookups failing together do not retry in lockstep.
func backoff(attempt int) time.Duration {
	d := backoffBase << min(attempt-1, 6)
	return d/2 + rand.N(d/2)
}

// Check makes sure that a DNS server answers at every configured address
// before a scan sends anything else, so a mistyped -resolver stops the scan
// at once instead of recording a million timeouts. It does not judge the
// resolver: a validating resolver cut off from the root, or one that
// forwards only some zones, never answers ". NS" yet resolves every name
// of its input, so the question is "localhost. A", which RFC 6761 §6.3 asks
// every caching server to answer from local data (Unbound, BIND, Knot
// Resolver and dnsmasq do), and any reply counts: SERVFAIL or REFUSED
// shows a DNS server listening as well as an answer does.
//
// Per server, over UDP, the same query is sent up to max(Retries,1)+1
// times, Timeout apart, on one socket, so a slow reply to an earlier send
// still counts. The server is refused when
//   - the UDP port is unreachable (ICMP port unreachable: nothing listens);
//   - what comes back over UDP is not a DNS reply;
//   - UDP stays silent and a TCP connection to the same address is refused
//     or times out (nothing listens, or the address drops everything);
//   - UDP stays silent but the question gets a reply over TCP: UDP does not
//     reach the server or its replies do not come back, and a scan's
//     queries go over UDP;
//   - over TCP the server sends bytes that are not a DNS reply, or closes
//     the connection without one (another service on that port).
//
// A server silent over UDP that accepts a TCP connection and stays silent
// there too is accepted, with a warning: something listens on the DNS
// port and may still resolve the scan's names (a resolver with no local
// answer for localhost, trying to resolve it upstream); the scan's own
// queries will tell, and its progress lines count their timeouts.
func (r *Resolver) Check(ctx context.Context) error {
	for _, server := range r.servers {
		if err := r.checkServer(ctx, server); err != nil {
			return fmt.Errorf("resolver %s %w: check -resolver, or that a resolver runs there", server, err)
		}
	}
	return nil
}

// checkQuestion is the liveness question (RFC 6761 §6.3).
const checkQuestion = "localhost."

func (r *Resolver) checkServer(ctx context.Context, server string) error {
	m := new(dns.Msg)
	m.SetQuestion(checkQuestion, dns.TypeA)
	m.RecursionDesired = true
	timeout, sends := r.udp.Timeout, max(r.retries, 1)+1
	udpErr := r.checkUDP(ctx, m, server, timeout, sends)
	if !errors.Is(udpErr, errCheckSilent) {
		return udpErr
	}
	silence := time.Duration(sends) * timeout
	switch err := r.checkTCP(ctx, m, server, timeout); {
	case err == nil:
		return fmt.Errorf("answers over TCP but not over UDP (silent for %v): UDP is filtered on the way, or -dns-timeout is too short for it", silence)
	case errors.Is(err, errCheckSilent):
		slog.Warn("resolver answered no liveness question but accepts TCP connections; scanning with it anyway",
			"resolver", server, "question", checkQuestion+" A", "silent_for", silence+timeout)
		return nil
	default:
		return fmt.Errorf("does not answer (UDP silent for %v; TCP: %w)", silence, err)
	}
}

// errCheckSilent: no reply within the time allowed.
var errCheckSilent = errors.New("no reply")

// checkUDP sends m up to sends times on one connected UDP socket, timeout
// apart, and returns nil at the first reply carrying its ID, whatever its
// RCODE; errCheckSilent when none comes.
func (r *Resolver) checkUDP(ctx context.Context, m *dns.Msg, server string, timeout time.Duration, sends int) error {
	co, err := r.udp.DialContext(ctx, server)
	if err != nil {
		return fmt.Errorf("does not answer (UDP: %w)", err)
	}
	defer co.Close()
	stop := context.AfterFunc(ctx, func() { co.Close() })
	defer stop()
	for range sends {
		if err := r.checkSend(ctx, co, m, timeout); err != nil {
			return fmt.Errorf("does not answer (UDP: %w)", err)
		}
		if err := awaitUDP(ctx, co, m.Id); !errors.Is(err, errCheckSilent) {
			return err
		}
	}
	return errCheckSilent
}

// awaitUDP reads until a reply with the query's ID or the read deadline;
// stray replies (to another ID) are skipped.
func awaitUDP(ctx context.Context, co *dns.Conn, id uint16) error {
	for {
		resp, err := co.ReadMsg()
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("check interrupted: %w", ctx.Err())
		case err == nil && resp.Response && resp.Id == id:
			return nil
		case err == nil:
			continue
		case errors.Is(err, syscall.ECONNREFUSED):
			return fmt.Errorf("does not answer: nothing listens on its UDP port (%w)", err)
		case classify(err) == survey.DNSTimeout:
			return errCheckSilent
		default:
			return fmt.Errorf("does not speak DNS over UDP (%w)", err)
		}
	}
}

// checkSend waits on the rate limiter, counts the query and sends it with
// a read deadline timeout later (or the context's, if sooner).
func (r *Resolver) checkSend(ctx context.Context, co *dns.Conn, m *dns.Msg, timeout time.Duration) error {
	if r.limiter != nil {
		if err := r.limiter.Wait(ctx); err != nil {
			return err
		}
	}
	r.stats.queries.Add(1)
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := co.SetDeadline(deadline); err != nil {
		return err
	}
	return co.WriteMsg(m)
}

// checkTCP connects to server over TCP and asks m once: nil for a reply
// with its ID, errCheckSilent when the connection stays silent until the
// timeout, an error when the connection fails or the server sends
// something else.
func (r *Resolver) checkTCP(ctx context.Context, m *dns.Msg, server string, timeout time.Duration) error {
	nc, err := (&net.Dialer{Timeout: timeout}).DialContext(ctx, "tcp", server)
	if err != nil {
		return err
	}
	cc := &countingConn{Conn: nc}
	co := &dns.Conn{Conn: cc}
	defer co.Close()
	stop := context.AfterFunc(ctx, func() { co.Close() })
	defer stop()
	if err := r.checkSend(ctx, co, m, timeout); err != nil {
		return err
	}
	resp, err := co.ReadMsg()
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("check interrupted: %w", ctx.Err())
	case err == nil && resp.Response && resp.Id == m.Id:
		return nil
	case err == nil:
		return errors.New("replied to another question")
	case cc.n == 0 && classify(err) == survey.DNSTimeout:
		return errCheckSilent
	case cc.n == 0:
		return fmt.Errorf("closed the connection without a reply (%w)", err)
	default:
		return fmt.Errorf("sent %d bytes that are not a DNS reply (%w)", cc.n, err)
	}
}

// countingConn counts the bytes read, to tell a silent peer from one
// sending something other than DNS.
type countingConn struct {
	net.Conn
	n int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n += int64(n)
	return n, err
}
