package domains

import (
	"bufio"
	"fmt"
	"io"
	"strings"

	"github.com/miekg/dns"
)

// nextZone returns the next delegated name of a zone file: the owner of an NS
// record that is not the apex (the owner of the SOA record) and differs from
// the previous NS owner. Other records (SOA, glue A/AAAA, DS, ...) are skipped.
func (r *Reader) nextZone() (Entry, error) {
	for {
		rr, ok := r.zp.Next()
		if !ok {
			if err := r.zc.err; err != nil {
				// A read error (or an overlong line) surfaces from the
				// parser as whatever it makes of the cut input; report the
				// cause.
				return Entry{}, fmt.Errorf("datasets: parsing zone %s: %w", r.name, err)
			}
			if err := r.zp.Err(); err != nil {
				return Entry{}, fmt.Errorf("datasets: parsing zone %s: %w", r.name, err)
			}
			return Entry{}, io.EOF
		}
		h := rr.Header()
		switch h.Rrtype {
		case dns.TypeSOA:
			if r.apex == "" {
				r.apex = h.Name
			}
			continue
		case dns.TypeNS:
		default:
			continue
		}
		if strings.EqualFold(h.Name, r.apex) || strings.EqualFold(h.Name, r.prev) {
			continue
		}
		r.prev = h.Name
		r.records++
		// The parser gives absolute names; Input drops the root dot so it
		// reads like the other formats.
		in := strings.TrimSuffix(h.Name, ".")
		e := Entry{Line: r.zc.line(), Input: clean(in)}
		e.Domain, e.Err = normalizeEntry(in)
		return e, nil
	}
}

// lineCounter is the io.ByteReader the zone lexer reads from (it uses
// ReadByte when available). It counts newlines, so the line of the record
// just parsed is known, and bounds the line length.
type lineCounter struct {
	br    *bufio.Reader
	lines int  // newlines read
	col   int  // bytes since the last newline
	last  byte // last byte read
	max   int
	err   error // first error other than io.EOF
}

func (c *lineCounter) ReadByte() (byte, error) {
	if c.err != nil {
		return 0, c.err
	}
	b, err := c.br.ReadByte()
	if err != nil {
		if err != io.EOF {
			c.err = err
		}
		return 0, err
	}
	c.last = b
	if b == '\n' {
		c.lines++
		c.col = 0
	} else if c.col++; c.col > c.max {
		c.err = fmt.Errorf("line %d: %w", c.lines+1, ErrZoneLineTooLong)
		return 0, c.err
	}
	return b, nil
}

func (c *lineCounter) Read(p []byte) (int, error) {
	for i := range p {
		b, err := c.ReadByte()
		if err != nil {
			return i, err
		}
		p[i] = b
	}
	return len(p), nil
}

// line returns the 1-based line on which the last record read ends: the
// lexer stops right after the newline that ends a record.
func (c *lineCounter) line() int {
	if c.last == '\n' {
		return c.lines
	}
	return c.lines + 1
}
