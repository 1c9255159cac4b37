package analyze

import (
	"context"
	"math"
	"strings"

	"github.com/mxsurvey/mxsurvey/analyze/tlsrpt"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// mxRow is what the analyzer reads of a survey.MXRow (TestProjections holds
// the tags and types to it).
type mxRow struct {
	Domain       string `parquet:"domain,dict"`
	Rank         int64  `parquet:"rank"`
	DNSStatus    string `parquet:"dns_status,dict"`
	ImplicitMX   bool   `parquet:"implicit_mx"`
	MXHost       string `parquet:"mx_host,dict"`
	MXPreference int32  `parquet:"mx_preference"`
	IP           string `parquet:"ip,dict"`
	MXDNSSEC     string `parquet:"mx_dnssec,dict"` // schema 2; empty in a schema-1 scan
}

// domainRow is the part of an mx row the domain statistics use.
type domainRow struct {
	mxHost string
	pref   int32
	ip     string
}

// domainAcc is one domain's rows: a run of consecutive mx rows with the
// same domain within one part.
type domainAcc struct {
	name       string
	rank       int64
	dnsStatus  string
	implicitMX bool
	mxSecure   bool // mx_dnssec secure (every row of a domain has the same)
	rows       []domainRow
}

// DomainRow is one row of domains.csv and domains.parquet.
type DomainRow struct {
	Domain         string `parquet:"domain"`
	Rank           int64  `parquet:"rank"`
	DNSStatus      string `parquet:"dns_status,dict"`
	ImplicitMX     bool   `parquet:"implicit_mx"`
	MXCount        int32  `parquet:"mx_count"`
	TargetCount    int32  `parquet:"target_count"`
	Probed         int32  `parquet:"probed"`
	STARTTLSAllMX  bool   `parquet:"starttls_all_mx"`
	PrimaryMXValid bool   `parquet:"primary_mx_valid"`
	AnyMXValid     bool   `parquet:"any_mx_valid"`
	PrimaryMXHost  string `parquet:"primary_mx_host"`
	MXProvider     string `parquet:"mx_provider,dict"`

	// Transport security policies (docs/statistics.md): false and empty
	// when the scan did not measure them (summary.json then has no key).
	MXSecure          bool   `parquet:"mx_secure"`
	DANEProtected     bool   `parquet:"dane_protected"`
	DANEDeliverable   bool   `parquet:"dane_deliverable"`
	MTASTSRecord      bool   `parquet:"mta_sts_record"`
	MTASTSPolicyOK    bool   `parquet:"mta_sts_policy_ok"`
	MTASTSMode        string `parquet:"mta_sts_mode,dict"`    // of a valid policy: enforce, testing, none
	MTASTSFailure     string `parquet:"mta_sts_failure,dict"` // the policy's own RFC 8460 result type
	MTASTSEnforce     bool   `parquet:"mta_sts_enforce"`
	MTASTSDeliverable bool   `parquet:"mta_sts_deliverable"`
	TLSRPTRecord      bool   `parquet:"tlsrpt_record"`
	// AuthPolicy is the request a sender honours: dane, mta-sts, or empty.
	AuthPolicy string `parquet:"auth_policy,dict"`
	// TLSRPTResults are "mx_host=result-type", one per probed MX host that
	// fails under AuthPolicy, in mx row order.
	TLSRPTResults []string `parquet:"tlsrpt_results,list"`
}

// domainBatch is what a worker computed for one row group of mx rows: the
// domains that lie wholly inside it, evaluated, and the runs at its edges
// that may continue in the neighbouring row groups of the same part, left
// for the fold to join and evaluate.
type domainBatch struct {
	head, tail *domainAcc // head == tail when one run fills the row group
	rows       int
	evaluated  []DomainRow
	export     *segment[DomainRow] // the evaluated rows; nil without outputs
}

// readMX is the domain pass. The scanner writes a domain's rows
// contiguously within one part, so a domain ends where the next begins or
// where its part ends; a domain may straddle row groups, which the fold
// joins. Only the rows of the domains of the row groups in flight are held.
func (a *analyzer) readMX(ctx context.Context) error {
	var pending *domainAcc // the last run of the previous row group, which may continue
	flush := func() error {
		if pending == nil {
			return nil
		}
		d := a.evalDomain(pending, newDomainScratch())
		pending = nil
		a.countDomain(&d)
		if a.out == nil {
			return nil
		}
		seg := a.out.domains.segment(1)
		err := seg.add(d)
		a.out.domains.send(seg)
		return err
	}
	return runPass(ctx, a, survey.MXTable, survey.MXDir, func(ctx context.Context, g store.RowGroup) (*domainBatch, error) {
		return a.domainBatch(ctx, g)
	}, func(g store.RowGroup, b *domainBatch) (int, error) {
		if b.head != nil {
			if pending != nil && pending.name == b.head.name {
				pending.implicitMX = pending.implicitMX || b.head.implicitMX
				pending.mxSecure = pending.mxSecure || b.head.mxSecure
				pending.rows = append(pending.rows, b.head.rows...)
			} else {
				if err := flush(); err != nil {
					return 0, err
				}
				pending = b.head
			}
		}
		if b.head != b.tail || len(b.evaluated) > 0 {
			if err := flush(); err != nil { // a later run began: the head's domain has ended
				return 0, err
			}
		}
		for i := range b.evaluated {
			a.countDomain(&b.evaluated[i])
		}
		if b.export != nil {
			a.out.domains.send(b.export)
		}
		if b.tail != nil && b.tail != b.head {
			pending = b.tail
		}
		if g.Last {
			return b.rows, flush()
		}
		return b.rows, nil
	})
}

// domainBatch reads one row group, splits it into runs, and evaluates the
// runs that cannot continue into another row group.
func (a *analyzer) domainBatch(ctx context.Context, g store.RowGroup) (*domainBatch, error) {
	var runs []*domainAcc
	b := &domainBatch{}
	err := store.ReadRowGroup(ctx, g, func(rows []mxRow) error {
		for i := range rows {
			r := &rows[i]
			if len(runs) == 0 || r.Domain != runs[len(runs)-1].name {
				runs = append(runs, &domainAcc{name: r.Domain, rank: r.Rank, dnsStatus: r.DNSStatus,
					mxSecure: r.MXDNSSEC == survey.DNSSECSecure})
			}
			cur := runs[len(runs)-1]
			cur.implicitMX = cur.implicitMX || r.ImplicitMX
			cur.mxSecure = cur.mxSecure || r.MXDNSSEC == survey.DNSSECSecure
			if r.MXHost != "" {
				cur.rows = append(cur.rows, domainRow{r.MXHost, r.MXPreference, r.IP})
			}
		}
		b.rows += len(rows)
		return nil
	})
	if err != nil || len(runs) == 0 {
		return b, err
	}
	first, last := 0, len(runs)-1
	if !g.First {
		b.head, first = runs[0], 1
	}
	if !g.Last {
		b.tail, last = runs[len(runs)-1], len(runs)-2
		if len(runs) == 1 {
			b.head = b.tail
		}
	}
	scratch := newDomainScratch()
	inner := runs[first:max(first, last+1)]
	if a.out != nil {
		b.export = a.out.domains.segment(len(inner))
	}
	for _, d := range inner {
		row := a.evalDomain(d, scratch)
		b.evaluated = append(b.evaluated, row)
		if b.export != nil {
			if err := b.export.add(row); err != nil {
				return b, err
			}
		}
	}
	return b, nil
}

// domainScratch is reused from one domain to the next by one goroutine.
type domainScratch struct {
	hosts map[string]bool
	seen  map[targetID]bool
	views map[string]int // index in probed
}

func newDomainScratch() domainScratch {
	return domainScratch{hosts: make(map[string]bool), seen: make(map[targetID]bool), views: make(map[string]int)}
}

// evalDomain computes a domain's row from its mx rows and the probe pass's
// targets (read only here). It runs on many goroutines at once.
func (a *analyzer) evalDomain(d *domainAcc, s domainScratch) DomainRow {
	out := DomainRow{Domain: d.name, Rank: d.rank, DNSStatus: d.dnsStatus, ImplicitMX: d.implicitMX}
	withMX := d.dnsStatus == survey.DNSOK

	// The primary MX hosts are those with the lowest preference among all of
	// the domain's MX hosts, addressed or not: an unreachable primary is a
	// primary that is not valid.
	minPref := int32(math.MaxInt32)
	hosts, seen := s.hosts, s.seen
	clear(hosts)
	clear(seen)
	for _, r := range d.rows {
		hosts[r.mxHost] = true
		if r.pref < minPref {
			minPref = r.pref
		}
	}
	for _, r := range d.rows {
		if r.pref == minPref && (out.PrimaryMXHost == "" || r.mxHost < out.PrimaryMXHost) {
			out.PrimaryMXHost = r.mxHost
		}
	}
	out.MXCount = int32(len(hosts))

	allSTARTTLS, anyValid := true, false
	primaryProbed, primaryAllValid := 0, true
	clear(s.views)
	var probed []mxHostView
	for _, r := range d.rows {
		if r.ip == "" {
			continue
		}
		key := targetOf(r.ip, r.mxHost)
		if seen[key] {
			continue
		}
		seen[key] = true
		out.TargetCount++
		tf := a.targets[key] // a target without a probe row was not probed
		f := tf.flags
		if f&tProbed == 0 {
			continue
		}
		out.Probed++
		i, ok := s.views[r.mxHost]
		if !ok {
			i = len(probed)
			s.views[r.mxHost] = i
			probed = append(probed, mxHostView{name: r.mxHost, tlsa: a.tlsa[r.mxHost], first: tf})
		}
		probed[i].anyDANEValid = probed[i].anyDANEValid || f&tDANEValid != 0
		probed[i].anyValidForMX = probed[i].anyValidForMX || f&tValidForMX != 0
		allSTARTTLS = allSTARTTLS && f&tSTARTTLS != 0
		anyValid = anyValid || f&tValidForMX != 0
		if r.pref == minPref {
			primaryProbed++
			primaryAllValid = primaryAllValid && f&tValidForMX != 0
		}
	}
	if withMX {
		out.STARTTLSAllMX = out.Probed > 0 && allSTARTTLS
		out.PrimaryMXValid = primaryProbed > 0 && primaryAllValid
		out.AnyMXValid = anyValid
		if out.PrimaryMXHost != "" {
			out.MXProvider = registeredDomain(out.PrimaryMXHost)
		}
	}
	v := domainPolicy(d.mxSecure, a.policies[d.name], probed)
	out.MXSecure, out.DANEProtected, out.DANEDeliverable = v.mxSecure, v.daneProtected, v.daneDeliverable
	out.MTASTSRecord, out.MTASTSPolicyOK, out.MTASTSMode = v.mtaSTSRecord, v.mtaSTSPolicyOK, v.mtaSTSMode
	out.MTASTSFailure, out.MTASTSEnforce, out.MTASTSDeliverable = string(v.mtaSTSFailure), v.mtaSTSEnforce, v.mtaSTSDeliverable
	out.TLSRPTRecord, out.AuthPolicy = v.tlsrptRecord, v.authPolicy
	for _, f := range v.results {
		out.TLSRPTResults = append(out.TLSRPTResults, f.host+"="+string(f.result))
	}
	return out
}

// countDomain adds one evaluated domain to the figures. It runs on one
// goroutine, in row order.
func (a *analyzer) countDomain(d *DomainRow) {
	c := &a.domains
	c[dTotal]++
	withMX := d.DNSStatus == survey.DNSOK
	switch d.DNSStatus {
	case survey.DNSOK:
		c[dWithMX]++
	case survey.DNSNullMX:
		c[dNullMX]++
	case survey.DNSNoMX:
		c[dNoMX]++
	default:
		c[dDNSError]++
	}
	if d.ImplicitMX {
		c[dImplicitMX]++
	}
	if withMX {
		if d.Probed > 0 {
			c[dWithProbedMX]++
		}
		if d.PrimaryMXHost != "" {
			a.top["mx_providers"][d.MXProvider]++
		}
	}
	if d.STARTTLSAllMX {
		c[dSTARTTLSAllMX]++
	}
	if d.PrimaryMXValid {
		c[dPrimaryMXValid]++
	}
	if d.AnyMXValid {
		c[dAnyMXValid]++
	}
	count := func(k int, b bool) {
		if b {
			c[k]++
		}
	}
	count(dMXSecure, d.MXSecure)
	count(dDANEProtected, d.DANEProtected)
	count(dDANEDeliverable, d.DANEDeliverable)
	count(dMTASTSRecord, d.MTASTSRecord)
	count(dMTASTSPolicyOK, d.MTASTSPolicyOK)
	count(dMTASTSEnforce, d.MTASTSEnforce)
	count(dMTASTSDeliverable, d.MTASTSDeliverable)
	count(dTLSRPTRecord, d.TLSRPTRecord)
	for _, r := range d.TLSRPTResults {
		if code := resultCode(tlsrpt.ResultType(r[strings.LastIndexByte(r, '=')+1:])); code > 0 {
			a.tlsrptResults[code-1]++
		}
	}
}
