package politetail

import (
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/store/storetest"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

var t0 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
func sec(s float64) time.Duration {
	return time.Duration(s * float64(time.Second))
}

func TestBound(t *testing.T) {
	probes := []Probe{
		// 127.0.0.1: 3 probes, 0.5+0.5+1 s busy, 2 intervals of 1 s: 4 s.
		{"127.0.0.1", at(10), sec(0.5)},
		{"127.0.0.1", at(0), sec(0.5)},
		{"127.0.0.1", at(20), sec(1)},
		// 127.0.0.2: one long probe, no interval: 5 s, the busiest.
		{"127.0.0.2", at(3), sec(5)},
		// 127.0.0.3: 4 s, as 127.0.0.1: ties go by address.
		{"127.0.0.3", at(1), sec(1)},
		{"127.0.0.3", at(3), sec(1)},
	}
	for _, tc := range []struct {
		name     string
		interval time.Duration
		top      int
		want     []Address
	}{
		{"interval 1s", time.Second, 3, []Address{
			{IP: "127.0.0.2", Targets: 1, BusyS: 5, BoundS: 5, First: at(3), Last: at(8)},
			{IP: "127.0.0.1", Targets: 3, BusyS: 2, BoundS: 4, First: at(0), Last: at(21)},
			{IP: "127.0.0.3", Targets: 2, BusyS: 2, BoundS: 3, First: at(1), Last: at(4)},
		}},
		{"interval 2s, top 1", 2 * time.Second, 1, []Address{
			{IP: "127.0.0.1", Targets: 3, BusyS: 2, BoundS: 6, First: at(0), Last: at(21)},
		}},
		{"more wanted than there are", 0, 10, []Address{
			{IP: "127.0.0.2", Targets: 1, BusyS: 5, BoundS: 5, First: at(3), Last: at(8)},
			{IP: "127.0.0.1", Targets: 3, BusyS: 2, BoundS: 2, First: at(0), Last: at(21)},
			{IP: "127.0.0.3", Targets: 2, BusyS: 2, BoundS: 2, First: at(1), Last: at(4)},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, n := Bound(probes, tc.interval, tc.top)
			if n != 3 {
				t.Errorf("%d addresses, want 3", n)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d addresses, want %d: %+v", len(got), len(tc.want), got)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("address %d: got %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
	if got, n := Bound(nil, time.Second, 10); len(got) != 0 || n != 0 {
		t.Errorf("no probes: got %v, %d", got, n)
	}
}

// TestRead reads a dataset written by the store, as a scan writes it:
// skipped targets (no connection) do not count, the interval and rate
// come from the manifest.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	probes := []survey.ProbeRow{
		{IP: "127.0.0.1", StartedAt: at(1), DurationMS: 500, Outcome: survey.OutcomeOK},
		{IP: "127.0.0.1", StartedAt: at(3), DurationMS: 250, Outcome: "connect"},
		{IP: "127.0.0.2", StartedAt: at(2), DurationMS: 1000, Outcome: survey.OutcomeOK},
		{IP: "10.0.0.1", Outcome: survey.OutcomeSkipped},
	}
	mx := []survey.MXRow{{Domain: "a.test", IP: "127.0.0.1", ResolvedAt: at(0.75)}, {Domain: "b.test", IP: "127.0.0.2", ResolvedAt: at(1.5)},
		{Domain: "c.test", IP: "127.0.0.1", ResolvedAt: at(0.5)}}
	if err := storetest.WriteTable(survey.ProbesDir(dir), probes); err != nil {
		t.Fatal(err)
	}
	if err := storetest.WriteTable(survey.MXDir(dir), mx); err != nil {
		t.Fatal(err)
	}
	ended := at(10)
	m := &survey.Manifest{Started: at(0), Ended: &ended, Status: survey.StatusComplete,
		Options: map[string]any{"ip_interval": "1.5s", "rate": 2.0}}
	if err := store.WriteManifest(dir, m); err != nil {
		t.Fatal(err)
	}
	tl, err := Read(dir, 10)
	if err != nil {
		t.Fatal(err)
	}
	if tl.Probes != 3 || tl.Addresses != 2 {
		t.Errorf("%d probes at %d addresses, want 3 at 2", tl.Probes, tl.Addresses)
	}
	// 127.0.0.1: 0.75 s of probes + 1.5 s interval = 2.25 s.
	if tl.BoundS() != 2.25 || tl.Busiest[0].IP != "127.0.0.1" {
		t.Errorf("bound %v at %s, want 2.25 at 127.0.0.1", tl.BoundS(), tl.Busiest[0].IP)
	}
	if tl.MakespanS() != 10 || tl.RateBoundS() != 1.5 {
		t.Errorf("makespan %v, rate bound %v; want 10, 1.5", tl.MakespanS(), tl.RateBoundS())
	}
	if !tl.FirstProbe.Equal(at(1)) || !tl.LastProbe.Equal(at(3.25)) || !tl.LastResolved.Equal(at(1.5)) {
		t.Errorf("first probe %v, last probe end %v, last resolved %v", tl.FirstProbe, tl.LastProbe, tl.LastResolved)
	}
	if !tl.Busiest[0].Resolved.Equal(at(0.5)) || !tl.Busiest[1].Resolved.Equal(at(1.5)) {
		t.Errorf("first resolved: %v, %v; want 0.5 s, 1.5 s", tl.Busiest[0].Resolved, tl.Busiest[1].Resolved)
	}

	m.Status = survey.StatusInterrupted
	if err := store.WriteManifest(dir, m); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(dir, 10); err == nil {
		t.Error("an interrupted scan was measured")
	}
}
