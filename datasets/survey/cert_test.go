package survey

import (
	"crypto"
	"crypto/dsa" // deprecated, but DescribeCert must still name DSA keys and check their signatures
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/md5"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"
)

var (
	notBefore = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	notAfter  = time.Date(2034, 1, 2, 3, 4, 5, 0, time.UTC)
)

// create makes a certificate with crypto/x509, signed by parent (itself
// when parent is nil).
func create(t *testing.T, tmpl *x509.Certificate, pub crypto.PublicKey, parent *x509.Certificate, key crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl.NotBefore, tmpl.NotAfter = notBefore, notAfter
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(1)
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	return parse(t, der)
}

func parse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Certificates that crypto/x509 refuses to create (an MD5 signature, a DSA
// key) are assembled here from their ASN.1 parts (RFC 5280 §4.1) and signed
// by the test itself.

type algorithm = pkix.AlgorithmIdentifier

var (
	oidMD5WithRSA    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 4}
	oidDSAWithSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 3, 2}
	oidDSA           = asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 1}
)

type tbsCertificate struct {
	Version   int `asn1:"explicit,tag:0"`
	Serial    *big.Int
	Signature algorithm
	Issuer    asn1.RawValue
	Validity  struct{ NotBefore, NotAfter time.Time }
	Subject   asn1.RawValue
	PublicKey asn1.RawValue
}

type certificate struct {
	TBS       asn1.RawValue
	Algorithm algorithm
	Signature asn1.BitString
}

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := asn1.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// assemble builds a v3 certificate for the public key spki (DER
// SubjectPublicKeyInfo), signed by sign with algorithm alg.
func assemble(t *testing.T, issuer, subject pkix.Name, spki []byte, alg algorithm, sign func(tbs []byte) []byte) *x509.Certificate {
	t.Helper()
	tbs := tbsCertificate{Version: 2, Serial: big.NewInt(7), Signature: alg,
		Issuer:    asn1.RawValue{FullBytes: marshal(t, issuer.ToRDNSequence())},
		Subject:   asn1.RawValue{FullBytes: marshal(t, subject.ToRDNSequence())},
		PublicKey: asn1.RawValue{FullBytes: spki}}
	tbs.Validity.NotBefore, tbs.Validity.NotAfter = notBefore, notAfter
	tbsDER := marshal(t, tbs)
	sig := sign(tbsDER)
	return parse(t, marshal(t, certificate{TBS: asn1.RawValue{FullBytes: tbsDER}, Algorithm: alg,
		Signature: asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}}))
}

func md5Signer(t *testing.T, key *rsa.PrivateKey) func([]byte) []byte {
	return func(tbs []byte) []byte {
		sum := md5.Sum(tbs)
		sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.MD5, sum[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
}

func dsaSigner(t *testing.T, key *dsa.PrivateKey) func([]byte) []byte {
	return func(tbs []byte) []byte {
		sum := sha256.Sum256(tbs)
		r, s, err := dsa.Sign(rand.Reader, key, sum[:key.Q.BitLen()/8]) // FIPS 186-4 §4.6: the leftmost N bits
		if err != nil {
			t.Fatal(err)
		}
		return marshal(t, struct{ R, S *big.Int }{r, s})
	}
}

func dsaSPKI(t *testing.T, pub *dsa.PublicKey) []byte {
	params := marshal(t, struct{ P, Q, G *big.Int }{pub.P, pub.Q, pub.G})
	y := marshal(t, pub.Y)
	return marshal(t, struct {
		Algorithm algorithm
		PublicKey asn1.BitString
	}{algorithm{Algorithm: oidDSA, Parameters: asn1.RawValue{FullBytes: params}}, asn1.BitString{Bytes: y, BitLength: 8 * len(y)}})
}

var (
	dsaOnce   sync.Once
	dsaParams dsa.Parameters
	dsaErr    error
)

// dsaKey makes a DSA key; the 1024/160 parameters are made once per test
// binary (a prime search of a fraction of a second).
func dsaKey(t *testing.T) *dsa.PrivateKey {
	t.Helper()
	dsaOnce.Do(func() { dsaErr = dsa.GenerateParameters(&dsaParams, rand.Reader, dsa.L1024N160) })
	if dsaErr != nil {
		t.Fatal(dsaErr)
	}
	k := &dsa.PrivateKey{PublicKey: dsa.PublicKey{Parameters: dsaParams}}
	if err := dsa.GenerateKey(k, rand.Reader); err != nil {
		t.Fatal(err)
	}
	return k
}

func rsaKey(t *testing.T, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestDescribeCert(t *testing.T) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ca := create(t, &x509.Certificate{Subject: pkix.Name{CommonName: "Test CA", Organization: []string{"mxsurvey"}},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, caKey.Public(), nil, caKey)
	leafKey := rsaKey(t, 2048)
	leaf := create(t, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "MX.Example.test"},
		DNSNames: []string{"mx.example.test", "MX2.Example.TEST."}, IPAddresses: []net.IP{net.ParseIP("192.0.2.25")}},
		leafKey.Public(), ca, caKey)
	got := DescribeCert(leaf)
	want := Cert{SubjectCN: "MX.Example.test", SANDNS: []string{"mx.example.test", "mx2.example.test"}, SANIP: []string{"192.0.2.25"},
		Issuer: "CN=Test CA,O=mxsurvey", NotBefore: notBefore, NotAfter: notAfter, SHA256: CertSHA256(leaf.Raw),
		KeyType: KeyRSA, KeyBits: 2048}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("CA-issued RSA leaf:\n got %+v\nwant %+v", got, want)
	}
	if got.NotBefore.Location() != time.UTC {
		t.Errorf("NotBefore not in UTC: %v", got.NotBefore)
	}

	edPub, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	self := pkix.Name{CommonName: "localhost"}
	other := pkix.Name{CommonName: "Old CA"}
	md5Key, strangerKey := rsaKey(t, 1024), rsaKey(t, 1024)
	spki, err := x509.MarshalPKIXPublicKey(&md5Key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	md5Alg := algorithm{Algorithm: oidMD5WithRSA, Parameters: asn1.NullRawValue}
	dsaAlg := algorithm{Algorithm: oidDSAWithSHA256}
	dk, dStranger := dsaKey(t), dsaKey(t)

	tests := []struct {
		name     string
		cert     *x509.Certificate
		keyType  string
		keyBits  int32
		selfSign bool
	}{
		{"CA, self-signed with cA", ca, KeyECDSA, 256, true},
		{"leaf, self-signed without cA", create(t, &x509.Certificate{Subject: self, DNSNames: []string{"localhost"}}, p384.Public(), nil, p384), KeyECDSA, 384, true},
		{"Ed25519, self-signed", create(t, &x509.Certificate{Subject: self}, edPub, nil, edKey), KeyEd25519, 256, true},
		{"CA-issued", leaf, KeyRSA, 2048, false},
		{"same names, another key", create(t, &x509.Certificate{Subject: pkix.Name{CommonName: "Test CA", Organization: []string{"mxsurvey"}}}, p384.Public(), ca, caKey), KeyECDSA, 384, false},
		// crypto/x509 refuses to check these signatures: checked directly.
		{"md5WithRSA, self-signed", assemble(t, self, self, spki, md5Alg, md5Signer(t, md5Key)), KeyRSA, 1024, true},
		{"md5WithRSA, self-issued, signed by another key", assemble(t, self, self, spki, md5Alg, md5Signer(t, strangerKey)), KeyRSA, 1024, false},
		{"md5WithRSA, issued by another", assemble(t, other, self, spki, md5Alg, md5Signer(t, md5Key)), KeyRSA, 1024, false},
		{"DSA key, self-signed", assemble(t, self, self, dsaSPKI(t, &dk.PublicKey), dsaAlg, dsaSigner(t, dk)), KeyDSA, 1024, true},
		{"DSA key, self-issued, signed by another key", assemble(t, self, self, dsaSPKI(t, &dk.PublicKey), dsaAlg, dsaSigner(t, dStranger)), KeyDSA, 1024, false},
		{"DSA key, issued by another", assemble(t, other, self, dsaSPKI(t, &dk.PublicKey), dsaAlg, dsaSigner(t, dk)), KeyDSA, 1024, false},
		{"DSA key, signature not DER", assemble(t, self, self, dsaSPKI(t, &dk.PublicKey), dsaAlg, func([]byte) []byte { return []byte{1, 2, 3} }), KeyDSA, 1024, false},
	}
	for _, tt := range tests {
		d := DescribeCert(tt.cert)
		if d.KeyType != tt.keyType || d.KeyBits != tt.keyBits || d.SelfSigned != tt.selfSign || d.SelfSigned != SelfSigned(tt.cert) {
			t.Errorf("%s: key %s %d, self-signed %v; want %s %d, %v", tt.name, d.KeyType, d.KeyBits, d.SelfSigned, tt.keyType, tt.keyBits, tt.selfSign)
		}
	}
}

func TestKeyType(t *testing.T) {
	x, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := new(big.Int).Lsh(big.NewInt(1), 1023)
	for _, tt := range []struct {
		pub  any
		typ  string
		bits int32
	}{
		{&dsa.PublicKey{Parameters: dsa.Parameters{P: p}}, KeyDSA, 1024},
		{x.PublicKey(), KeyOther, 0},
		{nil, KeyOther, 0},
	} {
		if typ, bits := keyType(tt.pub); typ != tt.typ || bits != tt.bits {
			t.Errorf("keyType(%T) = %s %d", tt.pub, typ, bits)
		}
	}
}

func TestSetCert(t *testing.T) {
	r := ProbeRow{CertSubjectCN: "old", CertSANDNS: []string{"old.example"}, CertSelfSigned: true, CertParseError: "old"}
	d := Cert{SubjectCN: "mx.example", KeyType: KeyRSA, KeyBits: 2048, SHA256: "ab"}
	r.SetCert(d, "")
	want := ProbeRow{CertSubjectCN: "mx.example", CertKeyType: KeyRSA, CertKeyBits: 2048, CertSHA256: "ab"}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("SetCert:\n got %+v\nwant %+v", r, want)
	}
}
