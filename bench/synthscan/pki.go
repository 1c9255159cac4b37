package synthscan

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"math/big"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// Every key is derived from the seed and every signature is deterministic
// (x509.CreateCertificate without a random source signs ECDSA per RFC 6979
// and RSA per PKCS #1 v1.5), so the same seed gives the same DER, byte for
// byte, on every machine.

// ca is a certificate authority of the synthetic PKI.
type ca struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// pki is the synthetic hierarchy: two roots in roots.pem, each with issuing
// intermediates, and one private root that no trust store holds.
type pki struct {
	seed      uint64
	roots     []*ca // in roots.pem
	le        [2]*ca
	dv        *ca // a commercial DV CA, the hosting panels' AutoSSL issuer
	providers *ca // the big providers' issuer
	corp      *ca // issued by the private root
	corpRoot  *ca

	p256 [64]*ecdsa.PrivateKey // leaf keys

	rsaOnce sync.Once
	rsa2048 [2]*rsa.PrivateKey
	rsaErr  error
}

// Validity of the CAs: long enough for any scan date a benchmark picks.
var (
	caFrom = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	caTo   = time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC)
)

func newPKI(seed uint64) (*pki, error) {
	p := &pki{seed: seed}
	var err error
	for i := range p.p256 {
		if p.p256[i], err = p.ecKey(elliptic.P256(), fmt.Sprintf("leaf-p256-%d", i)); err != nil {
			return nil, err
		}
	}
	mk := func(label, cn, org string, parent *ca) (*ca, error) {
		k, err := p.ecKey(elliptic.P256(), "ca-"+label)
		if err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber:          p.serial("ca|" + label),
			Subject:               pkix.Name{CommonName: cn, Organization: []string{org}, Country: []string{"US"}},
			NotBefore:             caFrom,
			NotAfter:              caTo,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		parentCert, parentKey := tmpl, crypto.Signer(k)
		if parent != nil {
			parentCert, parentKey = parent.cert, parent.key
			tmpl.MaxPathLenZero = true
			tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
		}
		der, err := x509.CreateCertificate(nil, tmpl, parentCert, k.Public(), parentKey)
		if err != nil {
			return nil, fmt.Errorf("synthscan: CA %s: %w", label, err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		return &ca{cert: c, key: k}, nil
	}
	rootX, err := mk("root-x", "Synth Root X1", "Synthetic Internet Security Research Group", nil)
	if err != nil {
		return nil, err
	}
	rootG, err := mk("root-g", "Synth Global Root G2", "Synthetic Trust Services", nil)
	if err != nil {
		return nil, err
	}
	p.roots = []*ca{rootX, rootG}
	for i, cn := range []string{"R10", "R11"} {
		if p.le[i], err = mk("le-"+cn, cn, "Synthetic Let's Encrypt", rootX); err != nil {
			return nil, err
		}
	}
	if p.dv, err = mk("dv", "Synth RSA Domain Validation Secure Server CA", "Synthetic Trust Services", rootG); err != nil {
		return nil, err
	}
	if p.providers, err = mk("providers", "Synth TLS Issuing CA 1", "Synthetic Trust Services", rootG); err != nil {
		return nil, err
	}
	if p.corpRoot, err = mk("corp-root", "Corp Internal Root CA", "Example Corp", nil); err != nil {
		return nil, err
	}
	if p.corp, err = mk("corp", "Corp Internal Issuing CA", "Example Corp", p.corpRoot); err != nil {
		return nil, err
	}
	return p, nil
}

// rootsPEM is the trust store of the scan: what -roots is given.
func (p *pki) rootsPEM() []byte {
	var b []byte
	for _, r := range p.roots {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.cert.Raw})...)
	}
	return b
}

func (p *pki) digest(label string) [32]byte {
	h := sha256.New()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], p.seed)
	h.Write(b[:])
	h.Write([]byte(label))
	return [32]byte(h.Sum(nil))
}

// ecKey derives an ECDSA key: the scalar is a hash of seed and label (and a
// counter, in the rare case the hash is not a valid scalar).
func (p *pki) ecKey(c elliptic.Curve, label string) (*ecdsa.PrivateKey, error) {
	size := (c.Params().BitSize + 7) / 8
	for ctr := range 16 {
		var raw []byte
		for i := 0; len(raw) < size; i++ {
			d := p.digest(fmt.Sprintf("%s|%d|%d", label, ctr, i))
			raw = append(raw, d[:]...)
		}
		if k, err := ecdsa.ParseRawPrivateKey(c, raw[:size]); err == nil {
			return k, nil
		}
	}
	return nil, fmt.Errorf("synthscan: cannot derive key %s", label)
}

// rsaKeys derives the RSA leaf keys once, on first use: Go's rsa.GenerateKey
// ignores its random source, so the primes are searched here from a seeded
// stream instead. Two 2048-bit keys are enough (leaves need only the public
// key, and the analyzer caches by certificate, not by key); larger ones
// take seconds to find.
func (p *pki) rsaKeys() error {
	p.rsaOnce.Do(func() {
		var wg sync.WaitGroup
		errs := make([]error, len(p.rsa2048))
		for i := range p.rsa2048 {
			wg.Go(func() { p.rsa2048[i], errs[i] = p.rsaKey(2048, fmt.Sprintf("rsa2048-%d", i)) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				p.rsaErr = err
			}
		}
	})
	return p.rsaErr
}

func (p *pki) rsaKey(bits int, label string) (*rsa.PrivateKey, error) {
	r := rand.NewChaCha8(p.digest("rsa|" + label))
	e := big.NewInt(65537)
	one := big.NewInt(1)
	for {
		pr, q := prime(r, bits/2), prime(r, bits/2)
		if pr.Cmp(q) == 0 {
			continue
		}
		p1, q1 := new(big.Int).Sub(pr, one), new(big.Int).Sub(q, one)
		lcm := new(big.Int).Mul(p1, q1)
		lcm.Div(lcm, new(big.Int).GCD(nil, nil, p1, q1))
		d := new(big.Int).ModInverse(e, lcm)
		if d == nil {
			continue // e divides (p-1)(q-1): draw again
		}
		k := &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: new(big.Int).Mul(pr, q), E: 65537}, D: d, Primes: []*big.Int{pr, q}}
		k.Precompute()
		if err := k.Validate(); err != nil {
			return nil, fmt.Errorf("synthscan: RSA key %s: %w", label, err)
		}
		return k, nil
	}
}

// prime draws odd numbers with the top two bits set (so that a product of
// two has exactly twice the bits) until one is prime.
func prime(r *rand.ChaCha8, bits int) *big.Int {
	b := make([]byte, bits/8)
	for {
		_, _ = r.Read(b) // ChaCha8.Read never fails
		b[0] |= 0xc0
		b[len(b)-1] |= 1
		n := new(big.Int).SetBytes(b)
		if n.ProbablyPrime(20) {
			return n
		}
	}
}

func (p *pki) serial(id string) *big.Int {
	d := p.digest("serial|" + id)
	d[0] &= 0x7f // positive, 16 bytes as CAs use
	return new(big.Int).SetBytes(d[:16])
}

// keyKind is a leaf's key.
type keyKind uint8

const (
	keyP256 keyKind = iota
	keyRSA2048
)

// leafSpec is one certificate to issue.
type leafSpec struct {
	id        string // unique per distinct certificate: the serial is derived from it
	cn        string
	sans      []string // nil: CN only
	issuer    *ca      // nil: self-signed
	key       keyKind
	notBefore time.Time
	notAfter  time.Time
	withRoot  bool // the chain sent includes the root, as some servers do
	noInter   bool // the intermediate is not sent (a misconfiguration clients reject)
}

// issued is a certificate as a server sends it, with the dataset's
// description of its leaf.
type issued struct {
	chain [][]byte
	desc  survey.Cert
}

func (p *pki) leafKey(k keyKind, id string) (crypto.Signer, error) {
	switch k {
	case keyRSA2048:
		if err := p.rsaKeys(); err != nil {
			return nil, err
		}
		d := p.digest("key|" + id)
		return p.rsa2048[int(d[0])%len(p.rsa2048)], nil
	}
	d := p.digest("key|" + id)
	return p.p256[int(d[0])%len(p.p256)], nil
}

func (p *pki) issue(s leafSpec) (*issued, error) {
	key, err := p.leafKey(s.key, s.id)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: p.serial(s.id),
		Subject:      pkix.Name{CommonName: s.cn},
		DNSNames:     s.sans,
		NotBefore:    s.notBefore,
		NotAfter:     s.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if _, ok := key.Public().(*rsa.PublicKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	parent, signer := tmpl, key
	if s.issuer != nil {
		parent, signer = s.issuer.cert, s.issuer.key
	} else {
		tmpl.Subject.Organization = []string{"Internet Widgits Pty Ltd"}
	}
	der, err := x509.CreateCertificate(nil, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("synthscan: certificate %s: %w", s.id, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	chain := [][]byte{der}
	if s.issuer != nil && !s.noInter {
		chain = append(chain, s.issuer.cert.Raw)
		if s.withRoot {
			for _, r := range append(p.roots, p.corpRoot) {
				if r.cert.Subject.String() == s.issuer.cert.Issuer.String() {
					chain = append(chain, r.cert.Raw)
				}
			}
		}
	}
	return &issued{chain: chain, desc: survey.DescribeCert(leaf)}, nil
}
