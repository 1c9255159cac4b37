package analyze

import (
	"math"
	"strings"
	"testing"
)

func TestTextWidth(t *testing.T) {
	for _, c := range []struct {
		s    string
		want float64 // px at 12 px
	}{
		{"", 0},
		{"0", 636 * 12 / 1000.0},
		{"1095 of 1955 (56.0%)", (11*636 + 3*318 + 612 + 352 + 2*390 + 318 + 950) * 12 / 1000.0},
		{"WWW", 3 * 989 * 12 / 1000.0},
		{"é中", 2 * 12}, // outside ASCII: an em each
	} {
		if got := textWidth(c.s, 12); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("textWidth(%q) = %v, want %v", c.s, got, c.want)
		}
	}
}

// TestChartHoldsItsText lays out charts whose labels and values are as wide
// as reports get and checks, from the geometry, that every text and bar
// stays inside the SVG's box, and that the box is not much wider than its
// widest content.
func TestChartHoldsItsText(t *testing.T) {
	cases := []struct {
		name   string
		labels []string
		values []int64
		denom  int64
	}{
		{"headline of the issue", []string{"Matches the MX name only", "Matches the greeting name only", "Matches both", "Matches neither"},
			[]int64{1095, 320, 400, 140}, 1955},
		{"huge counts", []string{"a", "b"}, []int64{123456789, 1}, 987654321},
		{"wide glyphs", []string{strings.Repeat("W", 60), strings.Repeat("M", 39)}, []int64{5, 5}, 10},
		{"non-ASCII", []string{strings.Repeat("證", 45), "<script>alert(1)</script>"}, []int64{0, 3}, 3},
		{"nothing counted", []string{"x"}, []int64{0}, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch := newChart("t", c.labels, c.values, c.denom)
			widest := float64(chartInset + chartBarMax + chartGap) // room for the longest bar, always
			for i, b := range ch.Bars {
				lw, vw := chartInset+textWidth(b.Label, chartFont), textWidth(b.Value, chartFont)
				widest = math.Max(widest, math.Max(lw, float64(b.ValueX)+vw))
				if lw > float64(ch.Width) || float64(b.ValueX)+vw > float64(ch.Width) || chartInset+b.W > ch.Width {
					t.Errorf("bar %d: label %.1f px, value ends at %.1f, bar %d px; the SVG is %d wide", i, lw, float64(b.ValueX)+vw, b.W, ch.Width)
				}
				if b.ValueY+4 > ch.Height || b.BarY+ch.BarH > ch.Height { // 4 px: below the baseline
					t.Errorf("bar %d ends below the SVG (%d, %d of %d)", i, b.ValueY, b.BarY+ch.BarH, ch.Height)
				}
				if b.LabelY-chartFont < 0 || (i > 0 && b.LabelY-chartFont < ch.Bars[i-1].ValueY) {
					t.Errorf("bar %d: its label overlaps the row above", i)
				}
			}
			if ch.Width > int(widest)+chartPad+1 {
				t.Errorf("SVG %d px wide for %.1f px of content", ch.Width, widest)
			}
		})
	}
}
