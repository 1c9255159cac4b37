package certs

import (
	"crypto/x509"
	"encoding/asn1"
	"time"
)

// Verifying a leaf sent with its intermediate checks two signatures: the
// leaf's, by the intermediate, and the intermediate's, by a root. The second
// is the same computation for every leaf of the intermediate, a quarter of a
// million times in a large scan, and was half of the analyzer's
// verification work. So once per intermediate and day, the intermediate is
// verified against the roots; where that succeeds and nothing about the
// chain makes the shortcut decide differently, the leaf is then verified
// with the intermediate added to the roots as a trust anchor: one signature
// instead of two, and the same verdict as crypto/x509 gives for the full
// chain (TestAnchoredAgreesWithFullChain holds them side by side).
//
// Why the verdicts agree, from crypto/x509's Verify: a chain leaf <-
// intermediate <- root passes when each signature verifies, each
// certificate is valid at the time (the intermediate's own validity is
// checked in both ways, as intermediate or as anchor), the intermediate is
// a CA, the root's path length allows one intermediate below it, the name
// constraints of every CA in the chain allow the names below it, and RFC
// 5280 policy processing succeeds. The shortcut is taken only when the
// intermediate verified against the roots at the same instant, is a CA,
// and has no policy constraints or mappings; when the root it chained to
// has no name constraints and no path length of 0; and when the leaf does
// not require an explicit policy. Policy processing then passes either way
// (with no required policy it can only fail through those fields), and the
// remaining checks are the same. Other paths (a leaf signed by a root
// directly) stay open: the anchors are the roots plus the intermediate.
//
// Root pools whose certificates carry constraint functions
// (CertPool.AddCertWithConstraint) are not supported: the function would
// see a shorter chain. LoadRoots and the system roots never add any.

// anchorKey is one intermediate on one day, inside or outside its validity.
type anchorKey struct {
	inter [32]byte
	day   int64
	in    byte
}

var oidNameConstraints = asn1.ObjectIdentifier{2, 5, 29, 30}

// anchored returns the trust anchors to verify leaf against instead of the
// full chain leaf <- inter, or nil when the shortcut would not decide as
// the full chain does.
func (v *Verifier) anchored(leaf, inter *x509.Certificate, sum [32]byte, day int64, at time.Time) *x509.CertPool {
	if leaf.RequireExplicitPolicyZero || !inter.BasicConstraintsValid || !inter.IsCA ||
		inter.RequireExplicitPolicy > 0 || inter.RequireExplicitPolicyZero || len(inter.PolicyMappings) > 0 {
		return nil
	}
	in := inPeriod(inter.NotBefore, inter.NotAfter, at)
	pool, _ := v.anchors.get(anchorKey{sum, day, in}, sum[2], func() *x509.CertPool {
		chains, err := inter.Verify(x509.VerifyOptions{
			Roots:       v.roots,
			CurrentTime: firstInstant(day, []*x509.Certificate{inter}, []byte{in}, at),
			KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
		})
		if err != nil {
			return nil
		}
		for _, chain := range chains {
			if len(chain) == 2 && !plainRoot(chain[1]) {
				return nil
			}
		}
		pool := v.roots.Clone()
		pool.AddCert(inter)
		return pool
	})
	return pool
}

// plainRoot reports whether a root constrains nothing below it beyond what
// it does for its intermediate: no name constraints, and a path length (if
// any) that allows an intermediate.
func plainRoot(root *x509.Certificate) bool {
	if root.BasicConstraintsValid && root.MaxPathLen == 0 {
		return false
	}
	for _, e := range root.Extensions {
		if e.Id.Equal(oidNameConstraints) {
			return false
		}
	}
	return true
}
