package domains_test

import (
	"fmt"
	"io"
	"log"
	"strings"

	"github.com/mxsurvey/mxsurvey/datasets/domains"
)

func ExampleNewReader() {
	in := "rank,domain\n1,Example.COM.\n2,bücher.example\n3,not a domain\n4,example.com\n"
	r, err := domains.NewReader(strings.NewReader(in), domains.FormatAuto)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	seen := domains.NewDedup()
	for {
		e, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		switch {
		case e.Err != "":
			fmt.Printf("line %d: %q: %s\n", e.Line, e.Input, e.Err)
		case seen.Seen(e.Domain):
			fmt.Printf("line %d: %s again\n", e.Line, e.Domain)
		default:
			fmt.Printf("line %d: rank %d %s\n", e.Line, e.Rank, e.Domain)
		}
	}
	// Output:
	// line 2: rank 1 example.com
	// line 3: rank 2 xn--bcher-kva.example
	// line 4: "not a domain": invalid domain: invalid character " "
	// line 5: example.com again
}

func ExampleNormalize() {
	for _, s := range []string{"Bücher.Example.", "192.0.2.1", "com"} {
		d, err := domains.Normalize(s)
		fmt.Printf("%q %v\n", d, err)
	}
	// Output:
	// "xn--bcher-kva.example" <nil>
	// "" invalid domain: IP address literal
	// "" invalid domain: single label
}
