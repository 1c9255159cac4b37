package pki

import (
	"crypto/dsa" // deprecated, and what old mail servers still present: the lab shows one
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/binary"
	"fmt"
	"math/big"
	"math/rand/v2"
	"sync"

	"github.com/mxsurvey/mxsurvey/lab/world"
)

// A DSA key for cert_dsa. crypto/x509 does not write DSA keys and crypto/tls
// cannot sign with one, so the certificate carries this key and the server
// signs with another (a TLS 1.2 client gives up at the certificate, before
// any signature). Parameter generation takes a fraction of a second: the
// parameters are made once per process, from a fixed seed, and each world's
// key from its own seed, both through a deterministic stream so that the
// certificate is the same every time it is made.

// dsaParameters are the group (P, Q, G) every lab's DSA key lives in.
var dsaParameters = sync.OnceValues(func() (*dsa.Parameters, error) {
	p := &dsa.Parameters{}
	if err := dsa.GenerateParameters(p, rand.NewChaCha8([32]byte{'m', 'x', 's', 'u', 'r', 'v', 'e', 'y'}), dsaSizes); err != nil {
		return nil, fmt.Errorf("lab: DSA parameters: %w", err)
	}
	if p.P.BitLen() != world.DSABits {
		return nil, fmt.Errorf("lab: DSA parameters of %d bits, the world says %d", p.P.BitLen(), world.DSABits)
	}
	return p, nil
})

// dsaSizes are the parameter sizes of world.DSABits.
const dsaSizes = dsa.L1024N160

func (a *Authority) dsa() (*dsa.PrivateKey, error) {
	a.dsaOnce.Do(func() {
		params, err := dsaParameters()
		if err != nil {
			a.dsaErr = err
			return
		}
		var seed [32]byte
		binary.BigEndian.PutUint64(seed[:], a.seed)
		copy(seed[8:], "dsa-leaf")
		k := &dsa.PrivateKey{PublicKey: dsa.PublicKey{Parameters: *params}}
		if err := dsa.GenerateKey(k, rand.NewChaCha8(seed)); err != nil {
			a.dsaErr = fmt.Errorf("lab: DSA key: %w", err)
			return
		}
		a.dsaKey = k
	})
	return a.dsaKey, a.dsaErr
}

// dsaSPKI is the SubjectPublicKeyInfo of a DSA key (RFC 3279 2.3.2): the
// algorithm id-dsa with the parameters, and the public value Y as an
// INTEGER in the BIT STRING.
func dsaSPKI(k *dsa.PublicKey) ([]byte, error) {
	params, err := asn1.Marshal(struct{ P, Q, G *big.Int }{k.P, k.Q, k.G})
	if err != nil {
		return nil, err
	}
	y, err := asn1.Marshal(k.Y)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}{
		pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 1}, Parameters: asn1.RawValue{FullBytes: params}},
		asn1.BitString{Bytes: y, BitLength: 8 * len(y)},
	})
}
