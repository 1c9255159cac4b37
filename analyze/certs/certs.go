// Package certs parses and verifies the certificate chains recorded by the
// scanner. A survey sees the same few certificates (a provider's, a CA's
// intermediates) behind millions of probes, so every parse and verification
// is cached: leaves by their SHA-256, intermediates by theirs, and trust
// decisions by leaf, chain, UTC day and which certificates are in their
// validity period at the probe's time. Memory therefore grows with distinct
// certificates, not with probes.
//
// Verification follows what a sending MTA with a CA bundle would do (RFC 7817
// §3, RFC 8461 §4.2): the chain as sent (intermediates = chain[1:]), the given
// roots, the probe's start as the current time, any extended key usage, and
// names ignored (name checks are the job of package match).
//
// What a leaf is (subject, names, issuer, dates, key type and bits,
// self-signed) is not decided here: it is survey.DescribeCert's, the same
// description the scanner wrote into the dataset's cert_* columns.
package certs

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mxsurvey/mxsurvey/analyze/match"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// Errors from Check. Both mean the host is not counted as having a
// certificate; the analyzer tells them apart in its counts.
var (
	ErrNoChain     = errors.New("certs: no certificate in chain")
	ErrUnparseable = errors.New("certs: leaf certificate does not parse")
)

// Leaf is what the analyzer needs from a leaf certificate, computed once per
// distinct certificate: the dataset's own description of it (the cert_*
// columns, by survey.DescribeCert, so self-signed and the key type mean here
// what they mean in the dataset) and what the figures add.
//
// It keeps what the figures need, not the parsed certificate: a scan of a
// million domains has hundreds of thousands of distinct leaves, and a kept
// *x509.Certificate with its slices costs kilobytes each. The rare trust
// check that misses its cache parses the leaf again from the row's DER.
type Leaf struct {
	SHA256      [32]byte
	Cert        survey.Cert
	Names       []string // per match.Names
	FromCN      bool
	Wildcard    bool   // a name contains "*": a wildcard certificate, valid per RFC 6125 or not
	CNOnly      bool   // no SAN dNSNames and a non-empty CN
	IssuerLabel string // issuer "CN / O", for the issuers top list
}

// KeyLabel is the key type as shown in the top list, e.g. "RSA 2048".
func (l *Leaf) KeyLabel() string {
	if l.Cert.KeyBits == 0 {
		return l.Cert.KeyType
	}
	return fmt.Sprintf("%s %d", l.Cert.KeyType, l.Cert.KeyBits)
}

// Result is the per-probe verdict on a chain.
type Result struct {
	Leaf        *Leaf
	Trusted     bool
	Expired     bool // probe time after NotAfter
	NotYetValid bool // probe time before NotBefore
}

// Verifier holds the caches. It is not safe for concurrent use: the analyzer
// reads rows in one goroutine, and a lock per probe would cost more than the
// cache saves.
type Verifier struct {
	roots  *x509.CertPool
	leaves map[[32]byte]*Leaf             // nil value: leaf does not parse
	inters map[[32]byte]*x509.Certificate // nil value: does not parse
	trust  map[trustKey]bool
	stats  Stats
}

// Stats says how well the caches worked, for the analyzer's log.
type Stats struct {
	LeavesParsed  int
	Verifications int
	TrustHits     int
}

type trustKey struct {
	leaf, chain [32]byte
	day         int64
	inPeriod    string // one '0'/'1' per certificate: validity at the probe time
}

// New returns a Verifier that trusts roots. A nil pool trusts nothing, so
// that a missing system bundle shows up as zero trusted hosts rather than as
// a silent fallback.
func New(roots *x509.CertPool) *Verifier {
	if roots == nil {
		roots = x509.NewCertPool()
	}
	return &Verifier{
		roots:  roots,
		leaves: make(map[[32]byte]*Leaf),
		inters: make(map[[32]byte]*x509.Certificate),
		trust:  make(map[trustKey]bool),
	}
}

// LoadRoots reads a PEM bundle; an empty path means the system roots. It
// fails when the bundle holds no certificate, since an empty trust store
// would make every host "untrusted" without saying why.
func LoadRoots(path string) (*x509.CertPool, error) {
	if path == "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			return nil, fmt.Errorf("loading system roots: %w", err)
		}
		return pool, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading roots: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("roots %s: no PEM certificate found", path)
	}
	return pool, nil
}

// Stats returns cache counters.
func (v *Verifier) Stats() Stats { return v.stats }

// Check evaluates chain (DER, leaf first, as sent) at time at. It returns
// ErrNoChain or ErrUnparseable when there is no usable leaf; an intermediate
// that does not parse is left out of the pool, so the chain most likely fails
// to verify, as it would for a client.
func (v *Verifier) Check(chain [][]byte, at time.Time) (Result, error) {
	if len(chain) == 0 || len(chain[0]) == 0 {
		return Result{}, ErrNoChain
	}
	leaf, err := v.leaf(chain[0])
	if err != nil {
		return Result{}, err
	}
	r := Result{
		Leaf:        leaf,
		Expired:     at.After(leaf.Cert.NotAfter),
		NotYetValid: at.Before(leaf.Cert.NotBefore),
	}
	r.Trusted = v.trusted(leaf, chain[0], chain[1:], at)
	return r, nil
}

func (v *Verifier) leaf(der []byte) (*Leaf, error) {
	sum := sha256.Sum256(der)
	if l, ok := v.leaves[sum]; ok {
		if l == nil {
			return nil, ErrUnparseable
		}
		return l, nil
	}
	// Clone: the caller's buffer belongs to the Parquet reader's batch, and
	// the strings taken from the parsed certificate may share its memory.
	cert, err := x509.ParseCertificate(bytes.Clone(der))
	if err != nil {
		v.leaves[sum] = nil
		return nil, ErrUnparseable
	}
	v.stats.LeavesParsed++
	l := &Leaf{SHA256: sum, Cert: survey.DescribeCert(cert)}
	l.Names, l.FromCN = match.Names(cert)
	for _, n := range l.Names {
		// A partial-label wildcard (m*.example.com) or one in the wrong
		// place still marks a wildcard certificate; whether it matches
		// anything is match's business.
		if strings.Contains(n, "*") {
			l.Wildcard = true
		}
	}
	l.CNOnly = len(cert.DNSNames) == 0 && cert.Subject.CommonName != ""
	l.IssuerLabel = issuerLabel(cert)
	v.leaves[sum] = l
	return l, nil
}

func issuerLabel(c *x509.Certificate) string {
	var parts []string
	if cn := c.Issuer.CommonName; cn != "" {
		parts = append(parts, cn)
	}
	if len(c.Issuer.Organization) > 0 && c.Issuer.Organization[0] != "" {
		parts = append(parts, c.Issuer.Organization[0])
	}
	if len(parts) == 0 {
		return "(empty issuer)"
	}
	return strings.Join(parts, " / ")
}

func (v *Verifier) intermediate(der []byte) (*x509.Certificate, [32]byte) {
	sum := sha256.Sum256(der)
	if c, ok := v.inters[sum]; ok {
		return c, sum
	}
	c, err := x509.ParseCertificate(bytes.Clone(der))
	if err != nil {
		c = nil // left out of the pool; see Check
	}
	v.inters[sum] = c
	return c, sum
}

// trusted caches by day and by which certificates are inside their validity
// period, so that a certificate expiring mid-day is re-verified for probes on
// either side of the moment while all other probes hit the cache. (The roots'
// own validity is assumed constant within one day.)
func (v *Verifier) trusted(leaf *Leaf, leafDER []byte, rest [][]byte, at time.Time) bool {
	inters := make([]*x509.Certificate, 0, len(rest))
	h := sha256.New()
	var period strings.Builder
	period.WriteByte(inPeriod(leaf.Cert.NotBefore, leaf.Cert.NotAfter, at))
	for _, der := range rest {
		c, sum := v.intermediate(der)
		h.Write(sum[:])
		if c == nil {
			period.WriteByte('x')
			continue
		}
		inters = append(inters, c)
		period.WriteByte(inPeriod(c.NotBefore, c.NotAfter, at))
	}
	var key trustKey
	key.leaf = leaf.SHA256
	copy(key.chain[:], h.Sum(nil))
	key.day = dayOf(at)
	key.inPeriod = period.String()
	if ok, hit := v.trust[key]; hit {
		v.stats.TrustHits++
		return ok
	}
	cert, err := x509.ParseCertificate(leafDER) // parsed before by leaf(), so it parses
	if err != nil {
		v.trust[key] = false
		return false
	}
	pool := x509.NewCertPool()
	for _, c := range inters {
		pool.AddCert(c)
	}
	_, err = cert.Verify(x509.VerifyOptions{
		Roots:         v.roots,
		Intermediates: pool,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	v.stats.Verifications++
	v.trust[key] = err == nil
	return err == nil
}

func inPeriod(notBefore, notAfter, at time.Time) byte {
	if at.Before(notBefore) || at.After(notAfter) {
		return '0'
	}
	return '1'
}

func dayOf(t time.Time) int64 {
	return t.Unix() / 86400
}
