package survey

import (
	"reflect"
	"strings"
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

// validStrings fixes every string and []string field of a struct in place.
func validStrings(v reflect.Value) {
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		switch {
		case f.Kind() == reflect.String:
			if s := f.String(); !utf8.ValidString(s) {
				f.SetString(strings.ToValidUTF8(s, "\uFFFD"))
			}
		case f.Kind() == reflect.Slice && f.Type().Elem().Kind() == reflect.String:
			for j := 0; j < f.Len(); j++ {
				if s := f.Index(j).String(); !utf8.ValidString(s) {
					f.Index(j).SetString(strings.ToValidUTF8(s, "\uFFFD"))
				}
			}
		}
	}
}
