package dane

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/analyze/internal/testpki"
	"github.com/mxsurvey/mxsurvey/analyze/tlsrpt"
)

var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// rec builds the record for a certificate: selector 0 hashes the DER,
// selector 1 the SubjectPublicKeyInfo.
func rec(usage, selector, mtype uint8, c *testpki.Cert) Record {
	b := c.DER
	if selector == SelectorSPKI {
		b = c.Cert.RawSubjectPublicKeyInfo
	}
	switch mtype {
	case MatchSHA256:
		d := sha256.Sum256(b)
		b = d[:]
	case MatchSHA512:
		d := sha512.Sum512(b)
		b = d[:]
	}
	return Record{Usage: usage, Selector: selector, MatchType: mtype, Data: bytes.Clone(b)}
}

// reissue makes a new certificate for the same key as c (a renewal without
// a key rollover), signed by parent, valid from notBefore.
func reissue(t *testing.T, c, parent *testpki.Cert, notBefore time.Time) *testpki.Cert {
	t.Helper()
	tmpl := *c.Cert
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore = notBefore
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, parent.Cert, c.Key.Public(), parent.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testpki.Cert{Cert: cert, DER: der, Key: c.Key}
}

// badVersion returns c's DER with the certificate version set to 7: the
// structure still holds (the SPKI can be found) but crypto/x509 refuses it.
func badVersion(t *testing.T, c *testpki.Cert) []byte {
	t.Helper()
	der := bytes.Clone(c.DER)
	i := bytes.Index(der, []byte{0xa0, 0x03, 0x02, 0x01, 0x02})
	if i < 0 {
		t.Fatal("no v3 version field")
	}
	der[i+4] = 7
	if _, err := x509.ParseCertificate(der); err == nil {
		t.Fatal("crypto/x509 still parses the mangled certificate")
	}
	return der
}

func TestVerify(t *testing.T) {
	mk := testpki.Make
	root := mk(testpki.Spec{CN: "Root CA", IsCA: true}, nil)
	inter := mk(testpki.Spec{CN: "Issuing CA", IsCA: true}, root)
	leaf := mk(testpki.Spec{CN: "mx.example.com", DNSNames: []string{"mx.example.com"}}, inter)
	rolled := mk(testpki.Spec{CN: "mx.example.com", DNSNames: []string{"mx.example.com"}}, inter) // new key
	renewed := reissue(t, leaf, inter, now.Add(-time.Hour))                                       // same key
	wrongName := mk(testpki.Spec{CN: "mail.other.net", DNSNames: []string{"mail.other.net"}}, inter)
	wild := mk(testpki.Spec{CN: "*.example.com", DNSNames: []string{"*.example.com"}}, inter)
	cnOnly := mk(testpki.Spec{CN: "mx.example.com"}, inter)
	expiredLeaf := mk(testpki.Spec{DNSNames: []string{"mx.example.com"}, NotAfter: now.Add(-time.Hour)}, inter)
	futureLeaf := mk(testpki.Spec{DNSNames: []string{"mx.example.com"}, NotBefore: now.Add(time.Hour)}, inter)
	expiredInter := mk(testpki.Spec{CN: "Old Issuing CA", IsCA: true, NotAfter: now.Add(-time.Hour)}, root)
	leafOfExpired := mk(testpki.Spec{DNSNames: []string{"mx.example.com"}}, expiredInter)
	expiredRoot := mk(testpki.Spec{CN: "Old Root", IsCA: true, NotAfter: now.Add(-time.Hour)}, nil)
	interOfExpired := mk(testpki.Spec{CN: "Issuing CA 2", IsCA: true}, expiredRoot)
	leafOfExpiredRoot := mk(testpki.Spec{DNSNames: []string{"mx.example.com"}}, interOfExpired)
	other := mk(testpki.Spec{CN: "Other CA", IsCA: true}, nil)
	impostor := mk(testpki.Spec{CN: "Issuing CA", IsCA: true}, nil) // inter's name, another key
	notCA := mk(testpki.Spec{CN: "Not a CA"}, root)
	leafOfNotCA := mk(testpki.Spec{DNSNames: []string{"mx.example.com"}}, notCA)
	self := mk(testpki.Spec{CN: "mx.example.com", DNSNames: []string{"mx.example.com"}}, nil)
	selfCA := mk(testpki.Spec{CN: "mx.example.com", DNSNames: []string{"mx.example.com"}, IsCA: true}, nil)
	rsaRoot := mk(testpki.Spec{CN: "RSA Root", IsCA: true, RSABits: 2048}, nil)
	rsaLeaf := mk(testpki.Spec{DNSNames: []string{"mx.example.com"}, RSABits: 2048}, rsaRoot)
	provider := mk(testpki.Spec{DNSNames: []string{"mx1.provider.net"}}, inter)
	x509Refuses := badVersion(t, leaf)
	chain := testpki.Chain

	names := []string{"mx.example.com"}
	short := rec(3, 1, 1, leaf)
	short.Data = short.Data[:31]

	tests := []struct {
		name    string
		records []Record
		chain   [][]byte
		names   []string
		reason  Reason // "" = valid
		want    int    // index of the record reported (-1: none)
	}{
		// DANE-EE(3): the leaf matches, nothing else counts.
		{"3 1 1", []Record{rec(3, 1, 1, leaf)}, chain(leaf, inter), names, "", 0},
		{"3 0 1", []Record{rec(3, 0, 1, leaf)}, chain(leaf, inter), names, "", 0},
		{"3 1 2", []Record{rec(3, 1, 2, leaf)}, chain(leaf), names, "", 0},
		{"3 0 0", []Record{rec(3, 0, 0, leaf)}, chain(leaf), names, "", 0},
		{"3 1 0", []Record{rec(3, 1, 0, leaf)}, chain(leaf), names, "", 0},
		{"3 1 1 on an RSA leaf", []Record{rec(3, 1, 1, rsaLeaf)}, chain(rsaLeaf, rsaRoot), names, "", 0},
		{"3 1 1 ignores names", []Record{rec(3, 1, 1, wrongName)}, chain(wrongName, inter), names, "", 0},
		{"3 1 1 ignores expiry", []Record{rec(3, 1, 1, expiredLeaf)}, chain(expiredLeaf), names, "", 0},
		{"3 1 1 on a self-signed leaf", []Record{rec(3, 1, 1, self)}, chain(self), names, "", 0},
		{"3 1 1 needs no chain above the leaf", []Record{rec(3, 1, 1, leaf)}, chain(leaf, other), names, "", 0},
		{"3 1 1 on the intermediate does not match", []Record{rec(3, 1, 1, inter)}, chain(leaf, inter), names, ReasonNoMatch, -1},
		{"stale 3 1 1 after a key rollover", []Record{rec(3, 1, 1, leaf)}, chain(rolled, inter), names, ReasonNoMatch, -1},
		{"3 1 1 survives a renewal with the same key", []Record{rec(3, 1, 1, leaf)}, chain(renewed, inter), names, "", 0},
		{"3 0 1 does not survive a renewal", []Record{rec(3, 0, 1, leaf)}, chain(renewed, inter), names, ReasonNoMatch, -1},
		{"stale and fresh 3 1 1 during a rollover", []Record{rec(3, 1, 1, leaf), rec(3, 1, 1, rolled)}, chain(rolled, inter), names, "", 1},
		{"3 0 1 of a leaf crypto/x509 refuses", []Record{{3, 0, 1, sum256(x509Refuses)}}, [][]byte{x509Refuses}, names, "", 0},
		{"3 1 1 of a leaf crypto/x509 refuses", []Record{rec(3, 1, 1, leaf)}, [][]byte{x509Refuses}, names, "", 0},
		{"3 1 1 on garbage", []Record{rec(3, 1, 1, leaf)}, [][]byte{[]byte("not a certificate")}, names, ReasonUnparseable, 0},
		{"3 0 1 on garbage simply does not match", []Record{rec(3, 0, 1, leaf)}, [][]byte{[]byte("junk")}, names, ReasonNoMatch, -1},

		// DANE-TA(2): an anchor above the leaf, a path to it, dates, names.
		{"2 0 1 on the intermediate", []Record{rec(2, 0, 1, inter)}, chain(leaf, inter), names, "", 0},
		{"2 1 1 on the intermediate", []Record{rec(2, 1, 1, inter)}, chain(leaf, inter), names, "", 0},
		{"2 0 2 on the root, sent", []Record{rec(2, 0, 2, root)}, chain(leaf, inter, root), names, "", 0},
		{"2 0 1 on the root, not sent", []Record{rec(2, 0, 1, root)}, chain(leaf, inter), names, ReasonNoMatch, -1},
		{"2 0 0 on the root, not sent: the record is the anchor", []Record{rec(2, 0, 0, root)}, chain(leaf, inter), names, "", 0},
		{"2 1 0 on the root, not sent: the record's key is the anchor", []Record{rec(2, 1, 0, root)}, chain(leaf, inter), names, "", 0},
		{"2 1 0 of an RSA root, not sent", []Record{rec(2, 1, 0, rsaRoot)}, chain(rsaLeaf), names, "", 0},
		{"2 1 0 of another key", []Record{rec(2, 1, 0, other)}, chain(leaf, inter), names, ReasonChainInvalid, 0},
		{"2 0 0 of a root whose intermediate is missing", []Record{rec(2, 0, 0, root)}, chain(leaf), names, ReasonChainInvalid, 0},
		{"chain sent out of order", []Record{rec(2, 0, 1, root)}, chain(leaf, root, inter), names, "", 0},
		{"a record for another CA that was sent along", []Record{rec(2, 0, 1, other)}, chain(leaf, inter, other), names, ReasonChainInvalid, 0},
		{"intermediate missing, root sent", []Record{rec(2, 0, 1, root)}, chain(leaf, root), names, ReasonChainInvalid, 0},
		{"impostor with the issuer's name", []Record{rec(2, 0, 1, impostor)}, chain(leaf, impostor), names, ReasonChainInvalid, 0},
		{"issuer that is not a CA", []Record{rec(2, 0, 1, root)}, chain(leafOfNotCA, notCA, root), names, ReasonChainInvalid, 0},
		{"2 0 1 on the leaf itself", []Record{rec(2, 0, 1, leaf)}, chain(leaf, inter), names, ReasonNoMatch, -1},
		{"2 0 1 on a self-signed CA leaf", []Record{rec(2, 0, 1, selfCA)}, chain(selfCA), names, ReasonNoMatch, -1},
		{"2 0 0 equal to the leaf", []Record{rec(2, 0, 0, selfCA)}, chain(selfCA), names, ReasonNoMatch, -1},
		{"wrong name", []Record{rec(2, 0, 1, inter)}, chain(wrongName, inter), names, ReasonNameMismatch, 0},
		{"no reference names", []Record{rec(2, 0, 1, inter)}, chain(leaf, inter), nil, ReasonNameMismatch, 0},
		{"names compared without case and trailing dot", []Record{rec(2, 0, 1, inter)}, chain(leaf, inter), []string{"MX.Example.COM."}, "", 0},
		{"wildcard leaf", []Record{rec(2, 0, 1, inter)}, chain(wild, inter), names, "", 0},
		{"CN only", []Record{rec(2, 0, 1, inter)}, chain(cnOnly, inter), names, "", 0},
		{"secure CNAME: the expanded name counts", []Record{rec(2, 0, 1, inter)}, chain(provider, inter), []string{"mx.example.com", "mx1.provider.net"}, "", 0},
		{"the expanded name alone is not the MX name", []Record{rec(2, 0, 1, inter)}, chain(provider, inter), names, ReasonNameMismatch, 0},
		{"expired leaf", []Record{rec(2, 0, 1, inter)}, chain(expiredLeaf, inter), names, ReasonExpired, 0},
		{"leaf not yet valid", []Record{rec(2, 0, 1, inter)}, chain(futureLeaf, inter), names, ReasonNotYetValid, 0},
		{"expired anchor", []Record{rec(2, 0, 1, expiredInter)}, chain(leafOfExpired, expiredInter), names, ReasonExpired, 0},
		{"expired root above the anchor does not matter", []Record{rec(2, 0, 1, interOfExpired)}, chain(leafOfExpiredRoot, interOfExpired, expiredRoot), names, "", 0},
		{"expired root as the anchor", []Record{rec(2, 1, 1, expiredRoot)}, chain(leafOfExpiredRoot, interOfExpired, expiredRoot), names, ReasonExpired, 0},
		{"expired root given whole in the record", []Record{rec(2, 0, 0, expiredRoot)}, chain(leafOfExpiredRoot, interOfExpired), names, ReasonExpired, 0},
		{"2 0 1 on an intermediate crypto/x509 refuses", []Record{{2, 0, 1, sum256(x509Refuses)}}, [][]byte{leaf.DER, x509Refuses}, names, ReasonUnparseable, 0},
		{"2 1 1 above a leaf crypto/x509 refuses", []Record{rec(2, 1, 1, inter)}, [][]byte{x509Refuses, inter.DER}, names, ReasonUnparseable, 0},
		{"2 1 1 with garbage above the leaf", []Record{rec(2, 1, 1, inter)}, [][]byte{leaf.DER, []byte("junk")}, names, ReasonUnparseable, 0},
		{"2 0 0 whose data is not a certificate", []Record{{2, 0, 0, []byte("junk")}}, chain(leaf, inter), names, ReasonNoMatch, -1},

		// Several records: the first that verifies wins; else the furthest failure.
		{"stale 3 1 1 and a good 2 0 1", []Record{rec(3, 1, 1, leaf), rec(2, 0, 1, inter)}, chain(rolled, inter), names, "", 1},
		{"stale 3 1 1 and a 2 0 1 with the wrong name", []Record{rec(3, 1, 1, leaf), rec(2, 0, 1, inter)}, chain(wrongName, inter), names, ReasonNameMismatch, 1},
		{"name mismatch beats expiry", []Record{rec(2, 0, 1, expiredInter), rec(2, 0, 1, inter)}, chain(wrongName, inter, expiredInter), names, ReasonNameMismatch, 1},
		{"unusable records are skipped", []Record{rec(1, 1, 1, leaf), short, rec(3, 1, 1, leaf)}, chain(leaf), names, "", 2},

		// Nothing to check with.
		{"no records", nil, chain(leaf), names, ReasonNoUsable, -1},
		{"only unusable records", []Record{rec(0, 0, 1, inter), rec(1, 1, 1, leaf), short, {3, 2, 1, sum256(leaf.DER)}, {3, 1, 3, sum256(leaf.DER)},
			{3, 0, 2, sum256(leaf.DER)}, {3, 1, 0, nil}}, chain(leaf, inter), names, ReasonNoUsable, -1},
		{"empty chain", []Record{rec(3, 1, 1, leaf)}, nil, names, ReasonNoCertificate, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Verify(tt.records, tt.chain, tt.names, now)
			if res.Valid != (tt.reason == "") || res.Reason != tt.reason {
				t.Fatalf("Verify = %+v; want reason %q", res, tt.reason)
			}
			var want Record
			if tt.want >= 0 {
				want = tt.records[tt.want]
			}
			if res.Record.String() != want.String() {
				t.Errorf("record = %v; want %v (%s)", res.Record, want, res.Detail)
			}
			if (res.Reason.ResultType() == "") != res.Valid {
				t.Errorf("result type %q for valid=%v", res.Reason.ResultType(), res.Valid)
			}
		})
	}
}

func sum256(b []byte) []byte {
	d := sha256.Sum256(b)
	return d[:]
}

// A DANE-TA path with a certificate outside its dates gets the RFC 8460
// type MTA-STS gives a leaf outside its dates (tlsrpt.DateResult):
// certificate-expired only for one past its NotAfter.
func TestVerifyDatesResultType(t *testing.T) {
	mk := testpki.Make
	root := mk(testpki.Spec{CN: "Root CA", IsCA: true}, nil)
	inter := mk(testpki.Spec{CN: "Issuing CA", IsCA: true}, root)
	name := []string{"mx.example.com"}
	leafOf := func(issuer *testpki.Cert, spec testpki.Spec) *testpki.Cert {
		spec.DNSNames = name
		return mk(spec, issuer)
	}
	pastInter := mk(testpki.Spec{CN: "Old CA", IsCA: true, NotAfter: now.Add(-time.Hour)}, root)
	futureInter := mk(testpki.Spec{CN: "New CA", IsCA: true, NotBefore: now.Add(time.Hour)}, root)
	tests := []struct {
		name   string
		anchor *testpki.Cert
		leaf   *testpki.Cert
		reason Reason
		want   tlsrpt.ResultType
	}{
		{"in date", inter, leafOf(inter, testpki.Spec{}), "", ""},
		{"leaf expired", inter, leafOf(inter, testpki.Spec{NotAfter: now.Add(-time.Hour)}), ReasonExpired, tlsrpt.ResultCertificateExpired},
		{"leaf not yet valid", inter, leafOf(inter, testpki.Spec{NotBefore: now.Add(time.Hour)}), ReasonNotYetValid, tlsrpt.ResultCertificateNotTrusted},
		{"anchor expired", pastInter, leafOf(pastInter, testpki.Spec{}), ReasonExpired, tlsrpt.ResultCertificateExpired},
		{"anchor not yet valid", futureInter, leafOf(futureInter, testpki.Spec{}), ReasonNotYetValid, tlsrpt.ResultCertificateNotTrusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Verify([]Record{rec(2, 0, 1, tt.anchor)}, testpki.Chain(tt.leaf, tt.anchor), name, now)
			if got := res.Reason.ResultType(); res.Reason != tt.reason || got != tt.want {
				t.Errorf("reason %q, result type %q (%s); want %q, %q", res.Reason, got, res.Detail, tt.reason, tt.want)
			}
		})
	}
}

func TestReasonResultType(t *testing.T) {
	tests := map[Reason]tlsrpt.ResultType{
		"":                  "",
		ReasonNoUsable:      tlsrpt.ResultTLSAInvalid,
		ReasonNoCertificate: tlsrpt.ResultValidationFailure,
		ReasonNoMatch:       tlsrpt.ResultValidationFailure,
		ReasonUnparseable:   tlsrpt.ResultValidationFailure,
		ReasonChainInvalid:  tlsrpt.ResultCertificateNotTrusted,
		ReasonNotYetValid:   tlsrpt.ResultCertificateNotTrusted,
		ReasonExpired:       tlsrpt.ResultCertificateExpired,
		ReasonNameMismatch:  tlsrpt.ResultCertificateHostMismatch,
	}
	for r, want := range tests {
		if got := r.ResultType(); got != want {
			t.Errorf("%q.ResultType() = %q; want %q", r, got, want)
		}
	}
}

func TestParse(t *testing.T) {
	h32 := strings.Repeat("ab", 32)
	tests := []struct {
		in     string
		want   string // String() of the result; "" = error
		usable bool
	}{
		{"3 1 1 " + h32, "3 1 1 " + h32, true},
		{"3 1 1 " + strings.ToUpper(h32), "3 1 1 " + h32, true},
		{"3 1 1 " + h32[:20] + " " + h32[20:], "3 1 1 " + h32, true}, // hex split by white space (RFC 6698 §2.2)
		{"  2\t0 1\n" + h32 + " ", "2 0 1 " + h32, true},
		{"3 1 1 " + h32[:62], "3 1 1 " + h32[:62], false},                                     // 31 bytes: wrong length for SHA-256
		{"3 1 2 " + h32, "3 1 2 " + h32, false},                                               // 32 bytes for SHA-512
		{"3 1 2 " + h32 + h32, "3 1 2 " + h32 + h32, true},                                    // 64 bytes
		{"3 1 0 00", "3 1 0 00", true},                                                        // Full: any non-empty data
		{"1 1 1 " + h32, "1 1 1 " + h32, false},                                               // PKIX-EE: not for SMTP
		{"0 0 1 " + h32, "0 0 1 " + h32, false},                                               // PKIX-TA: not for SMTP
		{"4 1 1 " + h32, "4 1 1 " + h32, false},                                               // unassigned usage
		{"3 2 1 " + h32, "3 2 1 " + h32, false},                                               // unassigned selector
		{"3 1 3 " + h32, "3 1 3 " + h32, false},                                               // unassigned matching type
		{"255 255 255 " + h32, "255 255 255 " + h32, false},                                   // private use
		{"03 001 1 " + h32, "3 1 1 " + h32, true},                                             // leading zeros are still decimal
		{"3 1 1 " + h32[:63], "", false},                                                      // odd hex
		{"3 1 1 " + h32[:62] + "zz", "", false},                                               // not hex
		{"3 1 1", "", false},                                                                  // no data
		{"3 1 " + h32, "", false},                                                             // a field missing
		{"256 1 1 " + h32, "", false},                                                         // out of range
		{"-3 1 1 " + h32, "", false},                                                          // negative
		{"+3 1 1 " + h32, "", false},                                                          // sign
		{"0x3 1 1 " + h32, "", false},                                                         // not decimal
		{"", "", false},                                                                       // empty
		{`\# 35 030101` + h32, "", false},                                                     // RFC 3597 generic form is not stored
		{"3 1 1 0x" + h32, "", false},                                                         // 0x prefix
		{"DANE-EE SPKI SHA2-256 " + h32, "", false},                                           // mnemonics (RFC 7218) are not the stored form
		{"3 1 1 " + h32 + " " + strings.Repeat("0", 1), "", false},                            // a stray nibble
		{"3 1 1 " + h32 + " extra", "", false},                                                // trailing junk
		{"3 1 1 " + h32 + "\x00", "", false},                                                  // NUL
		{"3 1 1 " + h32 + "é", "", false},                                                     // non-ASCII
		{"3 1 1 " + strings.Repeat("00", 4096), "3 1 1 " + strings.Repeat("00", 4096), false}, // long, wrong length
	}
	for _, tt := range tests {
		r, err := Parse(tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("Parse(%q) = %v; want an error", tt.in, r)
			}
			continue
		}
		if err != nil || r.String() != tt.want {
			t.Errorf("Parse(%q) = %v, %v; want %s", tt.in, r, err, tt.want)
			continue
		}
		if Usable(r) != tt.usable {
			t.Errorf("Usable(%v) = %v; want %v", r, !tt.usable, tt.usable)
		}
	}
}

func TestSPKIOf(t *testing.T) {
	c := testpki.Make(testpki.Spec{CN: "x"}, nil)
	rsa := testpki.Make(testpki.Spec{CN: "x", RSABits: 2048}, nil)
	for _, k := range []*testpki.Cert{c, rsa} {
		got, ok := spkiOf(k.DER)
		if !ok || !bytes.Equal(got, k.Cert.RawSubjectPublicKeyInfo) {
			t.Errorf("spkiOf = %x, %v; want %x", got, ok, k.Cert.RawSubjectPublicKeyInfo)
		}
	}
	// A version 1 certificate has no [0] version field before the serial.
	if got, ok := spkiOf(withoutVersion(t, c.DER)); !ok || !bytes.Equal(got, c.Cert.RawSubjectPublicKeyInfo) {
		t.Errorf("v1: spkiOf = %x, %v", got, ok)
	}
	if _, ok := spkiOf(append(bytes.Clone(c.DER), 0)); ok {
		t.Errorf("trailing byte accepted")
	}
	for i := range len(c.DER) {
		if _, ok := spkiOf(c.DER[:i]); ok {
			t.Fatalf("truncated DER of %d bytes accepted", i)
		}
	}
}

// withoutVersion re-encodes a certificate without its [0] version field, as
// a version 1 certificate is (the signature no longer verifies).
func withoutVersion(t *testing.T, der []byte) []byte {
	t.Helper()
	var cert, tbs, version asn1.RawValue
	if _, err := asn1.Unmarshal(der, &cert); err != nil {
		t.Fatal(err)
	}
	rest, err := asn1.Unmarshal(cert.Bytes, &tbs)
	if err != nil {
		t.Fatal(err)
	}
	fields, err := asn1.Unmarshal(tbs.Bytes, &version)
	if err != nil || version.Tag != 0 {
		t.Fatal("no version field", err)
	}
	newTBS, err := asn1.Marshal(asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: fields})
	if err != nil {
		t.Fatal(err)
	}
	out, err := asn1.Marshal(asn1.RawValue{Tag: asn1.TagSequence, IsCompound: true, Bytes: append(newTBS, rest...)})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// FuzzParse: any string either fails or parses to a record whose String
// parses back to the same record.
func FuzzParse(f *testing.F) {
	h32 := strings.Repeat("ab", 32)
	seeds := []string{
		"3 1 1 " + h32,                       // ordinary
		"2 0 1 " + h32[:10] + " " + h32[10:], // hex split by a space
		"3 1 1 " + h32[:63],                  // odd hex
		"3 1 1",                              // no data
		"300 1 1 00",                         // out of range
		"3\t1\n1\r00",                        // assorted white space
		"3 1 1 \xff",                         // invalid UTF-8
		"",                                   // empty
		"0 0 0 0g",                           // not hex
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			return
		}
		r2, err := Parse(r.String())
		if err != nil || r2.String() != r.String() {
			t.Fatalf("%q -> %v -> %v, %v", s, r, r2, err)
		}
		if Usable(r) && r.Usage != UsageDANEEE && r.Usage != UsageDANETA {
			t.Fatalf("usable with usage %d", r.Usage)
		}
	})
}

// FuzzVerify feeds arbitrary bytes as a leaf and a second certificate,
// checked against an arbitrary record, and checks that Verify keeps its
// promises: no panic, a valid result only from a usable record, a reason
// from the vocabulary otherwise.
func FuzzVerify(f *testing.F) {
	root := testpki.Make(testpki.Spec{CN: "Root", IsCA: true}, nil)
	leaf := testpki.Make(testpki.Spec{DNSNames: []string{"mx.example.com"}}, root)
	seeds := []struct {
		rec         Record
		leaf, inter []byte
	}{
		{rec(3, 1, 1, leaf), leaf.DER, nil},                                   // DANE-EE match
		{rec(2, 0, 1, root), leaf.DER, root.DER},                              // DANE-TA match
		{rec(2, 1, 0, root), leaf.DER, nil},                                   // bare-key anchor
		{rec(2, 0, 0, root), leaf.DER, []byte{0x30, 0x00}},                    // anchor from the record, empty SEQUENCE sent
		{rec(3, 1, 1, leaf), leaf.DER[:len(leaf.DER)/2], nil},                 // truncated leaf
		{rec(3, 1, 1, leaf), []byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff}, nil}, // huge declared length
		{rec(3, 1, 1, leaf), []byte{0x30, 0x80, 0x00, 0x00}, nil},             // BER indefinite length
		{Record{2, 1, 0, []byte{0x30}}, leaf.DER, root.DER},                   // bad key in a 2 1 0
	}
	for _, s := range seeds {
		f.Add(s.rec.Usage, s.rec.Selector, s.rec.MatchType, s.rec.Data, s.leaf, s.inter)
	}
	valid := map[Reason]bool{ReasonNoUsable: true, ReasonNoCertificate: true, ReasonNoMatch: true, ReasonUnparseable: true,
		ReasonChainInvalid: true, ReasonNotYetValid: true, ReasonExpired: true, ReasonNameMismatch: true}
	f.Fuzz(func(t *testing.T, usage, selector, mtype uint8, data, leafDER, interDER []byte) {
		r := Record{usage, selector, mtype, data}
		chain := [][]byte{leafDER}
		if len(interDER) > 0 {
			chain = append(chain, interDER)
		}
		res := Verify([]Record{r}, chain, []string{"mx.example.com"}, now)
		switch {
		case res.Valid && (res.Reason != "" || !Usable(res.Record)):
			t.Fatalf("valid with reason %q, record %v", res.Reason, res.Record)
		case !res.Valid && !valid[res.Reason]:
			t.Fatalf("reason %q not in the vocabulary", res.Reason)
		case !res.Valid && res.Reason.ResultType() == "":
			t.Fatalf("failure %q without a result type", res.Reason)
		}
		if res.Valid && usage == UsageDANEEE && selector == SelectorCert && mtype == MatchFull && !bytes.Equal(data, leafDER) {
			t.Fatalf("3 0 0 matched different bytes")
		}
	})
}

func ExampleParse() {
	r, err := Parse("3 1 1 0C72AC70B745AC19998811B131D662C9AC69DBDBE7CB23E5B514B56664C5D3D6")
	fmt.Println(r, Usable(r), err)
	r, _ = Parse("3 1 1 0c72ac70")
	fmt.Println(Usable(r)) // SHA-256 data must be 32 bytes
	_, err = Parse("3 1 1 0c7")
	fmt.Println(err != nil)
	// Output:
	// 3 1 1 0c72ac70b745ac19998811b131d662c9ac69dbdbe7cb23e5b514b56664c5d3d6 true <nil>
	// false
	// true
}
