package survey

import (
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"
)

// Parquet STRING columns must hold valid UTF-8: DuckDB, for one, refuses a
// file with a single bad value. Servers send anything (binary banners,
// Latin-1, NUL bytes are fine), so every text column is made valid by
// replacing each invalid byte sequence with U+FFFD, and the greeting's
// exact bytes are kept in banner_raw when that changed it.

// MakeValidUTF8 prepares a probe row for writing; store.PartWriter calls it.
func (r *ProbeRow) MakeValidUTF8() {
	if !utf8.ValidString(r.Banner) {
		r.BannerRaw = []byte(r.Banner)
	}
	validStrings(reflect.ValueOf(r).Elem())
}

// MakeValidUTF8 prepares an mx row for writing; store.PartWriter calls it.
func (r *MXRow) MakeValidUTF8() {
	validStrings(reflect.ValueOf(r).Elem())
}

// MakeValidUTF8 prepares a tlsa row for writing; store.PartWriter calls it.
func (r *TLSARow) MakeValidUTF8() {
	validStrings(reflect.ValueOf(r).Elem())
}

// MakeValidUTF8 prepares a policies row for writing; store.PartWriter calls
// it. TXT records are DNS data, not necessarily text: invalid bytes become
// U+FFFD as everywhere else (a record that needed them is not a valid
// MTA-STS or TLS-RPT record anyway); the policy body is binary and kept.
func (r *PolicyRow) MakeValidUTF8() {
	validStrings(reflect.ValueOf(r).Elem())
}

// textFields holds, per row type, the indexes of its string and []string
// fields: looking at every field of every row by reflection was most of
// the repair's cost, a few percent of a DNS-only scan's CPU.
var textFields sync.Map // reflect.Type -> []int

// validStrings fixes every string and []string field of a struct in place.
func validStrings(v reflect.Value) {
	idx, ok := textFields.Load(v.Type())
	if !ok {
		var fs []int
		t := v.Type()
		for i := range t.NumField() {
			if k := t.Field(i).Type.Kind(); k == reflect.String || k == reflect.Slice && t.Field(i).Type.Elem().Kind() == reflect.String {
				fs = append(fs, i)
			}
		}
		idx, _ = textFields.LoadOrStore(t, fs)
	}
	for _, i := range idx.([]int) {
		f := v.Field(i)
		if f.Kind() == reflect.String {
			if s := f.String(); !utf8.ValidString(s) {
				f.SetString(strings.ToValidUTF8(s, "\uFFFD"))
			}
			continue
		}
		for j := 0; j < f.Len(); j++ {
			if s := f.Index(j).String(); !utf8.ValidString(s) {
				f.Index(j).SetString(strings.ToValidUTF8(s, "\uFFFD"))
			}
		}
	}
}
