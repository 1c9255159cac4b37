// Package guard decides which addresses a scan may contact. An internet scan
// is a guest: an MX record pointing at 127.0.0.1, 10.0.0.1 or
// 169.254.169.254 must not turn the scanner against its own infrastructure,
// and operators who asked not to be scanned stay on a blocklist.
//
// Special-purpose ranges follow the IANA IPv4 and IPv6 Special-Purpose
// Address Registries (RFC 6890 and successors). An -allow range lifts the
// special-purpose ban (the lab lives on loopback); a blocklist entry is
// absolute and wins over -allow.
package guard

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
)

// specialPurpose lists ranges never contacted unless allowed.
var specialPurpose = mustPrefixes(
	// IPv4
	"0.0.0.0/8",       // "this network"
	"10.0.0.0/8",      // private (RFC 1918)
	"100.64.0.0/10",   // shared address space (CGN)
	"127.0.0.0/8",     // loopback
	"169.254.0.0/16",  // link-local, cloud metadata
	"172.16.0.0/12",   // private
	"192.0.0.0/24",    // IETF protocol assignments
	"192.0.2.0/24",    // documentation
	"192.31.196.0/24", // AS112
	"192.52.193.0/24", // AMT
	"192.88.99.0/24",  // deprecated 6to4 relay anycast
	"192.168.0.0/16",  // private
	"192.175.48.0/24", // AS112 direct delegation
	"198.18.0.0/15",   // benchmarking
	"198.51.100.0/24", // documentation
	"203.0.113.0/24",  // documentation
	"224.0.0.0/4",     // multicast
	"240.0.0.0/4",     // reserved, and the limited broadcast address
	// IPv6
	"::/128",         // unspecified
	"::1/128",        // loopback
	"::ffff:0:0/96",  // IPv4-mapped (checked as IPv4 after unmapping)
	"64:ff9b:1::/48", // local-use IPv4/IPv6 translation
	"100::/64",       // discard-only
	"2001::/23",      // IETF protocol assignments (Teredo, ORCHID, ...)
	"2001:db8::/32",  // documentation
	"2002::/16",      // 6to4: embeds an arbitrary IPv4 address
	"3fff::/20",      // documentation
	"5f00::/16",      // SRv6 SIDs
	"fc00::/7",       // unique local
	"fe80::/10",      // link-local
	"ff00::/8",       // multicast
)

func mustPrefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// Reasons returned by Policy.Check, recorded in the probe row's error text.
const (
	ReasonSpecialPurpose = "special-purpose address"
	ReasonBlocklisted    = "blocklisted address"
	ReasonInvalid        = "invalid address"
)

// Policy is immutable after construction and safe for concurrent use.
type Policy struct {
	allow []netip.Prefix
	block []netip.Prefix
	also  *Policy // And: must allow too
}

// New returns a policy that allows the given ranges despite being
// special-purpose and refuses the blocked ranges always.
func New(allow, block []netip.Prefix) *Policy {
	return &Policy{allow: allow, block: block}
}

// Check reports whether addr may be contacted, and if not, why.
func (p *Policy) Check(addr netip.Addr) (ok bool, reason string) {
	if !addr.IsValid() {
		return false, ReasonInvalid
	}
	addr = addr.Unmap().WithZone("")
	if contains(p.block, addr) {
		return false, ReasonBlocklisted
	}
	if contains(specialPurpose, addr) && !contains(p.allow, addr) {
		return false, ReasonSpecialPurpose
	}
	if p.also != nil {
		return p.also.Check(addr)
	}
	return true, ""
}

// And is a policy that allows an address only when p and q both do: a
// cluster worker's own allow list and blocklist on top of the scan's, which
// the scan cannot widen.
func (p *Policy) And(q *Policy) *Policy {
	c := *p
	if c.also != nil {
		c.also = c.also.And(q)
	} else {
		c.also = q
	}
	return &c
}

func contains(prefixes []netip.Prefix, addr netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// ParsePrefix accepts a CIDR or a bare address (a /32 or /128).
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: %w", s, err)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid address or CIDR %q: %w", s, err)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// ReadBlocklist reads one CIDR or address per line; '#' starts a comment.
func ReadBlocklist(path string) ([]netip.Prefix, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading blocklist: %w", err)
	}
	defer f.Close()
	return parseBlocklist(f, path)
}

func parseBlocklist(r io.Reader, name string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		if strings.TrimSpace(text) == "" {
			continue
		}
		p, err := ParsePrefix(text)
		if err != nil {
			return nil, fmt.Errorf("blocklist %s line %d: %w", name, line, err)
		}
		out = append(out, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading blocklist %s: %w", name, err)
	}
	return out, nil
}
