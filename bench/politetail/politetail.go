// Package politetail measures a polite scan against its lower bound, from
// the dataset itself. With one connection at a time per address and a
// pause (-ip-interval) between the end of one and the start of the next,
// no scan can end before its busiest address has had every connection one
// after the other: the polite lower bound is the maximum over addresses of
// the sum of its probes' durations plus (targets - 1) intervals. On the
// real internet, where a tenant-style provider puts thousands of customer
// MX names on a few addresses, that bound, not CPU, decides how long a
// scan takes; the benchmark (bench/harness, "polite tail") reports the
// makespan next to it, with the timeline of the busiest addresses.
package politetail

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// Probe is one connection to an address, as its probe row records it.
type Probe struct {
	IP       string
	Start    time.Time
	Duration time.Duration
}

// Address is one address's share of the scan.
type Address struct {
	IP      string    `json:"ip"`
	Targets int       `json:"targets"`
	BusyS   float64   `json:"busy_s"`  // the sum of its probes' durations
	BoundS  float64   `json:"bound_s"` // busy_s plus (targets - 1) intervals
	First   time.Time `json:"first"`   // its first probe's start
	Last    time.Time `json:"last"`    // its last probe's end
	// Resolved is when resolution first gave a domain's MX host this
	// address (Read fills it): before, the scan could not know of it.
	Resolved time.Time `json:"resolved,omitzero"`
}

// Bound computes every address's work and returns the busiest top
// addresses by bound, largest first (ties by address), and the number of
// addresses. The bound of the scan is the first one's BoundS.
func Bound(probes []Probe, interval time.Duration, top int) ([]Address, int) {
	byIP := map[string]*Address{}
	for _, p := range probes {
		a := byIP[p.IP]
		end := p.Start.Add(p.Duration)
		if a == nil {
			a = &Address{IP: p.IP, First: p.Start, Last: end}
			byIP[p.IP] = a
		}
		a.Targets++
		a.BusyS += p.Duration.Seconds()
		if p.Start.Before(a.First) {
			a.First = p.Start
		}
		if end.After(a.Last) {
			a.Last = end
		}
	}
	all := make([]Address, 0, len(byIP))
	for _, a := range byIP {
		a.BoundS = a.BusyS + float64(a.Targets-1)*interval.Seconds()
		all = append(all, *a)
	}
	slices.SortFunc(all, func(a, b Address) int {
		return cmp.Or(cmp.Compare(b.BoundS, a.BoundS), cmp.Compare(a.IP, b.IP))
	})
	return all[:min(top, len(all))], len(all)
}

// Timeline is a finished scan measured against its polite lower bound.
type Timeline struct {
	Interval     time.Duration `json:"interval"`
	Rate         float64       `json:"rate"` // -rate, connections per second (0: none)
	Started      time.Time     `json:"started"`
	Ended        time.Time     `json:"ended"`
	FirstProbe   time.Time     `json:"first_probe"`
	LastProbe    time.Time     `json:"last_probe"`    // the last probe's end
	LastResolved time.Time     `json:"last_resolved"` // the last mx row's resolution
	Probes       int           `json:"probes"`        // connections (skipped targets have none)
	Addresses    int           `json:"addresses"`
	Busiest      []Address     `json:"busiest"`
}

// MakespanS is the scan's wall time, from its manifest.
func (t *Timeline) MakespanS() float64 { return t.Ended.Sub(t.Started).Seconds() }

// BoundS is the polite lower bound: the busiest address's work.
func (t *Timeline) BoundS() float64 {
	if len(t.Busiest) == 0 {
		return 0
	}
	return t.Busiest[0].BoundS
}

// RateBoundS is the other lower bound a polite scan has: every connection
// under -rate.
func (t *Timeline) RateBoundS() float64 {
	if t.Rate <= 0 {
		return 0
	}
	return float64(t.Probes) / t.Rate
}

// Read measures the complete scan in dir: its manifest (times, -ip-interval,
// -rate), its probe rows (every one that made a connection attempt) and its
// mx rows (when resolution ended). top is how many of the busiest addresses
// to keep.
func Read(dir string, top int) (*Timeline, error) {
	m, err := store.ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	if m.Status != survey.StatusComplete || m.Ended == nil {
		return nil, fmt.Errorf("%s: manifest status %q, want a complete scan", dir, m.Status)
	}
	t := &Timeline{Started: m.Started, Ended: *m.Ended}
	if v, ok := m.Options["ip_interval"].(string); ok {
		if t.Interval, err = time.ParseDuration(v); err != nil {
			return nil, fmt.Errorf("%s: manifest ip_interval %q: %w", dir, v, err)
		}
	}
	t.Rate, _ = m.Options["rate"].(float64) // absent or not a number: no rate bound
	var probes []Probe
	err = store.ReadAll(survey.ProbesDir(dir), func(r *survey.ProbeRow) error {
		if r.Outcome == survey.OutcomeSkipped {
			return nil
		}
		p := Probe{IP: r.IP, Start: r.StartedAt, Duration: time.Duration(r.DurationMS) * time.Millisecond}
		if t.FirstProbe.IsZero() || p.Start.Before(t.FirstProbe) {
			t.FirstProbe = p.Start
		}
		if end := p.Start.Add(p.Duration); end.After(t.LastProbe) {
			t.LastProbe = end
		}
		probes = append(probes, p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the probe rows of %s: %w", dir, err)
	}
	t.Probes = len(probes)
	t.Busiest, t.Addresses = Bound(probes, t.Interval, top)
	busiest := map[string]*Address{}
	for i := range t.Busiest {
		busiest[t.Busiest[i].IP] = &t.Busiest[i]
	}
	err = store.ReadAll(survey.MXDir(dir), func(r *survey.MXRow) error {
		if r.ResolvedAt.After(t.LastResolved) {
			t.LastResolved = r.ResolvedAt
		}
		if a := busiest[r.IP]; a != nil && (a.Resolved.IsZero() || r.ResolvedAt.Before(a.Resolved)) {
			a.Resolved = r.ResolvedAt
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the mx rows of %s: %w", dir, err)
	}
	return t, nil
}
