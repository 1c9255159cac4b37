package certs

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/analyze/internal/testpki"
)

// The shortcut of anchor.go must decide as crypto/x509 decides for the full
// chain, in every case that could tell them apart; and it must be taken in
// the ordinary case, or it saves nothing.
func TestAnchoredAgreesWithFullChain(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	ca := func(cn string, parent *testpki.Cert, edit func(*x509.Certificate)) *testpki.Cert {
		return testpki.Make(testpki.Spec{CN: cn, Org: "Test PKI", IsCA: true, Edit: edit}, parent)
	}
	leafOf := func(issuer *testpki.Cert, edit func(*x509.Certificate)) *testpki.Cert {
		return testpki.Make(testpki.Spec{CN: "mx.example.com", DNSNames: []string{"mx.example.com"}, Edit: edit}, issuer)
	}
	policyConstraint := func(c *x509.Certificate) { // requireExplicitPolicy 0, critical as RFC 5280 wants
		c.ExtraExtensions = append(c.ExtraExtensions, pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 36}, Critical: true,
			Value: []byte{0x30, 0x03, 0x80, 0x01, 0x00}})
	}

	root := ca("Root", nil, nil)
	inter := ca("Issuing CA", root, nil)
	otherRoot := ca("Other Root", nil, nil)
	impostor := ca("Issuing CA", otherRoot, nil) // inter's name, another key
	notCA := testpki.Make(testpki.Spec{CN: "Not a CA", Org: "Test PKI"}, root)
	noBasic := ca("No basic constraints", root, func(c *x509.Certificate) { c.BasicConstraintsValid, c.IsCA = false, false })
	expiredInter := ca("Expired CA", root, func(c *x509.Certificate) { c.NotAfter = now.Add(-time.Hour) })
	explicit := ca("Explicit policy CA", root, policyConstraint)
	// Expired the day before: a root's validity is taken as constant within
	// a UTC day (trusted's doc comment).
	expiredRoot := ca("Expired Root", nil, func(c *x509.Certificate) { c.NotAfter = now.AddDate(0, 0, -2) })
	underExpired := ca("CA under an expired root", expiredRoot, nil)
	permitsOrg := ca("Root permitting example.org", nil, func(c *x509.Certificate) { c.PermittedDNSDomains = []string{"example.org"} })
	underOrg := ca("CA under a root permitting example.org", permitsOrg, nil)
	permitsCom := ca("Root permitting example.com", nil, func(c *x509.Certificate) { c.PermittedDNSDomains = []string{"example.com"} })
	underCom := ca("CA under a root permitting example.com", permitsCom, nil)
	pathZero := ca("Root with path length 0", nil, func(c *x509.Certificate) { c.MaxPathLen, c.MaxPathLenZero = 0, true })
	underPathZero := ca("CA under a root with path length 0", pathZero, nil)

	tests := []struct {
		name     string
		roots    []*testpki.Cert
		chain    [][]byte
		anchored bool // the shortcut is taken
	}{
		{"ordinary chain", []*testpki.Cert{root}, testpki.Chain(leafOf(inter, nil), inter), true},
		{"root not trusted", []*testpki.Cert{otherRoot}, testpki.Chain(leafOf(inter, nil), inter), false},
		{"intermediate is trusted itself", []*testpki.Cert{root, inter}, testpki.Chain(leafOf(inter, nil), inter), true},
		{"leaf signed by another key of the same name", []*testpki.Cert{root, otherRoot}, testpki.Chain(leafOf(impostor, nil), inter), true},
		{"leaf signed by the root, an unrelated intermediate sent", []*testpki.Cert{root}, testpki.Chain(leafOf(root, nil), inter), true},
		{"expired leaf", []*testpki.Cert{root}, testpki.Chain(leafOf(inter, func(c *x509.Certificate) { c.NotAfter = now.Add(-time.Hour) }), inter), true},
		{"intermediate not a CA", []*testpki.Cert{root}, testpki.Chain(leafOf(notCA, nil), notCA), false},
		{"intermediate without basic constraints", []*testpki.Cert{root}, testpki.Chain(leafOf(noBasic, nil), noBasic), false},
		{"expired intermediate", []*testpki.Cert{root}, testpki.Chain(leafOf(expiredInter, nil), expiredInter), false},
		{"expired root", []*testpki.Cert{expiredRoot}, testpki.Chain(leafOf(underExpired, nil), underExpired), false},
		{"root's name constraints exclude the leaf", []*testpki.Cert{permitsOrg}, testpki.Chain(leafOf(underOrg, nil), underOrg), false},
		{"root's name constraints allow the leaf", []*testpki.Cert{permitsCom}, testpki.Chain(leafOf(underCom, nil), underCom), false},
		{"root's path length 0", []*testpki.Cert{pathZero}, testpki.Chain(leafOf(underPathZero, nil), underPathZero), false},
		{"intermediate requires an explicit policy", []*testpki.Cert{root}, testpki.Chain(leafOf(explicit, nil), explicit), false},
		{"leaf requires an explicit policy", []*testpki.Cert{root}, testpki.Chain(leafOf(inter, policyConstraint), inter), false},
	}
	// Each case that tells the shortcut apart from the full chain must
	// reach crypto/x509 with a verdict worth telling: say which way.
	wantTrusted := map[string]bool{"ordinary chain": true, "intermediate is trusted itself": true,
		"leaf signed by the root, an unrelated intermediate sent": true, "root's name constraints allow the leaf": true}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool := testpki.Pool(tt.roots...)
			leaf, err := x509.ParseCertificate(tt.chain[0])
			if err != nil {
				t.Fatal(err)
			}
			inters := x509.NewCertPool()
			for _, der := range tt.chain[1:] {
				c, err := x509.ParseCertificate(der)
				if err != nil {
					t.Fatal(err)
				}
				inters.AddCert(c)
			}
			_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inters, CurrentTime: now,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
			full := err == nil
			v := New(pool)
			res, err := v.Check(tt.chain, now)
			if err != nil {
				t.Fatal(err)
			}
			if res.Trusted != full {
				t.Errorf("trusted = %v, crypto/x509 on the full chain says %v", res.Trusted, full)
			}
			if full != wantTrusted[tt.name] {
				t.Errorf("crypto/x509 says trusted = %v: the case does not test what it says", full)
			}
			if got := v.Stats().Anchored == 1; got != tt.anchored {
				t.Errorf("shortcut taken = %v, want %v", got, tt.anchored)
			}
		})
	}
}
