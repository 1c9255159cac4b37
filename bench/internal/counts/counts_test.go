package counts

import (
	"slices"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []int
	}{
		{"10000 100000", []int{10000, 100000}},
		{" 1  2\t4 ", []int{1, 2, 4}},
		{"1000", []int{1000}},
		{"", nil},
		{"0", nil},
		{"-3", nil},
		{"1 two", nil},
	} {
		got, err := Parse("sizes", c.in)
		if (err == nil) != (c.want != nil) || !slices.Equal(got, c.want) {
			t.Errorf("Parse(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}
