// Package connlog reads the lab's connection log (mxsurvey lab -conn-log,
// lab.Config.ConnLog) and judges a scan's politeness from it: counted by
// the servers, not by the scanner that is being judged.
package connlog

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Conn is one SMTP connection as the lab saw it.
type Conn struct {
	Addr       string // the address dialed
	Client     string // the client's address
	Start, End time.Time
}

// Read parses a log: one "ADDRESS START END CLIENT" line per connection,
// times in Unix nanoseconds.
func Read(r io.Reader) ([]Conn, error) {
	var out []Conn
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) != 4 {
			return nil, fmt.Errorf("connection log line %d: %q: want 4 fields", n, sc.Text())
		}
		start, err1 := strconv.ParseInt(f[1], 10, 64)
		end, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || end < start {
			return nil, fmt.Errorf("connection log line %d: %q: bad times", n, sc.Text())
		}
		out = append(out, Conn{Addr: f[0], Client: f[3], Start: time.Unix(0, start), End: time.Unix(0, end)})
	}
	return out, sc.Err()
}

// ReadFile reads the log at path.
func ReadFile(path string) ([]Conn, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Read(f)
}

// Politeness is what the log says of the per-address limits.
type Politeness struct {
	Conns, Addrs int
	// MaxOpen is the most connections open at once to one address.
	MaxOpen int
	// MinStartGap is the shortest time between two starts of connections
	// to one address, MinIdle the shortest time from the end of one to the
	// start of the next (negative: they overlapped); both over every
	// address with two connections or more.
	MinStartGap, MinIdle time.Duration
	// Busiest is the address with the most connections, and how many.
	Busiest      string
	BusiestConns int
}

// Judge measures the per-address limits in conns.
func Judge(conns []Conn) Politeness {
	by := map[string][]Conn{}
	for _, c := range conns {
		by[c.Addr] = append(by[c.Addr], c)
	}
	p := Politeness{Conns: len(conns), Addrs: len(by), MinStartGap: time.Duration(1<<63 - 1), MinIdle: time.Duration(1<<63 - 1)}
	for addr, cs := range by {
		slices.SortFunc(cs, func(a, b Conn) int { return a.Start.Compare(b.Start) })
		if len(cs) > p.BusiestConns {
			p.Busiest, p.BusiestConns = addr, len(cs)
		}
		p.MaxOpen = max(p.MaxOpen, maxOpen(cs))
		for i := 1; i < len(cs); i++ {
			p.MinStartGap = min(p.MinStartGap, cs[i].Start.Sub(cs[i-1].Start))
			p.MinIdle = min(p.MinIdle, cs[i].Start.Sub(cs[i-1].End))
		}
	}
	return p
}

// maxOpen is the most of cs (sorted by start) open at one instant; a
// connection ending at the instant another starts is not open with it.
func maxOpen(cs []Conn) int {
	type ev struct {
		at    time.Time
		delta int
	}
	evs := make([]ev, 0, 2*len(cs))
	for _, c := range cs {
		evs = append(evs, ev{c.Start, 1}, ev{c.End, -1})
	}
	slices.SortFunc(evs, func(a, b ev) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.delta - b.delta // ends first
	})
	open, most := 0, 0
	for _, e := range evs {
		open += e.delta
		most = max(most, open)
	}
	return most
}

// Violations lists how p breaks the limits of at most perAddr connections
// at once to one address and, with perAddr 1, starts at least interval
// apart.
func (p Politeness) Violations(perAddr int, interval time.Duration) []string {
	var v []string
	if p.MaxOpen > perAddr {
		v = append(v, fmt.Sprintf("%d connections open at once to one address (limit %d)", p.MaxOpen, perAddr))
	}
	if perAddr == 1 && p.BusiestConns > 1 && p.MinStartGap < interval {
		v = append(v, fmt.Sprintf("two connections to one address started %v apart (interval %v)", p.MinStartGap, interval))
	}
	return v
}

// MaxInWindow is the most connection starts within any window of length w,
// over all addresses: what a global connection rate bounds.
func MaxInWindow(conns []Conn, w time.Duration) int {
	ts := make([]time.Time, len(conns))
	for i, c := range conns {
		ts[i] = c.Start
	}
	return MaxEventsInWindow(ts, w)
}

// MaxEventsInWindow is the most of ts within any window of length w.
func MaxEventsInWindow(ts []time.Time, w time.Duration) int {
	ts = slices.Clone(ts)
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	most, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= w {
			j++
		}
		most = max(most, i-j+1)
	}
	return most
}
