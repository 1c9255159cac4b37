package store

import (
	"reflect"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// mxRowV1 is survey.MXRow as schema version 1 wrote it, the columns of a
// scan made before the DNSSEC columns existed.
type mxRowV1 struct {
	Domain       string    `parquet:"domain,dict"`
	Rank         int64     `parquet:"rank"`
	Input        string    `parquet:"input"`
	DNSStatus    string    `parquet:"dns_status,dict"`
	DNSError     string    `parquet:"dns_error"`
	ImplicitMX   bool      `parquet:"implicit_mx"`
	CNAMEs       []string  `parquet:"cnames,list"`
	MXHost       string    `parquet:"mx_host,dict"`
	MXPreference int32     `parquet:"mx_preference"`
	MXHostStatus string    `parquet:"mx_host_status,dict"`
	MXHostError  string    `parquet:"mx_host_error"`
	IP           string    `parquet:"ip,dict"`
	IPVersion    int32     `parquet:"ip_version"`
	ResolvedAt   time.Time `parquet:"resolved_at,timestamp(millisecond)"`
}

// A version-1 part reads into today's row type: the columns it lacks read
// as their zero values (parquet-go converts a file to the reader's schema),
// the others as written; a table a version-1 scan does not have reads as no
// rows, not as an error.
func TestReadsVersion1Parts(t *testing.T) {
	dir := t.TempDir()
	at := time.Date(2026, 11, 2, 3, 4, 5, 0, time.UTC)
	w, err := NewPartWriter[mxRowV1](survey.MXDir(dir), PartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v1 := mxRowV1{Domain: "a.example", Rank: 7, Input: "A.example", DNSStatus: survey.DNSOK, CNAMEs: []string{"b.example"},
		MXHost: "mx.a.example", MXPreference: 10, MXHostStatus: survey.DNSOK, IP: "192.0.2.1", IPVersion: 4, ResolvedAt: at}
	if err := w.Write([]mxRowV1{v1}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var got []survey.MXRow
	if err := ReadAll(survey.MXDir(dir), func(r *survey.MXRow) error { got = append(got, *r); return nil }); err != nil {
		t.Fatal(err)
	}
	want := survey.MXRow{Domain: v1.Domain, Rank: v1.Rank, Input: v1.Input, DNSStatus: v1.DNSStatus, CNAMEs: v1.CNAMEs,
		MXHost: v1.MXHost, MXPreference: v1.MXPreference, MXHostStatus: v1.MXHostStatus, IP: v1.IP, IPVersion: v1.IPVersion,
		ResolvedAt: at}
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
		if err := ReadAll(table, func(*survey.PolicyRow) error { n++; return nil }); err != nil || n != 0 {
			t.Errorf("absent table %s: %d rows, %v", table, n, err)
		}
	}
}

// CommitBefore: whenever an mx part becomes visible, the rows written to the
// dependent writers before it are visible too, whatever made the mx writer
// commit (rotation here, Close and CommitIfOlder through the same path).
func TestCommitBeforeOrdersTables(t *testing.T) {
	dir := t.TempDir()
	mx, err := NewPartWriter[survey.MXRow](survey.MXDir(dir), PartOptions{MaxPartRows: 2})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := NewPartWriter[survey.PolicyRow](survey.PoliciesDir(dir), PartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tlsa, err := NewPartWriter[survey.TLSARow](survey.TLSADir(dir), PartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mx.CommitBefore(tlsa, pol)
	visible := func(table string) map[string]bool {
		seen := map[string]bool{}
		switch table {
		case survey.MXTable:
			ReadAll(survey.MXDir(dir), func(r *survey.MXRow) error { seen[r.Domain] = true; return nil })
		case survey.PoliciesTable:
			ReadAll(survey.PoliciesDir(dir), func(r *survey.PolicyRow) error { seen[r.Domain] = true; return nil })
		case survey.TLSATable:
			ReadAll(survey.TLSADir(dir), func(r *survey.TLSARow) error { seen[r.MXHost] = true; return nil })
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
