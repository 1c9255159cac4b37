// Package tlsrpt holds what mxsurvey takes from SMTP TLS Reporting (RFC
// 8460): the result types of §4.3, which the analyzer uses as the names of
// what would stop a strict sender, and the parser of the `_smtp._tls` TXT
// record of §3 (is there exactly one valid record with at least one report
// URI).
//
// It does no I/O: the scanner stores the TXT RRset raw and the analyzer
// decides with ParseRecord, so the decision can be replayed on old scans and
// fuzzed.
package tlsrpt

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/mxsurvey/mxsurvey/analyze/internal/txtrecord"
)

// ResultType is an RFC 8460 §4.3 result type, spelled as a report spells it
// (and as registered with IANA under "STARTTLS Validation Result Types").
type ResultType string

// The result types, in the order of RFC 8460 §4.3.
const (
	// §4.3.1, negotiation failures.
	ResultSTARTTLSNotSupported    ResultType = "starttls-not-supported"
	ResultCertificateHostMismatch ResultType = "certificate-host-mismatch"
	ResultCertificateExpired      ResultType = "certificate-expired"
	ResultCertificateNotTrusted   ResultType = "certificate-not-trusted"
	ResultValidationFailure       ResultType = "validation-failure"
	// §4.3.2.1, DANE.
	ResultTLSAInvalid   ResultType = "tlsa-invalid"
	ResultDNSSECInvalid ResultType = "dnssec-invalid"
	ResultDANERequired  ResultType = "dane-required"
	// §4.3.2.2, MTA-STS.
	ResultSTSPolicyFetchError ResultType = "sts-policy-fetch-error"
	ResultSTSPolicyInvalid    ResultType = "sts-policy-invalid"
	ResultSTSWebPKIInvalid    ResultType = "sts-webpki-invalid"
)

// ResultTypes returns every result type in RFC 8460 order, so that a summary
// can list the ones that occurred zero times too. A function, not a variable,
// so no caller can change another's list.
func ResultTypes() []ResultType {
	return []ResultType{
		ResultSTARTTLSNotSupported, ResultCertificateHostMismatch, ResultCertificateExpired,
		ResultCertificateNotTrusted, ResultValidationFailure,
		ResultTLSAInvalid, ResultDNSSECInvalid, ResultDANERequired,
		ResultSTSPolicyFetchError, ResultSTSPolicyInvalid, ResultSTSWebPKIInvalid,
	}
}

// DateResult is the result type of a certificate used outside its validity
// period: certificate-not-trusted when the time is before its NotBefore,
// certificate-expired when after its NotAfter, "" when neither. DANE and
// MTA-STS verdicts both take it from here, so the two agree.
//
// §4.3.1 defines certificate-expired as "the certificate has expired": a
// certificate not yet valid has not, and certificate-not-trusted is the
// type that "covers multiple certificate-related failures that include,
// but are not limited to" the ones it names. Senders built on Go's
// crypto/x509 may say otherwise (its x509.Expired reason covers both
// sides, and mox reports certificate-expired for it); the survey follows
// the RFC's words. Not yet valid is checked first, as crypto/x509 does.
func DateResult(expired, notYetValid bool) ResultType {
	switch {
	case notYetValid:
		return ResultCertificateNotTrusted
	case expired:
		return ResultCertificateExpired
	}
	return ""
}

// Version is the tag a TLS-RPT record starts with (RFC 8460 §3, case-sensitive).
const Version = "v=TLSRPTv1"

// Errors of ParseRecord: the vocabulary a survey counts. For a sender all of
// them mean the same thing (the domain does not implement TLS-RPT); they
// differ in what the domain got wrong.
var (
	ErrNoRecord        = errors.New("tlsrpt: no v=TLSRPTv1 record")
	ErrMultipleRecords = errors.New("tlsrpt: more than one v=TLSRPTv1 record")
	ErrRecordSyntax    = errors.New("tlsrpt: record syntax error")
	// ErrNoSupportedRUA: the record parses, but no rua URI has a scheme
	// RFC 8460 §3 defines (mailto, https): nowhere to send a report.
	ErrNoSupportedRUA = errors.New("tlsrpt: no mailto: or https: rua URI")
)

// Record is a valid TLS-RPT record.
type Record struct {
	// RUA holds every URI of every "rua" field, in order, as written (still
	// percent-encoded). At least one has scheme mailto or https; others are
	// kept, since RFC 8460 §3 lets a reporter skip what it does not support.
	RUA []string
}

// ParseRecord decides what a sender makes of the TXT RRset at
// `_smtp._tls.<domain>`: one element per TXT RR, its character-strings
// already concatenated without spaces (RFC 8460 §3; the scanner stores them
// so). RRs that are not v=TLSRPTv1 records (SPF, site verifications) are
// ignored; if not exactly one remains the domain has no TLS-RPT (RFC 8460
// §3: "If the number of resulting records is not one"). Two RRs count as
// two even when their texts are equal (they differ in how the text was split
// into strings, or DNS repeated them).
//
// Decisions where RFC 8460 §3 leaves room: "rua" may appear more than once
// (its URIs are added up, as mox does); unknown fields are ignored but must
// follow the extension grammar; a URI is RFC 3986 characters with a scheme,
// with "," and "!" percent-encoded; WSP is allowed around the commas between
// URIs and nowhere else inside a field.
func ParseRecord(txts []string) (Record, error) {
	fields, err := txtrecord.One(txts, Version, txtrecord.Errors{None: ErrNoRecord, Many: ErrMultipleRecords, Syntax: ErrRecordSyntax})
	if err != nil {
		return Record{}, err
	}
	var r Record
	sawRUA := false
	for _, f := range fields {
		if f.Name != "rua" {
			if !txtrecord.IsValue(f.Value) {
				return Record{}, fmt.Errorf("%w: field %q: bad value %q", ErrRecordSyntax, f.Name, f.Value)
			}
			continue
		}
		sawRUA = true
		for _, u := range strings.Split(f.Value, ",") {
			u = strings.Trim(u, " \t")
			if err := checkURI(u); err != nil {
				return Record{}, fmt.Errorf("%w: rua: %w", ErrRecordSyntax, err)
			}
			r.RUA = append(r.RUA, u)
		}
	}
	if !sawRUA {
		return Record{}, fmt.Errorf("%w: no rua field", ErrRecordSyntax)
	}
	for _, u := range r.RUA {
		if supported(u) {
			return r, nil
		}
	}
	return Record{}, fmt.Errorf("%w: %s", ErrNoSupportedRUA, strings.Join(r.RUA, ", "))
}

// checkURI accepts an RFC 3986 URI as a report address: a scheme, then only
// URI characters (unreserved, reserved, pct-encoded), without the "," and
// "!" RFC 8460 §3 wants encoded. mailto: needs an addr-spec with "@" (RFC
// 6068), https: a host (RFC 8460 §3 posts reports there).
func checkURI(u string) error {
	scheme, rest, ok := strings.Cut(u, ":")
	if !ok || !isScheme(scheme) {
		return fmt.Errorf("%q has no scheme", u)
	}
	if rest == "" {
		return fmt.Errorf("%q is empty after the scheme", u)
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		switch {
		case c == '%':
			if i+2 >= len(rest) || !isHex(rest[i+1]) || !isHex(rest[i+2]) {
				return fmt.Errorf("%q has a bad percent-escape", u)
			}
			i += 2
		case c == ',' || c == '!' || !isURIChar(c):
			return fmt.Errorf("%q holds %q, not allowed unencoded", u, c)
		}
	}
	switch strings.ToLower(scheme) {
	case "mailto":
		addr, _, _ := strings.Cut(rest, "?")
		local, domain, ok := strings.Cut(addr, "@")
		if !ok || local == "" || domain == "" {
			return fmt.Errorf("%q is not a mail address", u)
		}
	case "https":
		p, err := url.Parse(u)
		if err != nil || p.Host == "" {
			return fmt.Errorf("%q has no host", u)
		}
	}
	return nil
}

func supported(u string) bool {
	scheme, _, _ := strings.Cut(u, ":")
	s := strings.ToLower(scheme)
	return s == "mailto" || s == "https"
}

func isScheme(s string) bool {
	if s == "" || !isAlpha(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlpha(c) && !isDigit(c) && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// isURIChar: unreserved and reserved characters of RFC 3986 §2.
func isURIChar(c byte) bool {
	return isAlpha(c) || isDigit(c) || strings.IndexByte("-._~:/?#[]@!$&'()*+,;=", c) >= 0
}

func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isHex(c byte) bool {
	return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
