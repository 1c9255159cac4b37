package domains

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// ErrInvalidDomain is wrapped by every error [Normalize] returns; the text
// after "invalid domain: " is a short reason.
var ErrInvalidDomain = errors.New("invalid domain")

// Limits of RFC 1035 §2.3.4 for a name in presentation form without the
// trailing dot.
const (
	maxNameLen  = 253
	maxLabelLen = 63
	// maxReasonLen caps the text of an error reason, which may quote input.
	maxReasonLen = 120
)

// idnaProfile converts Unicode names to A-labels. It is UTS #46 lookup
// mapping (lower-casing, NFC, full-width dots, non-transitional) with
// the RFC 5893 Bidi rule and the RFC 5892 ContextJ joiner rules, but:
//   - STD3 ASCII rules off: the ASCII check is done by checkHostname, which
//     tolerates underscores ("_dmarc.example.com") and gives clearer reasons;
//   - hyphen checks off: real top lists hold names such as
//     "r3---sn-abc.googlevideo.com" (hyphens in positions 3 and 4) that DNS
//     resolves fine;
//   - DNS length checks off: checkHostname does them, with clearer reasons.
//
// xn-- labels are still decoded and validated, so invalid Punycode is
// rejected. A Profile is safe for concurrent use.
var idnaProfile = idna.New(
	idna.MapForLookup(),
	idna.Transitional(false),
	idna.BidiRule(),
	idna.StrictDomainName(false),
	idna.CheckHyphens(false),
	idna.VerifyDNSLength(false),
)

func invalid(reason string) error {
	return fmt.Errorf("%w: %s", ErrInvalidDomain, reason)
}

// Normalize returns the canonical form of a domain name as scanned and stored:
// surrounding space trimmed, lower case, one trailing dot removed, Unicode
// labels converted to A-labels ("bücher.example" -> "xn--bcher-kva.example").
//
// It fails, with an error wrapping [ErrInvalidDomain] and a short reason, when
// the result is not a host name mail could be sent to:
//   - empty input or input that is not valid UTF-8;
//   - an empty label ("a..b", ".a.b", "a.b.."), a label longer
//     than 63 bytes or a name longer than 253 bytes (after IDNA);
//   - a character other than a-z, 0-9, '-' or '_' (spaces, '*', '/', '@', ...);
//     underscores are allowed anywhere but in the top-level label, since DNS
//     resolves such names and real lists hold them;
//   - a label that starts or ends with a hyphen ("-bad-.example",
//     "bad-.example"): RFC 5321 §4.1.2 wants a mail domain's labels to start
//     and end with a letter or digit, and IDNA (RFC 5891 §4.2.3.1) the same of
//     a U-label, so the Unicode form of an xn-- label is held to it too.
//     Hyphens inside a label stay valid, "r3---sn-abc.example" included;
//   - an IDNA error (disallowed code point, invalid Punycode, Bidi rule);
//   - a single label ("com", "localhost"): not a mail domain;
//   - an IP address literal ("192.0.2.1", "[2001:db8::1]", "::1"), or an
//     all-numeric or underscore-bearing top-level label ("1.2.3").
//
// Normalize is idempotent: a name it returns normalises to itself.
func Normalize(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", invalid("empty")
	}
	if !utf8.ValidString(s) {
		return "", invalid("not valid UTF-8")
	}
	if isIPLiteral(s) {
		return "", invalid("IP address literal")
	}
	var name string
	if isASCII(s) {
		name = strings.ToLower(s)
		if strings.Contains(name, "xn--") {
			// Validate Punycode labels; the result is ASCII too.
			a, err := idnaProfile.ToASCII(name)
			if err != nil {
				return "", idnaError(err)
			}
			name = a
		}
	} else {
		a, err := idnaProfile.ToASCII(s)
		if err != nil {
			return "", idnaError(err)
		}
		name = a
	}
	// One trailing dot (the root) is allowed; strip it after the IDNA mapping
	// so that a mapped dot (U+3002 IDEOGRAPHIC FULL STOP) counts too.
	name = strings.TrimSuffix(name, ".")
	if isIPLiteral(name) { // e.g. full-width digits mapped to ASCII
		return "", invalid("IP address literal")
	}
	if reason := checkHostname(name); reason != "" {
		return "", invalid(reason)
	}
	if strings.Contains(name, "xn--") {
		// The A-label "xn----dha" is LDH, but stands for the U-label "ü-".
		if u, err := idnaProfile.ToUnicode(name); err == nil {
			for _, label := range strings.Split(u, ".") {
				if reason := hyphenAtEdge(label); reason != "" {
					return "", invalid(reason)
				}
			}
		}
	}
	return name, nil
}

// hyphenAtEdge says why label breaks RFC 5321 §4.1.2's rule that a label
// starts and ends with a letter or digit, or returns "".
func hyphenAtEdge(label string) string {
	if strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
		return fmt.Sprintf("label %q starts or ends with a hyphen", truncate(label, maxReasonLen/2))
	}
	return ""
}

func idnaError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "idna: ") // for display only
	return fmt.Errorf("%w: IDNA: %s", ErrInvalidDomain, truncate(msg, maxReasonLen))
}

// checkHostname checks the syntax of an ASCII name without trailing dot and
// returns a reason when it is not valid, "" when it is.
func checkHostname(name string) string {
	if name == "" {
		return "empty"
	}
	labels := 0
	start := 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) && name[i] != '.' {
			c := name[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Sprintf("invalid character %q", name[i:i+1])
			}
			continue
		}
		switch n := i - start; {
		case n == 0:
			return "empty label"
		case n > maxLabelLen:
			return "label longer than 63 bytes"
		}
		if reason := hyphenAtEdge(name[start:i]); reason != "" {
			return reason
		}
		labels++
		start = i + 1
	}
	if len(name) > maxNameLen {
		return "name longer than 253 bytes"
	}
	if labels < 2 {
		return "single label"
	}
	tld := name[strings.LastIndexByte(name, '.')+1:]
	if strings.IndexByte(tld, '_') >= 0 {
		return "underscore in top-level label"
	}
	if strings.Trim(tld, "0123456789") == "" {
		return "numeric top-level label"
	}
	return ""
}

// isIPLiteral reports whether s is an IPv4 or IPv6 address, optionally in
// brackets, with an optional trailing dot.
func isIPLiteral(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if len(s) >= 2 && s[0] == '[' && s[len(s)-1] == ']' {
		s = s[1 : len(s)-1]
		s = strings.TrimPrefix(strings.TrimPrefix(s, "IPv6:"), "ipv6:")
	}
	_, err := netip.ParseAddr(s)
	return err == nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// truncate cuts s to at most n bytes at a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}
