package survey

import (
	"crypto/tls"
	"slices"
	"strings"
)

// TLSGroup is one key exchange group of the IANA TLS Supported Groups
// registry (RFC 8446 §4.2.7, RFC 8422 §5.1.1) that Go's crypto/tls can
// negotiate, with every spelling mxsurvey writes or reads for it.
//
// The dataset names a group the way docs/schema.md promised from schema
// version 1 on and the way a mail administrator reads it: the NIST curves as
// FIPS 186 and RFC 8446's prose name them (P-256, not secp256r1 or Go's
// CurveP256), X25519 as RFC 7748 writes it, and the hybrid post-quantum
// groups by their registry names, which have no other.
type TLSGroup struct {
	// ID is the registry codepoint, as sent on the wire.
	ID tls.CurveID
	// Name is the tls_group column's value and the manifest's tls_groups
	// spelling.
	Name string
	// IANA is the registry's description of the codepoint.
	IANA string
	// GoName is what tls.CurveID.String() returns: the tls_group value of
	// scans written before this vocabulary, which the analyzer still reads.
	GoName string
	// Aliases are further spellings -tls-groups accepts, besides Name, IANA
	// and GoName (all matched ignoring case): the short forms older command
	// lines used and OpenSSL's own curve name.
	Aliases []string
}

// tlsGroups is the vocabulary, in Go's default preference order. It is
// documented, column for column, in docs/schema.md's "Key exchange groups"
// table, which tlsgroups_test.go holds to this list.
var tlsGroups = [...]TLSGroup{
	{ID: tls.X25519MLKEM768, Name: "X25519MLKEM768", IANA: "X25519MLKEM768", GoName: "X25519MLKEM768"},
	{ID: tls.SecP256r1MLKEM768, Name: "SecP256r1MLKEM768", IANA: "SecP256r1MLKEM768", GoName: "SecP256r1MLKEM768"},
	{ID: tls.SecP384r1MLKEM1024, Name: "SecP384r1MLKEM1024", IANA: "SecP384r1MLKEM1024", GoName: "SecP384r1MLKEM1024"},
	{ID: tls.X25519, Name: "X25519", IANA: "x25519", GoName: "X25519"},
	{ID: tls.CurveP256, Name: "P-256", IANA: "secp256r1", GoName: "CurveP256", Aliases: []string{"p256", "prime256v1"}},
	{ID: tls.CurveP384, Name: "P-384", IANA: "secp384r1", GoName: "CurveP384", Aliases: []string{"p384"}},
	{ID: tls.CurveP521, Name: "P-521", IANA: "secp521r1", GoName: "CurveP521", Aliases: []string{"p521"}},
}

// TLSGroups returns the vocabulary, a copy the caller may keep.
func TLSGroups() []TLSGroup {
	out := slices.Clone(tlsGroups[:])
	for i := range out {
		out[i].Aliases = slices.Clone(out[i].Aliases)
	}
	return out
}

// TLSGroupName is the tls_group value for a negotiated group. A codepoint
// outside the vocabulary cannot be negotiated by a Go client that offered
// only groups it knows; should a newer Go learn one before this list does,
// the value is Go's own spelling ("CurveID(N)" for one Go cannot name
// either), so the row still says which group it was.
func TLSGroupName(id tls.CurveID) string {
	for _, g := range tlsGroups {
		if g.ID == id {
			return g.Name
		}
	}
	return id.String()
}

// LookupTLSGroup finds a group by any of its spellings, ignoring case and
// surrounding space: Name, IANA, GoName or an alias.
func LookupTLSGroup(s string) (TLSGroup, bool) {
	s = strings.TrimSpace(s)
	for _, g := range tlsGroups {
		if strings.EqualFold(s, g.Name) || strings.EqualFold(s, g.IANA) || strings.EqualFold(s, g.GoName) ||
			slices.ContainsFunc(g.Aliases, func(a string) bool { return strings.EqualFold(s, a) }) {
			return g, true
		}
	}
	return TLSGroup{}, false
}

// CanonicalTLSGroup maps a tls_group value as stored, in this vocabulary
// or in Go's spelling of older scans, to this vocabulary's Name. Anything
// else (empty, or a group this list lacks) is returned unchanged.
func CanonicalTLSGroup(stored string) string {
	if stored == "" {
		return ""
	}
	for _, g := range tlsGroups {
		if stored == g.Name || stored == g.GoName {
			return g.Name
		}
	}
	return stored
}
