package analyze

import (
	"bytes"
	"context"
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
// expires.
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
	opts := store.PartOptions{MaxPartRows: 40, GroupRows: 7}
	for k := range 3 {
		dir := filepath.Join(base, fmt.Sprintf("shard-%d", k))
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
				mxs = append(mxs, survey.MXRow{Domain: name, Rank: int64(d + 1), DNSStatus: survey.DNSOK, MXHost: host,
					MXPreference: int32(10 * (j % 3)), IP: ip, ResolvedAt: at})
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
			if err := mxw.Write(mxs); err != nil {
				t.Fatal(err)
			}
			if err := pw.Write(probes); err != nil {
				t.Fatal(err)
			}
		}
		if err := errors.Join(mxw.Close(), pw.Close()); err != nil {
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
		if !reflect.DeepEqual(s.Hosts, firstSummary.Hosts) || !reflect.DeepEqual(s.Domains, firstSummary.Domains) {
			t.Errorf("%d workers: figures differ", workers)
		}
	}
}
