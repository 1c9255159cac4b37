// Package datasetcheck holds a scan dataset to what tests expect of it.
// ExactlyOnce: every input domain and every target once, every Parquet
// file whole, whatever crashed on the way. Diff: two datasets the same row
// for row (a cluster scan and a local one): every column of every row of
// every table, keyed by the row's identity, except what depends on when
// and from where a scan ran: times and durations, and in text the
// scanner's own socket address (Go's error text), the client address a
// server echoes ("Hello [192.0.2.1]") and the server's clock ("Sun, 06
// Dec 2026 21:49:01 +0000"), so also the count of bytes read.
package datasetcheck

import (
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// Aside are the columns not compared, by Parquet name: wall clock, and
// bytes_read, which counts the server's clock and echo too.
var Aside = map[string]bool{"resolved_at": true, "started_at": true, "duration_ms": true, "bytes_read": true,
	"queried_at": true, "sts_started_at": true, "sts_duration_ms": true}

// masks hide, in text columns, what the scanner's time and place put
// there: its side of a socket in Go's error text ("read tcp
// 127.0.0.1:43512->127.9.8.7:25: i/o timeout"; a dial names it only when
// it dials from a given address, as cluster workers do, so it is dropped
// rather than replaced), the address a server echoes, and a server's date.
var masks = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`[0-9A-Fa-f.:\[\]]+:\d+->`), ""},
	{regexp.MustCompile(`\[(IPv6:)?[0-9A-Fa-f.:]+\]`), "[ADDR]"},
	{regexp.MustCompile(`(Mon|Tue|Wed|Thu|Fri|Sat|Sun), +\d{1,2} \w{3} \d{4} \d{2}:\d{2}:\d{2}( [+-]\d{4})?`), "DATE"},
}

func mask(s string) string {
	for _, m := range masks {
		s = m.re.ReplaceAllString(s, m.with)
	}
	return s
}

// Diff returns the differences between the datasets in dirs a and b, at
// most limit of them (and a count of the rest).
func Diff(a, b string, limit int) ([]string, error) {
	var out []string
	mxA, err := read[survey.MXRow](survey.MXDir(a), mxKey)
	if err != nil {
		return nil, err
	}
	mxB, err := read[survey.MXRow](survey.MXDir(b), mxKey)
	if err != nil {
		return nil, err
	}
	out = append(out, compare(survey.MXTable, mxA, mxB)...)
	prA, err := read[survey.ProbeRow](survey.ProbesDir(a), probeKey)
	if err != nil {
		return nil, err
	}
	prB, err := read[survey.ProbeRow](survey.ProbesDir(b), probeKey)
	if err != nil {
		return nil, err
	}
	out = append(out, compare(survey.ProbesTable, prA, prB)...)
	tlA, err := read[survey.TLSARow](survey.TLSADir(a), func(r *survey.TLSARow) string { return r.MXHost })
	if err != nil {
		return nil, err
	}
	tlB, err := read[survey.TLSARow](survey.TLSADir(b), func(r *survey.TLSARow) string { return r.MXHost })
	if err != nil {
		return nil, err
	}
	out = append(out, compare(survey.TLSATable, tlA, tlB)...)
	poA, err := read[survey.PolicyRow](survey.PoliciesDir(a), func(r *survey.PolicyRow) string { return r.Domain })
	if err != nil {
		return nil, err
	}
	poB, err := read[survey.PolicyRow](survey.PoliciesDir(b), func(r *survey.PolicyRow) string { return r.Domain })
	if err != nil {
		return nil, err
	}
	out = append(out, compare(survey.PoliciesTable, poA, poB)...)
	if len(out) > limit {
		out = append(out[:limit], fmt.Sprintf("... and %d more", len(out)-limit))
	}
	return out, nil
}

func mxKey(r *survey.MXRow) string       { return r.Domain + "|" + r.MXHost + "|" + r.IP }
func probeKey(r *survey.ProbeRow) string { return survey.TargetKey(r.IP, r.MXHost) }
func read[T any](dir string, key func(*T) string) (map[string][]T, error) {
	rows := map[string][]T{}
	err := store.ReadAll(dir, func(r *T) error {
		rows[key(r)] = append(rows[key(r)], *r)
		return nil
	})
	return rows, err
}

func compare[T any](table string, a, b map[string][]T) []string {
	var out []string
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		ra, rb := a[k], b[k]
		if len(ra) != len(rb) {
			out = append(out, fmt.Sprintf("%s %s: %d rows in one, %d in the other", table, k, len(ra), len(rb)))
			continue
		}
		for i := range ra {
			for _, d := range columns(&ra[i], &rb[i]) {
				out = append(out, fmt.Sprintf("%s %s: %s", table, k, d))
			}
		}
	}
	return out
}

// columns compares two rows field by field, by their Parquet names.
func columns(a, b any) []string {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	var out []string
	for i := range va.NumField() {
		name, _, _ := strings.Cut(va.Type().Field(i).Tag.Get("parquet"), ",")
		if Aside[name] {
			continue
		}
		x, y := va.Field(i).Interface(), vb.Field(i).Interface()
		if s, ok := x.(string); ok {
			x, y = mask(s), mask(y.(string))
		}
		if !equal(reflect.ValueOf(x), reflect.ValueOf(y)) {
			out = append(out, fmt.Sprintf("%s %v != %v", name, clip(x), clip(y)))
		}
	}
	return out
}

// equal is reflect.DeepEqual, but an empty list equals a missing one
// (Parquet does not tell them apart).
func equal(x, y reflect.Value) bool {
	if x.Kind() == reflect.Slice && x.Len() == 0 && y.Len() == 0 {
		return true
	}
	return reflect.DeepEqual(x.Interface(), y.Interface())
}

func clip(v any) string {
	s := fmt.Sprint(v)
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// PoliciesFetched counts the policies rows of the dataset in dir whose
// MTA-STS policy was fetched with HTTP status 200: two scans that agree
// row for row have only tested the policy fetch if some were.
func PoliciesFetched(dir string) (int, error) {
	n := 0
	err := store.ReadAll(survey.PoliciesDir(dir), func(r *survey.PolicyRow) error {
		if r.STSFetched && r.STSHTTPStatus == 200 {
			n++
		}
		return nil
	})
	return n, err
}
