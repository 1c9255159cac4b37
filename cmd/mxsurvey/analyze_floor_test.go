package main

import "testing"

// The heap floor follows the rows to read, so a small analysis keeps a
// small heap, and stops at the cap.
func TestHeapFloor(t *testing.T) {
	for _, c := range []struct {
		rows int64
		want uint64
	}{
		{0, 0},
		{434_000, 434_000 * bytesPerRow},           // 100,000 lab domains: about the default's peak
		{5_677_313, maxHeapFloor},                  // a million real-like probe rows and their mx rows
		{1 << 40, maxHeapFloor},                    // no overflow past the cap
		{maxHeapFloor / bytesPerRow, maxHeapFloor}, // the edge
	} {
		if got := heapFloor(c.rows); got != c.want {
			t.Errorf("heapFloor(%d) = %d, want %d", c.rows, got, c.want)
		}
	}
}
