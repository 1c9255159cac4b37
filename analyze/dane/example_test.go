package dane_test

import (
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/mxsurvey/mxsurvey/analyze/dane"
	"github.com/mxsurvey/mxsurvey/analyze/internal/testpki"
)

func ExampleVerify() {
	now := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	ca := testpki.Make(testpki.Spec{CN: "Example CA", IsCA: true}, nil)
	leaf := testpki.Make(testpki.Spec{DNSNames: []string{"mx.example.com"}}, ca)
	chain := testpki.Chain(leaf, ca) // as the server sent it
	spki := sha256.Sum256(leaf.Cert.RawSubjectPublicKeyInfo)
	caDigest := sha256.Sum256(ca.DER)

	ee, _ := dane.Parse(fmt.Sprintf("3 1 1 %x", spki))
	ta, _ := dane.Parse(fmt.Sprintf("2 0 1 %x", caDigest))

	res := dane.Verify([]dane.Record{ee}, chain, []string{"mx.other.net"}, now)
	fmt.Println(res.Valid, res.Record.Usage) // DANE-EE ignores names
	res = dane.Verify([]dane.Record{ta}, chain, []string{"mx.example.com"}, now)
	fmt.Println(res.Valid, res.Record.Usage)
	res = dane.Verify([]dane.Record{ta}, chain, []string{"mx.other.net"}, now)
	fmt.Println(res.Valid, res.Reason, res.Reason.ResultType())
	res = dane.Verify([]dane.Record{{Usage: 1, Selector: 1, MatchType: 1, Data: spki[:]}}, chain, nil, now)
	fmt.Println(res.Valid, res.Reason, res.Reason.ResultType())
	// Output:
	// true 3
	// true 2
	// false name_mismatch certificate-host-mismatch
	// false no_usable_records tlsa-invalid
}
