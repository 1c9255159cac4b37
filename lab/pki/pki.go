// Package pki is the lab's certificate authority: a root CA (the ca.pem a
// scan's analysis trusts), an intermediate that signs the leaves, a CA
// outside ca.pem, and the leaves the world's certificate specs
// (world.CertSpec) describe. Keys are derived from the world's seed (RSA
// excepted) and signatures are deterministic, so a certificate is made on
// first use, made again when evicted from the cache, and is byte for byte
// the one whose hash the truth states: a million-domain world never holds
// its certificates in memory.
package pki

import (
	"bytes"
	"crypto"
	"crypto/dsa"
	"crypto/ecdsa"
	"crypto/elliptic"
	_ "crypto/md5" // crypto.MD5.New, for md5WithRSAEncryption
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sync"

	"github.com/mxsurvey/mxsurvey/lab/world"
)

// Authority holds the lab's CAs and keys and the certificate cache.
type Authority struct {
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

	dsaOnce sync.Once
	dsaKey  *dsa.PrivateKey
	dsaErr  error

	fillOnce sync.Once
	fillers  [][]byte // DER of the filler CAs of cert_chain_50
	fillErr  error

	mu      sync.Mutex
	cache   map[string]*tls.Certificate
	digests map[string]Digest // of shared certificates, for the truth
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

// New makes the authority of a world's seed (world.World.Seed).
func New(seed uint64) (*Authority, error) {
	a := &Authority{seed: seed, cache: map[string]*tls.Certificate{}, digests: map[string]Digest{}}
	var err error
	for i := range a.p256 {
		if a.p256[i], err = deriveECDSA(elliptic.P256(), seed, fmt.Sprintf("leaf-%d", i)); err != nil {
			return nil, err
		}
	}
	if a.p384, err = deriveECDSA(elliptic.P384(), seed, "leaf-p384"); err != nil {
		return nil, err
	}
	caFrom, caTo := world.CAValidity()
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

// RootPEM is the lab root CA, PEM-encoded: ca.pem.
func (a *Authority) RootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.root.Raw})
}

// IssuerName is the issuer of a spec's certificate as crypto/x509 prints
// a Name (pkix.Name.String), which is how the dataset's cert_issuer holds it.
func (a *Authority) IssuerName(sp world.CertSpec) string {
	switch sp.Issuer {
	case world.IssuerUnknown:
		return a.unknown.Subject.String()
	case world.IssuerSelf:
		return pkix.Name{CommonName: sp.CN}.String()
	}
	return a.inter.Subject.String()
}

func (a *Authority) rsa() (*rsa.PrivateKey, error) {
	// Go ignores the random source for key generation, so the RSA key (and
	// the certificates using it) differ between runs; one key serves all.
	a.rsaOnce.Do(func() { a.rsaKey, a.rsaErr = rsa.GenerateKey(rand.Reader, 2048) })
	return a.rsaKey, a.rsaErr
}

// issued is a certificate as served plus what the truth file says about it.
type issued struct {
	tls    *tls.Certificate
	sha256 string
}

// leafKey is the key a spec's leaf is served with: its own, and for a DSA
// leaf the P-256 key the TLS server signs with instead.
func (a *Authority) leafKey(sp world.CertSpec, id string) crypto.Signer {
	switch sp.Key {
	case world.KeyP384:
		return a.p384
	case world.KeyRSA2048:
		return a.rsaKey
	}
	h := sha256.Sum256([]byte(id))
	return a.p256[h[8]%16]
}

// template is the x509 template of a spec, its parent and the signer; the
// template's PublicKey is the leaf key's.
func (a *Authority) template(sp world.CertSpec) (tmpl, parent *x509.Certificate, signer crypto.Signer) {
	id := sp.ID()
	h := sha256.Sum256([]byte(id))
	serial := new(big.Int).SetUint64(binary.BigEndian.Uint64(h[:8]) >> 1)
	key := a.leafKey(sp, id)
	nb, na := sp.Validity.Dates()
	tmpl = &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: sp.CN},
		DNSNames:     sp.SANs,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		NotBefore:    nb,
		NotAfter:     na,
		PublicKey:    key.Public(),
	}
	if sp.Key == world.KeyRSA2048 {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	parent, signer = a.inter, a.interKey
	switch sp.Issuer {
	case world.IssuerUnknown:
		parent, signer = a.unknown, a.unkKey
	case world.IssuerSelf:
		parent, signer = tmpl, key
	}
	return tmpl, parent, signer
}

func (a *Authority) make(sp world.CertSpec) (*issued, error) {
	id := sp.ID()
	if sp.Key == world.KeyRSA2048 {
		if _, err := a.rsa(); err != nil {
			return nil, err
		}
	}
	tmpl, parent, signer := a.template(sp)
	var chain [][]byte
	if sp.Issuer == world.IssuerLab {
		chain = [][]byte{a.inter.Raw}
	}
	var spki []byte
	if sp.Key == world.KeyDSA {
		k, err := a.dsa()
		if err != nil {
			return nil, err
		}
		if spki, err = dsaSPKI(&k.PublicKey); err != nil {
			return nil, fmt.Errorf("lab: certificate %s: %w", id, err)
		}
	}
	der, err := createCertificate(tmpl, parent, tmpl.PublicKey, signer, spki, sp.Sig)
	if err != nil {
		return nil, fmt.Errorf("lab: certificate %s: %w", id, err)
	}
	if sp.Pad > 0 {
		fill, err := a.fillerCAs()
		if err != nil {
			return nil, err
		}
		chain = append(chain, fill[:min(sp.Pad, len(fill))]...)
	}
	switch sp.Broken {
	case world.BrokenLeaf:
		if der, err = breakVersion(der); err != nil {
			return nil, fmt.Errorf("lab: certificate %s: %w", id, err)
		}
	case world.BrokenIntermediate:
		chain = [][]byte{notACertificate}
	}
	sum := sha256.Sum256(der)
	// crypto/tls sends the DER; nobody needs the leaf parsed.
	return &issued{
		tls:    &tls.Certificate{Certificate: append([][]byte{der}, chain...), PrivateKey: a.leafKey(sp, id)},
		sha256: hex.EncodeToString(sum[:]),
	}, nil
}

// errTBSCaptured stops x509.CreateCertificate once it has handed over the
// TBSCertificate to sign.
var errTBSCaptured = errors.New("lab: tbs captured")

// tbsCapture is a crypto.MessageSigner that keeps the TBSCertificate
// CreateCertificate asks it to sign, and fails.
type tbsCapture struct {
	pub crypto.PublicKey
	tbs []byte
}

func (c *tbsCapture) Public() crypto.PublicKey { return c.pub }
func (c *tbsCapture) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errTBSCaptured
}
func (c *tbsCapture) SignMessage(_ io.Reader, msg []byte, _ crypto.SignerOpts) ([]byte, error) {
	c.tbs = bytes.Clone(msg)
	return nil, errTBSCaptured
}

// createCertificate is x509.CreateCertificate(nil, ...) without the check of
// its own signature (a third of the cost of a certificate): CreateCertificate
// encodes the TBSCertificate, the lab signs it as CreateCertificate would
// (ECDSA per RFC 6979 without a random source, RSA PKCS #1 v1.5, both
// deterministic) and wraps it. The DER is byte-identical (TestCreateCertificate).
//
// Two certificates of the lab are ones CreateCertificate refuses to make:
// a DSA subject key and an MD5 signature. For those the TBSCertificate it
// encodes (with a stand-in key, with SHA-256) is edited with
// encoding/asn1: spki, when not nil, replaces its subjectPublicKeyInfo, and
// world.SigMD5 its signature algorithm, before the lab signs it. Everything
// else stays as CreateCertificate writes it.
func createCertificate(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer, spki []byte, sigAlg world.Sig) ([]byte, error) {
	capture := &tbsCapture{pub: signer.Public()}
	if _, err := x509.CreateCertificate(nil, tmpl, parent, pub, capture); !errors.Is(err, errTBSCaptured) {
		if err == nil {
			err = errors.New("certificate signed without the signer")
		}
		return nil, err
	}
	fields, err := tbsFields(capture.tbs)
	if err != nil {
		return nil, err
	}
	var h crypto.Hash
	switch k := signer.Public().(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P384():
			h = crypto.SHA384
		case elliptic.P521():
			h = crypto.SHA512
		default:
			h = crypto.SHA256
		}
	case *rsa.PublicKey:
		h = crypto.SHA256
	default:
		return nil, fmt.Errorf("unsupported signer %T", signer.Public())
	}
	if sigAlg == world.SigMD5 {
		if _, ok := signer.Public().(*rsa.PublicKey); !ok {
			return nil, errors.New("md5WithRSAEncryption needs an RSA signer")
		}
		fields[tbsSignature], h = md5WithRSA, crypto.MD5
	}
	if spki != nil {
		fields[tbsSubjectPublicKeyInfo] = spki
	}
	tbs := appendDER(nil, 0x30, bytes.Join(fields, nil))
	hh := h.New()
	hh.Write(tbs)
	sig, err := signer.Sign(nil, hh.Sum(nil), h)
	if err != nil {
		return nil, err
	}
	algID := fields[tbsSignature] // Certificate.signatureAlgorithm repeats it
	body := make([]byte, 0, len(tbs)+len(algID)+len(sig)+8)
	body = append(body, tbs...)
	body = append(body, algID...)
	body = appendDER(body, 0x03, append([]byte{0}, sig...))
	return appendDER(make([]byte, 0, len(body)+4), 0x30, body), nil
}

// The fields of a version 3 TBSCertificate (RFC 5280 4.1), by position:
// [0] version, serialNumber, signature, issuer, validity, subject,
// subjectPublicKeyInfo, [3] extensions.
const (
	tbsSignature            = 2
	tbsSubjectPublicKeyInfo = 6
)

// tbsFields splits a TBSCertificate into the DER of its fields.
func tbsFields(tbs []byte) ([][]byte, error) {
	_, content, err := derHeader(tbs)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for len(content) > 0 {
		var e []byte
		if e, content, err = derElem(content); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	if len(out) <= tbsSubjectPublicKeyInfo || out[0][0] != 0xa0 || out[tbsSignature][0] != 0x30 {
		return nil, errors.New("not a version 3 TBSCertificate")
	}
	return out, nil
}

// md5WithRSA is the AlgorithmIdentifier of md5WithRSAEncryption (RFC 3279
// 2.2.1), NULL parameters.
var md5WithRSA = func() []byte {
	b, err := asn1.Marshal(pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 4}, Parameters: asn1.NullRawValue})
	if err != nil {
		panic(err) // a constant
	}
	return b
}()

// derElem splits the first DER element off b: its full encoding and the rest.
func derElem(b []byte) (elem, rest []byte, err error) {
	if len(b) < 2 {
		return nil, nil, errors.New("short DER")
	}
	n, hdr := int(b[1]), 2
	if n >= 0x80 {
		k := n & 0x7f
		if k == 0 || k > 3 || len(b) < 2+k {
			return nil, nil, errors.New("bad DER length")
		}
		n = 0
		for _, c := range b[2 : 2+k] {
			n = n<<8 | int(c)
		}
		hdr += k
	}
	if len(b) < hdr+n {
		return nil, nil, errors.New("truncated DER")
	}
	return b[:hdr+n], b[hdr+n:], nil
}

// derHeader returns an element's header and content.
func derHeader(elem []byte) (hdr, content []byte, err error) {
	e, _, err := derElem(elem)
	if err != nil {
		return nil, nil, err
	}
	h := 2
	if e[1] >= 0x80 {
		h += int(e[1] & 0x7f)
	}
	return e[:h], e[h:], nil
}

// appendDER appends a DER element with the given tag and content.
func appendDER(b []byte, tag byte, content []byte) []byte {
	b = append(b, tag)
	switch n := len(content); {
	case n < 0x80:
		b = append(b, byte(n))
	case n < 0x100:
		b = append(b, 0x81, byte(n))
	case n < 0x10000:
		b = append(b, 0x82, byte(n>>8), byte(n))
	default:
		b = append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, content...)
}

// notACertificate is what brokenIntermediate sends as the second
// certificate: well-formed DER (a SEQUENCE holding a UTF8String), but no
// X.509 certificate.
var notACertificate = append([]byte{0x30, 0x21, 0x0c, 0x1f}, "mxsurvey lab: not a certificate"...)

// breakVersion returns a copy of a certificate's DER whose version field
// reads 6 (X.509 knows 1 to 3), which crypto/x509 rejects ("x509: invalid
// version"). Only that byte changes: the lengths, and so everything a TLS
// stack needs to pass the bytes on, stay valid; the signature no longer
// verifies, which no parser gets far enough to see.
func breakVersion(der []byte) ([]byte, error) {
	// Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] EXPLICIT INTEGER 2, ...
	// each SEQUENCE header is 2 to 4 bytes long.
	for i := 4; i+5 <= len(der) && i < 12; i++ {
		if der[i] == 0xa0 && der[i+1] == 3 && der[i+2] == 2 && der[i+3] == 1 && der[i+4] == 2 {
			out := bytes.Clone(der)
			out[i+4] = 5
			if _, err := x509.ParseCertificate(out); err == nil {
				return nil, fmt.Errorf("a version-6 certificate still parses")
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("no v3 version field found")
}

// fillerCAs are the unrelated self-signed CAs cert_chain_50 appends after the
// lab intermediate; they play no part in any path to the root.
func (a *Authority) fillerCAs() ([][]byte, error) {
	a.fillOnce.Do(func() {
		caFrom, caTo := world.CAValidity()
		for k := range world.Chain50Pad {
			key := a.p256[k%len(a.p256)]
			tmpl := &x509.Certificate{
				SerialNumber:          big.NewInt(int64(1000 + k)),
				Subject:               pkix.Name{CommonName: fmt.Sprintf("mxsurvey lab filler CA %d", k+1), Organization: []string{"mxsurvey lab"}},
				NotBefore:             caFrom,
				NotAfter:              caTo,
				KeyUsage:              x509.KeyUsageCertSign,
				BasicConstraintsValid: true,
				IsCA:                  true,
			}
			der, err := x509.CreateCertificate(nil, tmpl, tmpl, key.Public(), key)
			if err != nil {
				a.fillErr = err
				return
			}
			a.fillers = append(a.fillers, der)
		}
	})
	return a.fillers, a.fillErr
}

// Get returns the certificate for a spec, cached: handshakes repeat for the
// same server, and provider and hosting certificates serve many targets.
func (a *Authority) Get(sp world.CertSpec) (*tls.Certificate, error) {
	id := sp.ID()
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

// Digest is what the truth needs of a served certificate.
type Digest struct {
	SHA256   string // hex of the leaf's DER
	ChainLen int    // certificates sent
}

// Digest makes (or fetches) a certificate for its hash. memo spares making
// the same certificate twice for one domain (a host with two addresses);
// shared certificates go through the authority's cache of digests.
func (a *Authority) Digest(sp world.CertSpec, shared bool, memo map[string]Digest) (Digest, error) {
	id := sp.ID()
	if d, ok := memo[id]; ok {
		return d, nil
	}
	if shared {
		a.mu.Lock()
		d, ok := a.digests[id]
		a.mu.Unlock()
		if ok {
			return d, nil
		}
	}
	is, err := a.make(sp)
	if err != nil {
		return Digest{}, err
	}
	d := Digest{SHA256: is.sha256, ChainLen: len(is.tls.Certificate)}
	if shared {
		a.mu.Lock()
		if len(a.digests) >= maxCachedCerts {
			clear(a.digests)
		}
		a.digests[id] = d
		a.mu.Unlock()
	}
	if memo != nil {
		memo[id] = d
	}
	return d, nil
}
