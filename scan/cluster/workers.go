package cluster

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
)

// Timing of the workers' heartbeats: a worker unheard of for workerGone is
// no longer counted live (its work is taken back by leases and ack waits,
// not by this).
const (
	heartbeatEvery = time.Second
	workerGone     = 5 * time.Second
)

// workerTable is the coordinator's view of the workers, from their
// heartbeats and the rows they sent.
type workerTable struct {
	scan string

	mu           sync.Mutex
	w            map[string]*workerInfo
	firstRefusal time.Time
}

type workerInfo struct {
	hb          heartbeat
	first, last time.Time
	refused     string
	dns         resolve.Stats
	domains     int64
	probes      int64
}

func newWorkerTable(scan string, earlier []survey.Worker) *workerTable {
	t := &workerTable{scan: scan, w: map[string]*workerInfo{}}
	for _, e := range earlier {
		t.w[e.ID] = &workerInfo{hb: heartbeat{Worker: e.ID, Host: e.Host, ToolVersion: e.ToolVersion,
			Concurrency: e.Concurrency, DNSConcurrency: e.DNSConcurrency},
			first: e.FirstSeen, last: e.LastSeen, domains: e.Domains, probes: e.Probes}
	}
	return t
}

// heard records a heartbeat; it returns the reason the worker refuses the
// scan the first time it says so, else "".
func (t *workerTable) heard(hb heartbeat, now time.Time) (newRefusal string) {
	st, knows := hb.Scans[t.scan]
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.w[hb.Worker]
	if w == nil {
		w = &workerInfo{first: now}
		t.w[hb.Worker] = w
	}
	w.hb, w.last = hb, now
	if !knows {
		return ""
	}
	w.dns = st.DNS
	if st.Refused != "" && w.refused == "" {
		w.refused = st.Refused
		if t.firstRefusal.IsZero() {
			t.firstRefusal = now
		}
		return st.Refused
	}
	return ""
}

// live counts the workers heard from lately that work on the scan, and
// those that refuse it.
func (t *workerTable) live(now time.Time) (working, refusing int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, w := range t.w {
		if now.Sub(w.last) > workerGone {
			continue
		}
		if _, knows := w.hb.Scans[t.scan]; !knows {
			continue
		}
		if w.refused != "" {
			refusing++
		} else {
			working++
		}
	}
	return working, refusing
}

// dnsConcurrency sums the DNS concurrency of the workers on the scan.
func (t *workerTable) dnsConcurrency(now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, w := range t.w {
		if _, knows := w.hb.Scans[t.scan]; knows && w.refused == "" && now.Sub(w.last) <= workerGone {
			n += w.hb.DNSConcurrency
		}
	}
	return n
}

// refusedOnly says, once grace has passed since the first refusal with no
// worker taking the scan meanwhile, why every worker refuses it.
func (t *workerTable) refusedOnly(now time.Time, grace time.Duration) (string, bool) {
	working, refusing := t.live(now)
	t.mu.Lock()
	defer t.mu.Unlock()
	if refusing == 0 || working > 0 || t.firstRefusal.IsZero() || now.Sub(t.firstRefusal) < grace {
		return "", false
	}
	var why []string
	for _, id := range slices.Sorted(maps.Keys(t.w)) {
		if w := t.w[id]; w.refused != "" {
			why = append(why, fmt.Sprintf("worker %s: %s", id, w.refused))
		}
	}
	return strings.Join(why, "; "), true
}

// dnssec is the manifest's "dnssec": how the workers' resolvers filled the
// DNSSEC columns (pipeline.DNSSECOption), "trusted|untrusted" when they
// differ, and "unknown" before any worker said.
func (t *workerTable) dnssec(policies bool) string {
	if !policies {
		return survey.DNSSECOff
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	seen := map[string]bool{}
	for _, w := range t.w {
		if d := w.hb.Scans[t.scan].DNSSEC; d != "" && w.refused == "" {
			seen[d] = true
		}
	}
	if len(seen) == 0 {
		return "unknown"
	}
	return strings.Join(slices.Sorted(maps.Keys(seen)), "|")
}

// credit counts rows a worker sent that the coordinator kept.
func (t *workerTable) credit(id string, domains, probes int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.w[id]
	if w == nil {
		w = &workerInfo{hb: heartbeat{Worker: id}, first: time.Now(), last: time.Now()}
		t.w[id] = w
	}
	w.domains += domains
	w.probes += probes
}

// dnsStats sums the scan's DNS counters over its workers.
func (t *workerTable) dnsStats() resolve.Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	var s resolve.Stats
	for _, w := range t.w {
		s.Queries += w.dns.Queries
		s.Retries += w.dns.Retries
		s.TCPFallbacks += w.dns.TCPFallbacks
		s.Timeouts += w.dns.Timeouts
		s.CacheHits += w.dns.CacheHits
		s.CacheMisses += w.dns.CacheMisses
	}
	return s
}

// manifest lists the workers that sent rows the coordinator kept.
func (t *workerTable) manifest() []survey.Worker {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []survey.Worker
	for _, id := range slices.Sorted(maps.Keys(t.w)) {
		w := t.w[id]
		if w.domains == 0 && w.probes == 0 {
			continue
		}
		out = append(out, survey.Worker{ID: id, Host: w.hb.Host, ToolVersion: w.hb.ToolVersion,
			Concurrency: w.hb.Concurrency, DNSConcurrency: w.hb.DNSConcurrency,
			FirstSeen: w.first.UTC(), LastSeen: w.last.UTC(), Domains: w.domains, Probes: w.probes})
	}
	return out
}
