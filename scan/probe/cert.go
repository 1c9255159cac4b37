package probe

import (
	"bytes"
	"crypto/x509"
	"fmt"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// CertFields sets row's certificate columns from chain (DER, leaf first, as
// sent): CertChain is chain itself, the other columns describe the leaf, by
// survey.DescribeCert, the description the analyzer uses too.
//
// CertSHA256 is set even when the leaf does not parse, since the hash of the
// bytes identifies the certificate regardless; the parse error then goes to
// CertParseError and the remaining columns stay empty.
func CertFields(row *survey.ProbeRow, chain [][]byte) {
	row.CertChain = chain
	if len(chain) == 0 {
		row.SetCert(survey.Cert{}, "")
		return
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		row.SetCert(survey.Cert{SHA256: survey.CertSHA256(chain[0])}, capText(err.Error(), maxErrorBytes))
		return
	}
	row.SetCert(survey.DescribeCert(leaf), "")
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
