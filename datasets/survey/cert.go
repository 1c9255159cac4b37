package survey

import (
	"bytes"
	"crypto"
	"crypto/dsa" // deprecated, but old servers still present DSA keys; a survey must name them
	"crypto/ecdsa"
	"crypto/ed25519"
	_ "crypto/md5" // crypto.MD5 for the signatures crypto/x509 refuses to check
	"crypto/rsa"
	_ "crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"math/big"
	"strings"
	"time"
)

// Key types in ProbeRow.CertKeyType.
const (
	KeyRSA     = "RSA"
	KeyECDSA   = "ECDSA"
	KeyEd25519 = "Ed25519"
	KeyDSA     = "DSA"
	KeyOther   = "other"
)

// Cert is what the dataset states about a leaf certificate: the values of
// the cert_* columns that describe it (docs/schema.md). The scanner writes
// them and the analyzer counts and exports them, both from DescribeCert, so a
// row cannot say two things about one certificate.
type Cert struct {
	SubjectCN  string    // as sent: a CN is often not a name at all
	SANDNS     []string  // lowercased, without the trailing dot
	SANIP      []string  // textual form of each SAN IP address
	Issuer     string    // the issuer DN, RFC 2253 style
	NotBefore  time.Time // UTC
	NotAfter   time.Time // UTC
	SHA256     string    // CertSHA256 of the DER
	KeyType    string    // KeyRSA, KeyECDSA, ...
	KeyBits    int32     // modulus, curve or P bits; 0 for KeyOther
	SelfSigned bool      // see SelfSigned
}

// CertSHA256 is the fingerprint that identifies a certificate in the
// dataset, parseable or not: the lowercase hex SHA-256 of its DER, as
// `openssl x509 -fingerprint -sha256` prints it without colons.
func CertSHA256(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// DescribeCert describes a parsed leaf certificate. It is pure: the same
// certificate always gives the same description, whoever asks and when.
func DescribeCert(c *x509.Certificate) Cert {
	d := Cert{
		SubjectCN:  c.Subject.CommonName,
		Issuer:     c.Issuer.String(),
		NotBefore:  c.NotBefore.UTC(),
		NotAfter:   c.NotAfter.UTC(),
		SHA256:     CertSHA256(c.Raw),
		SelfSigned: SelfSigned(c),
	}
	for _, n := range c.DNSNames {
		d.SANDNS = append(d.SANDNS, strings.TrimSuffix(strings.ToLower(n), "."))
	}
	for _, ip := range c.IPAddresses {
		d.SANIP = append(d.SANIP, ip.String())
	}
	d.KeyType, d.KeyBits = keyType(c.PublicKey)
	return d
}

// SetCert sets the columns of r that describe its leaf certificate: those
// of d, and cert_parse_error (empty when the leaf parsed).
func (r *ProbeRow) SetCert(d Cert, parseError string) {
	r.CertSubjectCN, r.CertSANDNS, r.CertSANIP, r.CertIssuer = d.SubjectCN, d.SANDNS, d.SANIP, d.Issuer
	r.CertNotBefore, r.CertNotAfter, r.CertSHA256 = d.NotBefore, d.NotAfter, d.SHA256
	r.CertKeyType, r.CertKeyBits, r.CertSelfSigned = d.KeyType, d.KeyBits, d.SelfSigned
	r.CertParseError = parseError
}

func keyType(pub any) (string, int32) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return KeyRSA, int32(k.N.BitLen())
	case *ecdsa.PublicKey:
		return KeyECDSA, int32(k.Curve.Params().BitSize)
	case ed25519.PublicKey:
		return KeyEd25519, 256
	case *dsa.PublicKey:
		return KeyDSA, int32(k.P.BitLen())
	}
	return KeyOther, 0
}

// SelfSigned is the dataset's one definition of a self-signed certificate,
// the question a reader of the dataset asks: was it signed by its own key?
// The issuer and subject names are equal (as encoded) and the signature
// verifies with the certificate's own public key.
//
// It is not CheckSignatureFrom(self), which also demands the CA constraints
// (basicConstraints cA, keyCertSign) and refuses SHA-1: most self-signed
// mail server certificates (Debian's snakeoil among them) lack cA, and many
// are old. Signatures that crypto/x509 refuses to check (md5WithRSA as
// insecure, DSA as unsupported) are verified with crypto/rsa and crypto/dsa
// directly, so an old self-signed certificate counts as what it is. A
// signature that cannot be checked at all (MD2, an unknown algorithm, an RSA
// key below the 1024 bits crypto/rsa accepts, DSA parameters beyond
// dsaMaxPBits) is not self-signed: nothing shows that the key signed it.
func SelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && checkOwnSignature(c) == nil
}

// refused lists the signature algorithms that crypto/x509 knows but refuses
// to verify on a certificate, with their hash and the key they need.
var refused = map[x509.SignatureAlgorithm]struct {
	hash crypto.Hash
	key  x509.PublicKeyAlgorithm
}{
	x509.MD5WithRSA:    {crypto.MD5, x509.RSA},
	x509.SHA1WithRSA:   {crypto.SHA1, x509.RSA}, // checked by crypto/x509 today; listed should that change
	x509.ECDSAWithSHA1: {crypto.SHA1, x509.ECDSA},
	x509.DSAWithSHA1:   {crypto.SHA1, x509.DSA},
	x509.DSAWithSHA256: {crypto.SHA256, x509.DSA},
}

// Bounds on DSA parameters whose signatures are checked: FIPS 186-4 stops
// at 3072/256 bits. A hostile certificate with huge parameters must not cost
// the scan seconds of modular exponentiation.
const (
	dsaMaxPBits = 4096
	dsaMaxQBits = 256
)

var errBadSignature = errors.New("signature does not verify")

func checkOwnSignature(c *x509.Certificate) error {
	err := c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature)
	var insecure x509.InsecureAlgorithmError
	if err == nil || !errors.As(err, &insecure) && !errors.Is(err, x509.ErrUnsupportedAlgorithm) {
		return err
	}
	alg, ok := refused[c.SignatureAlgorithm]
	if !ok || alg.key != c.PublicKeyAlgorithm {
		return err
	}
	h := alg.hash
	hh := h.New()
	hh.Write(c.RawTBSCertificate)
	digest := hh.Sum(nil)
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(k, h, digest, c.Signature)
	case *ecdsa.PublicKey:
		if ecdsa.VerifyASN1(k, digest, c.Signature) {
			return nil
		}
	case *dsa.PublicKey:
		if k.P.BitLen() > dsaMaxPBits || k.Q.BitLen() > dsaMaxQBits {
			return err
		}
		var sig struct{ R, S *big.Int }
		if rest, aerr := asn1.Unmarshal(c.Signature, &sig); aerr != nil || len(rest) > 0 {
			return errBadSignature
		}
		// FIPS 186-4 §4.6: the leftmost bits of the digest, as many as Q has.
		if n := (k.Q.BitLen() + 7) / 8; len(digest) > n {
			digest = digest[:n]
		}
		if dsa.Verify(k, digest, sig.R, sig.S) {
			return nil
		}
	default:
		return err
	}
	return errBadSignature
}
