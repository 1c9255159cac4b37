package analyze

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
)

// Comparison is compare.json: every numeric figure of two analyses side by
// side. A value is null when the older summary lacks the key (an older
// analyzer) or a name fell outside a truncated top list, so that "unknown" is
// never shown as a change from or to zero.
type Comparison struct {
	Old     ScanInfo         `json:"old_scan"`
	New     ScanInfo         `json:"new_scan"`
	Hosts   map[string]Delta `json:"hosts"`
	Domains map[string]Delta `json:"domains"`
	// TLSRPTResults compares summary.json's tlsrpt_results.
	TLSRPTResults map[string]Delta            `json:"tlsrpt_results,omitempty"`
	Top           map[string]map[string]Delta `json:"top"`

	old *Summary // for the report's percentages
}

// Delta is one figure in both analyses.
type Delta struct {
	Old   *int64 `json:"old"`
	New   *int64 `json:"new"`
	Delta *int64 `json:"delta"`
}

func newDelta(old, cur *int64) Delta {
	d := Delta{Old: old, New: cur}
	if old != nil && cur != nil {
		v := *cur - *old
		d.Delta = &v
	}
	return d
}

func lookup(m map[string]int64, k string) *int64 {
	if v, ok := m[k]; ok {
		return &v
	}
	return nil
}

func compare(old, cur *Summary) *Comparison {
	c := &Comparison{
		Old: old.Scan, New: cur.Scan,
		Hosts:   map[string]Delta{},
		Domains: map[string]Delta{},
		Top:     map[string]map[string]Delta{},
		old:     old,
	}
	deltas := func(out map[string]Delta, figs []figure, old, cur map[string]int64) {
		for _, f := range figs {
			if d := newDelta(lookup(old, f.Key), lookup(cur, f.Key)); d.Old != nil || d.New != nil {
				out[f.Key] = d
			}
		}
	}
	deltas(c.Hosts, hostFigures[:], old.Hosts, cur.Hosts)
	deltas(c.Domains, domainFigures[:], old.Domains, cur.Domains)
	if old.TLSRPTResults != nil || cur.TLSRPTResults != nil {
		c.TLSRPTResults = map[string]Delta{}
		deltas(c.TLSRPTResults, resultFigures(), old.TLSRPTResults, cur.TLSRPTResults)
	}
	for _, t := range topDefs {
		o, n := old.Top[t.Name], cur.Top[t.Name]
		m := map[string]Delta{}
		for _, e := range o.Entries {
			m[e.Name] = Delta{}
		}
		for _, e := range n.Entries {
			m[e.Name] = Delta{}
		}
		for name := range m {
			m[name] = newDelta(topCount(o, name), topCount(n, name))
		}
		c.Top[t.Name] = m
	}
	return c
}

// topCount is a name's count, 0 when a complete list lacks it, and unknown
// when the list was truncated.
func topCount(t TopList, name string) *int64 {
	for _, e := range t.Entries {
		if e.Name == name {
			v := e.Count
			return &v
		}
	}
	if t.Other > 0 {
		return nil
	}
	var zero int64
	return &zero
}

// loadOld reads the older side of a comparison: a summary.json as written by
// an earlier run, or a scan directory analyzed now with the same trust store
// (so a change in the figures is a change in the servers, not in the roots).
func loadOld(ctx context.Context, opts Options, roots *x509.CertPool) (*Summary, error) {
	st, err := os.Stat(opts.Compare)
	if err != nil {
		return nil, fmt.Errorf("compare: %w", err)
	}
	if !st.IsDir() {
		data, err := os.ReadFile(opts.Compare)
		if err != nil {
			return nil, fmt.Errorf("compare: %w", err)
		}
		var s Summary
		if err := json.Unmarshal(data, &s); err != nil {
			return nil, fmt.Errorf("compare: parsing %s: %w", opts.Compare, err)
		}
		if s.Hosts == nil && s.Domains == nil {
			return nil, fmt.Errorf("compare: %s is not a summary.json", opts.Compare)
		}
		return &s, nil
	}
	return Analyze(ctx, Options{
		Dirs:     []string{opts.Compare},
		Roots:    roots,
		TopN:     opts.TopN,
		Workers:  opts.Workers,
		Progress: opts.Progress,
		Logger:   opts.Logger,
	})
}
