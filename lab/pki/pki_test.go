package pki

import (
	"bytes"
	"crypto/x509"
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
