// Package analyze turns an mxsurvey dataset (Parquet parts of one or more
// scan directories) into the statistics of docs/statistics.md: it verifies
// each recorded certificate chain, matches the certificate against the MX,
// greeting, EHLO and PTR names (RFC 6125 via package match), counts hosts and
// domains, and writes summary.json, Markdown and HTML reports, CSV and
// Parquet exports, and optionally a comparison with an older scan.
//
// Memory is bounded by distinct certificates and targets, never by rows:
// probe rows are streamed once, keeping a three-byte summary per target, and
// mx rows are then streamed domain by domain and joined to those summaries.
// The transport security policies (policy.go) are read before the probes,
// keeping only the MX hosts with TLSA records and the domains with a valid
// MTA-STS or TLS-RPT record.
//
// Each pass over a table (runPass) uses every core the same way: row groups
// are decoded (only the columns its row type names: probeRow, mxRow, ...)
// and each row evaluated (evalProbe, evalDomain: verification, matching,
// classification, the export row) on Options.Workers goroutines, and the
// results are counted, joined and exported on one goroutine in the
// order of a sequential read (countProbe, countDomain). Every figure, top
// list and export is therefore the same, byte for byte, however many
// workers ran; a figure from another table (a per-row join) is added to the
// eval and count functions, a table read before the probes to a pass of
// its own.
//
// It reads the dataset through packages survey (the contract: rows, the
// join key, the certificate description) and store (the files), and imports
// nothing of the scanner: any engine that writes the contract can be
// analyzed.
package analyze

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/mxsurvey/mxsurvey/analyze/certs"
	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"

	"golang.org/x/net/publicsuffix"
)

// Options configure one analysis.
type Options struct {
	// Dirs are scan directories, or shards of one scan, merged into one
	// analysis.
	Dirs []string
	// Roots is the trust store; when nil, RootsFile is read, and when that
	// is empty too, the system roots.
	Roots     *x509.CertPool
	RootsFile string
	// OutDir receives the reports and exports; empty writes nothing, which
	// is how an older scan is analyzed for a comparison.
	OutDir string
	// Compare is an older scan directory or summary.json to compare with.
	Compare string
	// TopN bounds the top lists in summary.json and the reports (the
	// top_*.csv exports are complete); 0 means 20.
	TopN int
	// Workers is how many goroutines decode and evaluate row groups at
	// once; 0 means GOMAXPROCS. The results do not depend on it, byte for
	// byte: only the time does.
	Workers int
	// Progress receives "rows read" lines; nil for none.
	Progress io.Writer
	// Logger receives warnings about the data; nil discards them.
	Logger *slog.Logger
}

// Summary is summary.json. Hosts and Domains hold every key of the figure
// tables that the scan measured, zeros included, so that readers can rely
// on the keys; a figure of transport security policies that the scan did
// not measure (a schema-1 scan, -policies=false, DNSSEC not trusted) is
// left out, never zero.
type Summary struct {
	Scan    ScanInfo         `json:"scan"`
	Hosts   map[string]int64 `json:"hosts"`
	Domains map[string]int64 `json:"domains"`
	// TLSRPTResults counts, per RFC 8460 result type (every type, zeros
	// included), the MX hosts that fail for a sender honouring their
	// domain's DANE or MTA-STS request; nil when not measured.
	TLSRPTResults map[string]int64   `json:"tlsrpt_results,omitempty"`
	Top           map[string]TopList `json:"top"`

	// Comparison is set when Options.Compare was given; it is written to
	// compare.json, not to summary.json.
	Comparison *Comparison `json:"-"`
}

// ScanInfo comes from the scan manifests; with several shards, started is
// the earliest, ended the latest (empty while any shard has not ended), and
// differing versions or statuses are listed comma-separated.
type ScanInfo struct {
	ToolVersion   string   `json:"tool_version"`
	SchemaVersion int      `json:"schema_version"`
	Started       string   `json:"started"`
	Ended         string   `json:"ended"`
	Status        string   `json:"status"`
	Dirs          []string `json:"dirs"`
}

// TopList is a ranked count. Total is the sum over all names (the list's
// denominator), Distinct the number of names, Other the count outside Entries.
type TopList struct {
	Total    int64      `json:"total"`
	Distinct int        `json:"distinct"`
	Other    int64      `json:"other"`
	Entries  []TopEntry `json:"entries"`
}

// TopEntry is one name in a top list.
type TopEntry struct {
	Name  string `json:"name"`
	Count int64  `json:"count"`
}

// Target flags: everything the domain pass needs to know about a probe.
const (
	tProbed uint8 = 1 << iota
	tSTARTTLS
	tValidForMX
	tDANEValid
)

// targetFacts are what the domain pass knows of a target: its flags, and
// the RFC 8460 result types (resultCode) a DANE sender and an MTA-STS
// sender whose policy lists the host would report for it.
type targetFacts struct {
	flags     uint8
	dane, sts uint8
}

type analyzer struct {
	opts     Options
	workers  int
	log      *slog.Logger
	verifier *certs.Verifier
	hosts    [numHostFigures]int64
	domains  [numDomainFigures]int64
	top      map[string]map[string]int64
	targets  map[targetID]targetFacts
	dupes    int64
	// The transport security policies: what the scan measured (scanInfo),
	// and the tlsa and policies passes' results, read only after them.
	measured      measured
	tlsa          map[string]*tlsaHost
	policies      map[string]*policyInfo
	tlsrptResults []int64 // by position in tlsrpt.ResultTypes
	out           *outputs
	fallback      time.Time // probe time for rows without started_at: the scan's start, else now
}

// Analyze runs the analysis. It reads only the datasets in opts.Dirs (and
// opts.Compare); errors come from unreadable or incompatible parts, an
// unusable trust store, an unwritable OutDir, or ctx.
func Analyze(ctx context.Context, opts Options) (*Summary, error) {
	if len(opts.Dirs) == 0 {
		return nil, errors.New("analyze: no scan directory given")
	}
	if opts.TopN <= 0 {
		opts.TopN = 20
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	roots := opts.Roots
	if roots == nil {
		var err error
		if roots, err = certs.LoadRoots(opts.RootsFile); err != nil {
			return nil, err
		}
	}
	a := &analyzer{
		opts:          opts,
		workers:       workers,
		log:           log,
		verifier:      certs.New(roots),
		top:           make(map[string]map[string]int64),
		targets:       make(map[targetID]targetFacts),
		tlsa:          make(map[string]*tlsaHost),
		policies:      make(map[string]*policyInfo),
		tlsrptResults: make([]int64, len(resultTypes)),
		fallback:      time.Now(),
	}
	for _, t := range topDefs {
		a.top[t.Name] = make(map[string]int64)
	}
	scan, err := a.scanInfo()
	if err != nil {
		return nil, err
	}
	if opts.OutDir != "" {
		if a.out, err = openOutputs(opts.OutDir); err != nil {
			return nil, err
		}
		defer a.out.abort()
	}
	if a.measured >= measuredPolicies {
		if err := a.readTLSA(ctx); err != nil {
			return nil, err
		}
		if err := a.readCNAMEs(ctx); err != nil {
			return nil, err
		}
		if err := a.readPolicies(ctx); err != nil {
			return nil, err
		}
	}
	if err := a.readProbes(ctx); err != nil {
		return nil, err
	}
	if err := a.readMX(ctx); err != nil {
		return nil, err
	}
	if a.dupes > 0 {
		log.Warn("probe rows repeat a target; the first probed row is used for domain statistics", "rows", a.dupes)
	}
	st := a.verifier.Stats()
	log.Info("certificates", "leaves_parsed", st.LeavesParsed, "verifications", st.Verifications,
		"anchored", st.Anchored, "cache_hits", st.TrustHits)

	s := a.summary(scan)
	if opts.Compare != "" {
		old, err := loadOld(ctx, opts, roots)
		if err != nil {
			return nil, err
		}
		s.Comparison = compare(old, s)
	}
	if a.out != nil {
		if err := a.out.finish(s, a.top); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (a *analyzer) scanInfo() (ScanInfo, error) {
	info := ScanInfo{Dirs: a.opts.Dirs}
	var versions, statuses []string
	var started, ended time.Time
	running := false
	a.measured = measuredDNSSEC
	for _, dir := range a.opts.Dirs {
		st, err := os.Stat(dir)
		if err != nil {
			return info, fmt.Errorf("scan directory: %w", err)
		}
		if !st.IsDir() {
			return info, fmt.Errorf("scan directory %s: not a directory", dir)
		}
		m, err := store.ReadManifest(dir)
		if err != nil {
			// The parts are the data; a missing manifest only loses provenance.
			a.log.Warn("no usable manifest", "dir", dir, "err", err)
			a.measured = min(a.measured, scanMeasured(dir, nil))
			statuses = appendNew(statuses, "unknown")
			running = true // no shard may claim an end for it
			continue
		}
		a.measured = min(a.measured, scanMeasured(dir, m))
		versions = appendNew(versions, m.ToolVersion)
		statuses = appendNew(statuses, m.Status)
		if info.SchemaVersion != 0 && info.SchemaVersion != m.SchemaVersion {
			a.log.Warn("shards have different schema versions", "dir", dir, "schema_version", m.SchemaVersion)
		}
		if info.SchemaVersion == 0 {
			info.SchemaVersion = m.SchemaVersion
		}
		if m.SchemaVersion != survey.SchemaVersion {
			a.log.Warn("dataset schema differs from the analyzer's", "dir", dir,
				"dataset", m.SchemaVersion, "analyzer", survey.SchemaVersion)
		}
		if !m.Started.IsZero() && (started.IsZero() || m.Started.Before(started)) {
			started = m.Started
		}
		if m.Ended == nil {
			running = true
		} else if m.Ended.After(ended) {
			ended = *m.Ended
		}
	}
	info.ToolVersion = strings.Join(versions, ",")
	info.Status = strings.Join(statuses, ",")
	if !started.IsZero() {
		info.Started = started.UTC().Format(time.RFC3339)
		a.fallback = started
	}
	if !ended.IsZero() && !running {
		info.Ended = ended.UTC().Format(time.RFC3339)
	}
	return info, nil
}

func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// registeredDomain groups MX hosts by provider. A name that is itself a
// public suffix, or not a name, stands for itself.
func registeredDomain(host string) string {
	if host == "" {
		return ""
	}
	if d, err := publicsuffix.EffectiveTLDPlusOne(host); err == nil {
		return d
	}
	return host
}

func (a *analyzer) summary(scan ScanInfo) *Summary {
	s := &Summary{
		Scan:    scan,
		Hosts:   make(map[string]int64, numHostFigures),
		Domains: make(map[string]int64, numDomainFigures),
		Top:     make(map[string]TopList, len(topDefs)),
	}
	for i, f := range hostFigures {
		if f.Needs <= a.measured {
			s.Hosts[f.Key] = a.hosts[i]
		}
	}
	for i, f := range domainFigures {
		if f.Needs <= a.measured {
			s.Domains[f.Key] = a.domains[i]
		}
	}
	if a.measured >= measuredDNSSEC {
		s.TLSRPTResults = make(map[string]int64, len(resultTypes))
		for i, r := range resultTypes {
			s.TLSRPTResults[string(r)] = a.tlsrptResults[i]
		}
	}
	for _, t := range topDefs {
		s.Top[t.Name] = topList(a.top[t.Name], a.opts.TopN)
	}
	return s
}

// ranked sorts by count, then name, so ties come out the same every run.
func ranked(m map[string]int64) []TopEntry {
	out := make([]TopEntry, 0, len(m))
	for k, v := range m {
		out = append(out, TopEntry{k, v})
	}
	slices.SortFunc(out, func(x, y TopEntry) int {
		if x.Count != y.Count {
			if x.Count > y.Count {
				return -1
			}
			return 1
		}
		return strings.Compare(x.Name, y.Name)
	})
	return out
}

func topList(m map[string]int64, n int) TopList {
	all := ranked(m)
	t := TopList{Distinct: len(all), Entries: all}
	for _, e := range all {
		t.Total += e.Count
	}
	if len(all) > n {
		t.Entries = all[:n]
		for _, e := range all[n:] {
			t.Other += e.Count
		}
	}
	if t.Entries == nil {
		t.Entries = []TopEntry{}
	}
	return t
}
