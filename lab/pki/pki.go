package pki

import (
	"bytes"
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
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"strconv"
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

// brokenKind is a chain crypto/x509 cannot parse (the cert_parse_* cases).
type brokenKind uint8

const (
	brokenNone         brokenKind = iota
	brokenLeaf                    // the leaf's version field says 6: "x509: invalid version"
	brokenIntermediate            // the second certificate sent is a DER SEQUENCE that is no certificate
)

type certSpec struct {
	cn       string
	sans     []string // nil: no SAN extension at all
	issuer   issuerKind
	key      keyKind
	validity validity
	pad      int // unrelated CA certificates appended to the chain (cert_chain_50)
	broken   brokenKind
}

func (s certSpec) id() string {
	// cn|sans|issuer|key|validity|nosan|pad|broken
	b := make([]byte, 0, 64+len(s.cn)*(1+len(s.sans)))
	b = append(append(b, s.cn...), '|')
	for i, n := range s.sans {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, n...)
	}
	b = append(b, '|')
	b = strconv.AppendUint(b, uint64(s.issuer), 10)
	b = append(b, '|')
	b = strconv.AppendUint(b, uint64(s.key), 10)
	b = append(b, '|')
	b = strconv.AppendUint(b, uint64(s.validity), 10)
	b = append(b, '|')
	b = strconv.AppendBool(b, s.sans == nil)
	b = append(b, '|')
	b = strconv.AppendInt(b, int64(s.pad), 10)
	b = append(b, '|')
	b = strconv.AppendUint(b, uint64(s.broken), 10)
	return string(b)
}

// chain50Pad is how many filler CAs cert_chain_50 appends to leaf and
// intermediate: 50 certificates sent.
const chain50Pad = 48

// specFor states which certificate a server presents for an SNI. It is the
// single place where cases become certificates.
func specFor(s *server, sni string) certSpec {
	name := s.certName(sni)
	sp := certSpec{cn: name, sans: []string{name}}
	switch s.style {
	case styleSuite:
		return certSpec{cn: s.banner, sans: s.san}
	case styleAutoSSL:
		// Per-domain certificates by SNI; without a hosted domain's name the
		// server's own.
		if d, ok := s.autoSSLDomain(sni); ok {
			return certSpec{cn: sni, sans: []string{sni, d}}
		}
		return certSpec{cn: s.banner, sans: []string{s.banner}}
	case styleDefaultCert:
		// make-ssl-cert's snakeoil: self-signed for the machine's name.
		return certSpec{cn: s.banner, sans: []string{s.banner}, issuer: issSelf}
	}
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
	case cDNSManyMX, cDNSMXHundreds:
		sp = certSpec{cn: s.names[0], sans: s.names}
	case cCertChain50:
		sp.pad = chain50Pad
	case cCertParseLeafTLS12, cCertParseLeafTLS13:
		sp.broken = brokenLeaf
	case cCertParseIntermediateTLS12:
		sp.broken = brokenIntermediate
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

	fillOnce sync.Once
	fillers  [][]byte // DER of the filler CAs of cert_chain_50
	fillErr  error

	mu      sync.Mutex
	cache   map[string]*tls.Certificate
	digests map[string]certDigest // of shared certificates, for the truth
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
	a := &authority{seed: seed, cache: map[string]*tls.Certificate{}, digests: map[string]certDigest{}}
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

// template is the x509 template of a spec, its parent and the signer; the
// template's PublicKey is the leaf key's.
func (a *authority) template(sp certSpec) (tmpl, parent *x509.Certificate, signer crypto.Signer) {
	h := sha256.Sum256([]byte(sp.id()))
	serial := new(big.Int).SetUint64(binary.BigEndian.Uint64(h[:8]) >> 1)
	var key crypto.Signer
	switch sp.key {
	case keyP256:
		key = a.p256[h[8]%16]
	case keyP384:
		key = a.p384
	case keyRSA2048:
		key = a.rsaKey
	}
	tmpl = &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: sp.cn},
		DNSNames:     sp.sans,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		NotBefore:    validFrom,
		NotAfter:     validUntil,
		PublicKey:    key.Public(),
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
	parent, signer = a.inter, a.interKey
	switch sp.issuer {
	case issUnknown:
		parent, signer = a.unknown, a.unkKey
	case issSelf:
		parent, signer = tmpl, key
	}
	return tmpl, parent, signer
}

func (a *authority) make(sp certSpec) (*issued, error) {
	id := sp.id()
	if sp.key == keyRSA2048 {
		if _, err := a.rsa(); err != nil {
			return nil, err
		}
	}
	tmpl, parent, signer := a.template(sp)
	key := tmpl.PublicKey
	var chain [][]byte
	if sp.issuer == issLab {
		chain = [][]byte{a.inter.Raw}
	}
	der, err := createCertificate(tmpl, parent, key, signer)
	if err != nil {
		return nil, fmt.Errorf("lab: certificate %s: %w", id, err)
	}
	var leaf *x509.Certificate // nobody needs it parsed: crypto/tls sends the DER
	priv := a.privateKey(sp.key, id)
	if sp.pad > 0 {
		fill, err := a.fillerCAs()
		if err != nil {
			return nil, err
		}
		chain = append(chain, fill[:min(sp.pad, len(fill))]...)
	}
	switch sp.broken {
	case brokenLeaf:
		if der, err = breakVersion(der); err != nil {
			return nil, fmt.Errorf("lab: certificate %s: %w", id, err)
		}
	case brokenIntermediate:
		chain = [][]byte{notACertificate}
	}
	sum := sha256.Sum256(der)
	return &issued{
		tls:    &tls.Certificate{Certificate: append([][]byte{der}, chain...), PrivateKey: priv, Leaf: leaf},
		leaf:   leaf,
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
func createCertificate(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) ([]byte, error) {
	capture := &tbsCapture{pub: signer.Public()}
	if _, err := x509.CreateCertificate(nil, tmpl, parent, pub, capture); !errors.Is(err, errTBSCaptured) {
		if err == nil {
			err = errors.New("certificate signed without the signer")
		}
		return nil, err
	}
	tbs := capture.tbs
	// tbsCertificate ::= SEQUENCE { [0] version, serialNumber, signature AlgorithmIdentifier, ... }
	algID, err := tbsSignatureAlgorithm(tbs)
	if err != nil {
		return nil, err
	}
	var h crypto.Hash
	switch signer.Public().(type) {
	case *ecdsa.PublicKey:
		switch signer.Public().(*ecdsa.PublicKey).Curve {
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
	hh := h.New()
	hh.Write(tbs)
	sig, err := signer.Sign(nil, hh.Sum(nil), h)
	if err != nil {
		return nil, err
	}
	body := make([]byte, 0, len(tbs)+len(algID)+len(sig)+8)
	body = append(body, tbs...)
	body = append(body, algID...)
	body = appendDER(body, 0x03, append([]byte{0}, sig...))
	return appendDER(make([]byte, 0, len(body)+4), 0x30, body), nil
}

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

func tbsSignatureAlgorithm(tbs []byte) ([]byte, error) {
	seq, _, err := derElem(tbs)
	if err != nil {
		return nil, err
	}
	_, inner, err := derHeader(seq)
	if err != nil {
		return nil, err
	}
	if len(inner) > 0 && inner[0] == 0xa0 { // [0] EXPLICIT version
		if _, inner, err = derElem(inner); err != nil {
			return nil, err
		}
	}
	if _, inner, err = derElem(inner); err != nil { // serialNumber
		return nil, err
	}
	alg, _, err := derElem(inner)
	if err != nil || alg[0] != 0x30 {
		return nil, fmt.Errorf("no signature algorithm in the TBSCertificate: %v", err)
	}
	return alg, nil
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

// privateKey is the leaf key of a spec (the one template puts in PublicKey).
func (a *authority) privateKey(k keyKind, id string) crypto.Signer {
	switch k {
	case keyP384:
		return a.p384
	case keyRSA2048:
		return a.rsaKey
	}
	h := sha256.Sum256([]byte(id))
	return a.p256[h[8]%16]
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
func (a *authority) fillerCAs() ([][]byte, error) {
	a.fillOnce.Do(func() {
		for k := range chain50Pad {
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
