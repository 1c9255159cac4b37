package gcmem

import (
	"runtime/debug"
	"testing"
	"time"
)

func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// The growth is lowered once busy connections are open and restored only
// below calm, to what it was before.
func TestThresholds(t *testing.T) {
	if !enabled {
		t.Skip("GOGC is set in the environment: gcmem leaves it alone")
	}
	before := debug.SetGCPercent(120)
	defer debug.SetGCPercent(before)
	var closes []func()
	openTo := func(n int) {
		for len(closes) < n {
			closes = append(closes, Open())
		}
		for len(closes) > n {
			closes[len(closes)-1]()
			closes = closes[:len(closes)-1]
		}
	}
	for _, step := range []struct {
		open, percent int
	}{
		{0, 120},
		{busy - 1, 120},
		{busy, busyPercent},
		{busy + 500, busyPercent},
		{calm, busyPercent}, // between the thresholds: stays lowered
		{calm - 1, 120},     // restored to what it was
		{busy - 1, 120},     // between the thresholds on the way up: stays
		{busy, busyPercent},
		{0, 120},
	} {
		openTo(step.open)
		if got := gcPercent(); got != step.percent {
			t.Fatalf("%d connections open: GC percent %d, want %d", step.open, got, step.percent)
		}
	}
}

func TestUserSettingLeftAlone(t *testing.T) {
	defer func(e bool) { enabled = e }(enabled)
	enabled = false
	before := debug.SetGCPercent(80)
	defer debug.SetGCPercent(before)
	var closes []func()
	for range busy + 1 {
		closes = append(closes, Open())
	}
	if got := gcPercent(); got != 80 {
		t.Errorf("with GOGC set, %d connections changed the GC percent to %d", busy+1, got)
	}
	for _, c := range closes {
		c()
	}
}

func TestFloorPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		floor, live uint64
		base, want  int
	}{
		{1024 * mib, 0, 100, 25500},       // before the first collection: the minimum heap, scaled
		{1024 * mib, 4 * mib, 100, 25500}, // goal 4 MiB x 256 = the floor
		{1024 * mib, 256 * mib, 100, 300}, // goal 256 x 4 = the floor
		{1024 * mib, 512 * mib, 100, 100}, // goal 2 x 512 = the floor, base's own
		{1024 * mib, 700 * mib, 100, 100}, // past half the floor: base's goal is larger
		{1024 * mib, 2048 * mib, 100, 100},
		{1024 * mib, 256 * mib, 400, 400}, // never below base
	} {
		if got := floorPercent(c.floor, c.live, c.base); got != c.want {
			t.Errorf("floorPercent(%d MiB, %d MiB, %d) = %d, want %d", c.floor/mib, c.live/mib, c.base, got, c.want)
		}
	}
}

// While a floor is set, the growth percent is raised for a live heap far
// below it, and stop restores the runtime's setting.
func TestHeapFloor(t *testing.T) {
	if !enabled {
		t.Skip("GOGC is set in the environment: gcmem leaves it alone")
	}
	before := debug.SetGCPercent(100)
	defer debug.SetGCPercent(before)
	stop := HeapFloor(1 << 40)
	deadline := time.Now().Add(5 * time.Second)
	for gcPercent() <= 100 {
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("GC percent still %d with a 1 TiB floor", gcPercent())
		}
		time.Sleep(floorPoll)
	}
	stop()
	if got := gcPercent(); got != 100 {
		t.Fatalf("after stop: GC percent %d, want 100", got)
	}
}

// Many open connections win over a floor, and the floor is back once they
// are fewer; with both gone, the setting is what it was before either.
func TestFloorWaitsForBusyConnections(t *testing.T) {
	if !enabled {
		t.Skip("GOGC is set in the environment: gcmem leaves it alone")
	}
	before := debug.SetGCPercent(120)
	defer debug.SetGCPercent(before)
	waitFor := func(what string, ok func(p int) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !ok(gcPercent()) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: GC percent %d", what, gcPercent())
			}
			time.Sleep(floorPoll)
		}
	}
	stop := HeapFloor(1 << 40)
	waitFor("a 1 TiB floor", func(p int) bool { return p > 120 })
	var closes []func()
	for range busy {
		closes = append(closes, Open())
	}
	waitFor("busy connections over a floor", func(p int) bool { return p == busyPercent })
	for _, c := range closes {
		c()
	}
	waitFor("the floor once the connections closed", func(p int) bool { return p > 120 })
	stop()
	if got := gcPercent(); got != 120 {
		t.Fatalf("after stop: GC percent %d, want 120", got)
	}
}
