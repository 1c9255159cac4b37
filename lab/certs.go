package lab

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"
)

// Certificates are made on first use and can be made again: keys are derived
// from the seed (RSA excepted) and x509.CreateCertificate signs
// deterministically when given no random source, so the DER the SMTP server
// sends is the DER whose hash the truth file states, without keeping every
// certificate of a million-domain world in memory.

type issuerKind uint8

const (
	issLab     issuerKind = iota // the lab intermediate, chain sent
	issNoChain                   // the lab intermediate, chain not sent
	issUnknown                   // a CA outside ca.pem
	issSelf                      // self-signed
)

type keyKind uint8

const (
	keyP256 keyKind = iota
	keyP384
	keyRSA2048
)

type validity uint8

const (
	validNow validity = iota
	validExpired
	validFuture
)

// Fixed validity dates keep the world reproducible; a scan between 2024 and
// 2089 sees the intended facts.
var (
	validFrom   = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	validUntil  = time.Date(2089, 1, 1, 0, 0, 0, 0, time.UTC)
	expiredFrom = time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC)
	expiredTo   = time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC)
	futureFrom  = time.Date(2090, 1, 1, 0, 0, 0, 0, time.UTC)
	futureTo    = time.Date(2091, 1, 1, 0, 0, 0, 0, time.UTC)
	caFrom      = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	caTo        = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
)

type certSpec struct {
	cn       string
	sans     []string // nil: no SAN extension at all
	issuer   issuerKind
	key      keyKind
	validity validity
}

func (s certSpec) id() string {
	return fmt.Sprintf("%s|%s|%d|%d|%d|%t", s.cn, strings.Join(s.sans, ","), s.issuer, s.key, s.validity, s.sans == nil)
}

// specFor states which certificate a server presents for an SNI. It is the
// single place where cases become certificates.
func specFor(s *server, sni string) certSpec {
	name := s.certName(sni)
	sp := certSpec{cn: name, sans: []string{name}}
	switch s.cas {
	case cCertBannerOnly:
		sp = certSpec{cn: s.banner, sans: []string{s.banner}}
	case cCertBoth:
		sp = certSpec{cn: name, sans: []string{name, s.banner}}
	case cCertWildcard:
		sp = certSpec{cn: "*." + s.zone, sans: []string{"*." + s.zone}}
	case cCertWildcardMulti:
		sp = certSpec{cn: "*.*.test", sans: []string{"*.*.test"}}
	case cCertWildcardPartial:
		sp = certSpec{cn: "m*." + s.zone, sans: []string{"m*." + s.zone}}
	case cCertWildcardTLD:
		sp = certSpec{cn: "*.test", sans: []string{"*.test"}}
	case cCertCNOnly:
		sp.sans = nil
	case cCertSelfSigned:
		sp.issuer = issSelf
	case cCertSnakeoil:
		sp = certSpec{cn: "localhost", sans: []string{"localhost"}, issuer: issSelf, key: keyRSA2048}
	case cCertExpired:
		sp.validity = validExpired
	case cCertNotYetValid:
		sp.validity = validFuture
	case cCertUnknownCA:
		sp.issuer = issUnknown
	case cCertMissingIntermediate:
		sp.issuer = issNoChain
	case cCertRSA:
		sp.key = keyRSA2048
	case cCertECDSAP384:
		sp.key = keyP384
	case cDNSManyMX:
		sp = certSpec{cn: s.names[0], sans: s.names}
	}
	return sp
}

// authority holds the lab's CAs and keys and the certificate cache.
type authority struct {
	seed     uint64
	root     *x509.Certificate
	rootKey  crypto.Signer
	inter    *x509.Certificate
	interKey crypto.Signer
	unknown  *x509.Certificate
	unkKey   crypto.Signer
	p256     [16]*ecdsa.PrivateKey
	p384     *ecdsa.PrivateKey

	rsaOnce sync.Once
	rsaKey  *rsa.PrivateKey
	rsaErr  error

	mu    sync.Mutex
	cache map[string]*tls.Certificate
}

const maxCachedCerts = 20000

// deriveECDSA makes a key from the seed: the scalar is a hash, retried in the
// rare case it falls outside the group order.
func deriveECDSA(c elliptic.Curve, seed uint64, label string) (*ecdsa.PrivateKey, error) {
	size := (c.Params().BitSize + 7) / 8
	for ctr := uint32(0); ctr < 100; ctr++ {
		var buf []byte
		for len(buf) < size {
			h := sha256.New()
			var b [12]byte
			binary.BigEndian.PutUint64(b[:8], seed)
			binary.BigEndian.PutUint32(b[8:], ctr<<8|uint32(len(buf)))
			h.Write(b[:])
			h.Write([]byte(label))
			buf = h.Sum(buf)
		}
		k, err := ecdsa.ParseRawPrivateKey(c, buf[:size])
		if err == nil {
			return k, nil
		}
	}
	return nil, fmt.Errorf("lab: cannot derive key %q", label)
}

func newAuthority(seed uint64) (*authority, error) {
	a := &authority{seed: seed, cache: map[string]*tls.Certificate{}}
	var err error
	for i := range a.p256 {
		if a.p256[i], err = deriveECDSA(elliptic.P256(), seed, fmt.Sprintf("leaf-%d", i)); err != nil {
			return nil, err
		}
	}
	if a.p384, err = deriveECDSA(elliptic.P384(), seed, "leaf-p384"); err != nil {
		return nil, err
	}
	mkCA := func(label, cn string, parent *x509.Certificate, parentKey crypto.Signer, serial int64) (*x509.Certificate, crypto.Signer, error) {
		k, err := deriveECDSA(elliptic.P256(), seed, label)
		if err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(serial),
			Subject:               pkix.Name{CommonName: cn, Organization: []string{"mxsurvey lab"}},
			NotBefore:             caFrom,
			NotAfter:              caTo,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
		}
		if parent == nil {
			parent, parentKey = tmpl, k
		}
		der, err := x509.CreateCertificate(nil, tmpl, parent, k.Public(), parentKey)
		if err != nil {
			return nil, nil, err
		}
		c, err := x509.ParseCertificate(der)
		return c, k, err
	}
	if a.root, a.rootKey, err = mkCA("root", "mxsurvey lab root CA", nil, nil, 1); err != nil {
		return nil, err
	}
	if a.inter, a.interKey, err = mkCA("intermediate", "mxsurvey lab intermediate CA", a.root, a.rootKey, 2); err != nil {
		return nil, err
	}
	if a.unknown, a.unkKey, err = mkCA("unknown", "mxsurvey unknown CA", nil, nil, 3); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *authority) rootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.root.Raw})
}

func (a *authority) rsa() (*rsa.PrivateKey, error) {
	// Go ignores the random source for key generation, so the RSA key (and
	// the certificates using it) differ between runs; one key serves all.
	a.rsaOnce.Do(func() { a.rsaKey, a.rsaErr = rsa.GenerateKey(rand.Reader, 2048) })
	return a.rsaKey, a.rsaErr
}

// issued is a certificate as served plus what the truth file says about it.
type issued struct {
	tls    *tls.Certificate
	leaf   *x509.Certificate
	sha256 string
}

func (a *authority) make(sp certSpec) (*issued, error) {
	id := sp.id()
	h := sha256.Sum256([]byte(id))
	serial := new(big.Int).SetUint64(binary.BigEndian.Uint64(h[:8]) >> 1)
	var key crypto.Signer
	switch sp.key {
	case keyP256:
		key = a.p256[h[8]%16]
	case keyP384:
		key = a.p384
	case keyRSA2048:
		k, err := a.rsa()
		if err != nil {
			return nil, err
		}
		key = k
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: sp.cn},
		DNSNames:     sp.sans,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		NotBefore:    validFrom,
		NotAfter:     validUntil,
	}
	if sp.key == keyRSA2048 {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	switch sp.validity {
	case validExpired:
		tmpl.NotBefore, tmpl.NotAfter = expiredFrom, expiredTo
	case validFuture:
		tmpl.NotBefore, tmpl.NotAfter = futureFrom, futureTo
	}
	parent, signer := a.inter, a.interKey
	var chain [][]byte
	switch sp.issuer {
	case issLab:
		chain = [][]byte{a.inter.Raw}
	case issUnknown:
		parent, signer = a.unknown, a.unkKey
	case issSelf:
		parent, signer = tmpl, key
	}
	der, err := x509.CreateCertificate(nil, tmpl, parent, key.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("lab: certificate %s: %w", id, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("lab: certificate %s: %w", id, err)
	}
	sum := sha256.Sum256(der)
	return &issued{
		tls:    &tls.Certificate{Certificate: append([][]byte{der}, chain...), PrivateKey: key, Leaf: leaf},
		leaf:   leaf,
		sha256: fmt.Sprintf("%x", sum),
	}, nil
}

// get returns the certificate for a spec, cached: handshakes repeat for the
// same server, and provider and hosting certificates serve many targets.
func (a *authority) get(sp certSpec) (*tls.Certificate, error) {
	id := sp.id()
	a.mu.Lock()
	c := a.cache[id]
	a.mu.Unlock()
	if c != nil {
		return c, nil
	}
	is, err := a.make(sp)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	if len(a.cache) >= maxCachedCerts {
		clear(a.cache)
	}
	a.cache[id] = is.tls
	a.mu.Unlock()
	return is.tls, nil
}
