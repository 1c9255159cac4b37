package pipeline

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInputTotalCountsTheShard: a shard's progress total is the entries of
// the input that are its own (duplicates and invalid lines included, as the
// progress line counts them done), not the whole list.
func TestInputTotalCountsTheShard(t *testing.T) {
	var lines, keys []string
	lines = append(lines, "# a comment line is not an entry")
	for i := range 60 {
		d := fmt.Sprintf("domain%d.example", i)
		lines, keys = append(lines, d), append(keys, d)
	}
	lines, keys = append(lines, "domain7.example"), append(keys, "domain7.example") // a duplicate
	lines, keys = append(lines, "bad..name"), append(keys, invalidKey("bad..name"))
	path := filepath.Join(t.TempDir(), "list.txt")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	whole, err := inputTotal(Config{Input: path, Format: "auto"})
	if err != nil {
		t.Fatal(err)
	}
	if whole != int64(len(keys)) {
		t.Fatalf("whole list: total %d, want %d", whole, len(keys))
	}
	var sum int64
	for k := 1; k <= 3; k++ {
		shard := Shard{K: k, N: 3}
		want := int64(0)
		for _, key := range keys {
			if shard.includes(key) {
				want++
			}
		}
		got, err := inputTotal(Config{Input: path, Format: "auto", Shard: shard})
		if err != nil {
			t.Fatal(err)
		}
		if got != want || got == 0 || got == whole {
			t.Errorf("shard %s: total %d, want %d (of %d)", shard, got, want, whole)
		}
		sum += got
	}
	if sum != whole {
		t.Errorf("shards add up to %d, want %d", sum, whole)
	}
}

// The heap floor follows the count of the input and ends with Finish; a
// count that arrives after Finish (a short scan, a long input) sets none.
func TestHeapFloorEndsWithFinish(t *testing.T) {
	var s Scan
	s.setHeapFloor(1000)
	if s.stopFloor == nil {
		t.Fatal("no heap floor once the input is counted")
	}
	s.setHeapFloor(-1)
	if s.stopFloor != nil {
		t.Fatal("the heap floor outlived Finish")
	}
	s.setHeapFloor(1000)
	if s.stopFloor != nil {
		t.Fatal("a count after Finish set a heap floor")
	}
}
