package analyze

import (
	"fmt"
	"io"
	"time"
)

// progress prints rows read and the rate, at most every interval, so a long
// analysis shows it is alive without flooding a terminal or a log file.
type progress struct {
	w        io.Writer
	what     string
	start    time.Time
	last     time.Time
	rows     int64
	interval time.Duration
}

func newProgress(w io.Writer, what string) *progress {
	now := time.Now()
	return &progress{w: w, what: what, start: now, last: now, interval: 2 * time.Second}
}

func (p *progress) add(n int) {
	p.rows += int64(n)
	if p.w == nil {
		return
	}
	if now := time.Now(); now.Sub(p.last) >= p.interval {
		p.last = now
		p.print(now)
	}
}

func (p *progress) done() {
	if p.w != nil {
		p.print(time.Now())
	}
}

func (p *progress) print(now time.Time) {
	secs := now.Sub(p.start).Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(p.rows) / secs
	}
	fmt.Fprintf(p.w, "analyze: %s: %d rows read (%.0f rows/s)\n", p.what, p.rows, rate)
}
