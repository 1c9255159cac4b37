package store

import (
	"github.com/mxsurvey/mxsurvey/datasets/survey"

	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
)

func TestPartWriterRotatesAndCommitsAtomically(t *testing.T) {
	dir := t.TempDir()
	w, err := NewPartWriter[survey.MXRow](dir, PartOptions{MaxPartRows: 3, GroupRows: 2})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	for i := 0; i < 4; i++ {
		// Two rows of one domain per call: a domain never straddles parts.
		d := string(rune('a'+i)) + ".example"
		rows := []survey.MXRow{{Domain: d, DNSStatus: survey.DNSOK, MXHost: "mx1." + d, IP: "192.0.2.1", ResolvedAt: at},
			{Domain: d, DNSStatus: survey.DNSOK, MXHost: "mx2." + d, IP: "192.0.2.2", ResolvedAt: at}}
		if err := w.Write(rows); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if parts, _ := Parts(dir); len(parts) != 0 {
				t.Fatalf("open part visible before commit: %v", parts)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	parts, err := Parts(dir)
	if err != nil {
		t.Fatal(err)
	}
	// 2 rows, then 2 more reach 4 >= 3: rotation happens before the next write.
	if len(parts) != 2 {
		t.Fatalf("parts = %v, want 2", parts)
	}
	if n, rows := w.Committed(); n != 2 || rows != 8 {
		t.Fatalf("committed = %d parts %d rows, want 2, 8", n, rows)
	}
	perDomainPart := map[string]string{}
	var got int
	for _, p := range parts {
		err := ReadPart(p, func(r *survey.MXRow) error {
			got++
			if prev, ok := perDomainPart[r.Domain]; ok && prev != p {
				t.Errorf("domain %s split across %s and %s", r.Domain, prev, p)
			}
			perDomainPart[r.Domain] = p
			if !r.ResolvedAt.Equal(at) {
				t.Errorf("resolved_at = %v", r.ResolvedAt)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if got != 8 {
		t.Fatalf("read %d rows, want 8", got)
	}
}

func TestPartWriterResumeNumberingAndLeftovers(t *testing.T) {
	dir := t.TempDir()
	w, _ := NewPartWriter[survey.ProbeRow](dir, PartOptions{})
	if err := w.Write([]survey.ProbeRow{{IP: "192.0.2.1", MXHost: "mx.example", CertChain: [][]byte{{1, 2, 3}}}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// A killed run leaves its open part as a temporary file.
	leftover := filepath.Join(dir, ".part-00001.parquet.tmp")
	if err := os.WriteFile(leftover, []byte("half a file"), 0o644); err != nil {
		t.Fatal(err)
	}
	w2, err := NewPartWriter[survey.ProbeRow](dir, PartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Fatalf("leftover temporary part not removed: %v", err)
	}
	if err := w2.Write([]survey.ProbeRow{{IP: "192.0.2.2"}}); err != nil {
		t.Fatal(err)
	}
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
	parts, _ := Parts(dir)
	if len(parts) != 2 || filepath.Base(parts[1]) != "part-00001.parquet" {
		t.Fatalf("parts = %v", parts)
	}
	var ips []string
	var chain [][]byte
	if err := ReadAll(dir, func(r *survey.ProbeRow) error {
		ips = append(ips, r.IP)
		if r.IP == "192.0.2.1" {
			chain = r.CertChain
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(ips) != 2 || ips[0] != "192.0.2.1" || ips[1] != "192.0.2.2" {
		t.Fatalf("ips = %v", ips)
	}
	if len(chain) != 1 || string(chain[0]) != "\x01\x02\x03" {
		t.Fatalf("cert chain did not round-trip: %v", chain)
	}
}

func TestPartWriterAbortLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	w, _ := NewPartWriter[survey.MXRow](dir, PartOptions{})
	if err := w.Write([]survey.MXRow{{Domain: "a.example"}}); err != nil {
		t.Fatal(err)
	}
	w.Abort()
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Fatalf("abort left %v", entries)
	}
}

func TestManifestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	m := &survey.Manifest{Tool: survey.Tool, SchemaVersion: survey.SchemaVersion, Status: survey.StatusRunning,
		Counts: map[string]int64{"domains_read": 3}}
	if err := WriteManifest(dir, m); err != nil {
		t.Fatal(err)
	}
	got, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != survey.StatusRunning || got.Counts["domains_read"] != 3 || got.SchemaVersion != survey.SchemaVersion {
		t.Fatalf("manifest = %+v", got)
	}
}

// Age is zero with nothing open, grows while a part is open, and is zero
// again once it is committed.
func TestAge(t *testing.T) {
	dir := t.TempDir()
	w, _ := NewPartWriter[survey.MXRow](dir, PartOptions{})
	if a := w.Age(); a != 0 {
		t.Fatalf("age with nothing open = %v", a)
	}
	if err := w.Write([]survey.MXRow{{Domain: "a.example"}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if a := w.Age(); a < 20*time.Millisecond {
		t.Fatalf("age of a part open 20ms = %v", a)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if parts, _ := Parts(dir); len(parts) != 1 || w.Age() != 0 {
		t.Fatalf("after Commit: parts %v, age %v", parts, w.Age())
	}
	if err := w.Commit(); err != nil { // nothing open: no empty part
		t.Fatal(err)
	}
	if parts, _ := Parts(dir); len(parts) != 1 {
		t.Fatalf("an empty part was committed: %v", parts)
	}
}

// Row groups read one by one, through a type naming a subset of the columns,
// give the table's rows in order, and leave no part open; a type that does
// not fit is an error.
func TestRowGroups(t *testing.T) {
	dir := t.TempDir()
	w, err := NewPartWriter[survey.MXRow](dir, PartOptions{MaxPartRows: 5, GroupRows: 2})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range 12 {
		d := string(rune('a'+i)) + ".example"
		want = append(want, d)
		if err := w.Write([]survey.MXRow{{Domain: d, Rank: int64(i + 1), DNSStatus: survey.DNSOK, MXHost: "mx." + d,
			CNAMEs: []string{"c." + d}, IP: "192.0.2.1"}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	table, err := ListTable(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer table.Close()
	groups := table.Groups
	// 12 rows in parts of 5, 5, 2 rows; row groups of 2.
	wantGroups := []RowGroup{{Index: 0, Rows: 2, First: true}, {Index: 1, Rows: 2}, {Index: 2, Rows: 1, Last: true},
		{Index: 0, Rows: 2, First: true}, {Index: 1, Rows: 2}, {Index: 2, Rows: 1, Last: true},
		{Index: 0, Rows: 2, First: true, Last: true}}
	if len(groups) != len(wantGroups) {
		t.Fatalf("row groups = %+v", groups)
	}
	type projection struct {
		Rank   int64  `parquet:"rank"`
		Domain string `parquet:"domain,dict"`
	}
	var got []string
	for i, g := range groups {
		wg := wantGroups[i]
		wg.Path, wg.part = g.Path, g.part
		if g != wg {
			t.Errorf("row group %d = %+v, want %+v", i, g, wg)
		}
		err := ReadRowGroup(context.Background(), g, func(rows []projection) error {
			for _, r := range rows {
				if r.Rank != int64(len(got)+1) {
					t.Errorf("%s: rank %d", r.Domain, r.Rank)
				}
				got = append(got, r.Domain)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("domains = %v, want %v", got, want)
	}
	for _, p := range table.parts {
		if p.f != nil || p.left != 0 {
			t.Errorf("%s left open after all its row groups were read", p.path)
		}
	}
	type wrong struct {
		Domain int64 `parquet:"domain"`
	}
	again, err := ListTable(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := ReadRowGroup(context.Background(), again.Groups[0], func([]wrong) error { return nil }); err == nil {
		t.Errorf("a string column read as int64 gave no error")
	}
	if err := again.Close(); err != nil {
		t.Error(err)
	}
	if err := ReadRowGroup(context.Background(), again.Groups[1], func([]projection) error { return nil }); err == nil {
		t.Errorf("a row group of a closed table was read")
	}
}

// A type naming some of a table's columns reads through a projection of
// only those columns, with the values the full row holds: lists and
// optional columns included, whether the row before had them set or not. A
// type the projection cannot serve (a column the part lacks, one typed
// differently) reads through parquet-go's conversion, as before.
func TestProjection(t *testing.T) {
	dir := t.TempDir()
	w, err := NewPartWriter[survey.ProbeRow](dir, PartOptions{GroupRows: 3})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	var rows []survey.ProbeRow
	for i := range 8 {
		r := survey.ProbeRow{IP: fmt.Sprintf("192.0.2.%d", i), MXHost: fmt.Sprintf("mx%d.example", i%3), Port: 25}
		if i%2 == 0 { // set every other row's lists and optional columns, so each follows its opposite
			r.CertChain = [][]byte{{byte(i), 1}, {byte(i), 2, 3}}
			r.CertSANDNS = []string{fmt.Sprintf("mx%d.example", i)}
			r.BannerRaw = []byte{0xff, byte(i)}
			r.CertNotAfter = at.Add(time.Duration(i) * time.Hour)
			r.TLSVersion = "TLS 1.3"
		}
		rows = append(rows, r)
	}
	if err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	type narrow struct {
		MXHost       string    `parquet:"mx_host,dict"`
		IP           string    `parquet:"ip,dict"`
		BannerRaw    []byte    `parquet:"banner_raw,optional"`
		CertChain    [][]byte  `parquet:"cert_chain,list"`
		CertSANDNS   []string  `parquet:"cert_san_dns,list"`
		CertNotAfter time.Time `parquet:"cert_not_after,timestamp(millisecond),optional"`
		TLSVersion   string    `parquet:"tls_version,dict"`
	}
	want := func(r survey.ProbeRow) narrow {
		return narrow{r.MXHost, r.IP, r.BannerRaw, r.CertChain, r.CertSANDNS, r.CertNotAfter, r.TLSVersion}
	}
	table, err := ListTable(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer table.Close()
	pf := func(g RowGroup) *parquet.File {
		t.Helper()
		f, err := g.part.open()
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	rg := pf(table.Groups[0]).RowGroups()[0]
	p, ok := project[narrow](rg).(projected)
	if !ok {
		t.Fatalf("narrow type not projected")
	}
	if n := len(p.ColumnChunks()); n != 7 {
		t.Errorf("projection reads %d columns, want 7", n)
	}
	type missing struct {
		IP     string `parquet:"ip,dict"`
		Absent string `parquet:"absent"`
	}
	type retyped struct {
		IP   string `parquet:"ip,dict"`
		Port int64  `parquet:"port"`
	}
	if _, ok := project[missing](rg).(projected); ok {
		t.Errorf("a type with a column the part lacks was projected")
	}
	if _, ok := project[retyped](rg).(projected); ok {
		t.Errorf("a type with a column of another type was projected")
	}

	got, gotMissing, gotRetyped := readTable[narrow](t, dir), readTable[missing](t, dir), readTable[retyped](t, dir)
	if len(got) != len(rows) || len(gotMissing) != len(rows) || len(gotRetyped) != len(rows) {
		t.Fatalf("read %d, %d, %d rows, want %d", len(got), len(gotMissing), len(gotRetyped), len(rows))
	}
	for i, r := range rows {
		g := got[i]
		// An empty list or absent optional reads as empty, nil or not.
		if len(g.CertChain) == 0 {
			g.CertChain = nil
		}
		if len(g.CertSANDNS) == 0 {
			g.CertSANDNS = nil
		}
		if len(g.BannerRaw) == 0 {
			g.BannerRaw = nil
		}
		if !reflect.DeepEqual(g, want(r)) {
			t.Errorf("row %d read as\n %+v\nwant\n %+v", i, g, want(r))
		}
		if gotMissing[i] != (missing{IP: r.IP}) || gotRetyped[i] != (retyped{IP: r.IP, Port: 25}) {
			t.Errorf("row %d through conversion: %+v, %+v", i, gotMissing[i], gotRetyped[i])
		}
	}
}

// readTable reads every row group of dir's parts with ReadRowGroup.
func readTable[T any](t *testing.T, dir string) []T {
	t.Helper()
	table, err := ListTable(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer table.Close()
	var rows []T
	for _, g := range table.Groups {
		if err := ReadRowGroup(context.Background(), g, func(b []T) error { rows = append(rows, b...); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	return rows
}
