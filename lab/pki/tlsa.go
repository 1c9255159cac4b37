package pki

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/mxsurvey/mxsurvey/lab/world"
)

// TLSAWire is a TLSA record as the lab's DNS sends it (RFC 6698 §2.1).
type TLSAWire struct {
	Usage, Selector, MType uint8
	Data                   []byte
}

// String is the record's presentation form as the dataset keeps it:
// "usage selector mtype hexdata", lower-case hex (RFC 6698 §2.2).
func (r TLSAWire) String() string {
	return strconv.Itoa(int(r.Usage)) + " " + strconv.Itoa(int(r.Selector)) + " " + strconv.Itoa(int(r.MType)) + " " + hex.EncodeToString(r.Data)
}

// TLSA makes the records of a TLSA RRset: each record's certificate
// association data from what the world says it is made of, in order, a
// record equal to an earlier one (two leaves with one key) left out, as an
// RRset holds each record once.
func (a *Authority) TLSA(rrs []world.TLSARR) ([]TLSAWire, error) {
	out := make([]TLSAWire, 0, len(rrs))
	seen := map[string]bool{}
	for _, r := range rrs {
		sel, err := a.selected(r)
		if err != nil {
			return nil, err
		}
		data := sel
		switch r.MType {
		case 1:
			s := sha256.Sum256(sel)
			data = s[:]
		case 2:
			s := sha512.Sum512(sel)
			data = s[:]
		}
		if r.Of == world.AssocShort {
			data = data[:len(data)-1]
		}
		w := TLSAWire{r.Usage, r.Selector, r.MType, data}
		if k := w.String(); !seen[k] {
			seen[k] = true
			out = append(out, w)
		}
	}
	return out, nil
}

// selected is what a record's data is taken from: a certificate's DER
// (selector 0) or its SubjectPublicKeyInfo (selector 1).
func (a *Authority) selected(r world.TLSARR) ([]byte, error) {
	switch r.Of {
	case world.AssocIntermediate:
		if r.Selector == 1 {
			return a.inter.RawSubjectPublicKeyInfo, nil
		}
		return a.inter.Raw, nil
	case world.AssocPrevKey:
		if r.Selector == 1 {
			return x509.MarshalPKIXPublicKey(a.p256[a.prevKey(r.Leaf)].Public())
		}
		c, err := a.Get(previous(r.Leaf))
		if err != nil {
			return nil, err
		}
		return c.Certificate[0], nil
	}
	if r.Selector == 1 {
		if r.Leaf.Key == world.KeyRSA2048 {
			if _, err := a.rsa(); err != nil {
				return nil, err
			}
		}
		if r.Leaf.Key == world.KeyDSA {
			return nil, fmt.Errorf("lab: no TLSA record of a DSA key")
		}
		return x509.MarshalPKIXPublicKey(a.leafKey(r.Leaf, r.Leaf.ID()).Public())
	}
	c, err := a.Get(r.Leaf)
	if err != nil {
		return nil, err
	}
	return c.Certificate[0], nil
}

// previous is the certificate a server presented before its rollover: the
// same names, an earlier validity (a spec of its own, so a certificate and,
// by its ID, a key of its own).
func previous(sp world.CertSpec) world.CertSpec {
	if sp.Validity == world.ValidExpired {
		sp.Validity = world.ValidNow
	} else {
		sp.Validity = world.ValidExpired
	}
	return sp
}

// keyIndex is the index of a spec's key among the P-256 pool, -1 for the
// other keys.
func keyIndex(sp world.CertSpec) int {
	if sp.Key != world.KeyP256 {
		return -1
	}
	h := sha256.Sum256([]byte(sp.ID()))
	return int(h[8] % 16)
}

// prevKey is the P-256 key a server had before its rollover: the pool's
// next after its own (the first, for a server whose key is not from the
// pool).
func (a *Authority) prevKey(sp world.CertSpec) int {
	return (keyIndex(sp) + 1) % len(a.p256)
}

// keyName names a spec's key: equal names, one key.
func keyName(sp world.CertSpec) string {
	switch sp.Key {
	case world.KeyP384:
		return "p384"
	case world.KeyRSA2048:
		return "rsa"
	case world.KeyDSA:
		return "dsa"
	}
	return "p256-" + strconv.Itoa(keyIndex(sp))
}

// Names reports whether a TLSA record made of r names the leaf a server
// presents made of served: its certificate (selector 0) or its key (1). It
// says so from what the lab made each of, not by comparing digests; a
// record of the intermediate or with malformed data names no leaf.
func (a *Authority) Names(r world.TLSARR, served world.CertSpec) bool {
	switch r.Of {
	case world.AssocLeaf:
		if r.Selector == 1 {
			return keyName(r.Leaf) == keyName(served)
		}
		return r.Leaf.ID() == served.ID()
	case world.AssocPrevKey:
		if r.Selector == 1 {
			return served.Key == world.KeyP256 && a.prevKey(r.Leaf) == keyIndex(served)
		}
		return previous(r.Leaf).ID() == served.ID()
	}
	return false
}
