// Package certs parses and verifies the certificate chains recorded by the
// scanner. A survey sees the same few certificates (a provider's, a CA's
// intermediates) behind millions of probes, so every parse and verification
// is cached: leaves by their SHA-256, intermediates by theirs, and trust
// decisions by leaf, chain, UTC day and which certificates are in their
// validity period at the probe's time. Memory therefore grows with distinct
// certificates, not with probes.
//
// A Verifier is safe for concurrent use, and each cached value is computed
// once: when several goroutines ask for the same certificate at the same
// time, one computes and the others wait for its result, so a popular leaf
// costs one parse and one verification per day however many workers meet
// it. Every result is a function of the chain and the probe time alone,
// never of which goroutine asked first (see trusted).
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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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

// Verifier holds the caches. It is safe for concurrent use.
type Verifier struct {
	roots  *x509.CertPool
	leaves onceCache[[32]byte, *Leaf]             // nil value: leaf does not parse
	inters onceCache[[32]byte, *x509.Certificate] // nil value: does not parse
	trust  onceCache[trustKey, bool]
	// anchors holds, per intermediate and day, the roots plus that
	// intermediate, or nil where the shortcut does not apply (anchor.go).
	anchors onceCache[anchorKey, *x509.CertPool]

	leavesParsed, verifications, anchoredVerifications, trustHits atomic.Int64
}

// Stats says how well the caches worked, for the analyzer's log. The
// figures depend only on the chains checked, not on their order.
type Stats struct {
	LeavesParsed  int
	Verifications int
	Anchored      int // verifications with the intermediate as anchor (anchor.go)
	TrustHits     int
}

// trustKey holds no pointer, so the trust cache costs the garbage collector
// nothing to scan.
type trustKey struct {
	leaf [32]byte
	// chain is the SHA-256 of the intermediates' SHA-256s followed by one
	// '0'/'1' per certificate, leaf first ('x': an intermediate that does
	// not parse): the chain and its validity at the probe time.
	chain [32]byte
	day   int64
}

// New returns a Verifier that trusts roots. A nil pool trusts nothing, so
// that a missing system bundle shows up as zero trusted hosts rather than as
// a silent fallback.
func New(roots *x509.CertPool) *Verifier {
	if roots == nil {
		roots = x509.NewCertPool()
	}
	return &Verifier{roots: roots}
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
func (v *Verifier) Stats() Stats {
	return Stats{LeavesParsed: int(v.leavesParsed.Load()), Verifications: int(v.verifications.Load()),
		Anchored: int(v.anchoredVerifications.Load()), TrustHits: int(v.trustHits.Load())}
}

// Check evaluates chain (DER, leaf first, as sent) at time at. It returns
// ErrNoChain or ErrUnparseable when there is no usable leaf; an intermediate
// that does not parse is left out of the pool, so the chain most likely fails
// to verify, as it would for a client.
func (v *Verifier) Check(chain [][]byte, at time.Time) (Result, error) {
	if len(chain) == 0 || len(chain[0]) == 0 {
		return Result{}, ErrNoChain
	}
	sum := sha256.Sum256(chain[0])
	// parsed is set only when this call parsed the leaf: its first trust
	// check then needs no second parse.
	var parsed *x509.Certificate
	leaf, _ := v.leaves.get(sum, sum[0], func() *Leaf {
		var l *Leaf
		parsed, l = describe(sum, chain[0])
		if l != nil {
			v.leavesParsed.Add(1)
		}
		return l
	})
	if leaf == nil {
		return Result{}, ErrUnparseable
	}
	r := Result{
		Leaf:        leaf,
		Expired:     at.After(leaf.Cert.NotAfter),
		NotYetValid: at.Before(leaf.Cert.NotBefore),
	}
	r.Trusted = v.trusted(leaf, parsed, chain[0], chain[1:], at)
	return r, nil
}

// describe parses a leaf and computes its Leaf, or returns nils when it
// does not parse.
func describe(sum [32]byte, der []byte) (*x509.Certificate, *Leaf) {
	// Clone: the caller's buffer belongs to the Parquet reader's batch, and
	// the strings taken from the parsed certificate may share its memory.
	cert, err := x509.ParseCertificate(bytes.Clone(der))
	if err != nil {
		return nil, nil
	}
	l := &Leaf{SHA256: sum, Cert: survey.DescribeCert(cert)}
	l.Names, l.FromCN = match.Names(cert)
	if slices.Equal(l.Names, l.Cert.SANDNS) {
		l.Names = l.Cert.SANDNS // one copy of the usual case, for a smaller cache
	}
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
	return cert, l
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
	c, _ := v.inters.get(sum, sum[0], func() *x509.Certificate {
		c, err := x509.ParseCertificate(bytes.Clone(der))
		if err != nil {
			return nil // left out of the pool; see Check
		}
		return c
	})
	return c, sum
}

// trusted caches by day and by which certificates are inside their validity
// period, so that a certificate expiring mid-day is re-verified for probes on
// either side of the moment while all other probes hit the cache.
//
// The chain is verified at the first instant of the probe's UTC day at which
// every certificate of the chain has the validity it has at the probe time,
// not at the probe time itself: every probe of the cache key would give the
// same verdict at its own time (the validity of leaf and intermediates is
// the key), so the verdict cannot depend on which probe came first, and a
// parallel analysis decides exactly as a sequential one. What the key does
// not hold is the roots' own validity, assumed constant within one day.
func (v *Verifier) trusted(leaf *Leaf, parsed *x509.Certificate, leafDER []byte, rest [][]byte, at time.Time) bool {
	inters := make([]*x509.Certificate, 0, len(rest))
	h := sha256.New()
	period := make([]byte, 0, 1+len(rest))
	period = append(period, inPeriod(leaf.Cert.NotBefore, leaf.Cert.NotAfter, at))
	var sum [32]byte
	for _, der := range rest {
		var c *x509.Certificate
		c, sum = v.intermediate(der)
		h.Write(sum[:])
		if c == nil {
			period = append(period, 'x')
			continue
		}
		inters = append(inters, c)
		period = append(period, inPeriod(c.NotBefore, c.NotAfter, at))
	}
	h.Write(period)
	var key trustKey
	key.leaf = leaf.SHA256
	h.Sum(key.chain[:0])
	key.day = dayOf(at)
	ok, hit := v.trust.get(key, key.leaf[1], func() bool {
		cert := parsed
		if cert == nil {
			var err error
			if cert, err = x509.ParseCertificate(leafDER); err != nil { // parsed before by Check, so it parses
				return false
			}
		}
		opts := x509.VerifyOptions{
			Roots:       v.roots,
			CurrentTime: firstInstant(key.day, append([]*x509.Certificate{cert}, inters...), period, at),
			KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		}
		var anchors *x509.CertPool
		if len(rest) == 1 && len(inters) == 1 {
			anchors = v.anchored(cert, inters[0], sum, key.day, at)
		}
		if anchors != nil {
			opts.Roots = anchors
			v.anchoredVerifications.Add(1)
		} else {
			opts.Intermediates = x509.NewCertPool()
			for _, c := range inters {
				opts.Intermediates.AddCert(c)
			}
		}
		_, err := cert.Verify(opts)
		v.verifications.Add(1)
		return err == nil
	})
	if hit {
		v.trustHits.Add(1)
	}
	return ok
}

// firstInstant is the first instant of day at which the validity of each
// certificate of certs (leaf first, then the intermediates that parsed) is
// what period says ('1' inside, '0' outside; 'x' marks an intermediate that
// is not in certs). The set of such instants is a union of intervals whose
// left ends are the day's start, a NotBefore or the instant after a
// NotAfter; at, which is in the set, bounds the search.
func firstInstant(day int64, certs []*x509.Certificate, period []byte, at time.Time) time.Time {
	start := time.Unix(day*86400, 0).UTC()
	cands := []time.Time{start}
	for _, c := range certs {
		for _, t := range []time.Time{c.NotBefore, c.NotAfter.Add(time.Nanosecond)} {
			if t.After(start) && t.Before(at) {
				cands = append(cands, t)
			}
		}
	}
	slices.SortFunc(cands, time.Time.Compare)
	for _, t := range cands {
		if matchesPeriod(certs, period, t) {
			return t
		}
	}
	return at
}

func matchesPeriod(certs []*x509.Certificate, period []byte, t time.Time) bool {
	k := 0
	for _, p := range period {
		if p == 'x' {
			continue
		}
		if inPeriod(certs[k].NotBefore, certs[k].NotAfter, t) != p {
			return false
		}
		k++
	}
	return true
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

// onceCache computes the value of each key once. The first goroutine to ask
// for a key computes it; those asking meanwhile wait for that result rather
// than computing it again. Keys are spread over shards, each with its own
// lock, so that workers rarely wait for each other's lookups. Computed
// values sit in a plain map: with pointer-free keys and values (trust
// decisions) the garbage collector never scans it.
type onceCache[K comparable, V any] struct {
	shards [64]struct {
		mu       sync.Mutex
		done     map[K]V
		inflight map[K]*flight[V]
	}
}

type flight[V any] struct {
	wg sync.WaitGroup // done once v is set
	v  V
}

// get returns the value of k, computing it with compute when no goroutine
// has; hit reports that the value was computed by another call. shard is any
// well-spread byte of the key.
func (c *onceCache[K, V]) get(k K, shard byte, compute func() V) (v V, hit bool) {
	s := &c.shards[shard%64]
	s.mu.Lock()
	if v, ok := s.done[k]; ok {
		s.mu.Unlock()
		return v, true
	}
	if f, ok := s.inflight[k]; ok {
		s.mu.Unlock()
		f.wg.Wait()
		return f.v, true
	}
	if s.done == nil {
		s.done, s.inflight = make(map[K]V), make(map[K]*flight[V])
	}
	f := &flight[V]{}
	f.wg.Add(1)
	s.inflight[k] = f
	s.mu.Unlock()

	f.v = compute()
	s.mu.Lock()
	s.done[k] = f.v
	delete(s.inflight, k)
	s.mu.Unlock()
	f.wg.Done()
	return f.v, false
}
