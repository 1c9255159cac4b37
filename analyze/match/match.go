// Package match decides whether a certificate names a host, following the
// RFC 6125 rules for DNS-IDs (§6.4) as a mail client should apply them to an
// MX host (RFC 7672 §3.2.3, RFC 8461 §4.1). It does no I/O and keeps no state,
// so the analyzer and its tests can call it on any pair of strings.
//
// The rules, in the order they are applied:
//   - comparison ignores ASCII case and one trailing dot;
//   - a host in Unicode (U-labels) is converted to A-labels first; a pattern
//     is compared as presented, because certificates carry A-labels;
//   - "*" is allowed only as the whole left-most label and matches exactly
//     one non-empty label; partial wildcards ("f*.example.com") never match;
//   - a wildcard needs at least two labels after it, and those must not form a
//     public suffix ("*.co.uk", "*.com" never match);
//   - when a certificate has SAN dNSNames its subject CN is ignored;
//   - IP addresses, address literals and empty hosts never match a name.
package match

import (
	"crypto/x509"
	"net/netip"
	"strings"

	"golang.org/x/net/idna"
	"golang.org/x/net/publicsuffix"
)

// Names returns the names a client may match against: the SAN dNSNames when
// the certificate has any, otherwise its subject CN (fromCN reports that
// fallback, which RFC 6125 §6.4.4 allows only in the absence of DNS-IDs).
// Names are lowercased without a trailing dot so they can be counted and
// compared as the dataset stores host names.
func Names(leaf *x509.Certificate) (names []string, fromCN bool) {
	if leaf == nil {
		return nil, false
	}
	if len(leaf.DNSNames) > 0 {
		names = make([]string, 0, len(leaf.DNSNames))
		for _, n := range leaf.DNSNames {
			names = append(names, normalize(n))
		}
		return names, false
	}
	if cn := normalize(leaf.Subject.CommonName); cn != "" {
		return []string{cn}, true
	}
	return nil, false
}

// Matches reports whether leaf is valid for host. viaWildcard is true only
// when no exact name matched, so that callers can tell certificates that name
// the host from those that merely cover it.
func Matches(leaf *x509.Certificate, host string) (ok bool, viaWildcard bool) {
	names, _ := Names(leaf)
	return matchAny(names, host)
}

// MatchAny is Matches over names already extracted with Names, so that a
// caller checking several hosts against one certificate extracts them once.
func MatchAny(names []string, host string) (ok bool, viaWildcard bool) {
	return matchAny(names, host)
}

func matchAny(names []string, host string) (ok, viaWildcard bool) {
	h, valid := canonicalHost(host)
	if !valid {
		return false, false
	}
	wild := false
	for _, n := range names {
		m, w := matchCanonical(n, h)
		if m && !w {
			return true, false
		}
		wild = wild || m
	}
	return wild, wild
}

// MatchName compares one presented identifier (a SAN dNSName or CN) with the
// host a client intended to reach.
func MatchName(pattern, host string) (ok, viaWildcard bool) {
	h, valid := canonicalHost(host)
	if !valid {
		return false, false
	}
	return matchCanonical(pattern, h)
}

func matchCanonical(pattern, h string) (ok, viaWildcard bool) {
	p := normalize(pattern)
	if p == "" || isAddress(p) || !labelsNonEmpty(p) {
		return false, false
	}
	if !strings.Contains(p, "*") {
		return p == h, false
	}
	rest, found := strings.CutPrefix(p, "*.")
	if !found || strings.Contains(rest, "*") {
		return false, false // partial or non-left-most wildcard
	}
	if !strings.Contains(rest, ".") {
		return false, false // "*.com": fewer than two labels after the wildcard
	}
	if ps, _ := publicsuffix.PublicSuffix(rest); ps == rest {
		return false, false // "*.co.uk": would cover a whole registry
	}
	first, hrest, found := strings.Cut(h, ".")
	if !found || first == "" || hrest != rest {
		return false, false
	}
	return true, true
}

// canonicalHost turns the host a client meant to reach into the form
// patterns are compared with, or reports that no name can match it.
func canonicalHost(host string) (string, bool) {
	h := normalize(host)
	if h == "" || isAddress(h) || strings.Contains(h, "*") {
		return "", false
	}
	if !isASCII(h) {
		a, err := idna.Lookup.ToASCII(h)
		if err != nil {
			return "", false // not a valid IDN: nothing in a certificate names it
		}
		h = strings.ToLower(a)
	}
	if !labelsNonEmpty(h) {
		return "", false
	}
	return h, true
}

// normalize lowercases ASCII only: certificate names are ASCII by rule, and
// Unicode case folding belongs to IDNA processing, not to comparison.
func normalize(s string) string {
	s = strings.TrimSuffix(s, ".")
	b := []byte(nil)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			if b == nil {
				b = []byte(s)
			}
			b[i] = c + ('a' - 'A')
		}
	}
	if b == nil {
		return s
	}
	return string(b)
}

// isAddress catches IP addresses and the bracketed address literals that
// SMTP banners use ("[192.0.2.1]", "[IPv6:2001:db8::1]"): RFC 6125 leaves IP
// identities to iPAddress SANs, which this package does not handle.
func isAddress(s string) bool {
	if strings.HasPrefix(s, "[") {
		return true
	}
	// What netip.ParseAddr accepts has a colon (IPv6) or only digits and
	// dots (IPv4). Names are neither: answering without the parse spares
	// an error value (an allocation) per name checked, millions per scan.
	if !strings.Contains(s, ":") && strings.Trim(s, "0123456789.") != "" {
		return false
	}
	_, err := netip.ParseAddr(s)
	return err == nil
}

func labelsNonEmpty(s string) bool {
	return !strings.HasPrefix(s, ".") && !strings.HasSuffix(s, ".") && !strings.Contains(s, "..")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
