// Package policy looks up the transport security policies a receiving
// domain publishes in DNS, and turns them into rows of the dataset's tlsa and
// policies tables (docs/schema.md): DANE's TLSA records of each MX host (RFC
// 7672), the MTA-STS record (RFC 8461 §3.1) and the TLS-RPT record (RFC 8460
// §3) of each domain, with the DNSSEC status of every answer.
//
// It records and triggers, it does not judge: records are kept raw, and
// whether they are valid, usable or satisfied is the analyzer's question
// (analyze/dane, analyze/mtasts, analyze/tlsrpt). The one decision taken here
// is where RFC 7672 §2.2.2 says to look for an MX host's TLSA records, and
// whether an MTA-STS record asks for a policy fetch (package stsfetch does
// the fetch).
package policy

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
)

// Resolver is what policy asks of DNS: a *resolve.Resolver, or a map in
// tests.
type Resolver interface {
	TXT(ctx context.Context, name string) resolve.RRset
	TLSA(ctx context.Context, port int, host string) resolve.RRset
}

// SMTPPort is the port whose TLSA records DANE for SMTP uses (RFC 7672
// §2.2.1): _25._tcp, whatever port a lab's servers listen on.
const SMTPPort = 25

// Records looks up a domain's MTA-STS and TLS-RPT TXT records, both at
// once, and returns its policies row without the policy fetch (sts_*
// columns empty). A caller saves a round trip by running it beside the
// domain's MX lookup.
func Records(ctx context.Context, r Resolver, domain string) survey.PolicyRow {
	var sts resolve.RRset
	var wg sync.WaitGroup
	wg.Go(func() { sts = r.TXT(ctx, "_mta-sts."+domain) })
	rpt := r.TXT(ctx, "_smtp._tls."+domain)
	wg.Wait()
	return survey.PolicyRow{
		Domain:       domain,
		MTASTSStatus: sts.Status, MTASTSDNSSEC: sts.DNSSEC, MTASTSTXT: sts.Records, MTASTSError: sts.Error,
		TLSRPTStatus: rpt.Status, TLSRPTDNSSEC: rpt.DNSSEC, TLSRPTTXT: rpt.Records, TLSRPTError: rpt.Error,
		QueriedAt: time.Now().UTC(),
	}
}

// WantsFetch reports whether a domain's MTA-STS TXT records ask for its
// policy: one of them starts with "v=STSv1", case-sensitively (RFC 8461
// §3.1). Whether the record is valid is the analyzer's question; a
// malformed record that names the version is still worth the fetch, so the
// dataset shows what its publisher serves.
func WantsFetch(row *survey.PolicyRow) bool {
	for _, t := range row.MTASTSTXT {
		if strings.HasPrefix(t, "v=STSv1") {
			return true
		}
	}
	return false
}

// TLSA looks up the TLSA records of an MX host and returns its tlsa row.
//
// RFC 7672 §2.2.2: when the host's address lookup followed CNAMEs and that
// chain was DNSSEC-secure, the TLSA records are sought first at the
// CNAME-expanded name, and at the host's own name only if the expanded name
// has none (NODATA or NXDOMAIN) or none that is secure; a lookup that fails
// there (SERVFAIL, bogus, timeout) is the answer, as it leaves a DANE sender
// without a usable host. Without a secure chain, only the host's own name is
// asked. The row names the owner whose answer it records.
func TLSA(ctx context.Context, r Resolver, h resolve.Host) survey.TLSARow {
	bases := []string{h.Name}
	if n := len(h.CNAMEs); n > 0 && h.CNAMEsDNSSEC == survey.DNSSECSecure && h.CNAMEs[n-1] != h.Name {
		bases = []string{h.CNAMEs[n-1], h.Name}
	}
	var set resolve.RRset
	for _, base := range bases {
		set = r.TLSA(ctx, SMTPPort, base)
		if !noSecureRecords(set) {
			break
		}
	}
	return survey.TLSARow{MXHost: h.Name, TLSAName: set.Name, TLSAStatus: set.Status, TLSADNSSEC: set.DNSSEC,
		TLSARecords: set.Records, TLSACNAMEs: set.CNAMEs, TLSAError: set.Error, QueriedAt: time.Now().UTC()}
}

// noSecureRecords: the answer is a denial, or records that are not secure.
func noSecureRecords(set resolve.RRset) bool {
	switch set.Status {
	case survey.DNSNoRecords, survey.DNSNXDomain:
		return true
	case survey.DNSOK:
		return set.DNSSEC != survey.DNSSECSecure
	}
	return false
}
