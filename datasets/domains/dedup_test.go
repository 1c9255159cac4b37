package domains

import (
	"fmt"
	"testing"
)

func TestDedup(t *testing.T) {
	d := NewDedup()
	steps := []struct {
		domain string
		seen   bool
	}{
		{"example.com", false},
		{"example.org", false},
		{"example.com", true},
		{"www.example.com", false},
		{"example.org", true},
		{"", false},
		{"", true},
	}
	for i, s := range steps {
		if got := d.Seen(s.domain); got != s.seen {
			t.Errorf("step %d: Seen(%q) = %v, want %v", i, s.domain, got, s.seen)
		}
	}
	if d.Len() != 4 {
		t.Errorf("Len() = %d, want 4", d.Len())
	}
	if !d.Has("example.org") || d.Has("example.net") || d.Has("example.net") || d.Len() != 4 {
		t.Errorf("Has: a domain not seen is not recorded by asking, one seen is found")
	}
}

func TestDedupManyDistinct(t *testing.T) {
	const n = 100_000
	d := NewDedup()
	for i := range n {
		if d.Seen(fmt.Sprintf("d%d.example", i)) {
			t.Fatalf("d%d.example reported as seen on first sight", i)
		}
	}
	for i := range n {
		if !d.Seen(fmt.Sprintf("d%d.example", i)) {
			t.Fatalf("d%d.example not reported as seen", i)
		}
	}
}

func TestFNV1a(t *testing.T) {
	// Published FNV-1a 64 test vectors.
	for s, want := range map[string]uint64{"": 0xcbf29ce484222325, "a": 0xaf63dc4c8601ec8c, "foobar": 0x85944171f73967e8} {
		if got := fnv1a(s); got != want {
			t.Errorf("fnv1a(%q) = %#x, want %#x", s, got, want)
		}
	}
}
