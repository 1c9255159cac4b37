package pipeline

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/domains"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// counters are updated by every stage and read by progress and the
// manifest; atomics and one small mutex keep the hot path cheap.
type counters struct {
	start time.Time

	inputTotal                      atomic.Int64
	read, duplicates, invalid       atomic.Int64
	resumedSkip                     atomic.Int64
	resolved, mxRows, targets       atomic.Int64
	probes, inFlight                atomic.Int64
	resumedMXRows, resumedProbeRows atomic.Int64
	pol                             policyCounts

	mu           sync.Mutex
	outcomes     map[string]int64
	errorClasses map[string]int64
	dnsStatuses  map[string]int64
}

// inputTotal is the progress line's denominator: the entries this run will
// read that are its own. Without a shard, domains.Count's quick line count;
// with one, the input is read as the scan reads it and each entry's key
// tested against the shard, since a shard's share of a list is only about
// 1/N and a total of the whole list would leave its progress near 1/N at
// the end. Reading costs about a microsecond per line, from a goroutine of
// its own.
func inputTotal(cfg Config) (int64, error) {
	if cfg.Shard.N <= 1 {
		return domains.Count(cfg.Input, cfg.Format)
	}
	in, err := domains.Open(cfg.Input, cfg.Format)
	if err != nil {
		return 0, err
	}
	defer in.Close() // read-only: a close error cannot lose data
	var n int64
	for {
		e, err := in.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("counting input: %w", err)
		}
		if cfg.Shard.includes(entryKey(e)) {
			n++
		}
	}
}

func (c *counters) init() {
	c.start = time.Now()
	c.outcomes = map[string]int64{}
	c.errorClasses = map[string]int64{}
	c.dnsStatuses = map[string]int64{}
}

func (c *counters) probe(row survey.ProbeRow) {
	c.probes.Add(1)
	c.mu.Lock()
	c.outcomes[row.Outcome]++
	if row.ErrorClass != "" {
		c.errorClasses[row.ErrorClass]++
	}
	c.mu.Unlock()
}

func (c *counters) dnsStatus(s string) {
	c.mu.Lock()
	c.dnsStatuses[s]++
	c.mu.Unlock()
}

// every calls fn every d in a goroutine of its own until stop is called;
// stop returns once fn is no longer running.
func every(d time.Duration, fn func()) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				fn()
			}
		}
	})
	return func() { close(quit); wg.Wait() }
}

// progressLine is what a researcher watching a long scan needs to know
// whether it is healthy and when it will end; Run prints one every
// ProgressEvery on the progress writer (stderr from the command).
func (s *Scan) progressLine() string {
	c := &s.c
	el := time.Since(c.start).Seconds()
	done := c.resolved.Load() + c.invalid.Load() + c.duplicates.Load() + c.resumedSkip.Load()
	var b strings.Builder
	fmt.Fprintf(&b, "mxsurvey: %s domains %d", time.Since(c.start).Round(time.Second), done)
	if total := c.inputTotal.Load(); total > 0 {
		fmt.Fprintf(&b, "/%d (%.0f%%)", total, 100*float64(done)/float64(total))
		if done > 0 && done < total {
			eta := time.Duration(float64(total-done) / (float64(done) / el) * float64(time.Second))
			fmt.Fprintf(&b, " eta %s", eta.Round(time.Second))
		}
	}
	fmt.Fprintf(&b, " | %.0f dom/s | probes %d done, %d in flight, %d queued, %.0f/s | dns %d queries",
		float64(c.resolved.Load())/el, c.probes.Load(), c.inFlight.Load(), s.Queued(),
		float64(c.probes.Load())/el, s.wiring.DNSStats().Queries)
	if s.cfg.Policies {
		fmt.Fprintf(&b, " | policies %d, tlsa %d, sts fetches %d", c.pol.rows.Load(), c.pol.tlsaRows.Load(), c.pol.fetched.Load())
	}
	if s.wiring.Note != nil {
		b.WriteString(" | ")
		b.WriteString(s.wiring.Note())
	}
	c.mu.Lock()
	if len(c.errorClasses) > 0 {
		b.WriteString(" | errors")
		for _, k := range slices.Sorted(maps.Keys(c.errorClasses)) {
			fmt.Fprintf(&b, " %s=%d", k, c.errorClasses[k])
		}
	}
	c.mu.Unlock()
	return b.String()
}

// summary prints the end-of-scan summary on the progress writer.
func (s *Scan) summary(m *survey.Manifest) {
	if s.cfg.Progress == nil {
		return
	}
	w := s.cfg.Progress
	fmt.Fprintf(w, "mxsurvey: scan %s in %s: %d input lines, %d domains resolved, %d invalid, %d duplicates; %d targets, %d probe rows written\n",
		m.Status, time.Since(s.c.start).Round(time.Millisecond), m.Counts["input_lines"], m.Counts["domains_resolved"],
		m.Counts["invalid"], m.Counts["duplicates"], m.Counts["targets"], m.Counts["probe_rows_written"])
	fmt.Fprintf(w, "mxsurvey: outcomes %s\n", formatCounts(m.Outcomes))
	if len(m.ErrorClasses) > 0 {
		fmt.Fprintf(w, "mxsurvey: error classes %s\n", formatCounts(m.ErrorClasses))
	}
	fmt.Fprintf(w, "mxsurvey: dns %s\n", formatCounts(m.DNSStatuses))
	if s.cfg.Policies {
		fmt.Fprintf(w, "mxsurvey: policies: %d policies rows, %d tlsa rows written, %d MTA-STS policies fetched; dnssec %v\n",
			m.Counts["policy_rows_written"], m.Counts["tlsa_rows_written"], m.Counts["sts_fetches"], m.Options["dnssec"])
	}
	fmt.Fprintf(w, "mxsurvey: dataset in %s\n", s.cfg.Out)
}

func formatCounts(m map[string]int64) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}
