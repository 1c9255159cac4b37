// Package counts reads the benchmark flags that list sizes or worker
// counts ("10000 100000", "1 2 4").
package counts

import (
	"fmt"
	"strconv"
	"strings"
)

// Parse reads space-separated positive integers; flag names the flag in
// the error.
func Parse(flag, s string) ([]int, error) {
	var ns []int
	for _, f := range strings.Fields(s) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-%s %q: %q is not a positive number", flag, s, f)
		}
		ns = append(ns, n)
	}
	if len(ns) == 0 {
		return nil, fmt.Errorf("-%s %q: no number given", flag, s)
	}
	return ns, nil
}
