package pipeline

import (
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// The policies (Config.Policies): per domain the MTA-STS and TLS-RPT TXT
// records, asked beside its MX lookup, and the MTA-STS policy fetch when a
// record asks for it; per MX host its TLSA records, asked once per process
// (Stages.Resolve, Stages.Fetch). A domain's Rows carry its policies row and
// the tlsa row of each of its MX hosts; the Scan writes a host's tlsa row
// with the first domain that has it, in the same batch as that domain's mx
// rows. The mx writer commits the policies part before each of its own, and
// the tlsa writer the mx part before each of its own (newSink). So a domain
// whose mx rows are committed has its policies row committed too, which is
// what makes "mx rows committed" mean "domain done" for -resume; and a
// committed tlsa row's host is always named by a committed mx row, even when
// a kill lost the mx rows and the domain, resolved again, names other hosts.
// A host whose tlsa row a kill lost after its mx rows were committed is
// looked up on -resume (Task.TLSAHost), in a local scan and in a cluster
// alike.

// policyCounts are the policies' share of the counters.
type policyCounts struct {
	rows, tlsaRows, fetched, resumedRows, resumedTLSA atomic.Int64
}

// policies counts the policy rows of a domain accepted.
func (c *counters) policies(r Rows) {
	c.pol.rows.Add(int64(len(r.Policies)))
	c.pol.tlsaRows.Add(int64(len(r.TLSA)))
	for _, p := range r.Policies {
		if p.STSFetched {
			c.pol.fetched.Add(1)
		}
	}
}

// checkResumePolicies refuses to resume a scan made with the other
// -policies setting: its domains would end with and without policy rows.
func (s *Scan) checkResumePolicies(old *survey.Manifest) error {
	was, _ := old.Options["policies"].(bool) // absent: a scan before the option, which had none
	if was != s.cfg.Policies {
		return fmt.Errorf("%s was scanned with -policies=%v: resume with the same setting", s.cfg.Out, was)
	}
	return nil
}

// resumePolicies reads the tlsa and policies rows an earlier run
// committed: their MX hosts are not asked again, the hosts of the earlier
// run's mx rows (mxHosts) without one are, and a domain whose policies row
// is there without its mx rows keeps that row.
func (s *Scan) resumePolicies(mxHosts map[string]struct{}) error {
	if !s.cfg.Policies {
		return nil
	}
	err := store.ReadAll(survey.TLSADir(s.cfg.Out), func(row *survey.TLSARow) error {
		s.tlsaHosts.Seen(row.MXHost)
		s.c.pol.resumedTLSA.Add(1)
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading committed tlsa rows to resume: %w", err)
	}
	for h := range mxHosts {
		if !s.tlsaHosts.Has(h) {
			s.tlsaMissing = append(s.tlsaMissing, h)
		}
	}
	slices.Sort(s.tlsaMissing)
	if len(s.tlsaMissing) > 0 {
		slog.Info("resuming: MX hosts without a tlsa row are looked up", "hosts", len(s.tlsaMissing))
	}
	err = store.ReadAll(survey.PoliciesDir(s.cfg.Out), func(row *survey.PolicyRow) error {
		if !s.done.Has(row.Domain) {
			s.polDone[row.Domain] = true
		}
		s.c.pol.resumedRows.Add(1)
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading committed policies rows to resume: %w", err)
	}
	return nil
}
