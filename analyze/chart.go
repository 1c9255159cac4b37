package analyze

import "math"

// Charts are laid out here and drawn by the template, so every label passes
// through html/template's escaping like any other text.
//
// Each bar sits under its label, with its value after it: the chart is as
// wide as its longest label or its longest bar and value, whichever is
// wider, so no text leaves the picture. The SVG keeps that width on a wide
// screen and scales down (CSS max-width, viewBox) on a narrow one; stacking
// label and bar keeps the natural width near 450 px, so on a phone the text
// stays above 9 px where side-by-side labels and bars (about 800 px) would
// shrink it to 5.
type chart struct {
	Title         string
	Width, Height int
	FontSize      int
	Inset, BarH   int
	Bars          []bar
}

type bar struct {
	Label, Full, Value   string
	LabelY, BarY, ValueY int
	W, ValueX            int
}

const (
	chartFont   = 12  // px, font-size of every text
	chartBarMax = 280 // px, the longest bar
	chartBarH   = 16
	chartRow    = 40 // label line, bar, gap
	chartGap    = 6  // between a bar's end and its value
	chartPad    = 4  // right and bottom margin
	// chartInset is the left margin: a glyph may reach left of its origin
	// (a "T" does by a pixel in DejaVu Sans).
	chartInset = 2
)

func newChart(title string, labels []string, values []int64, denom int64) chart {
	c := chart{Title: title, FontSize: chartFont, Inset: chartInset, BarH: chartBarH, Height: chartRow*len(labels) + chartPad}
	var most int64
	for _, v := range values {
		most = maxInt(most, v)
	}
	width := float64(chartInset + chartBarMax + chartGap)
	for i, l := range labels {
		w := 0
		if most > 0 {
			w = int(float64(values[i]) / float64(most) * chartBarMax)
		}
		y := i * chartRow
		b := bar{
			Label: shorten(l, 40), Full: l, Value: Share(values[i], denom),
			LabelY: y + 13, BarY: y + 18, ValueY: y + 18 + 12, W: w, ValueX: chartInset + w + chartGap,
		}
		width = math.Max(width, math.Max(chartInset+textWidth(b.Label, chartFont), float64(b.ValueX)+textWidth(b.Value, chartFont)))
		c.Bars = append(c.Bars, b)
	}
	c.Width = int(math.Ceil(width)) + chartPad
	return c
}

// textWidth estimates how wide s is when set in the report's font at size
// px. It errs wide: printable ASCII takes DejaVu Sans' advance widths
// (Debian's default sans-serif; Arial, Helvetica, Liberation Sans, Roboto
// and the usual system-ui fonts are narrower), anything else a full em,
// the width of a CJK ideograph. Kerning only narrows text further.
func textWidth(s string, size float64) float64 {
	units := 0
	for _, r := range s {
		if r >= ' ' && r <= '~' {
			units += int(dejaVuSansAdvance[r-' '])
		} else {
			units += 1000
		}
	}
	return float64(units) * size / 1000
}

// dejaVuSansAdvance holds DejaVu Sans Book's advance widths, in thousandths
// of an em, for ' ' (32) to '~' (126), as Chromium measures them.
var dejaVuSansAdvance = [95]uint16{
	318, 401, 460, 838, 636, 950, 780, 275, 390, 390, 500, 838, 318, 361, 318, 337, // ' ' to '/'
	636, 636, 636, 636, 636, 636, 636, 636, 636, 636, 337, 337, 838, 838, 838, 531, // '0' to '?'
	1000, 684, 686, 698, 770, 632, 575, 775, 752, 295, 295, 656, 557, 863, 748, 787, // '@' to 'O'
	603, 787, 695, 635, 611, 732, 684, 989, 685, 611, 685, 390, 337, 390, 838, 500, // 'P' to '_'
	500, 613, 635, 550, 635, 615, 352, 635, 634, 278, 278, 579, 278, 974, 634, 612, // '`' to 'o'
	635, 635, 411, 521, 392, 634, 592, 818, 592, 592, 525, 636, 337, 636, 838, // 'p' to '~'
}
