package probe

import (
	"bytes"
	"crypto/dsa" // deprecated, but old servers still present DSA keys; a survey must name them
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/mxsurvey/mxsurvey/scan/record"
)

// Key types in ProbeRow.CertKeyType.
const (
	KeyRSA     = "RSA"
	KeyECDSA   = "ECDSA"
	KeyEd25519 = "Ed25519"
	KeyDSA     = "DSA"
	KeyOther   = "other"
)

// CertFields sets row's certificate columns from chain (DER, leaf first, as
// sent): CertChain is chain itself, the other columns describe the leaf. It
// is exported so that tools reading a stored chain (the lab, re-analysis of
// old scans) derive the columns exactly as the prober did.
//
// CertSHA256 is set even when the leaf does not parse, since the hash of the
// bytes identifies the certificate regardless; the parse error then goes to
// CertParseError and the remaining columns stay empty.
func CertFields(row *record.ProbeRow, chain [][]byte) {
	var leaf *x509.Certificate
	var err error
	if len(chain) > 0 {
		leaf, err = x509.ParseCertificate(chain[0])
	}
	certFields(row, chain, leaf, err)
}

// certFields is CertFields with the leaf already parsed (or its parse
// error): crypto/tls parses every certificate of the handshake, with the
// same parser, and a second parse was 2% of a probe's CPU.
func certFields(row *record.ProbeRow, chain [][]byte, leaf *x509.Certificate, err error) {
	row.CertChain = chain
	row.CertSubjectCN, row.CertIssuer, row.CertSHA256, row.CertKeyType, row.CertParseError = "", "", "", "", ""
	row.CertSANDNS, row.CertSANIP = nil, nil
	row.CertNotBefore, row.CertNotAfter = time.Time{}, time.Time{}
	row.CertKeyBits, row.CertSelfSigned = 0, false
	if len(chain) == 0 {
		return
	}
	sum := sha256.Sum256(chain[0])
	row.CertSHA256 = hex.EncodeToString(sum[:])
	if err != nil {
		row.CertParseError = capText(err.Error(), maxErrorBytes)
		return
	}
	row.CertSubjectCN = leaf.Subject.CommonName // as sent: a CN is often not a name at all
	for _, n := range leaf.DNSNames {
		row.CertSANDNS = append(row.CertSANDNS, strings.TrimSuffix(strings.ToLower(n), "."))
	}
	for _, ip := range leaf.IPAddresses {
		row.CertSANIP = append(row.CertSANIP, ip.String())
	}
	row.CertIssuer = leaf.Issuer.String()
	row.CertNotBefore, row.CertNotAfter = leaf.NotBefore.UTC(), leaf.NotAfter.UTC()
	row.CertKeyType, row.CertKeyBits = keyType(leaf.PublicKey)
	// Self-signed means "signed by its own key", which is what a reader of
	// the dataset asks. CheckSignatureFrom would add the CA constraints
	// (basicConstraints cA, keyCertSign) and refuse SHA-1, and so call most
	// self-signed server certificates, which lack cA or are old, not
	// self-signed. CheckSignature checks the signature alone.
	row.CertSelfSigned = bytes.Equal(leaf.RawIssuer, leaf.RawSubject) &&
		leaf.CheckSignature(leaf.SignatureAlgorithm, leaf.RawTBSCertificate, leaf.Signature) == nil
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

// chainParseError returns the first certificate of chain that crypto/x509
// cannot parse, as an error naming its position.
func chainParseError(chain [][]byte) error {
	for i, der := range chain {
		if _, err := x509.ParseCertificate(der); err != nil {
			return fmt.Errorf("certificate %d of %d: %w", i, len(chain), err)
		}
	}
	return nil
}

// plaintextChain extracts the server's certificate list from the bytes it
// sent during a TLS 1.2 (or older) handshake, where the Certificate message
// (RFC 5246 §7.4.2) travels unencrypted. crypto/tls aborts before any
// callback when it cannot parse a certificate; this keeps those chains, the
// strangest and so the most interesting, in the dataset. In TLS 1.3 the
// message is encrypted and nil is returned. Incomplete input gives nil.
func plaintextChain(b []byte) [][]byte {
	var hs []byte
	for len(b) >= 5 {
		typ, n := b[0], int(b[3])<<8|int(b[4])
		if len(b) < 5+n {
			break
		}
		frag := b[5 : 5+n]
		b = b[5+n:]
		if typ == 20 || typ == 23 {
			break // ChangeCipherSpec or application data: the rest is encrypted
		}
		if typ == 22 {
			hs = append(hs, frag...)
		}
	}
	for len(hs) >= 4 {
		typ, n := hs[0], int(hs[1])<<16|int(hs[2])<<8|int(hs[3])
		if len(hs) < 4+n {
			return nil
		}
		body := hs[4 : 4+n]
		hs = hs[4+n:]
		if typ != 11 {
			continue
		}
		if len(body) < 3 {
			return nil
		}
		list := body[3:]
		if total := int(body[0])<<16 | int(body[1])<<8 | int(body[2]); total < len(list) {
			list = list[:total]
		}
		var chain [][]byte
		for len(list) >= 3 {
			m := int(list[0])<<16 | int(list[1])<<8 | int(list[2])
			if len(list) < 3+m {
				break
			}
			chain = append(chain, bytes.Clone(list[3:3+m]))
			list = list[3+m:]
		}
		return chain
	}
	return nil
}
