package world

import (
	"crypto/tls"
	"slices"
)

// serverGroups are the key exchange groups the lab's TLS servers allow:
// all of those Go 1.26 implements, so that a scan offering any of them
// completes its handshakes. crypto/tls's CurvePreferences only filters: the
// server picks a post-quantum hybrid when the client supports one, then a
// group the client sent a key share for, then in Go's fixed order (TLS
// 1.3); in TLS 1.2, where the hybrids do not exist, the first of the
// client's list the server allows.
var serverGroups = []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024,
	tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}

// ServerGroups are the groups the lab's TLS servers allow (a copy).
func ServerGroups() []tls.CurveID { return slices.Clone(serverGroups) }

// assumeClientGroups is the scanner the truth assumes (-tls-groups
// default): Go's default client, which offers these groups in this order
// (also Go's fixed order), with key shares for the first and its
// classical fallback (assumeClientKeyShares).
var (
	assumeClientGroups = []tls.CurveID{tls.X25519MLKEM768, tls.SecP256r1MLKEM768, tls.SecP384r1MLKEM1024,
		tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521}
	assumeClientKeyShares = []tls.CurveID{tls.X25519MLKEM768, tls.X25519}
)

// groupNames spell the groups as docs/schema.md does.
var groupNames = map[tls.CurveID]string{
	tls.X25519MLKEM768: "X25519MLKEM768", tls.SecP256r1MLKEM768: "SecP256r1MLKEM768",
	tls.SecP384r1MLKEM1024: "SecP384r1MLKEM1024", tls.X25519: "X25519",
	tls.CurveP256: "P-256", tls.CurveP384: "P-384", tls.CurveP521: "P-521",
}

// GroupName is a group as the dataset's tls_group spells it.
func GroupName(g tls.CurveID) string { return groupNames[g] }

func hybrid(g tls.CurveID) bool {
	return g == tls.X25519MLKEM768 || g == tls.SecP256r1MLKEM768 || g == tls.SecP384r1MLKEM1024
}

// NegotiatedGroup is the group a lab server and the assumed client agree on
// (the tls_group of the row), by the rules above. Go's fixed order is its
// default client's order.
func NegotiatedGroup(maxTLS12 bool) string {
	var both []tls.CurveID
	for _, g := range assumeClientGroups {
		if slices.Contains(serverGroups, g) && !(maxTLS12 && hybrid(g)) {
			both = append(both, g)
		}
	}
	if len(both) == 0 {
		return ""
	}
	if !maxTLS12 {
		rank := func(g tls.CurveID) int { // a hybrid first, then one with a key share
			r := 0
			if !hybrid(g) {
				r += 2
			}
			if !slices.Contains(assumeClientKeyShares, g) {
				r++
			}
			return r
		}
		slices.SortStableFunc(both, func(a, b tls.CurveID) int { return rank(a) - rank(b) })
	}
	return GroupName(both[0])
}

// TLSVersion is the tls_version of a completed handshake with a client
// offering TLS 1.3.
func TLSVersion(maxTLS12 bool) string {
	if maxTLS12 {
		return "TLS 1.2"
	}
	return "TLS 1.3"
}
