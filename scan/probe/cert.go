package probe

import (
	"crypto/x509"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/scan/peer"
)

// CertFields sets row's certificate columns from chain (DER, leaf first, as
// sent): CertChain is chain itself, the other columns describe the leaf, by
// survey.DescribeCert, the description the analyzer uses too.
//
// CertSHA256 is set even when the leaf does not parse, since the hash of the
// bytes identifies the certificate regardless; the parse error then goes to
// CertParseError and the remaining columns stay empty.
func CertFields(row *survey.ProbeRow, chain [][]byte) { certFields(row, chain, nil) }

// certFields is CertFields with the leaf crypto/tls parsed, or nil to parse
// it here: crypto/tls parses every certificate of a handshake with the same
// parser, and a second parse was 2% of a probe's CPU.
func certFields(row *survey.ProbeRow, chain [][]byte, leaf *x509.Certificate) {
	row.CertChain = chain
	if len(chain) == 0 {
		row.SetCert(survey.Cert{}, "")
		return
	}
	if leaf != nil {
		row.SetCert(survey.DescribeCert(leaf), "")
		return
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		row.SetCert(survey.Cert{SHA256: survey.CertSHA256(chain[0])}, peer.CapText(err.Error(), maxErrorBytes))
		return
	}
	row.SetCert(survey.DescribeCert(leaf), "")
}
