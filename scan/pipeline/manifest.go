package pipeline

import (
	"log/slog"
	"maps"
	"net/netip"
	"sync"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

func (c *Config) options() map[string]any {
	groups := "go-default"
	if len(c.TLSGroups) > 0 {
		groups = ""
		for i, g := range c.TLSGroups {
			if i > 0 {
				groups += ","
			}
			groups += g.String()
		}
	}
	return map[string]any{
		"input": c.Input, "format": string(c.Format), "shard": c.Shard.String(),
		"resolvers": c.Resolvers, "dns_timeout": c.DNSTimeout.String(), "dns_retries": c.DNSRetries,
		"dns_concurrency": c.DNSConcurrency, "dns_rate": c.DNSRate, "ptr": c.PTR,
		"concurrency": c.Concurrency, "rate": c.Rate, "per_ip_concurrency": c.PerIPConcurrency,
		"ip_interval": c.IPInterval.String(), "port": c.Port, "ehlo_name": c.EHLOName,
		"probe_timeout": c.ProbeTimeout.String(), "step_timeout": c.StepTimeout.String(),
		"checkpoint": c.Checkpoint.String(), "ipv6": c.IPv6, "tls_groups": groups, "allow": prefixes(c.Allow), "blocklist_entries": len(c.Block),
	}
}

func prefixes(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// keepManifest rewrites the manifest every 30 seconds so a killed scan
// leaves its counts behind.
func (r *run) keepManifest(m *survey.Manifest) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				snapshot := *m
				r.fillCounts(&snapshot)
				if err := store.WriteManifest(r.cfg.Out, &snapshot); err != nil {
					slog.Warn("updating manifest", "err", err)
				}
			}
		}
	}()
	return func() { close(quit); wg.Wait() }
}

func (r *run) fillManifest(m *survey.Manifest, mxw *store.PartWriter[survey.MXRow], pw *store.PartWriter[survey.ProbeRow]) {
	r.fillCounts(m)
	mxParts, _ := store.Parts(survey.MXDir(r.cfg.Out))
	probeParts, _ := store.Parts(survey.ProbesDir(r.cfg.Out))
	m.Parts = map[string]int{survey.MXTable: len(mxParts), survey.ProbesTable: len(probeParts)}
	_, mxRows := mxw.Committed()
	_, probeRows := pw.Committed()
	m.Counts["mx_rows_written"] = mxRows
	m.Counts["probe_rows_written"] = probeRows
}

func (r *run) fillCounts(m *survey.Manifest) {
	c := &r.c
	m.Counts = map[string]int64{
		"input_lines":        c.read.Load(),
		"duplicates":         c.duplicates.Load(),
		"invalid":            c.invalid.Load(),
		"domains_resolved":   c.resolved.Load(),
		"mx_rows":            c.mxRows.Load() + c.invalid.Load(),
		"targets":            c.targets.Load(),
		"probes":             c.probes.Load(),
		"resumed_skipped":    c.resumedSkip.Load(),
		"resumed_mx_rows":    c.resumedMXRows.Load(),
		"resumed_probe_rows": c.resumedProbeRows.Load(),
	}
	st := r.resolver.Stats()
	m.Counts["dns_queries"] = int64(st.Queries)
	m.Counts["dns_retries"] = int64(st.Retries)
	m.Counts["dns_tcp_fallbacks"] = int64(st.TCPFallbacks)
	m.Counts["dns_cache_hits"] = int64(st.CacheHits)
	c.mu.Lock()
	m.Outcomes = maps.Clone(c.outcomes)
	m.ErrorClasses = maps.Clone(c.errorClasses)
	m.DNSStatuses = maps.Clone(c.dnsStatuses)
	c.mu.Unlock()
}
