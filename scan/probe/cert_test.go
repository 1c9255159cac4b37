package probe

import (
	"bytes" // deprecated, but keyType must still name DSA keys
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

func tlsRecord(typ byte, payload []byte) []byte {
	return append([]byte{typ, 3, 3, byte(len(payload) >> 8), byte(len(payload))}, payload...)
}

func hsMsg(typ byte, body []byte) []byte {
	return append([]byte{typ, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
}

func u24(b []byte) []byte {
	return append([]byte{byte(len(b) >> 16), byte(len(b) >> 8), byte(len(b))}, b...)
}

func certMsg(certs ...[]byte) []byte {
	var list []byte
	for _, c := range certs {
		list = append(list, u24(c)...)
	}
	return hsMsg(11, u24(list))
}

func TestPlaintextChain(t *testing.T) {
	a, b := []byte("leaf certificate"), []byte("intermediate")
	hello := hsMsg(2, bytes.Repeat([]byte{1}, 40))
	flight := append(append([]byte{}, hello...), certMsg(a, b)...)
	flight = append(flight, hsMsg(14, nil)...) // ServerHelloDone
	tests := []struct {
		name string
		in   []byte
		want [][]byte
	}{
		{"one record", tlsRecord(22, flight), [][]byte{a, b}},
		{"message split over records", append(tlsRecord(22, flight[:50]), tlsRecord(22, flight[50:])...), [][]byte{a, b}},
		{"warning alert before", append(tlsRecord(21, []byte{1, 0}), tlsRecord(22, flight)...), [][]byte{a, b}},
		{"TLS 1.3: encrypted after ChangeCipherSpec", append(append(tlsRecord(22, hello), tlsRecord(20, []byte{1})...),
			tlsRecord(22, certMsg(a))...), nil},
		{"truncated record", tlsRecord(22, flight)[:60], nil},
		{"truncated certificate list", tlsRecord(22, append(append([]byte{}, hello...), hsMsg(11, []byte{0, 0, 9, 0, 0, 20, 'x'})...)), nil},
		{"empty certificate list", tlsRecord(22, hsMsg(11, []byte{0, 0, 0})), nil},
		{"not TLS", []byte("220 hello\r\n"), nil},
		{"nothing", nil, nil},
	}
	for _, tt := range tests {
		if got := plaintextChain(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

// Seeds for FuzzPlaintextChain, each with what is odd about it.
func FuzzPlaintextChain(f *testing.F) {
	f.Add(tlsRecord(22, certMsg([]byte("leaf"), []byte("ca"))))  // well-formed
	f.Add(tlsRecord(22, hsMsg(11, []byte{0xff, 0xff, 0xff, 0}))) // list length beyond the message
	f.Add(tlsRecord(22, hsMsg(11, []byte{0, 0, 4, 0xff, 0xff, 0xff, 1})))
	f.Add([]byte{22, 3, 3, 0xff, 0xff}) // record longer than the input
	f.Add([]byte{22, 3, 3, 0, 0})       // empty record
	f.Fuzz(func(t *testing.T, in []byte) {
		total := 0
		for _, c := range plaintextChain(in) {
			total += len(c)
		}
		if total > len(in) {
			t.Fatalf("chain of %d bytes from %d input bytes", total, len(in))
		}
	})
}
