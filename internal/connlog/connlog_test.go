package connlog

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// The judge must see what a scan could do wrong, or a politeness test
// built on it could not fail.
func TestJudge(t *testing.T) {
	line := func(addr string, startMS, endMS int) string {
		return fmt.Sprintf("%s %d %d 127.0.0.1\n", addr, int64(startMS)*1e6, int64(endMS)*1e6)
	}
	tests := []struct {
		name       string
		log        string
		perAddr    int
		interval   time.Duration
		violations int
		maxOpen    int
	}{
		{"polite", line("a", 0, 100) + line("a", 400, 500) + line("b", 50, 450), 1, 300 * time.Millisecond, 0, 1},
		{"overlap", line("a", 0, 100) + line("a", 50, 500), 1, 0, 1, 2},
		{"overlap and too soon", line("a", 0, 100) + line("a", 50, 500), 1, 300 * time.Millisecond, 2, 2},
		{"too soon", line("a", 0, 100) + line("a", 200, 300), 1, 300 * time.Millisecond, 1, 1},
		{"end meets start", line("a", 0, 100) + line("a", 100, 200), 1, 0, 0, 1},
		{"two allowed", line("a", 0, 100) + line("a", 50, 500) + line("a", 60, 70), 2, 0, 1, 3},
		{"one address once", line("a", 0, 100), 1, time.Hour, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conns, err := Read(strings.NewReader(tt.log))
			if err != nil {
				t.Fatal(err)
			}
			p := Judge(conns)
			if v := p.Violations(tt.perAddr, tt.interval); len(v) != tt.violations || p.MaxOpen != tt.maxOpen {
				t.Errorf("violations %q, max open %d; want %d violations, max open %d", v, p.MaxOpen, tt.violations, tt.maxOpen)
			}
		})
	}
	if _, err := Read(strings.NewReader("a 1 2\n")); err == nil {
		t.Error("a line of 3 fields was read")
	}
	if _, err := Read(strings.NewReader("a 5 2 c\n")); err == nil {
		t.Error("a connection ending before it starts was read")
	}
}

func TestMaxEventsInWindow(t *testing.T) {
	at := func(ms ...int) []time.Time {
		var ts []time.Time
		for _, m := range ms {
			ts = append(ts, time.Unix(0, int64(m)*1e6))
		}
		return ts
	}
	if n := MaxEventsInWindow(at(0, 500, 999, 1000, 1001, 3000), time.Second); n != 4 {
		t.Errorf("got %d, want 4 (500..1001)", n)
	}
}
