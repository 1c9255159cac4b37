package world

// weighted is one entry of a table drawn by pick: its value and its weight.
type weighted[T any] struct {
	w int
	v T
}

// pick draws a value from t with the hash h: the entries own consecutive
// ranges of h mod the total weight, in table order. Every categorical draw
// of the world goes through it, so a table reads as its shares (a weight of
// 3 in a total of 20 is 15%) and a new world of the same seed stays the same
// as long as a table's order and weights do.
func pick[T any](t []weighted[T], h uint64) T {
	total := 0
	for _, e := range t {
		total += e.w
	}
	u := int(h % uint64(total))
	for _, e := range t {
		if u < e.w {
			return e.v
		}
		u -= e.w
	}
	panic("unreachable: u < total")
}

// Yes/no draws.
var (
	oneIn3 = []weighted[bool]{{1, true}, {2, false}}
	oneIn4 = []weighted[bool]{{1, true}, {3, false}}
	oneIn2 = []weighted[bool]{{1, true}, {1, false}}
)

// selfVariants: how a self-hosted leader lays out its MX, a third each.
var selfVariants = []weighted[uint8]{{1, variantOne}, {1, variantTwo}, {1, variantMX2}}
