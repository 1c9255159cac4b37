// Package txtrecord parses the TXT record grammar that MTA-STS (RFC 8461
// §3.1) and TLS-RPT (RFC 8460 §3) share, so that both packages read records
// the same way: a version tag first, then ";"-separated name=value fields,
// optional WSP (space or tab) around each ";", one optional trailing ";",
// and field names of the form (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".").
//
// It does not know either protocol's fields: each caller checks the values
// of the fields it defines and uses IsValue for the others. A ";" always ends
// a field, even where a URI could hold one (RFC 8460 asks for ",", "!" to be
// percent-encoded in URIs; a ";" would have to be as well, as mox assumes).
package txtrecord

import (
	"errors"
	"fmt"
	"strings"
)

// Field is one name=value pair after the version tag, both as written.
type Field struct {
	Name, Value string
}

// ErrSyntax is wrapped by every syntax error of One; the message says where the
// grammar was broken.
var ErrSyntax = errors.New("record syntax")

// Errors are the caller's own errors for the three ways an RRset fails, so
// that each protocol keeps its vocabulary.
type Errors struct {
	None, Many, Syntax error
}

// One returns the fields of the one record of txts meant for version:
// e.None if there is none, e.Many if there are several (RFC 8461 §3.1 and
// RFC 8460 §3: "If the number of resulting records is not one"; two RRs
// count as two even when their texts are equal), e.Syntax wrapping
// ErrSyntax if it breaks the grammar.
func One(txts []string, version string, e Errors) ([]Field, error) {
	recs := selectRecords(txts, version)
	switch {
	case len(recs) == 0:
		return nil, e.None
	case len(recs) > 1:
		return nil, fmt.Errorf("%w (%d)", e.Many, len(recs))
	}
	f, err := fields(recs[0], version)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", e.Syntax, err)
	}
	return f, nil
}

// selectRecords returns the records of an RRset meant for version (for
// example "v=STSv1"), in order.
//
// Both RFCs say records "that do not begin with" the version followed by ";"
// are discarded. The grammar allows WSP before that ";" (sts-sep, field-delim),
// so a record counts when the version is followed by ";", WSP or nothing at
// all: "v=STSv1 ; id=1" and a bare "v=STSv1" are selected (the latter to fail
// the grammar and be reported as invalid, not as absent), "v=STSv10;" is not.
// Each element of txts is one TXT RR with its character-strings already
// concatenated without separators (RFC 8461 §3.1, RFC 8460 §3), which is how
// the scanner stores them.
func selectRecords(txts []string, version string) []string {
	var out []string
	for _, t := range txts {
		rest, ok := strings.CutPrefix(t, version)
		if ok && (rest == "" || rest[0] == ';' || isWSP(rest[0])) {
			out = append(out, t)
		}
	}
	return out
}

// fields checks that rec is version followed by at least one field and
// returns the fields in order. Names are checked; values are returned as
// written (non-empty), for the caller's grammar.
func fields(rec, version string) ([]Field, error) {
	parts := strings.Split(rec, ";")
	last := len(parts) - 1
	// WSP is allowed only next to a ";": trim it there and nowhere else.
	for i := range parts {
		if i > 0 {
			parts[i] = strings.TrimLeft(parts[i], " \t")
		}
		if i < last {
			parts[i] = strings.TrimRight(parts[i], " \t")
		}
	}
	if parts[0] != version {
		return nil, fmt.Errorf("%w: does not start with %q and a \";\"", ErrSyntax, version)
	}
	if last > 0 && parts[last] == "" {
		parts = parts[:last] // the one optional trailing separator
	} else if l := parts[last]; l != "" && isWSP(l[len(l)-1]) {
		return nil, fmt.Errorf("%w: white space at the end without a \";\"", ErrSyntax)
	}
	if len(parts) == 1 {
		return nil, fmt.Errorf("%w: no field after %q", ErrSyntax, version)
	}
	out := make([]Field, 0, len(parts)-1)
	for i, p := range parts[1:] {
		name, value, ok := strings.Cut(p, "=")
		switch {
		case p == "":
			return nil, fmt.Errorf("%w: empty field %d (\";;\")", ErrSyntax, i+1)
		case !ok:
			return nil, fmt.Errorf("%w: field %d %q has no \"=\"", ErrSyntax, i+1, p)
		case !IsName(name):
			return nil, fmt.Errorf("%w: field %d: bad name %q", ErrSyntax, i+1, name)
		case value == "":
			return nil, fmt.Errorf("%w: field %q has an empty value", ErrSyntax, name)
		}
		out = append(out, Field{Name: name, Value: value})
	}
	return out, nil
}

// IsName reports whether s is a field name: (ALPHA / DIGIT) then up to 31 of
// ALPHA / DIGIT / "_" / "-" / "." (sts-ext-name, tlsrpt-ext-name).
func IsName(s string) bool {
	if len(s) == 0 || len(s) > 32 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// IsValue reports whether s is an extension value: one or more of %x21-3A /
// %x3C / %x3E-7E, that is visible ASCII except "=" and ";" (sts-ext-value,
// tlsrpt-ext-value).
func IsValue(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '=' || c == ';' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isWSP(c byte) bool { return c == ' ' || c == '\t' }
