package gcmem

import (
	"runtime/debug"
	"testing"
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
