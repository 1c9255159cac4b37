package domains

// Dedup remembers the domains seen so far so that a domain listed twice is
// scanned once. The scan keeps its other sets of a scan's size the same way:
// the targets (ip|mx_host) queued or probed, and the MX hosts whose tlsa row
// is written.
//
// It stores a 64-bit FNV-1a hash of each domain, not the domain: a Go map of
// uint64 keys costs about 10–20 bytes per domain (8-byte slots, growth by
// doubling), so 10 million domains take 100–200 MB where exact strings would
// take about 50 bytes each. The price is that two different domains may share
// a hash, and the second would then be taken for a repeat and skipped. For n
// domains the chance of any collision is about n²/2⁶⁵: 3·10⁻⁶ for 10 million
// domains, 7·10⁻⁴ for the 160 million names of the .com zone. The hash is
// deterministic, so a run is reproducible. A map of integers also has no
// pointers for the garbage collector to follow at every cycle (the targets
// of a million lab domains took 61 MB as a map of strings).
//
// Callers pass the normalised form ([Entry.Domain]); Dedup does not normalise.
// A Dedup is not safe for concurrent use: one goroutine (the one reading the
// input) owns it. The zero value is not usable; call [NewDedup].
type Dedup struct {
	seen map[uint64]struct{}
}

// NewDedup returns an empty Dedup.
func NewDedup() *Dedup {
	return &Dedup{seen: make(map[uint64]struct{})}
}

// Seen reports whether domain was passed to Seen before, and records it if
// not.
func (d *Dedup) Seen(domain string) bool {
	h := fnv1a(domain)
	if _, ok := d.seen[h]; ok {
		return true
	}
	d.seen[h] = struct{}{}
	return false
}

// Has reports whether domain was passed to Seen, without recording it. Any
// number of goroutines may call Has once no goroutine calls Seen any more.
func (d *Dedup) Has(domain string) bool {
	_, ok := d.seen[fnv1a(domain)]
	return ok
}

// Len returns the number of distinct domains recorded.
func (d *Dedup) Len() int { return len(d.seen) }

// fnv1a is the 64-bit FNV-1a hash, inlined to avoid allocating for strings.
func fnv1a(s string) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime64
	}
	return h
}
