package analyze

import (
	"context"
	"math"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// domainRow is the part of an mx row the domain statistics use; a domain's
// rows are copied out of the reader's batch because they may span batches.
type domainRow struct {
	mxHost string
	pref   int32
	ip     string
}

type domainAcc struct {
	name       string
	rank       int64
	dnsStatus  string
	implicitMX bool
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
}

// readMX streams mx rows and evaluates each domain when its last row has been
// read. The scanner writes a domain's rows contiguously within one part, so a
// domain ends where the next begins or where its part ends; only one domain's
// rows are held at a time.
func (a *analyzer) readMX(ctx context.Context) error {
	p := newProgress(a.opts.Progress, "mx")
	var cur domainAcc
	have := false
	flush := func() error {
		if !have {
			return nil
		}
		have = false
		return a.domain(&cur)
	}
	for _, dir := range a.opts.Dirs {
		paths, err := store.Parts(survey.MXDir(dir))
		if err != nil {
			return err
		}
		if len(paths) == 0 {
			a.log.Warn("no mx parts", "dir", dir)
		}
		for _, path := range paths {
			err := store.ReadBatches(ctx, path, func(rows []survey.MXRow) error {
				for i := range rows {
					r := &rows[i]
					if !have || r.Domain != cur.name {
						if err := flush(); err != nil {
							return err
						}
						cur = domainAcc{name: r.Domain, rank: r.Rank, dnsStatus: r.DNSStatus, rows: cur.rows[:0]}
						have = true
					}
					cur.implicitMX = cur.implicitMX || r.ImplicitMX
					if r.MXHost != "" {
						cur.rows = append(cur.rows, domainRow{r.MXHost, r.MXPreference, r.IP})
					}
				}
				p.add(len(rows))
				return nil
			})
			if err != nil {
				return err
			}
			if err := flush(); err != nil {
				return err
			}
		}
	}
	p.done()
	return nil
}

func (a *analyzer) domain(d *domainAcc) error {
	c := &a.domains
	c[dTotal]++
	withMX := d.dnsStatus == survey.DNSOK
	switch d.dnsStatus {
	case survey.DNSOK:
		c[dWithMX]++
	case survey.DNSNullMX:
		c[dNullMX]++
	case survey.DNSNoMX:
		c[dNoMX]++
	default:
		c[dDNSError]++
	}
	if d.implicitMX {
		c[dImplicitMX]++
	}
	out := DomainRow{Domain: d.name, Rank: d.rank, DNSStatus: d.dnsStatus, ImplicitMX: d.implicitMX}

	// The primary MX hosts are those with the lowest preference among all of
	// the domain's MX hosts, addressed or not: an unreachable primary is a
	// primary that is not valid.
	minPref := int32(math.MaxInt32)
	hosts, seen := a.scratchHosts, a.scratchSeen // reused: one domain at a time
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
	for _, r := range d.rows {
		if r.ip == "" {
			continue
		}
		key := survey.TargetKey(r.ip, r.mxHost)
		if seen[key] {
			continue
		}
		seen[key] = true
		out.TargetCount++
		f := a.targets[key] // a target without a probe row was not probed
		if f&tProbed == 0 {
			continue
		}
		out.Probed++
		allSTARTTLS = allSTARTTLS && f&tSTARTTLS != 0
		anyValid = anyValid || f&tValidForMX != 0
		if r.pref == minPref {
			primaryProbed++
			primaryAllValid = primaryAllValid && f&tValidForMX != 0
		}
	}
	if withMX {
		if out.Probed > 0 {
			c[dWithProbedMX]++
		}
		out.STARTTLSAllMX = out.Probed > 0 && allSTARTTLS
		out.PrimaryMXValid = primaryProbed > 0 && primaryAllValid
		out.AnyMXValid = anyValid
		if out.PrimaryMXHost != "" {
			out.MXProvider = registeredDomain(out.PrimaryMXHost)
			a.top["mx_providers"][out.MXProvider]++
		}
	}
	if out.STARTTLSAllMX {
		c[dSTARTTLSAllMX]++
	}
	if out.PrimaryMXValid {
		c[dPrimaryMXValid]++
	}
	if out.AnyMXValid {
		c[dAnyMXValid]++
	}
	if a.out != nil {
		return a.out.domain(&out)
	}
	return nil
}
