package store

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// A flat row type reads the values parquet-go's own reader gives, row for
// row: a string shared with the row before only where it is equal, an empty
// value after a set one, and every int and bool as written. Types that are
// not flat, or whose columns the part types otherwise, are not read flat.
func TestReadFlat(t *testing.T) {
	dir := t.TempDir()
	w, err := NewPartWriter[survey.MXRow](dir, PartOptions{GroupRows: 5})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	for i := range 23 {
		d := fmt.Sprintf("d%d.example", i/3) // runs of three rows per domain, across row groups
		r := survey.MXRow{Domain: d, Rank: int64(i / 3), DNSStatus: survey.DNSOK, ImplicitMX: i%4 == 1,
			MXPreference: int32(i % 3 * 10), ResolvedAt: at, CNAMEs: []string{"c." + d}}
		if i%5 != 2 { // now and then a row without a host follows one with
			r.MXHost, r.IP = "mx."+d, fmt.Sprintf("192.0.2.%d", i)
		}
		if i%2 == 0 {
			r.MXDNSSEC = survey.DNSSECSecure
		}
		if i == 22 {
			r.DNSStatus = survey.DNSNoMX
		}
		if err := w.Write([]survey.MXRow{r}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	type flat struct {
		Domain       string `parquet:"domain,dict"`
		Rank         int64  `parquet:"rank"`
		DNSStatus    string `parquet:"dns_status,dict"`
		ImplicitMX   bool   `parquet:"implicit_mx"`
		MXHost       string `parquet:"mx_host,dict"`
		MXPreference int32  `parquet:"mx_preference"`
		IP           string `parquet:"ip,dict"`
		MXDNSSEC     string `parquet:"mx_dnssec,dict"`
	}
	got := readTable[flat](t, dir)

	table, err := ListTable(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer table.Close()
	var want []flat
	for _, g := range table.Groups {
		err := withRowGroup(g, func(rg parquet.RowGroup) error {
			if _, ok := flatFields[flat](project[flat](rg)); !ok {
				t.Fatalf("row type of string, int and bool columns is not read flat")
			}
			type listed struct {
				Domain string   `parquet:"domain,dict"`
				CNAMEs []string `parquet:"cnames,list"`
			}
			type timed struct {
				ResolvedAt time.Time `parquet:"resolved_at,timestamp(millisecond)"`
			}
			type retyped struct {
				Rank int32 `parquet:"rank"`
			}
			if _, ok := flatFields[listed](project[listed](rg)); ok {
				t.Errorf("a type with a list was read flat")
			}
			if _, ok := flatFields[timed](project[timed](rg)); ok {
				t.Errorf("a type with a timestamp was read flat")
			}
			if _, ok := flatFields[retyped](project[retyped](rg)); ok {
				t.Errorf("a type with a column typed otherwise was read flat")
			}
			r := parquet.NewGenericRowGroupReader[flat](rg) // parquet-go's own conversion and reconstruction
			defer r.Close()
			return readBatches(context.Background(), g.Path, r.Read, func(b []flat) error { want = append(want, b...); return nil })
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(want) != 23 || !reflect.DeepEqual(got, want) {
		t.Errorf("read flat:\n%+v\nparquet-go:\n%+v", got, want)
	}
}
