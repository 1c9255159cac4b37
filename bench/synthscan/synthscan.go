// Package synthscan writes a synthetic, real-like mxsurvey scan for the
// analyzer's benchmark: a million probe rows with about a quarter of a
// million distinct leaf certificates, in the layout and through the writer
// of a real scan (datasets/store: mx and probes parts, manifest), without a
// network or a lab. A lab scan of that size takes a quarter of an hour on
// two cores; this takes about a minute and is the same, byte for byte, for
// the same seed.
//
// The world is shaped like a real one (bench/analysis.md gives the
// figures): of the domains, 14% do not resolve to a mail server (NXDOMAIN,
// SERVFAIL, timeout, no MX, null MX); of the others, 26% use one
// Google-like provider (five shared MX names, two certificates), 18% a
// Microsoft 365-like one (a per-domain MX name on a pool of 48 addresses,
// one wildcard certificate), 5% filtering gateways (two per-domain MX
// names), 13% one of 400 smaller providers with Zipf market shares, 17%
// shared hosting (MX mail.<domain> on one of a few thousand servers, 62% of
// them with an AutoSSL certificate per domain), 1% an implicit MX, and 20%
// run their own server, alone or as a company of a few domains: its own
// certificate (Let's Encrypt-like, commercial DV, a private CA, the
// intermediate missing, make-ssl-cert's self-signed snakeoil, expired or
// naming the wrong host), its own software (Postfix, Exim, Exchange,
// Sendmail, OpenSMTPD, qmail, Haraka, a masking Cisco), and its failures
// (connection timeouts and refusals, silence, a 554 greeting, no STARTTLS,
// TLS alerts). The big providers thus share a few certificates among
// hundreds of thousands of targets while the long tail brings one each.
//
// The PKI is real: two roots (written to roots.pem, the -roots of the
// analysis) with four issuing intermediates, and a private root outside
// the trust store, so that verification does the work a real analysis
// does. Keys are ECDSA P-256 apart from a few derived RSA keys (leaves of
// RSA type need only the public key; signing with RSA is slow to make), so
// verifying a chain costs two ECDSA P-256 signature checks: more than the
// RSA chains common on the internet, which makes the benchmark no easier.
//
// The scan clock runs at 25 domains a second from 2026-03-01 18:00 UTC, so
// a million probe rows span two UTC days, as a long scan does.
package synthscan

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/internal/ordered"
)

// Config says what to generate.
type Config struct {
	// Dir receives roots.pem, the scan directory (scan/, or shard-K-of-N/
	// with Shards > 1) and synthscan.json, written last.
	Dir string
	// ProbeRows: domains are generated until the probe rows written reach
	// this many (the last domain may add a few more).
	ProbeRows int64
	// Seed: the same seed gives the same scan.
	Seed int64
	// Shards > 1 splits the domains over that many scan directories, as
	// mxsurvey scan -shard K/N does: a target shared by domains of several
	// shards is probed in each of them.
	Shards int
	// Workers generating domains; 0 means GOMAXPROCS.
	Workers int
	// PartRows and GroupRows bound the rows of a Parquet part and of its
	// row groups (0: the scanner's defaults), so that small scans can have
	// several of each.
	PartRows, GroupRows int64
}

// Result describes a generated scan; it is also synthscan.json.
type Result struct {
	Config    Config   `json:"config"`
	Version   int      `json:"generator_version"`
	Domains   int64    `json:"domains"`
	MXRows    int64    `json:"mx_rows"`
	ProbeRows int64    `json:"probe_rows"`
	Leaves    int64    `json:"distinct_leaves"`
	Dirs      []string `json:"dirs"`
	Roots     string   `json:"roots"`
	Seconds   float64  `json:"seconds"`
}

// Version changes whenever the same Config would give a different scan, so
// that a cached scan of an older generator is not taken for a new one.
const Version = 4

// ResultFile is written last: a directory holding it holds a whole scan.
const ResultFile = "synthscan.json"

// Cached returns the result of an earlier Generate with the same Config
// (Workers aside: they do not change the scan) and generator version. The
// directory may have been moved since: the paths are those in cfg.Dir.
func Cached(cfg Config) (*Result, bool) {
	b, err := os.ReadFile(filepath.Join(cfg.Dir, ResultFile))
	if err != nil {
		return nil, false
	}
	var r Result
	if json.Unmarshal(b, &r) != nil || r.Version != Version {
		return nil, false
	}
	want, got := cfg, r.Config
	want.Shards = max(want.Shards, 1)
	want.Workers, got.Workers, got.Dir = 0, 0, want.Dir
	if want != got {
		return nil, false
	}
	r.Config.Dir, r.Roots, r.Dirs = cfg.Dir, rootsPath(cfg.Dir), scanDirs(cfg.Dir, want.Shards)
	return &r, true
}

func rootsPath(dir string) string { return filepath.Join(dir, "roots.pem") }

// scanDirs are the scan directories in dir: scan/, or one per shard.
func scanDirs(dir string, shards int) []string {
	if shards <= 1 {
		return []string{filepath.Join(dir, "scan")}
	}
	var dirs []string
	for k := range shards {
		dirs = append(dirs, filepath.Join(dir, fmt.Sprintf("shard-%d-of-%d", k+1, shards)))
	}
	return dirs
}

// chunkSize domains are generated by one worker at a time.
const chunkSize = 1024

// Generate writes the scan. It removes what Dir held before.
func Generate(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.ProbeRows <= 0 {
		return nil, errors.New("synthscan: ProbeRows must be positive")
	}
	cfg.Shards = max(cfg.Shards, 1)
	workers := cfg.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	start := time.Now()
	if err := os.RemoveAll(cfg.Dir); err != nil {
		return nil, fmt.Errorf("synthscan: clearing %s: %w", cfg.Dir, err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("synthscan: %w", err)
	}
	w, err := newWorld(uint64(cfg.Seed), cfg.ProbeRows)
	if err != nil {
		return nil, err
	}
	res := &Result{Config: cfg, Version: Version, Roots: rootsPath(cfg.Dir), Dirs: scanDirs(cfg.Dir, cfg.Shards)}
	if err := os.WriteFile(res.Roots, w.pki.rootsPEM(), 0o644); err != nil {
		return nil, fmt.Errorf("synthscan: %w", err)
	}
	shards := make([]*shard, cfg.Shards)
	for k, dir := range res.Dirs {
		if shards[k], err = newShard(dir, cfg, k); err != nil {
			return nil, err
		}
		defer shards[k].abort()
	}

	// Workers generate chunks of domains ahead; the writer takes them in
	// order, so the scan is the same whatever the scheduling.
	leaves := map[string]bool{}
	var rows int64
	work := func(_ context.Context, c int) ([]domainOut, error) {
		out := make([]domainOut, 0, chunkSize)
		for i := c * chunkSize; i < (c+1)*chunkSize; i++ {
			d, err := w.domain(i)
			if err != nil {
				return nil, err
			}
			out = append(out, d)
		}
		return out, nil
	}
	write := func(_ int, chunk []domainOut) (bool, error) {
		for k := range chunk {
			d := &chunk[k]
			n, err := shards[w.shardOf(d.index, cfg.Shards)].write(w, d, leaves)
			if err != nil {
				return false, err
			}
			rows += n
			res.Domains++
			if rows >= cfg.ProbeRows {
				return false, nil
			}
		}
		return true, nil
	}
	if err := ordered.Run(ctx, workers, 2*workers, -1, work, write); err != nil {
		return nil, err
	}
	end := w.at(int(res.Domains), 0)
	for _, s := range shards {
		if err := s.close(w.start, end); err != nil {
			return nil, err
		}
		res.MXRows += s.mxRows
		res.ProbeRows += s.probeRows
	}
	res.Leaves = int64(len(leaves))
	res.Seconds = time.Since(start).Seconds()
	b, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(filepath.Join(cfg.Dir, ResultFile), append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("synthscan: %w", err)
	}
	return res, nil
}

// shardOf spreads domains over shards by a hash, as -shard does.
func (w *world) shardOf(i, n int) int {
	if n == 1 {
		return 0
	}
	return int(w.draw(tShard, i) % uint64(n))
}

// shard is one scan directory being written.
type shard struct {
	dir       string
	k, n      int
	mx        *store.PartWriter[survey.MXRow]
	probes    *store.PartWriter[survey.ProbeRow]
	buf       []survey.ProbeRow
	emitted   map[int]bool // shared targets already written
	m         survey.Manifest
	mxRows    int64
	probeRows int64
}

func newShard(dir string, cfg Config, k int) (*shard, error) {
	opts := store.PartOptions{MaxPartRows: cfg.PartRows, GroupRows: cfg.GroupRows}
	mx, err := store.NewPartWriter[survey.MXRow](survey.MXDir(dir), opts)
	if err != nil {
		return nil, err
	}
	probes, err := store.NewPartWriter[survey.ProbeRow](survey.ProbesDir(dir), opts)
	if err != nil {
		return nil, err
	}
	s := &shard{dir: dir, k: k, n: cfg.Shards, mx: mx, probes: probes, emitted: map[int]bool{}}
	s.m = survey.Manifest{
		Tool: survey.Tool, ToolVersion: survey.Version, SchemaVersion: survey.SchemaVersion,
		Args:    []string{"synthscan", fmt.Sprintf("-probe-rows=%d", cfg.ProbeRows), fmt.Sprintf("-seed=%d", cfg.Seed), fmt.Sprintf("-shard=%d/%d", k+1, cfg.Shards)},
		Options: map[string]any{"synthetic": true, "generator_version": Version, "seed": cfg.Seed, "ehlo_name": ehloName, "port": 25, "ipv6": false},
		Host:    "synthscan", Status: survey.StatusRunning,
		Counts: map[string]int64{}, Outcomes: map[string]int64{}, ErrorClasses: map[string]int64{}, DNSStatuses: map[string]int64{},
		Extra: map[string]string{"note": "synthetic scan written by bench/synthscan; no server was contacted"},
	}
	return s, nil
}

// write adds one domain's rows and returns the probe rows written.
func (s *shard) write(w *world, d *domainOut, leaves map[string]bool) (int64, error) {
	if err := s.mx.Write(d.mx); err != nil {
		return 0, err
	}
	s.mxRows += int64(len(d.mx))
	s.m.Counts["domains_resolved"]++
	s.m.DNSStatuses[d.mx[0].DNSStatus]++
	var n int64
	for j, e := range d.probes {
		var row survey.ProbeRow
		switch {
		case e.row != nil:
			row = *e.row
		case s.emitted[e.shared]:
			continue
		default:
			s.emitted[e.shared] = true
			t := &w.shared[e.shared]
			if t.srv == nil {
				row = skipped(t.ip, t.mx, w.at(d.index, j))
			} else {
				row = probeRow(t.ip, t.mx, t.srv, w.at(d.index, j))
			}
		}
		if row.CertSHA256 != "" {
			leaves[row.CertSHA256] = true
		}
		s.m.Outcomes[row.Outcome]++
		if row.ErrorClass != "" {
			s.m.ErrorClasses[row.ErrorClass]++
		}
		s.buf = append(s.buf, row)
		n++
	}
	s.probeRows += n
	if len(s.buf) >= 4096 {
		return n, s.flush()
	}
	return n, nil
}

func (s *shard) flush() error {
	err := s.probes.Write(s.buf)
	clear(s.buf)
	s.buf = s.buf[:0]
	return err
}

func (s *shard) close(started, ended time.Time) error {
	if err := errors.Join(s.flush(), s.mx.Close(), s.probes.Close()); err != nil {
		return err
	}
	mxParts, _ := s.mx.Committed()
	probeParts, _ := s.probes.Committed()
	s.m.Counts["mx_rows_written"], s.m.Counts["probe_rows_written"] = s.mxRows, s.probeRows
	s.m.Counts["targets"] = s.probeRows
	s.m.Parts = map[string]int{survey.MXTable: mxParts, survey.ProbesTable: probeParts}
	s.m.Started, s.m.Status = started, survey.StatusComplete
	s.m.Ended = &ended
	s.mx, s.probes = nil, nil
	return store.WriteManifest(s.dir, &s.m)
}

func (s *shard) abort() {
	if s.mx != nil {
		s.mx.Abort()
		s.probes.Abort()
	}
}
