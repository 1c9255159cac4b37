package analyze

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/analyze/internal/testpki"
	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// The analyzer's row types read a subset of the contract's columns: each
// must be the contract's column, tag and type, and hosts.csv must lose no
// column it copies from survey.ProbeRow.
func TestProjections(t *testing.T) {
	for _, tc := range []struct{ sub, full reflect.Type }{
		{reflect.TypeFor[probeRow](), reflect.TypeFor[survey.ProbeRow]()},
		{reflect.TypeFor[mxRow](), reflect.TypeFor[survey.MXRow]()},
		{reflect.TypeFor[cnameRow](), reflect.TypeFor[survey.MXRow]()},
		{reflect.TypeFor[tlsaRow](), reflect.TypeFor[survey.TLSARow]()},
		{reflect.TypeFor[policyRow](), reflect.TypeFor[survey.PolicyRow]()},
	} {
		full := map[string]reflect.StructField{}
		for i := range tc.full.NumField() {
			full[columnName(tc.full.Field(i))] = tc.full.Field(i)
		}
		for i := range tc.sub.NumField() {
			f := tc.sub.Field(i)
			g, ok := full[columnName(f)]
			if !ok || g.Type != f.Type || g.Tag.Get("parquet") != f.Tag.Get("parquet") {
				t.Errorf("%s.%s (%s %q) is not %s's column (%v %q)", tc.sub.Name(), f.Name, f.Type, f.Tag.Get("parquet"),
					tc.full.Name(), g.Type, g.Tag.Get("parquet"))
			}
		}
	}
	read := map[string]bool{}
	for _, p := range hostFromProbe {
		read[columnName(reflect.TypeFor[HostRow]().Field(p[0]))] = true
	}
	for _, p := range sameColumns(reflect.TypeFor[HostRow](), reflect.TypeFor[survey.ProbeRow](), "") {
		if name := columnName(reflect.TypeFor[HostRow]().Field(p[0])); !read[name] {
			t.Errorf("hosts.csv column %s is a probes column the analyzer does not read (add it to probeRow)", name)
		}
	}
}

// shardedScan writes a scan of three shard directories, each with parts of
// at most 40 rows in row groups of 7, so that domains straddle row groups
// (and, written as one, never parts), targets repeat across shards
// (skipped in one, probed in another), and popular certificates meet every
// worker at once. Probes run over two days, across the moment a leaf
// expires. The scan ran with policies on: tlsa rows (DANE-TA of the issuing
// CA, DANE-EE of nothing, bogus; hosts repeated across shards) and
// policies rows (MTA-STS policies fetched, failed, TLS-RPT records).
func shardedScan(t *testing.T) (dirs []string, roots string) {
	t.Helper()
	base := t.TempDir()
	day := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	root := testpki.Make(testpki.Spec{CN: "Root", Org: "Test PKI", IsCA: true}, nil)
	inter := testpki.Make(testpki.Spec{CN: "Issuing CA", Org: "Test PKI", IsCA: true}, root)
	roots = filepath.Join(base, "roots.pem")
	if err := os.WriteFile(roots, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.DER}), 0o644); err != nil {
		t.Fatal(err)
	}
	var leaves [][][]byte
	for i := range 12 {
		spec := testpki.Spec{CN: fmt.Sprintf("mx.p%d.example", i), DNSNames: []string{fmt.Sprintf("*.p%d.example", i%4), fmt.Sprintf("mx.p%d.example", i)}}
		if i == 3 {
			spec.NotAfter = day.Add(30 * time.Hour) // expires during the scan's second day
		}
		if i%5 == 4 {
			leaves = append(leaves, testpki.Chain(testpki.Make(spec, nil))) // self-signed
			continue
		}
		leaves = append(leaves, testpki.Chain(testpki.Make(spec, inter), inter))
	}
	var stsNames []string
	for d := range 150 {
		stsNames = append(stsNames, fmt.Sprintf("mta-sts.d%d.example", d))
	}
	stsChain := testpki.Chain(testpki.Make(testpki.Spec{CN: "mta-sts", DNSNames: stsNames}, inter), inter)
	taRecord := fmt.Sprintf("2 0 1 %x", sha256.Sum256(inter.DER))
	opts := store.PartOptions{MaxPartRows: 40, GroupRows: 7}
	for k := range 3 {
		dir := filepath.Join(base, fmt.Sprintf("shard-%d", k))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := store.WriteManifest(dir, &survey.Manifest{Tool: survey.Tool, SchemaVersion: survey.SchemaVersion,
			Options: map[string]any{"policies": true, "dnssec": survey.DNSSECTrusted}, Started: day, Status: survey.StatusComplete}); err != nil {
			t.Fatal(err)
		}
		tw, err := store.NewPartWriter[survey.TLSARow](survey.TLSADir(dir), opts)
		if err != nil {
			t.Fatal(err)
		}
		polw, err := store.NewPartWriter[survey.PolicyRow](survey.PoliciesDir(dir), opts)
		if err != nil {
			t.Fatal(err)
		}
		seenHost := map[string]bool{}
		mxw, err := store.NewPartWriter[survey.MXRow](survey.MXDir(dir), opts)
		if err != nil {
			t.Fatal(err)
		}
		pw, err := store.NewPartWriter[survey.ProbeRow](survey.ProbesDir(dir), opts)
		if err != nil {
			t.Fatal(err)
		}
		for d := k; d < 150; d += 3 {
			name := fmt.Sprintf("d%d.example", d)
			at := day.Add(time.Duration(d) * 20 * time.Minute)
			var mxs []survey.MXRow
			var probes []survey.ProbeRow
			nMX := 1 + d%4
			if d%37 == 0 {
				nMX = 12 // longer than a row group
			}
			for j := range nMX {
				host := fmt.Sprintf("mx%d.p%d.example", j, d%12)
				if d%3 == 0 {
					host = fmt.Sprintf("mx%d.%s", j, name)
				}
				ip := fmt.Sprintf("192.0.2.%d", (d*7+j)%250)
				mxSec := survey.DNSSECInsecure
				if d%2 == 0 {
					mxSec = survey.DNSSECSecure
				}
				mxs = append(mxs, survey.MXRow{Domain: name, Rank: int64(d + 1), DNSStatus: survey.DNSOK, MXHost: host,
					MXPreference: int32(10 * (j % 3)), IP: ip, ResolvedAt: at, MXDNSSEC: mxSec})
				if !seenHost[host] {
					seenHost[host] = true
					row := survey.TLSARow{MXHost: host, TLSAName: "_25._tcp." + host, TLSAStatus: survey.DNSNoRecords, TLSADNSSEC: survey.DNSSECSecure}
					switch (d + k) % 5 {
					case 0, 1, 2:
						row.TLSAStatus, row.TLSARecords = survey.DNSOK, []string{taRecord}
					case 3:
						row.TLSAStatus, row.TLSADNSSEC = survey.DNSServfail, survey.DNSSECBogus
					}
					if err := tw.Write([]survey.TLSARow{row}); err != nil {
						t.Fatal(err)
					}
				}
				r := survey.ProbeRow{IP: ip, Port: 25, MXHost: host, StartedAt: at.Add(time.Duration(j) * time.Second),
					Outcome: survey.OutcomeOK, Banner: "220 " + host + " ESMTP Postfix", BannerHost: host,
					EHLOHost: host, STARTTLSOffered: true, TLSVersion: "TLS 1.3", TLSGroup: "X25519",
					CertChain: leaves[(d+j)%len(leaves)]}
				switch (d + j + k) % 9 {
				case 0:
					r = survey.ProbeRow{IP: ip, Port: 25, MXHost: host, Outcome: survey.OutcomeSkipped, ErrorClass: survey.ErrBlocked}
				case 1:
					r.Outcome, r.ErrorClass, r.TLSVersion, r.CertChain = survey.OutcomeConnect, survey.ErrTimeout, "", nil
				}
				probes = append(probes, r)
			}
			if d%10 == 0 {
				mxs = []survey.MXRow{{Domain: name, Rank: int64(d + 1), DNSStatus: survey.DNSNXDomain, ResolvedAt: at}}
				probes = nil
			}
			pol := survey.PolicyRow{Domain: name, MTASTSStatus: survey.DNSNoRecords, TLSRPTStatus: survey.DNSNoRecords}
			if d%5 == 0 {
				pol.TLSRPTStatus, pol.TLSRPTTXT = survey.DNSOK, []string{"v=TLSRPTv1; rua=mailto:tls@" + name}
			}
			switch d % 4 {
			case 1, 3:
				pol.MTASTSStatus, pol.MTASTSTXT = survey.DNSOK, []string{"v=STSv1; id=1"}
				pol.STSFetched, pol.STSStartedAt, pol.STSTLSVersion, pol.STSCertChain = true, at, "TLS 1.3", stsChain
				pol.STSHTTPStatus, pol.STSContentType = 200, "text/plain"
				pol.STSBody = fmt.Appendf(nil, "version: STSv1\nmode: enforce\nmx: *.p%d.example\nmax_age: 86400\n", d%12)
				if d%8 == 3 {
					pol.STSHTTPStatus = 404
				}
			}
			if err := polw.Write([]survey.PolicyRow{pol}); err != nil {
				t.Fatal(err)
			}
			if err := mxw.Write(mxs); err != nil {
				t.Fatal(err)
			}
			if err := pw.Write(probes); err != nil {
				t.Fatal(err)
			}
		}
		if err := errors.Join(mxw.Close(), pw.Close(), tw.Close(), polw.Close()); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, dir)
	}
	return dirs, roots
}

// The same analysis on one worker and on many gives every output file byte
// for byte.
func TestWorkersSameBytes(t *testing.T) {
	dirs, roots := shardedScan(t)
	groups := 0
	for _, d := range dirs {
		table, err := store.ListTable(survey.MXDir(d))
		if err != nil {
			t.Fatal(err)
		}
		groups += len(table.Groups)
	}
	if groups < 15 {
		t.Fatalf("only %d mx row groups: the test needs many", groups)
	}
	var first map[string][]byte
	var firstSummary *Summary
	for _, workers := range []int{1, 8} {
		out := filepath.Join(t.TempDir(), fmt.Sprint(workers))
		s, err := Analyze(context.Background(), Options{Dirs: dirs, RootsFile: roots, OutDir: out, Workers: workers})
		if err != nil {
			t.Fatal(err)
		}
		files := map[string][]byte{}
		entries, err := os.ReadDir(out)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			b, err := os.ReadFile(filepath.Join(out, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			files[e.Name()] = b
		}
		if first == nil {
			first, firstSummary = files, s
			if s.Hosts["expired"] == 0 || s.Hosts["trusted"] == 0 || s.Hosts["self_signed"] == 0 || s.Hosts["skipped"] == 0 || s.Domains["dns_error"] == 0 {
				t.Fatalf("the scan lacks a case: %v %v", s.Hosts, s.Domains)
			}
			if s.Hosts["dane_valid"] == 0 || s.Hosts["dane_valid"] == s.Hosts["tlsa_secure"] || s.Hosts["tlsa_bogus"] == 0 ||
				s.Domains["dane_protected"] == 0 || s.Domains["mta_sts_deliverable"] == 0 ||
				s.Domains["mta_sts_deliverable"] == s.Domains["mta_sts_enforce"] || s.TLSRPTResults["dnssec-invalid"] == 0 ||
				s.TLSRPTResults["sts-policy-fetch-error"] == 0 {
				t.Fatalf("the scan lacks a policy case: %v %v %v", s.Hosts, s.Domains, s.TLSRPTResults)
			}
			continue
		}
		names := func(m map[string][]byte) []string {
			var n []string
			for k := range m {
				n = append(n, k)
			}
			slices.Sort(n)
			return n
		}
		if !slices.Equal(names(files), names(first)) {
			t.Fatalf("%d workers wrote %v, 1 worker %v", workers, names(files), names(first))
		}
		for name, b := range files {
			if !bytes.Equal(b, first[name]) {
				t.Errorf("%d workers: %s differs from 1 worker's", workers, name)
			}
		}
		if !reflect.DeepEqual(s.Hosts, firstSummary.Hosts) || !reflect.DeepEqual(s.Domains, firstSummary.Domains) ||
			!reflect.DeepEqual(s.TLSRPTResults, firstSummary.TLSRPTResults) {
			t.Errorf("%d workers: figures differ", workers)
		}
	}
}

// Rows, read from the footers, is the number of probe and mx rows the
// passes read.
func TestRowsCountsProbeAndMXRows(t *testing.T) {
	dirs, _ := shardedScan(t)
	var want int64
	count := func(read func(context.Context, store.RowGroup) (int, error), dir string) {
		table, err := store.ListTable(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer table.Close()
		for _, g := range table.Groups {
			n, err := read(context.Background(), g)
			if err != nil {
				t.Fatal(err)
			}
			want += int64(n)
		}
	}
	for _, d := range dirs {
		count(readCount[survey.ProbeRow], survey.ProbesDir(d))
		count(readCount[survey.MXRow], survey.MXDir(d))
	}
	got, err := Rows(dirs)
	if err != nil {
		t.Fatal(err)
	}
	if got != want || got == 0 {
		t.Errorf("Rows = %d, want %d rows read", got, want)
	}
}

func readCount[T any](ctx context.Context, g store.RowGroup) (int, error) {
	n := 0
	err := store.ReadRowGroup(ctx, g, func(rows []T) error { n += len(rows); return nil })
	return n, err
}
