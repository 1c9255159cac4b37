package pki

import (
	"bytes"
	"crypto"
	"crypto/dsa"
	"crypto/ecdsa"
	"crypto/md5"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"
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

// TestTLSA holds the records the lab makes against the certificates it
// serves, parsed by crypto/x509 and digested here, and holds Names (which
// says by identity what a record names) against the digests: a record
// names a leaf exactly when its data is that leaf's.
func TestTLSA(t *testing.T) {
	a, err := New(42)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(cn string, k world.Key, v world.Validity) world.CertSpec {
		return world.CertSpec{CN: cn, SANs: []string{cn}, Key: k, Validity: v}
	}
	specs := []world.CertSpec{
		leaf("mx.amber1.test", world.KeyP256, world.ValidNow),
		leaf("mx.amber2.test", world.KeyP256, world.ValidNow),
		leaf("mx.amber3.test", world.KeyP256, world.ValidExpired),
		leaf("mx.amber4.test", world.KeyP384, world.ValidNow),
		leaf("mx.amber5.test", world.KeyRSA2048, world.ValidNow),
	}
	// More leaves, so that some share a pool key with another.
	for i := range 40 {
		specs = append(specs, leaf("mx"+strconv.Itoa(i)+".birch.test", world.KeyP256, world.ValidNow))
	}
	// own is the data of a record of parameters (sel, mtype) for a served
	// certificate, computed from the DER the server sends.
	own := func(sp world.CertSpec, sel, mtype uint8) []byte {
		c, err := a.Get(sp)
		if err != nil {
			t.Fatal(err)
		}
		x, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		b := x.Raw
		if sel == 1 {
			b = x.RawSubjectPublicKeyInfo
		}
		switch mtype {
		case 1:
			s := sha256.Sum256(b)
			return s[:]
		case 2:
			s := sha512.Sum512(b)
			return s[:]
		}
		return b
	}
	matched, total := 0, 0
	for _, of := range []world.Assoc{world.AssocLeaf, world.AssocPrevKey} {
		for _, p := range [][2]uint8{{0, 0}, {0, 1}, {1, 1}, {1, 2}} {
			for _, l := range specs[:6] {
				rr := world.TLSARR{TLSA: world.TLSA{Usage: 3, Selector: p[0], MType: p[1], Of: of}, Leaf: l}
				recs, err := a.TLSA([]world.TLSARR{rr})
				if err != nil {
					t.Fatal(err)
				}
				if len(recs) != 1 || recs[0].Usage != 3 || recs[0].Selector != p[0] || recs[0].MType != p[1] {
					t.Fatalf("%v: records %v", rr, recs)
				}
				for _, served := range specs {
					total++
					same := bytes.Equal(recs[0].Data, own(served, p[0], p[1]))
					if same {
						matched++
					}
					if got := a.Names(rr, served); got != same {
						t.Errorf("record %d %d %d of %v for %s names %s: %v, its data equal: %v", 3, p[0], p[1], of, l.CN, served.CN, got, same)
					}
				}
			}
		}
	}
	if matched < 20 {
		t.Errorf("only %d of %d pairs matched", matched, total)
	}
	// The intermediate, a short record, and one record for two leaves with
	// one key.
	x, _ := x509.ParseCertificate(a.inter.Raw)
	inter := sha256.Sum256(x.RawSubjectPublicKeyInfo)
	short := world.TLSARR{TLSA: world.TLSA{Usage: 3, Selector: 1, MType: 1, Of: world.AssocShort}, Leaf: specs[0]}
	recs, err := a.TLSA([]world.TLSARR{
		{TLSA: world.TLSA{Usage: 2, Selector: 1, MType: 1, Of: world.AssocIntermediate}},
		short,
		{TLSA: world.TLSA{Usage: 3, Selector: 1, MType: 1}, Leaf: specs[0]},
		{TLSA: world.TLSA{Usage: 3, Selector: 1, MType: 1}, Leaf: specs[0]},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || !bytes.Equal(recs[0].Data, inter[:]) || len(recs[1].Data) != 31 ||
		!bytes.Equal(recs[1].Data, own(specs[0], 1, 1)[:31]) || a.Names(short, specs[0]) {
		t.Errorf("records %v", recs)
	}
	if s := recs[0].String(); s != "2 1 1 "+hex.EncodeToString(inter[:]) {
		t.Errorf("presentation %q", s)
	}
}
