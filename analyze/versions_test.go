package analyze

import (
	"context"
	"os"
	"path/filepath"
	"strings"
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
	if err := storetest.WriteTable(dir, rows); err != nil {
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

// A policy figure is absent, never zero, from a scan that did not measure
// it: a version-1 scan, a scan with -policies=false, and (for the figures
// that need DNSSEC) a scan whose resolver was not trusted for AD.
func TestPolicyFiguresAbsent(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    func(t *testing.T, dir string)
		present measured
	}{
		{"policies on, DNSSEC trusted", func(*testing.T, string) {}, measuredDNSSEC},
		{"DNSSEC untrusted", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m *survey.Manifest) { m.Options["dnssec"] = survey.DNSSECUntrusted })
		}, measuredPolicies},
		{"policies off", func(t *testing.T, dir string) {
			editManifest(t, dir, func(m *survey.Manifest) { m.Options["policies"], m.Options["dnssec"] = false, survey.DNSSECOff })
		}, measuredBasics},
		{"schema 1", func(t *testing.T, dir string) {
			var rows []survey.MXRow
			if err := store.ReadAll(survey.MXDir(dir), func(r *survey.MXRow) error { rows = append(rows, *r); return nil }); err != nil {
				t.Fatal(err)
			}
			for _, d := range []string{survey.MXDir(dir), survey.TLSADir(dir), survey.PoliciesDir(dir)} {
				if err := os.RemoveAll(d); err != nil {
					t.Fatal(err)
				}
			}
			if err := storetest.WriteMXV1(dir, rows); err != nil {
				t.Fatal(err)
			}
			editManifest(t, dir, func(m *survey.Manifest) { m.SchemaVersion, m.Options = 1, map[string]any{} })
		}, measuredBasics},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dirs, roots := shardedScan(t)
			tc.edit(t, dirs[0])
			out := filepath.Join(t.TempDir(), "report")
			s, err := Analyze(context.Background(), Options{Dirs: dirs[:1], RootsFile: roots, OutDir: out})
			if err != nil {
				t.Fatal(err)
			}
			check := func(section string, figs []figure, got map[string]int64) {
				for _, f := range figs {
					if _, ok := got[f.Key]; ok != (f.Needs <= tc.present) {
						t.Errorf("%s.%s present %v, measured %d, figure needs %d", section, f.Key, ok, tc.present, f.Needs)
					}
				}
			}
			check("hosts", hostFigures[:], s.Hosts)
			check("domains", domainFigures[:], s.Domains)
			if (s.TLSRPTResults != nil) != (tc.present == measuredDNSSEC) {
				t.Errorf("tlsrpt_results %v", s.TLSRPTResults)
			}
			js, err := os.ReadFile(filepath.Join(out, "summary.json"))
			if err != nil {
				t.Fatal(err)
			}
			md, err := os.ReadFile(filepath.Join(out, "report.md"))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(js), "tlsrpt_results") != (tc.present == measuredDNSSEC) ||
				strings.Contains(string(js), "mta_sts_record") != (tc.present >= measuredPolicies) {
				t.Errorf("summary.json:\n%s", js)
			}
			if strings.Contains(string(md), policyNotMeasured) != (tc.present == measuredBasics) ||
				strings.Contains(string(md), policyNoDNSSEC) != (tc.present == measuredPolicies) ||
				strings.Contains(string(md), "| sts-policy-fetch-error |") != (tc.present == measuredDNSSEC) {
				t.Errorf("report.md says the wrong thing of what was measured:\n%s", md)
			}
		})
	}
}

func editManifest(t *testing.T, dir string, edit func(*survey.Manifest)) {
	t.Helper()
	m, err := store.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	edit(m)
	if err := store.WriteManifest(dir, m); err != nil {
		t.Fatal(err)
	}
}
