package resolve

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// maxAddrs bounds the addresses kept per host: no real MX host has more,
// and each address becomes a probe.
const maxAddrs = 64

// How long host results stay cached. Answers keep their TTL, clamped so
// that TTL 0 does not defeat the cache and a long TTL does not outlive a
// scan's notion of "now". Failures are cached briefly: long enough that a
// dead provider's resolvers are not asked again by every one of its
// thousands of customer domains, short enough that a transient failure
// does not mark a whole provider for the rest of the scan.
const (
	minCacheTTL    = time.Minute
	maxCacheTTL    = time.Hour
	noAddrCacheTTL = 5 * time.Minute
	failCacheTTL   = 30 * time.Second
)

// hostResult is a host's address lookup, as cached. Its slices are shared
// by every reader and never modified.
type hostResult struct {
	status  string
	reason  string
	addrs   []netip.Addr
	cnames  []string
	expires time.Time
	// DNSSEC statuses: of the A and AAAA lookups, of the one cnames come
	// from, and of the one status reports (A's, unless only AAAA gave
	// addresses or only AAAA failed).
	dnssecA, dnssecAAAA, cnamesDNSSEC, dnssec string
}

// hostAddrs returns the addresses of name (canonical form), through the
// cache and with concurrent lookups of one name merged into one: the first
// caller looks up in its own goroutine, the others wait for its result.
func (r *Resolver) hostAddrs(ctx context.Context, name string, useCache bool) hostResult {
	if !useCache || r.cache == nil {
		return r.lookupAddrs(ctx, name)
	}
	for {
		if v, ok := r.cache.get(name, time.Now()); ok {
			r.stats.cacheHits.Add(1)
			return v
		}
		c, leader := r.flight.join(name)
		if leader {
			v, ok := r.cache.get(name, time.Now()) // put between our get and join
			if ok {
				r.stats.cacheHits.Add(1)
			} else {
				r.stats.cacheMisses.Add(1)
				v = r.lookupAddrs(ctx, name)
			}
			// A result cut short by the leader's context is not DNS's
			// answer: it is not cached, and the waiters ask again.
			canceled := !ok && ctx.Err() != nil
			if !ok && !canceled {
				r.cache.put(name, v)
			}
			r.flight.finish(name, c, v, canceled)
			if canceled {
				s, why := ctxStatus(ctx)
				return hostResult{status: s, reason: why}
			}
			return v
		}
		select {
		case <-ctx.Done():
			s, why := ctxStatus(ctx)
			return hostResult{status: s, reason: why}
		case <-c.done:
		}
		if c.canceled {
			continue // the leader gave up, not DNS: ask again
		}
		r.stats.cacheHits.Add(1)
		return c.val
	}
}

// flight is the set of host lookups in progress.
type flight struct {
	mu    sync.Mutex
	calls map[string]*call
}

type call struct {
	done     chan struct{} // closed when val is set
	val      hostResult
	canceled bool // the leader's context ended first
}

// join returns the lookup of name in progress, or a new one that the caller
// leads and must finish.
func (f *flight) join(name string) (c *call, leader bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.calls[name]; c != nil {
		return c, false
	}
	if f.calls == nil {
		f.calls = map[string]*call{}
	}
	c = &call{done: make(chan struct{})}
	f.calls[name] = c
	return c, true
}

func (f *flight) finish(name string, c *call, v hostResult, canceled bool) {
	f.mu.Lock()
	delete(f.calls, name)
	f.mu.Unlock()
	c.val, c.canceled = v, canceled
	close(c.done)
}

// lookupAddrs asks for A and AAAA at once, since both round trips are
// needed and neither depends on the other.
func (r *Resolver) lookupAddrs(ctx context.Context, name string) hostResult {
	var (
		six    chainResult
		secSix string
	)
	done := make(chan struct{})
	r.workers.Go(func() {
		defer close(done)
		six, secSix = r.lookupSec(ctx, name, dns.TypeAAAA)
	})
	four, secFour := r.lookupSec(ctx, name, dns.TypeA)
	<-done

	res := hostResult{dnssecA: secFour, dnssecAAAA: secSix, cnamesDNSSEC: secFour, dnssec: secFour}
	truncated := false
	add := func(a netip.Addr, ok bool) {
		if !ok || containsAddr(res.addrs, a) {
			return
		}
		if len(res.addrs) >= maxAddrs {
			truncated = true
			return
		}
		res.addrs = append(res.addrs, a)
	}
	ttl := ^uint32(0)
	if four.status == survey.DNSOK {
		for _, rr := range four.rrs {
			if a, ok := rr.(*dns.A); ok {
				ip, ok := netip.AddrFromSlice(a.A)
				add(ip.Unmap(), ok)
			}
		}
		ttl = min(ttl, four.ttl)
		res.cnames = four.cnames
	} else {
		res.cnames, res.cnamesDNSSEC = six.cnames, secSix
	}
	if six.status == survey.DNSOK {
		for _, rr := range six.rrs {
			if a, ok := rr.(*dns.AAAA); ok {
				add(netip.AddrFromSlice(a.AAAA))
			}
		}
		ttl = min(ttl, six.ttl)
	}

	switch {
	case len(res.addrs) > 0:
		res.status = survey.DNSOK
		if !hasAddr4(res.addrs) {
			res.dnssec = secSix
		}
		// Addresses are usable; keep what went wrong with the other half.
		switch {
		case four.status != survey.DNSOK:
			res.reason = four.reason
		case six.status != survey.DNSOK:
			res.reason = six.reason
		case truncated:
			res.reason = fmt.Sprintf("more than %d addresses, extra ignored", maxAddrs)
		}
		res.expires = time.Now().Add(min(max(time.Duration(ttl)*time.Second, minCacheTTL), maxCacheTTL))
	case four.status == survey.DNSOK && six.status == survey.DNSOK:
		res.status, res.reason = survey.DNSNoAddr, "no A or AAAA records"
		res.expires = time.Now().Add(noAddrCacheTTL)
	case four.status != survey.DNSOK:
		res.status, res.reason = four.status, four.reason
		if six.status != survey.DNSOK {
			res.reason += "; " + six.reason
		}
		res.expires = time.Now().Add(failCacheTTL)
	default:
		res.status, res.reason, res.dnssec = six.status, six.reason, secSix
		res.expires = time.Now().Add(failCacheTTL)
	}
	return res
}

func hasAddr4(addrs []netip.Addr) bool {
	for _, a := range addrs {
		if a.Is4() {
			return true
		}
	}
	return false
}

func containsAddr(addrs []netip.Addr, a netip.Addr) bool {
	for _, b := range addrs {
		if a == b {
			return true
		}
	}
	return false
}

// hostCache is a bounded map with random eviction: Go's map iteration
// starts at a random entry, which gives eviction without the bookkeeping
// of LRU, and a scan's access pattern (a heavy tail of big providers
// looked up again and again) keeps the hot entries refilled anyway.
type hostCache struct {
	mu  sync.Mutex
	max int
	m   map[string]hostResult
}

func newHostCache(max int) *hostCache {
	return &hostCache{max: max, m: make(map[string]hostResult, min(max, 1024))}
}

func (c *hostCache) get(name string, now time.Time) (hostResult, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[name]
	if ok && now.After(v.expires) {
		delete(c.m, name)
		return hostResult{}, false
	}
	return v, ok
}

func (c *hostCache) put(name string, v hostResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[name]; !ok && len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[name] = v
}
