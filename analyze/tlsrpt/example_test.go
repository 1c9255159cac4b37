package tlsrpt_test

import (
	"errors"
	"fmt"

	"github.com/mxsurvey/mxsurvey/analyze/tlsrpt"
)

func ExampleParseRecord() {
	r, err := tlsrpt.ParseRecord([]string{"v=TLSRPTv1; rua=mailto:tls@example.com, https://r.example.net/tlsrpt"})
	fmt.Println(r.RUA, err)
	_, err = tlsrpt.ParseRecord([]string{"v=TLSRPTv1; rua=http://r.example.net/"})
	fmt.Println(errors.Is(err, tlsrpt.ErrNoSupportedRUA))
	// Output:
	// [mailto:tls@example.com https://r.example.net/tlsrpt] <nil>
	// true
}

func ExampleResultTypes() {
	for _, r := range tlsrpt.ResultTypes()[:3] {
		fmt.Println(r)
	}
	// Output:
	// starttls-not-supported
	// certificate-host-mismatch
	// certificate-expired
}
