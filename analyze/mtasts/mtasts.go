// Package mtasts decides, from what the scanner recorded, what a sender
// implementing SMTP MTA Strict Transport Security (RFC 8461) would make of a
// domain: is there exactly one valid `_mta-sts` TXT record (§3.1), does the
// fetched policy parse (§3.2), and which MX hosts does it allow (§4.1).
//
// It does no I/O, so the analyzer can replay the decision on any scan and
// the parsers can be fuzzed: the scanner fetches and stores the TXT RRset and
// the HTTPS response raw (docs/schema.md, policies table).
//
// # Mapping onto RFC 8460 result types
//
// Every error of ParsePolicy is sts-policy-invalid (ResultType). The fetch
// columns decide the two other MTA-STS result types; the analyzer applies
// them in this order, the first that holds naming the failure, because a
// sender's HTTPS client meets them in this order:
//
//  1. sts-policy-fetch-error: no TLS session (sts_tls_version empty:
//     timeout, refused, reset, unreachable, TLS handshake failures,
//     no_address, dns, blocked, ...);
//  2. sts-webpki-invalid: the HTTPS certificate chain (sts_cert_chain) is not
//     trusted by the roots given, is outside its validity at sts_started_at,
//     or does not match "mta-sts.<domain>" (RFC 8461 §3.3);
//  3. sts-policy-fetch-error: a failure after the handshake (sts_error_class
//     not empty: a body over 1 MiB, a timeout reading it) or an HTTP status
//     other than 200, redirects included (§3.3: "HTTP 3xx redirects MUST NOT
//     be followed");
//  4. sts-policy-invalid: a media type other than text/plain (§3.3: senders
//     SHOULD check it; the body arrived but cannot be taken as a policy), a
//     body over MaxPolicyBytes (sts_body_truncated: the scanner keeps at most
//     64 KiB, so a truncated body is ErrPolicyTooLarge without parsing), or
//     any ParsePolicy error.
//
// (package analyze, stsPolicy, applies it).
//
// A TXT record problem (ErrNoRecord, ErrMultipleRecords, ErrRecordSyntax) is
// not a failure type at all: the sender treats the domain as having no
// MTA-STS policy (RFC 8461 §3.1, §5), and a report would say no-policy-found.
package mtasts

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mxsurvey/mxsurvey/analyze/internal/txtrecord"
	"github.com/mxsurvey/mxsurvey/analyze/tlsrpt"
)

// Version is the tag an MTA-STS TXT record starts with (RFC 8461 §3.1,
// case-sensitive).
const Version = "v=STSv1"

// MaxPolicyBytes bounds a policy body. RFC 8461 §3.3 asks senders to limit
// what they read and mox stops at 64 KiB; the scanner keeps the same amount.
const MaxPolicyBytes = 64 << 10

// MaxMaxAge is the largest max_age RFC 8461 §3.2 allows (about one year).
const MaxMaxAge = 31557600

// Errors of ParseRecord. None of them is an RFC 8460 failure: each means the
// domain has no MTA-STS policy a sender would use.
var (
	ErrNoRecord        = errors.New("mtasts: no v=STSv1 record")
	ErrMultipleRecords = errors.New("mtasts: more than one v=STSv1 record")
	ErrRecordSyntax    = errors.New("mtasts: record syntax error")
)

// Errors of ParsePolicy: each maps to sts-policy-invalid, and they tell a
// survey what kind of mistake the policy makes.
var (
	ErrPolicyTooLarge = errors.New("mtasts: policy larger than 64 KiB")
	ErrPolicyEncoding = errors.New("mtasts: policy is not UTF-8")
	ErrPolicySyntax   = errors.New("mtasts: policy syntax error")
	// ErrPolicyMissing: version, mode or max_age is absent, or there is no
	// mx line while the mode is not none (§3.2: "If any field is not
	// specified, the policy SHALL be treated as invalid").
	ErrPolicyMissing = errors.New("mtasts: policy field missing")
)

// ResultType is the RFC 8460 result type of an error of ParsePolicy
// (sts-policy-invalid), or "" for nil and for errors that are not policy
// errors.
func ResultType(err error) tlsrpt.ResultType {
	for _, e := range []error{ErrPolicyTooLarge, ErrPolicyEncoding, ErrPolicySyntax, ErrPolicyMissing} {
		if errors.Is(err, e) {
			return tlsrpt.ResultSTSPolicyInvalid
		}
	}
	return ""
}

// Record is a valid MTA-STS TXT record.
type Record struct {
	ID string // 1-32 letters and digits; identifies the policy version
}

// ParseRecord decides what a sender makes of the TXT RRset at
// `_mta-sts.<domain>`: one element per TXT RR, its character-strings already
// concatenated without spaces (RFC 8461 §3.1; the scanner stores them so).
//
// RRs that are not v=STSv1 records (SPF, verification tokens) are ignored
// (§3.1: "records that do not begin with "v=STSv1;" are discarded"; a record
// with WSP before the ";", which the grammar allows, counts as beginning so,
// as in mox). If not exactly one remains, there is no policy; two RRs count
// as two even when their texts are equal. The one record must follow the
// grammar exactly: an id field of 1-32 ALPHA/DIGIT, other fields of the
// extension grammar (ignored), optional WSP only around ";", no trailing
// WSP. A repeated id is ignored after the first, as §3.2 says of policy
// fields (mox reads it so too).
func ParseRecord(txts []string) (Record, error) {
	fields, err := txtrecord.One(txts, Version, txtrecord.Errors{None: ErrNoRecord, Many: ErrMultipleRecords, Syntax: ErrRecordSyntax})
	if err != nil {
		return Record{}, err
	}
	var r Record
	for _, f := range fields {
		if f.Name == "id" {
			if !isID(f.Value) {
				return Record{}, fmt.Errorf("%w: id %q is not 1-32 letters and digits", ErrRecordSyntax, f.Value)
			}
			if r.ID == "" {
				r.ID = f.Value
			}
			continue
		}
		if !txtrecord.IsValue(f.Value) {
			return Record{}, fmt.Errorf("%w: field %q: bad value %q", ErrRecordSyntax, f.Name, f.Value)
		}
	}
	if r.ID == "" {
		return Record{}, fmt.Errorf("%w: no id field", ErrRecordSyntax)
	}
	return r, nil
}

func isID(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) {
			return false
		}
	}
	return true
}

// Mode is a policy's mode (RFC 8461 §5).
type Mode string

// The modes.
const (
	ModeEnforce Mode = "enforce" // do not deliver to MX hosts that fail
	ModeTesting Mode = "testing" // deliver anyway, report failures (TLS-RPT)
	ModeNone    Mode = "none"    // the domain withdraws its policy
)

// Policy is a valid MTA-STS policy.
type Policy struct {
	Mode   Mode
	MaxAge int64    // seconds, 0..MaxMaxAge
	MX     []string // the mx patterns as written, in order
}

// ParsePolicy parses a policy body (RFC 8461 §3.2). It never panics and
// reads nothing past MaxPolicyBytes.
//
// The grammar, strictly: lines end in LF or CRLF (the last may lack one);
// each line is "key:" *WSP value *WSP; no blank lines; version STSv1, mode
// enforce|testing|none and max_age (1-10 digits, at most MaxMaxAge) are
// required; mx values are ["*."] Domain in the RFC 5321 sense (letters,
// digits, inner hyphens, no trailing dot; A-labels, not U-labels); at least
// one mx unless the mode is none. Keys are case-sensitive: "Mode:" is an
// unknown key. Unknown keys are ignored but need a value of visible
// characters (UTF-8 allowed). For version, mode and max_age only the first
// occurrence counts (§3.2 "all entries except for the first SHOULD be
// ignored"): a later duplicate with a bad value is ignored, not an error.
func ParsePolicy(body []byte) (Policy, error) {
	if len(body) > MaxPolicyBytes {
		return Policy{}, fmt.Errorf("%w: %d bytes", ErrPolicyTooLarge, len(body))
	}
	if !utf8.Valid(body) {
		return Policy{}, ErrPolicyEncoding
	}
	var p Policy
	seen := map[string]bool{}
	lines := bytes.Split(body, []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1] // the optional final line ending
	}
	for i, raw := range lines {
		n := i + 1
		line := string(bytes.TrimSuffix(raw, []byte("\r")))
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return Policy{}, fmt.Errorf("%w: line %d: no \":\" in %q", ErrPolicySyntax, n, clip(line))
		}
		if !txtrecord.IsName(key) {
			return Policy{}, fmt.Errorf("%w: line %d: bad key %q", ErrPolicySyntax, n, clip(key))
		}
		value = strings.Trim(value, " \t")
		first := !seen[key]
		seen[key] = true
		switch {
		case key == "mx":
			if !isMXPattern(value) {
				return Policy{}, fmt.Errorf("%w: line %d: bad mx %q", ErrPolicySyntax, n, clip(value))
			}
			p.MX = append(p.MX, value)
		case key == "version" && first:
			if value != "STSv1" {
				return Policy{}, fmt.Errorf("%w: line %d: version %q, not STSv1", ErrPolicySyntax, n, clip(value))
			}
		case key == "mode" && first:
			switch m := Mode(value); m {
			case ModeEnforce, ModeTesting, ModeNone:
				p.Mode = m
			default:
				return Policy{}, fmt.Errorf("%w: line %d: mode %q", ErrPolicySyntax, n, clip(value))
			}
		case key == "max_age" && first:
			age, ok := parseMaxAge(value)
			if !ok {
				return Policy{}, fmt.Errorf("%w: line %d: max_age %q, not 0..%d", ErrPolicySyntax, n, clip(value), MaxMaxAge)
			}
			p.MaxAge = age
		default: // unknown keys, and repeats of the single-valued ones
			if !isPolicyValue(value) {
				return Policy{}, fmt.Errorf("%w: line %d: bad value for %q: %q", ErrPolicySyntax, n, key, clip(value))
			}
		}
	}
	for _, k := range []string{"version", "mode", "max_age"} {
		if !seen[k] {
			return Policy{}, fmt.Errorf("%w: no %s", ErrPolicyMissing, k)
		}
	}
	if len(p.MX) == 0 && p.Mode != ModeNone {
		return Policy{}, fmt.Errorf("%w: no mx with mode %s", ErrPolicyMissing, p.Mode)
	}
	return p, nil
}

func parseMaxAge(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 10 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return 0, false
		}
	}
	v, err := strconv.ParseInt(s, 10, 64) // 10 digits always fit
	return v, err == nil && v <= MaxMaxAge
}

// isPolicyValue: sts-policy-ext-value, visible ASCII or non-ASCII UTF-8
// (the body is known to be valid UTF-8), inner spaces allowed, no tabs or
// other controls. Leading and trailing WSP were trimmed by the caller.
func isPolicyValue(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// isMXPattern: ["*."] Domain, where Domain = sub-domain *("." sub-domain)
// and sub-domain = Let-dig [Ldh-str] (RFC 5321 §4.1.2).
func isMXPattern(s string) bool {
	s = strings.TrimPrefix(s, "*.")
	if s == "" {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || !isAlnum(label[0]) || !isAlnum(label[len(label)-1]) {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlnum(c) && c != '-' {
				return false
			}
		}
	}
	return true
}

// Matches reports whether host is allowed by one of the policy's mx
// patterns (MatchMX).
func (p Policy) Matches(host string) bool {
	for _, pat := range p.MX {
		if MatchMX(pat, host) {
			return true
		}
	}
	return false
}

// MatchMX reports whether an MX host name matches one mx pattern of a
// policy (RFC 8461 §4.1): case-insensitive, one trailing dot ignored on
// either side, and a pattern "*.rest" matches exactly one non-empty label
// followed by ".rest" ("*.example.com" matches "mx.example.com", not
// "example.com" nor "a.b.example.com").
//
// This is not the certificate rule of package match (RFC 6125): MTA-STS
// patterns have no public-suffix restriction, and the names compared are
// the DNS names of MX hosts, already A-labels. Names with empty labels never
// match.
func MatchMX(pattern, host string) bool {
	p := strings.TrimSuffix(pattern, ".")
	h := strings.TrimSuffix(host, ".")
	if !labelsOK(h) {
		return false
	}
	if rest, wild := strings.CutPrefix(p, "*."); wild {
		_, hrest, found := strings.Cut(h, ".")
		return found && labelsOK(rest) && !strings.Contains(rest, "*") && strings.EqualFold(hrest, rest)
	}
	return labelsOK(p) && !strings.Contains(p, "*") && strings.EqualFold(p, h)
}

func labelsOK(s string) bool {
	return s != "" && !strings.HasPrefix(s, ".") && !strings.HasSuffix(s, ".") && !strings.Contains(s, "..")
}

// clip keeps error messages short when a server sends a huge line.
func clip(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || isDigit(c)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
