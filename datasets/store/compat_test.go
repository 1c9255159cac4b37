package store_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/store/storetest"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// A version-1 part reads into today's row type: the columns it lacks read
// as their zero values (parquet-go converts a file to the reader's schema),
// the others as written; a table a version-1 scan does not have reads as no
// rows, not as an error.
func TestReadsVersion1Parts(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 11, 2, 3, 4, 5, 0, time.UTC)
	v2 := survey.MXRow{Domain: "a.example", Rank: 7, Input: "A.example", DNSStatus: survey.DNSOK, CNAMEs: []string{"b.example"},
		MXHost: "mx.a.example", MXPreference: 10, MXHostStatus: survey.DNSOK, IP: "192.0.2.1", IPVersion: 4, ResolvedAt: at,
		MXDNSSEC: survey.DNSSECSecure, MXHostCNAMEs: []string{"c.example"}, AddrDNSSEC: survey.DNSSECSecure}
	if err := storetest.WriteMXV1(dir, []survey.MXRow{v2}); err != nil {
		t.Fatal(err)
	}
	var got []survey.MXRow
	if err := store.ReadAll(survey.MXDir(dir), func(r *survey.MXRow) error { got = append(got, *r); return nil }); err != nil {
		t.Fatal(err)
	}
	want := v2
	want.MXDNSSEC, want.MXHostCNAMEs, want.AddrDNSSEC = "", nil, ""
	if len(got) != 1 {
		t.Fatalf("read %d rows", len(got))
	}
	if len(got[0].MXHostCNAMEs) == 0 {
		got[0].MXHostCNAMEs = nil // an absent list reads as empty, nil or not
	}
	if !reflect.DeepEqual(got[0], want) {
		t.Errorf("version-1 row read as\n %+v\nwant\n %+v", got[0], want)
	}
	for _, table := range []string{survey.TLSADir(dir), survey.PoliciesDir(dir)} {
		n := 0
		if err := store.ReadAll(table, func(*survey.PolicyRow) error { n++; return nil }); err != nil || n != 0 {
			t.Errorf("absent table %s: %d rows, %v", table, n, err)
		}
	}
}

// CommitBefore: whenever an mx part becomes visible, the rows written to the
// dependent writers before it are visible too, whatever made the mx writer
// commit (rotation here, Close and CommitIfOlder through the same path).
func TestCommitBeforeOrdersTables(t *testing.T) {
	dir := t.TempDir()
	mx, err := store.NewPartWriter[survey.MXRow](survey.MXDir(dir), store.PartOptions{MaxPartRows: 2})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := store.NewPartWriter[survey.PolicyRow](survey.PoliciesDir(dir), store.PartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tlsa, err := store.NewPartWriter[survey.TLSARow](survey.TLSADir(dir), store.PartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mx.CommitBefore(tlsa, pol)
	visible := func(table string) map[string]bool {
		seen := map[string]bool{}
		switch table {
		case survey.MXTable:
			store.ReadAll(survey.MXDir(dir), func(r *survey.MXRow) error { seen[r.Domain] = true; return nil })
		case survey.PoliciesTable:
			store.ReadAll(survey.PoliciesDir(dir), func(r *survey.PolicyRow) error { seen[r.Domain] = true; return nil })
		case survey.TLSATable:
			store.ReadAll(survey.TLSADir(dir), func(r *survey.TLSARow) error { seen[r.MXHost] = true; return nil })
		}
		return seen
	}
	for i := range 5 {
		d := string(rune('a'+i)) + ".example"
		if err := tlsa.Write([]survey.TLSARow{{MXHost: "mx." + d}}); err != nil {
			t.Fatal(err)
		}
		if err := pol.Write([]survey.PolicyRow{{Domain: d}}); err != nil {
			t.Fatal(err)
		}
		if err := mx.Write([]survey.MXRow{{Domain: d, MXHost: "mx." + d}}); err != nil {
			t.Fatal(err)
		}
		pols, hosts := visible(survey.PoliciesTable), visible(survey.TLSATable)
		for dom := range visible(survey.MXTable) {
			if !pols[dom] || !hosts["mx."+dom] {
				t.Fatalf("after %s: mx rows of %s visible without its policies (%v) or tlsa (%v) row", d, dom, pols[dom], hosts["mx."+dom])
			}
		}
	}
	if len(visible(survey.MXTable)) == 0 {
		t.Fatal("no mx part rotated: the test checked nothing")
	}
	if err := mx.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(visible(survey.PoliciesTable)); n != 5 {
		t.Errorf("after Close: %d policies rows visible, want 5", n)
	}
}
