package probe

import (
	"reflect"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

func TestCertFieldsResets(t *testing.T) {
	p := testPKI(t)
	var row survey.ProbeRow
	CertFields(&row, p.rsaChain.Certificate)
	if row.CertSubjectCN != "mx.example.test" || row.CertSelfSigned || row.CertKeyBits != 2048 {
		t.Fatalf("rsa: %+v", row)
	}
	// A row reused for another chain keeps nothing of the first.
	CertFields(&row, p.garbage.Certificate)
	want := survey.ProbeRow{
		CertChain: p.garbage.Certificate, CertSHA256: hexSHA(p.garbage.Certificate[0]),
		CertParseError: "x509: malformed tbs certificate",
	}
	if !reflect.DeepEqual(row, want) {
		t.Errorf("garbage: got %+v\nwant %+v", row, want)
	}
	CertFields(&row, nil)
	if !reflect.DeepEqual(row, survey.ProbeRow{}) {
		t.Errorf("empty chain: %+v", row)
	}
}

// The CA certificate is self-signed with cA set, the ECDSA leaf without it:
// both are self-signed by the dataset's definition (survey.SelfSigned, whose
// own tests hold the MD5 and DSA cases).
func TestCertFieldsSelfSigned(t *testing.T) {
	p := testPKI(t)
	for name, der := range map[string][]byte{"ca": p.caDER, "leaf without cA": p.selfEC.Certificate[0]} {
		var row survey.ProbeRow
		CertFields(&row, [][]byte{der})
		if !row.CertSelfSigned {
			t.Errorf("%s: not self-signed", name)
		}
	}
	var row survey.ProbeRow
	CertFields(&row, [][]byte{p.ed.Certificate[0]})
	if row.CertSelfSigned || row.CertKeyType != survey.KeyEd25519 {
		t.Errorf("CA-signed leaf: %+v", row)
	}
	if !row.CertNotBefore.Equal(p.notBefore) || row.CertNotBefore.Location() != time.UTC {
		t.Errorf("NotBefore %v", row.CertNotBefore)
	}
}
