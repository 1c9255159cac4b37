package analyze

import (
	"context"
	"os"
	"testing"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/store/storetest"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// The analyzer reads a version-1 scan (mx parts without the DNSSEC columns,
// no tlsa or policies table) and a version-2 scan with every table, and
// counts the same figures from the same rows.
func TestReadsEverySchemaVersion(t *testing.T) {
	v1 := makeFixture(t)
	var rows []survey.MXRow
	if err := store.ReadAll(survey.MXDir(v1.scan), func(r *survey.MXRow) error { rows = append(rows, *r); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(survey.MXDir(v1.scan)); err != nil {
		t.Fatal(err)
	}
	if err := storetest.WriteMXV1(v1.scan, rows); err != nil {
		t.Fatal(err)
	}
	setSchemaVersion(t, v1.scan, 1)

	v2 := makeFixture(t)
	rows = rows[:0]
	if err := store.ReadAll(survey.MXDir(v2.scan), func(r *survey.MXRow) error { rows = append(rows, *r); return nil }); err != nil {
		t.Fatal(err)
	}
	var tlsa []survey.TLSARow
	var pol []survey.PolicyRow
	for i := range rows {
		rows[i].MXDNSSEC, rows[i].AddrDNSSEC = survey.DNSSECSecure, survey.DNSSECInsecure
		if rows[i].MXHost != "" {
			rows[i].MXHostCNAMEs = []string{"alias." + rows[i].MXHost}
			tlsa = append(tlsa, survey.TLSARow{MXHost: rows[i].MXHost, TLSAName: "_25._tcp." + rows[i].MXHost,
				TLSAStatus: survey.DNSOK, TLSADNSSEC: survey.DNSSECSecure, TLSARecords: []string{"3 1 1 00"}})
		}
		pol = append(pol, survey.PolicyRow{Domain: rows[i].Domain, MTASTSStatus: survey.DNSOK, MTASTSTXT: []string{"v=STSv1; id=1"},
			STSFetched: true, STSHTTPStatus: 200, STSBody: []byte("version: STSv1\r\n")})
	}
	if err := os.RemoveAll(survey.MXDir(v2.scan)); err != nil {
		t.Fatal(err)
	}
	writeTable(t, survey.MXDir(v2.scan), rows)
	writeTable(t, survey.TLSADir(v2.scan), tlsa)
	writeTable(t, survey.PoliciesDir(v2.scan), pol)

	for version, fx := range map[int]fixture{1: v1, 2: v2} {
		s, err := Analyze(context.Background(), Options{Dirs: []string{fx.scan}, RootsFile: fx.roots})
		if err != nil {
			t.Fatalf("version %d: %v", version, err)
		}
		if s.Scan.SchemaVersion != version {
			t.Errorf("version %d scan read as version %d", version, s.Scan.SchemaVersion)
		}
		checkCounts(t, "hosts", s.Hosts, wantHosts)
		checkCounts(t, "domains", s.Domains, wantDomains)
	}
}

func writeTable[T any](t *testing.T, dir string, rows []T) {
	t.Helper()
	w, err := store.NewPartWriter[T](dir, store.PartOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func setSchemaVersion(t *testing.T, dir string, v int) {
	t.Helper()
	m, err := store.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	m.SchemaVersion = v
	if err := store.WriteManifest(dir, m); err != nil {
		t.Fatal(err)
	}
}
