// Package dane decides whether a mail server's certificate chain, as the
// scanner recorded it, satisfies the server's TLSA records the way a sender
// doing DANE for SMTP would check it (RFC 7672 §3, with RFC 6698 §2 for the
// record and RFC 7218 for the names of its fields, RFC 7671 §5 for the
// operational rules).
//
// It does no I/O and trusts what it is given: whether the TLSA RRset was
// DNSSEC-secure, and which names the certificate may carry (the reference
// identifiers of RFC 7672 §3.2.2), are the caller's facts from the dataset.
//
// What it checks, per usable record (Usable, RFC 7672 §3.1):
//
//   - DANE-EE(3), §3.1.1: the leaf matches (selector 0: the certificate's
//     DER; 1: its SubjectPublicKeyInfo; matching type 0: equal, 1: SHA-256,
//     2: SHA-512). Names and dates are ignored. The leaf need not be a
//     certificate crypto/x509 accepts: the match reads the DER directly.
//   - DANE-TA(2), §3.1.2: a certificate of the chain other than the leaf
//     matches (OpenSSL, and so Postfix, matches trust-anchor records only
//     above depth 0); when none does and the record carries the whole trust
//     anchor (2 0 0, a certificate, or 2 1 0, a public key), that anchor is
//     used although the server did not send it (RFC 7671 §5.2.2). The leaf
//     must then chain to the anchor through the certificates as sent
//     (issuer name equal to the parent's subject, the parent's signature,
//     the parent a CA; signature algorithms crypto/x509 accepts, so no MD5
//     or SHA-1), every certificate of that path (the anchor's own too, when
//     it is a certificate) must be within its validity at the given time,
//     and the leaf must carry one of the reference names by the project's
//     RFC 6125 matcher (package match). Name constraints, path lengths and
//     extended key usages are not checked.
//
// The outcome is a Result with a stable Reason; Reason.ResultType maps it onto
// the RFC 8460 §4.3 result type a sender's TLS report would use.
package dane

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mxsurvey/mxsurvey/analyze/match"
	"github.com/mxsurvey/mxsurvey/analyze/tlsrpt"
)

// Field values of a TLSA record that DANE for SMTP uses (RFC 7218 names).
// PKIX-TA(0) and PKIX-EE(1) are unusable for SMTP (RFC 7672 §3.1.3).
const (
	UsageDANETA  = 2
	UsageDANEEE  = 3
	SelectorCert = 0
	SelectorSPKI = 1
	MatchFull    = 0
	MatchSHA256  = 1
	MatchSHA512  = 2
)

// maxChain bounds the certificates looked at (the scanner keeps 20 by
// default); the rest of a longer chain is ignored.
const maxChain = 32

// Record is one TLSA record.
type Record struct {
	Usage, Selector, MatchType uint8
	Data                       []byte // certificate association data
}

// String is the presentation form the dataset stores: "3 1 1 abcd..." with
// lower-case hex.
func (r Record) String() string {
	return fmt.Sprintf("%d %d %d %x", r.Usage, r.Selector, r.MatchType, r.Data)
}

// ErrSyntax is wrapped by every error of Parse.
var ErrSyntax = errors.New("dane: bad TLSA record")

// Parse reads a TLSA record in presentation form, "usage selector mtype
// hexdata" (RFC 6698 §2.2), as the scanner stores it. The three numbers are
// decimal 0-255; the data is hexadecimal in either case and, as §2.2 allows,
// may be split by white space. A record with no data or odd hex does not
// parse; one with values this package does not use does (Usable says so).
func Parse(s string) (Record, error) {
	f := strings.Fields(s)
	if len(f) < 4 {
		return Record{}, fmt.Errorf("%w: %q: want usage, selector, matching type and data", ErrSyntax, clip(s))
	}
	var nums [3]uint8
	for i := range nums {
		v, err := strconv.ParseUint(f[i], 10, 8)
		if err != nil {
			return Record{}, fmt.Errorf("%w: %q: field %d is not 0-255", ErrSyntax, clip(s), i+1)
		}
		nums[i] = uint8(v)
	}
	data, err := hex.DecodeString(strings.Join(f[3:], ""))
	if err != nil {
		return Record{}, fmt.Errorf("%w: %q: data: %w", ErrSyntax, clip(s), err)
	}
	return Record{Usage: nums[0], Selector: nums[1], MatchType: nums[2], Data: data}, nil
}

// Usable reports whether a sender doing DANE for SMTP may use r (RFC 7672
// §3.1): usage DANE-TA(2) or DANE-EE(3), selector Cert(0) or SPKI(1),
// matching type Full(0), SHA2-256(1) or SHA2-512(2), with data of the
// digest's length (32 or 64 bytes), or non-empty for Full. Full data is not
// parsed here: a DANE-EE record compares bytes, and a DANE-TA record needs a
// parseable anchor only when the server leaves the anchor out (Verify).
func Usable(r Record) bool {
	return unusable(r) == ""
}

// unusable says why r is not usable, or "".
func unusable(r Record) string {
	switch {
	case r.Usage != UsageDANETA && r.Usage != UsageDANEEE:
		return fmt.Sprintf("usage %d (only 2 and 3 are for SMTP)", r.Usage)
	case r.Selector != SelectorCert && r.Selector != SelectorSPKI:
		return fmt.Sprintf("selector %d", r.Selector)
	case r.MatchType == MatchFull && len(r.Data) == 0:
		return "no data"
	case r.MatchType == MatchSHA256 && len(r.Data) != sha256.Size:
		return fmt.Sprintf("SHA-256 data of %d bytes", len(r.Data))
	case r.MatchType == MatchSHA512 && len(r.Data) != sha512.Size:
		return fmt.Sprintf("SHA-512 data of %d bytes", len(r.Data))
	case r.MatchType > MatchSHA512:
		return fmt.Sprintf("matching type %d", r.MatchType)
	}
	return ""
}

// Reason says why a chain does not satisfy a TLSA RRset. The values are
// stable: the analyzer may count them.
type Reason string

// The reasons, from the least to the most progress made. When several
// records fail, Verify reports the one that got furthest.
const (
	// ReasonNoUsable: no record is usable; RFC 7672 §3.1 then has the sender
	// use TLS without authentication, and a report says tlsa-invalid.
	ReasonNoUsable Reason = "no_usable_records"
	// ReasonNoCertificate: the chain is empty.
	ReasonNoCertificate Reason = "no_certificate"
	// ReasonNoMatch: no usable record matches the leaf (DANE-EE) or a
	// certificate above it (DANE-TA).
	ReasonNoMatch Reason = "no_match"
	// ReasonUnparseable: a certificate that a record needed could not be
	// parsed (for DANE-EE(3) with selector SPKI, the leaf's DER; for
	// DANE-TA(2), the leaf or the anchor, by crypto/x509).
	ReasonUnparseable Reason = "unparseable_certificate"
	// ReasonChainInvalid: a DANE-TA record matches, but the leaf does not
	// chain to that anchor through the certificates sent.
	ReasonChainInvalid Reason = "chain_invalid"
	// ReasonNotYetValid and ReasonExpired: a certificate of the DANE-TA path
	// is outside its validity period.
	ReasonNotYetValid Reason = "not_yet_valid"
	ReasonExpired     Reason = "expired"
	// ReasonNameMismatch: the DANE-TA path is good, but the leaf carries none
	// of the reference names.
	ReasonNameMismatch Reason = "name_mismatch"
)

// progress ranks reasons so the most informative failure is reported.
func (r Reason) progress() int {
	switch r {
	case ReasonUnparseable:
		return 1
	case ReasonChainInvalid:
		return 2
	case ReasonNotYetValid, ReasonExpired:
		return 3
	case ReasonNameMismatch:
		return 4
	}
	return 0
}

// ResultType is the RFC 8460 §4.3 result type a sender would report for r,
// or "" for the empty Reason (success). RFC 8460 has no DANE-specific type
// for a record that matches nothing; validation-failure is its "general
// failure" (mox reports the same). A certificate of the path outside its
// validity period has tlsrpt.DateResult's type, as for MTA-STS.
func (r Reason) ResultType() tlsrpt.ResultType {
	switch r {
	case "":
		return ""
	case ReasonNoUsable:
		return tlsrpt.ResultTLSAInvalid
	case ReasonNameMismatch:
		return tlsrpt.ResultCertificateHostMismatch
	case ReasonExpired, ReasonNotYetValid:
		return tlsrpt.DateResult(r == ReasonExpired, r == ReasonNotYetValid)
	case ReasonChainInvalid:
		return tlsrpt.ResultCertificateNotTrusted
	}
	return tlsrpt.ResultValidationFailure
}

// Result is the verdict on one chain.
type Result struct {
	Valid bool
	// Record is the record that verified the chain, or, when not Valid, the
	// record whose check got furthest (zero for ReasonNoUsable,
	// ReasonNoCertificate and ReasonNoMatch).
	Record Record
	Reason Reason // "" when Valid
	Detail string // for people: what failed, with names and depths
}

// Verify checks chain (DER certificates, leaf first, as the server sent them)
// against records as a DANE sender would, at time now (the probe's start).
// names are the reference identifiers DANE-TA(2) checks the leaf against:
// the MX host name and, when its CNAME expansion was DNSSEC-secure, the
// expanded name (RFC 7672 §3.2.2, which also lets a sender add the next-hop
// domain). Unusable records are skipped (RFC 7672 §3.1); the first usable
// record that verifies wins. Verify never panics on what a server sent.
// Each call parses what it needs of the chain afresh: hosts with secure,
// usable TLSA records are few, and a caller that meets one chain often can
// cache the Result by chain and records.
func Verify(records []Record, chain [][]byte, names []string, now time.Time) Result {
	var usable []Record
	var why []string
	for _, r := range records {
		if u := unusable(r); u != "" {
			why = append(why, u)
			continue
		}
		usable = append(usable, r)
	}
	if len(usable) == 0 {
		detail := "no records"
		if len(records) > 0 {
			detail = fmt.Sprintf("%d records, none usable: %s", len(records), strings.Join(why, "; "))
		}
		return Result{Reason: ReasonNoUsable, Detail: detail}
	}
	if len(chain) == 0 {
		return Result{Reason: ReasonNoCertificate, Detail: "no certificate"}
	}
	if len(chain) > maxChain {
		chain = chain[:maxChain]
	}
	c := newChain(chain)
	best := Result{Reason: ReasonNoMatch, Detail: fmt.Sprintf("none of %d usable records matches", len(usable))}
	for _, r := range usable {
		var res Result
		if r.Usage == UsageDANEEE {
			res = c.verifyEE(r)
		} else {
			res = c.verifyTA(r, names, now)
		}
		res.Record = r
		if res.Valid {
			return res
		}
		if res.Reason.progress() > best.Reason.progress() {
			best = res
		}
	}
	return best
}

func (c *chain) verifyEE(r Record) Result {
	m, ok := c.matches(r, 0)
	switch {
	case !ok:
		return Result{Reason: ReasonUnparseable, Detail: "the leaf's DER does not parse far enough to find its public key"}
	case !m:
		return Result{Reason: ReasonNoMatch}
	}
	return Result{Valid: true}
}

// anchor is a DANE-TA trust anchor: a certificate of the chain (depth >= 1),
// or one taken from the record (depth -1) as a certificate or a bare key.
type anchor struct {
	depth int
	cert  *x509.Certificate // nil for a bare key
	key   *x509.Certificate // a bare key as a parent to check signatures with
}

func (c *chain) verifyTA(r Record, names []string, now time.Time) Result {
	var anchors []anchor
	unknown, unparsed := false, 0
	for i := 1; i < len(c.der); i++ {
		m, ok := c.matches(r, i)
		switch {
		case !ok:
			unknown = true
		case m && c.cert(i) == nil:
			unparsed++
		case m:
			anchors = append(anchors, anchor{depth: i, cert: c.cert(i)})
		}
	}
	if len(anchors) == 0 && unparsed == 0 && r.MatchType == MatchFull {
		if a, ok := recordAnchor(r, c.der[0]); ok {
			anchors = append(anchors, a)
		}
	}
	if len(anchors) == 0 {
		if unparsed > 0 || unknown {
			return Result{Reason: ReasonUnparseable, Detail: "a certificate above the leaf does not parse"}
		}
		if m, _ := c.matches(r, 0); m {
			return Result{Reason: ReasonNoMatch, Detail: "the DANE-TA record matches only the leaf; a trust anchor must be above it"}
		}
		return Result{Reason: ReasonNoMatch}
	}
	leaf := c.cert(0)
	if leaf == nil {
		return Result{Reason: ReasonUnparseable, Detail: "leaf: " + c.errs[0].Error()}
	}
	path, a, ok := c.pathTo(anchors)
	if !ok {
		return Result{Reason: ReasonChainInvalid, Detail: fmt.Sprintf("no signature path from the leaf to the trust anchor (depth %d)", anchors[0].depth)}
	}
	if a.depth < 0 && a.cert != nil {
		path = append(path, a.cert)
	}
	for i, cert := range path {
		switch {
		case now.Before(cert.NotBefore):
			return Result{Reason: ReasonNotYetValid, Detail: fmt.Sprintf("certificate %d of the path (%q) is valid from %s", i, cert.Subject.CommonName, cert.NotBefore.UTC().Format(time.RFC3339))}
		case now.After(cert.NotAfter):
			return Result{Reason: ReasonExpired, Detail: fmt.Sprintf("certificate %d of the path (%q) expired %s", i, cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.RFC3339))}
		}
	}
	leafNames, _ := match.Names(leaf)
	for _, n := range names {
		if ok, _ := match.MatchAny(leafNames, n); ok {
			return Result{Valid: true, Detail: fmt.Sprintf("trust anchor at depth %d, name %s", a.depth, n)}
		}
	}
	return Result{Reason: ReasonNameMismatch, Detail: fmt.Sprintf("leaf names %q match none of %q", leafNames, names)}
}

// recordAnchor makes a trust anchor from a record that holds it whole, for a
// server that did not send it: RFC 7671 §5.2.2 lets clients use 2 0 0 and
// 2 1 0 records so. A 2 0 0 certificate equal to the leaf is not an anchor
// (the leaf cannot be its own trust anchor, as above).
func recordAnchor(r Record, leafDER []byte) (anchor, bool) {
	switch r.Selector {
	case SelectorCert:
		if bytes.Equal(r.Data, leafDER) {
			return anchor{}, false
		}
		cert, err := x509.ParseCertificate(r.Data)
		if err != nil {
			return anchor{}, false
		}
		return anchor{depth: -1, cert: cert}, true
	case SelectorSPKI:
		pub, err := x509.ParsePKIXPublicKey(r.Data)
		if err != nil {
			return anchor{}, false
		}
		var alg x509.PublicKeyAlgorithm
		switch pub.(type) {
		case *rsa.PublicKey:
			alg = x509.RSA
		case *ecdsa.PublicKey:
			alg = x509.ECDSA
		case ed25519.PublicKey:
			alg = x509.Ed25519
		default:
			return anchor{}, false
		}
		// A bare key has no constraints to check: it acts as a CA.
		key := &x509.Certificate{PublicKey: pub, PublicKeyAlgorithm: alg, BasicConstraintsValid: true, IsCA: true}
		return anchor{depth: -1, key: key}, true
	}
	return anchor{}, false
}

// chain is the certificates as sent, with their SPKI and parsed forms
// computed on first use.
type chain struct {
	der    [][]byte
	spki   [][]byte
	spkiOK []bool
	done   []bool // spki computed
	certs  []*x509.Certificate
	errs   []error
	parsed []bool
}

func newChain(der [][]byte) *chain {
	n := len(der)
	return &chain{der: der, spki: make([][]byte, n), spkiOK: make([]bool, n), done: make([]bool, n),
		certs: make([]*x509.Certificate, n), errs: make([]error, n), parsed: make([]bool, n)}
}

// cert returns certificate i parsed by crypto/x509, or nil.
func (c *chain) cert(i int) *x509.Certificate {
	if !c.parsed[i] {
		c.parsed[i] = true
		c.certs[i], c.errs[i] = x509.ParseCertificate(c.der[i])
	}
	return c.certs[i]
}

// matches reports whether certificate i matches r; ok is false when the
// selected part could not be found in the DER.
func (c *chain) matches(r Record, i int) (m, ok bool) {
	b := c.der[i]
	if r.Selector == SelectorSPKI {
		if !c.done[i] {
			c.done[i] = true
			c.spki[i], c.spkiOK[i] = spkiOf(c.der[i])
		}
		if !c.spkiOK[i] {
			return false, false
		}
		b = c.spki[i]
	}
	switch r.MatchType {
	case MatchSHA256:
		d := sha256.Sum256(b)
		return bytes.Equal(d[:], r.Data), true
	case MatchSHA512:
		d := sha512.Sum512(b)
		return bytes.Equal(d[:], r.Data), true
	}
	return bytes.Equal(b, r.Data), true
}

// pathTo looks for a path from the leaf up to one of the anchors through the
// certificates sent, trying them in the order sent first. Each certificate is
// visited once: whether an anchor can be reached from it does not depend on
// how it was reached, so the search costs at most n² signature checks.
func (c *chain) pathTo(anchors []anchor) (path []*x509.Certificate, found anchor, ok bool) {
	n := len(c.der)
	visited := make([]bool, n)
	var walk func(i int) bool
	walk = func(i int) bool {
		visited[i] = true
		cert := c.cert(i)
		path = append(path, cert)
		for _, a := range anchors {
			if a.depth == i || a.depth < 0 && signedBy(cert, a) {
				found = a
				return true
			}
		}
		for k := 1; k < n; k++ {
			j := (i + k) % n
			if j == 0 || visited[j] {
				continue
			}
			if p := c.cert(j); p != nil && issuedBy(cert, p) && walk(j) {
				return true
			}
		}
		path = path[:len(path)-1]
		return false
	}
	ok = walk(0)
	return path, found, ok
}

func signedBy(cert *x509.Certificate, a anchor) bool {
	if a.cert != nil {
		return issuedBy(cert, a.cert)
	}
	return cert.CheckSignatureFrom(a.key) == nil
}

// issuedBy: the names chain and parent's key signed cert. CheckSignatureFrom
// also demands that parent be a CA allowed to sign certificates.
func issuedBy(cert, parent *x509.Certificate) bool {
	return bytes.Equal(cert.RawIssuer, parent.RawSubject) && cert.CheckSignatureFrom(parent) == nil
}

// spkiOf finds the SubjectPublicKeyInfo in a certificate's DER without
// crypto/x509, which refuses certificates that DANE-EE(3) 3 1 x records
// still match (negative serials, unknown key types, odd extensions):
// Certificate = SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
// serialNumber, signature, issuer, validity, subject,
// subjectPublicKeyInfo, ... }, ... } (RFC 5280 §4.1).
func spkiOf(der []byte) ([]byte, bool) {
	var cert, tbs, el asn1.RawValue
	if rest, err := asn1.Unmarshal(der, &cert); err != nil || len(rest) > 0 || !isSeq(cert) {
		return nil, false
	}
	if _, err := asn1.Unmarshal(cert.Bytes, &tbs); err != nil || !isSeq(tbs) {
		return nil, false
	}
	b, err := asn1.Unmarshal(tbs.Bytes, &el)
	if err != nil {
		return nil, false
	}
	skip := 4 // signature, issuer, validity, subject after the serial
	if el.Class == asn1.ClassContextSpecific && el.Tag == 0 {
		skip++ // el was the version; the serial is next
	}
	for ; skip > 0; skip-- {
		if b, err = asn1.Unmarshal(b, &el); err != nil {
			return nil, false
		}
	}
	if _, err := asn1.Unmarshal(b, &el); err != nil || !isSeq(el) {
		return nil, false
	}
	return el.FullBytes, true
}

func isSeq(v asn1.RawValue) bool {
	return v.Class == asn1.ClassUniversal && v.Tag == asn1.TagSequence && v.IsCompound
}

// clip keeps error messages short when a record is huge.
func clip(s string) string {
	const max = 100
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
