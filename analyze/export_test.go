package analyze

import (
	"os"
	"path/filepath"
	"testing"
)

// A segment comes back to its table once written and is handed out again
// empty: no row or CSV record of its first use shows up in its second.
func TestSegmentReuse(t *testing.T) {
	dir := t.TempDir()
	tab, err := newTable[DomainRow](dir, "d")
	if err != nil {
		t.Fatal(err)
	}
	first := tab.segment(2)
	for _, d := range []string{"a.example", "b.example"} {
		if err := first.add(DomainRow{Domain: d, TLSRPTResults: []string{"mx." + d + "=validation-failure"}}); err != nil {
			t.Fatal(err)
		}
	}
	tab.send(first)
	if err := tab.finish(); err != nil {
		t.Fatal(err)
	}
	again := <-tab.free // finish waited for the table's goroutine, which put it back
	if again != first {
		t.Fatalf("the written segment was not kept for reuse")
	}
	for i, r := range first.rows[:cap(first.rows)] {
		if r.Domain != "" || r.TLSRPTResults != nil {
			t.Errorf("kept segment row %d still holds %+v", i, r)
		}
	}
	tab.free <- again
	reused := tab.segment(1)
	if reused != first || len(reused.rows) != 0 || reused.csv.Len() != 0 {
		t.Fatalf("reused segment: same %v, %d rows, %d CSV bytes", reused == first, len(reused.rows), reused.csv.Len())
	}
	row := reused.next()
	if row.Domain != "" || row.TLSRPTResults != nil {
		t.Errorf("next on a reused segment gave %+v", *row)
	}
	data, err := os.ReadFile(filepath.Join(dir, "d.csv"))
	if err != nil {
		t.Fatal(err)
	}
	want := "domain,rank,dns_status,implicit_mx,mx_count,target_count,probed,starttls_all_mx,primary_mx_valid,any_mx_valid,primary_mx_host,mx_provider,mx_secure,dane_protected,dane_deliverable,mta_sts_record,mta_sts_policy_ok,mta_sts_mode,mta_sts_failure,mta_sts_enforce,mta_sts_deliverable,tlsrpt_record,auth_policy,tlsrpt_results\n" +
		"a.example,0,,false,0,0,0,false,false,false,,,false,false,false,false,false,,,false,false,false,,mx.a.example=validation-failure\n" +
		"b.example,0,,false,0,0,0,false,false,false,,,false,false,false,false,false,,,false,false,false,,mx.b.example=validation-failure\n"
	if string(data) != want {
		t.Errorf("d.csv =\n%s\nwant\n%s", data, want)
	}
}
