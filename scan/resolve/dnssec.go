package resolve

import (
	"context"
	"net"
	"net/netip"

	"github.com/miekg/dns"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// DNSSEC status of a lookup, as a stub resolver may know it (RFC 4035
// §4.9): mxsurvey validates no signature itself. With Config.DNSSEC every
// query carries the DO bit (RFC 3225), and the recursive resolver's AD bit
// (RFC 4035 §3.2.3) says whether it validated the answer or the denial. A
// stub may believe AD only from a resolver it trusts over a channel it
// trusts (RFC 4035 §4.9.3, RFC 6840 §5.8): here, one on loopback, or any
// with Config.TrustAD. A SERVFAIL is asked again with CD (RFC 4035 §3.2.2):
// an answer then means the data exists but does not validate, bogus.

// onLoopback reports whether every server is a loopback address: a resolver
// on the scanning machine, which the user runs.
func onLoopback(servers []string) bool {
	for _, s := range servers {
		host, _, err := net.SplitHostPort(s)
		if err != nil {
			return false
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Unmap().IsLoopback() {
			return false
		}
	}
	return true
}

// TrustsAD reports whether DNSSEC statuses are read from the AD bit:
// Config.DNSSEC is set and the servers are trusted for it. A scan records it
// in its manifest, since without it every DNSSEC column is empty.
func (r *Resolver) TrustsAD() bool { return r.trustAD }

// lookupSec is lookup with the DNSSEC status of its outcome: secure when
// every reply of the chain had AD, insecure when one had not, bogus for a
// SERVFAIL that CD=1 answers, and "" otherwise or when AD is not trusted.
func (r *Resolver) lookupSec(ctx context.Context, name string, qtype uint16) (chainResult, string) {
	res := r.lookup(ctx, name, qtype)
	if !r.trustAD {
		return res, survey.DNSSECUnknown
	}
	switch res.status {
	case survey.DNSOK, survey.DNSNXDomain:
		if res.unauthenticated {
			return res, survey.DNSSECInsecure
		}
		return res, survey.DNSSECSecure
	case survey.DNSServfail:
		last := name // the name whose query failed: the chain's end
		if n := len(res.cnames); n > 0 {
			last = dns.Fqdn(res.cnames[n-1])
		}
		if msg, _, _ := r.query(ctx, last, qtype, true); msg != nil {
			return res, survey.DNSSECBogus
		}
	}
	return res, survey.DNSSECUnknown
}
