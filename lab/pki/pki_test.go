package pki

import (
	"bytes"
	"crypto"
	"crypto/dsa"
	"crypto/ecdsa"
	"crypto/md5"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"slices"
	"testing"

	"github.com/mxsurvey/mxsurvey/lab/world"
)

// TestCreateCertificate holds the lab's signing shortcut against
// x509.CreateCertificate: the same DER, byte for byte.
func TestCreateCertificate(t *testing.T) {
	a, err := New(42)
	if err != nil {
		t.Fatal(err)
	}
	specs := []world.CertSpec{
		{CN: "mx.amber1.test", SANs: []string{"mx.amber1.test"}},
		{CN: "mx.amber1.test", SANs: []string{"mx.amber1.test"}, Issuer: world.IssuerSelf, Key: world.KeyP384},
		{CN: "localhost", SANs: []string{"localhost"}, Issuer: world.IssuerSelf, Key: world.KeyRSA2048},
		{CN: "mx.amber1.test", Issuer: world.IssuerUnknown, Validity: world.ValidExpired},
		{CN: "*.mail.provider2.test", SANs: []string{"*.mail.provider2.test"}, Key: world.KeyRSA2048},
	}
	for _, sp := range specs {
		is, err := a.make(sp)
		if err != nil {
			t.Fatal(err)
		}
		got := is.tls.Certificate[0]
		tmpl, parent, signer := a.template(sp)
		want, err := x509.CreateCertificate(nil, tmpl, parent, tmpl.PublicKey, signer)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: DER differs from x509.CreateCertificate's", sp.ID())
		}
		if _, err := x509.ParseCertificate(got); err != nil {
			t.Errorf("%s: %v", sp.ID(), err)
		}
	}
}

// TestRefusedCertificates holds the two certificates x509.CreateCertificate
// refuses to make against crypto/x509's reading of them: an MD5-signed
// self-signed one, and a DSA leaf from the intermediate. Both are the same
// each time they are made.
func TestRefusedCertificates(t *testing.T) {
	a, err := New(42)
	if err != nil {
		t.Fatal(err)
	}
	md5Spec := world.CertSpec{CN: "mx.amber1.test", SANs: []string{"mx.amber1.test"}, Issuer: world.IssuerSelf, Key: world.KeyRSA2048, Sig: world.SigMD5}
	dsaSpec := world.CertSpec{CN: "mx.amber2.test", SANs: []string{"mx.amber2.test"}, Key: world.KeyDSA}
	parse := func(sp world.CertSpec) (*x509.Certificate, *issued) {
		t.Helper()
		is, err := a.make(sp)
		if err != nil {
			t.Fatal(err)
		}
		again, err := a.make(sp)
		if err != nil || !bytes.Equal(is.tls.Certificate[0], again.tls.Certificate[0]) {
			t.Errorf("%s: made twice, two certificates (%v)", sp.ID(), err)
		}
		c, err := x509.ParseCertificate(is.tls.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if c.Subject.CommonName != sp.CN || !slices.Equal(c.DNSNames, sp.SANs) {
			t.Errorf("%s: subject %s, names %v", sp.ID(), c.Subject, c.DNSNames)
		}
		return c, is
	}

	c, _ := parse(md5Spec)
	var insecure x509.InsecureAlgorithmError
	sum := md5.Sum(c.RawTBSCertificate)
	if c.SignatureAlgorithm != x509.MD5WithRSA || !bytes.Equal(c.RawIssuer, c.RawSubject) ||
		!errors.As(c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature), &insecure) ||
		rsa.VerifyPKCS1v15(c.PublicKey.(*rsa.PublicKey), crypto.MD5, sum[:], c.Signature) != nil {
		t.Errorf("md5: algorithm %v, self-issued %v, MD5 signature does not verify under its own key", c.SignatureAlgorithm,
			bytes.Equal(c.RawIssuer, c.RawSubject))
	}

	c, is := parse(dsaSpec)
	k, ok := c.PublicKey.(*dsa.PublicKey)
	if !ok || c.PublicKeyAlgorithm != x509.DSA || k.P.BitLen() != world.DSABits || k.Y.Cmp(a.dsaKey.Y) != 0 {
		t.Fatalf("dsa: key %T", c.PublicKey)
	}
	if kt, bits := world.KeyDSA.KeyFacts(); kt != "DSA" || int(bits) != k.P.BitLen() {
		t.Errorf("dsa: the world says %s %d, the certificate holds %d bits", kt, bits, k.P.BitLen())
	}
	if err := c.CheckSignatureFrom(a.inter); err != nil {
		t.Errorf("dsa: not signed by the intermediate: %v", err)
	}
	if _, ok := is.tls.PrivateKey.(*ecdsa.PrivateKey); !ok {
		t.Errorf("dsa: served with a %T, which crypto/tls cannot sign with", is.tls.PrivateKey)
	}
}
