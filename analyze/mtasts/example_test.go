package mtasts_test

import (
	"errors"
	"fmt"

	"github.com/mxsurvey/mxsurvey/analyze/mtasts"
)

func ExampleParseRecord() {
	// The TXT RRset at _mta-sts.example.com, one string per RR.
	rec, err := mtasts.ParseRecord([]string{"v=spf1 -all", "v=STSv1; id=20240101T000000"})
	fmt.Println(rec.ID, err)
	_, err = mtasts.ParseRecord([]string{"v=STSv1; id=1", "v=STSv1; id=2"})
	fmt.Println(errors.Is(err, mtasts.ErrMultipleRecords))
	// Output:
	// 20240101T000000 <nil>
	// true
}

func ExampleParsePolicy() {
	body := "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.mail.example.net\r\nmax_age: 604800\r\n"
	p, err := mtasts.ParsePolicy([]byte(body))
	fmt.Println(p.Mode, p.MaxAge, p.MX, err)
	fmt.Println(p.Matches("MX1.example.com."), p.Matches("a.mail.example.net"), p.Matches("a.b.mail.example.net"))

	_, err = mtasts.ParsePolicy([]byte("version: STSv1\nmode: enforce\nmax_age: 86400\n"))
	fmt.Println(err, mtasts.ResultType(err))
	// Output:
	// enforce 604800 [mx1.example.com *.mail.example.net] <nil>
	// true true false
	// mtasts: policy field missing: no mx with mode enforce sts-policy-invalid
}

func ExampleMatchMX() {
	fmt.Println(mtasts.MatchMX("*.example.com", "mx.example.com"))
	fmt.Println(mtasts.MatchMX("*.example.com", "example.com"))
	fmt.Println(mtasts.MatchMX("*.example.com", "a.b.example.com"))
	// Output:
	// true
	// false
	// false
}
