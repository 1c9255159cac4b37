package match_test

import (
	"fmt"

	"github.com/mxsurvey/mxsurvey/analyze/match"
)

func ExampleMatchName() {
	fmt.Println(match.MatchName("*.example.com", "MX.example.com."))  // one label, any case
	fmt.Println(match.MatchName("*.example.com", "a.mx.example.com")) // never two labels
	fmt.Println(match.MatchName("*.co.uk", "example.co.uk"))          // public suffix
	fmt.Println(match.MatchName("xn--bcher-kva.example", "bücher.example"))
	// Output:
	// true true
	// false false
	// false false
	// true false
}
