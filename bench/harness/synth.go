package main

// The analyzer on a real-like scan: a synthetic scan of -synth-rows probe
// rows (bench/synthscan: about a quarter as many distinct leaf certificates,
// a few providers sharing certificates and a long self-hosted tail), made
// once and cached in -synth-dir, analyzed -runs times on one core
// (GOMAXPROCS=1) and on every core, the two alternating so that each pair
// sees the same load; the outputs of each pair are compared byte for byte.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mxsurvey/mxsurvey/bench/synthscan"
)

// SynthResult is results/analyze-synth.json.
type SynthResult struct {
	Started  time.Time         `json:"started"`
	Ended    time.Time         `json:"ended"`
	Machine  Machine           `json:"machine"`
	Commands string            `json:"commands"`
	Input    *synthscan.Result `json:"input"`
	Cached   bool              `json:"input_cached"` // made by an earlier run
	Pairs    []SynthPair       `json:"pairs"`
	Errors   []string          `json:"errors,omitempty"`
}

// SynthPair is one run on one core and one on every core, back to back.
type SynthPair struct {
	One       AnalyzeFig `json:"one_core"`
	All       AnalyzeFig `json:"all_cores"`
	Identical bool       `json:"identical"` // every output file the same, byte for byte
	Differ    []string   `json:"differ,omitempty"`
	LoadAvg   [2]float64 `json:"load_avg"` // 1-minute load average before and after the pair
}

const synthFile = "analyze-synth.json"

func runSynth(ctx context.Context, c config) error {
	res := SynthResult{Started: time.Now().UTC(), Machine: machine(), Commands: c.commands}
	cfg := synthscan.Config{Dir: filepath.Join(c.synthDir, fmt.Sprintf("rows-%d-seed-1", c.synthRows)), ProbeRows: c.synthRows, Seed: 1}
	if in, ok := synthscan.Cached(cfg); ok {
		res.Input, res.Cached = in, true
		log.Printf("synth: cached scan of %d probe rows in %s", in.ProbeRows, cfg.Dir)
	} else {
		log.Printf("synth: writing a scan of %d probe rows to %s", cfg.ProbeRows, cfg.Dir)
		in, err := synthscan.Generate(ctx, cfg)
		if err != nil {
			return err
		}
		res.Input = in
		log.Printf("synth: %d probe rows, %d mx rows, %d distinct leaves in %.0f s", in.ProbeRows, in.MXRows, in.Leaves, in.Seconds)
	}
	work := filepath.Join(c.work, "synth")
	for r := range c.runs {
		if ctx.Err() != nil {
			break
		}
		var pair SynthPair
		pair.LoadAvg[0] = loadAvg()
		var err error
		var one, all *AnalyzeFig
		if one, err = analyzeSynth(ctx, work, "one", []string{"env", "GOMAXPROCS=1", c.bin}, res.Input); err == nil {
			all, err = analyzeSynth(ctx, work, "all", []string{c.bin}, res.Input)
		}
		if err != nil {
			res.Errors = append(res.Errors, err.Error())
			log.Printf("synth: run %d: %v", r+1, err)
			break
		}
		pair.One, pair.All = *one, *all
		pair.LoadAvg[1] = loadAvg()
		pair.Differ, err = differingFiles(filepath.Join(work, "one-report"), filepath.Join(work, "all-report"))
		if err != nil {
			res.Errors = append(res.Errors, err.Error())
		}
		pair.Identical = err == nil && len(pair.Differ) == 0
		log.Printf("synth: run %d/%d: one core %.1f s, every core %.1f s (%.2f cores), outputs identical: %v",
			r+1, c.runs, one.Proc.WallS, all.Proc.WallS, div(all.Proc.CPUS(), all.Proc.WallS), pair.Identical)
		res.Pairs = append(res.Pairs, pair)
	}
	res.Ended = time.Now().UTC()
	b, _ := json.MarshalIndent(res, "", " ")
	if err := os.WriteFile(filepath.Join(c.results, synthFile), b, 0o644); err != nil {
		return err
	}
	if len(res.Errors) > 0 {
		return errors.New(strings.Join(res.Errors, "; "))
	}
	return nil
}

func analyzeSynth(ctx context.Context, work, name string, pre []string, in *synthscan.Result) (*AnalyzeFig, error) {
	return analyzeDirs(ctx, work, name, "analyze-synth-"+name, pre, in.Roots, in.Dirs, 20*time.Minute)
}

// differingFiles lists the files that are not the same in both directories.
func differingFiles(a, b string) ([]string, error) {
	var differ []string
	seen := map[string]bool{}
	err := filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(a, p)
		seen[rel] = true
		x, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		y, err := os.ReadFile(filepath.Join(b, rel))
		if err != nil || !bytes.Equal(x, y) {
			differ = append(differ, rel)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = filepath.WalkDir(b, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if rel, _ := filepath.Rel(b, p); !seen[rel] {
			differ = append(differ, rel)
		}
		return nil
	})
	return differ, err
}

func loadAvg() float64 {
	b, _ := os.ReadFile("/proc/loadavg")
	f, _ := strconv.ParseFloat(strings.Fields(string(b) + " 0")[0], 64)
	return f
}

func loadSynth(results string) (*SynthResult, error) {
	b, err := os.ReadFile(filepath.Join(results, synthFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r SynthResult
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", synthFile, err)
	}
	return &r, nil
}

// synthReport is the report's section on the synthetic scan; "" without one.
func synthReport(s *SynthResult) string {
	if s == nil || s.Input == nil || len(s.Pairs) == 0 {
		return ""
	}
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	in := s.Input
	p("\n### A real-like scan of %s probe rows\n\n", num(int(in.ProbeRows)))
	p("`bench/synthscan` (seed 1; %s): %s domains, %s mx rows, %s probe rows, **%s distinct leaf certificates** under\n",
		map[bool]string{true: "cached from an earlier run", false: fmt.Sprintf("written in %.0f s", in.Seconds)}[s.Cached],
		num(int(in.Domains)), num(int(in.MXRows)), num(int(in.ProbeRows)), num(int(in.Leaves)))
	p("two roots and four intermediates (ECDSA P-256). Each run analyzes it on one core (`GOMAXPROCS=1`) and on every core,\n")
	p("back to back; the ratio is taken within each pair, then the median. Measured %s, load average (1 min) %s before the pairs.\n\n",
		s.Machine.Date, loadRange(s.Pairs))
	p("| analyzer | runs | wall s | CPU s | cores used | probe rows/s | peak RSS |\n|---|---:|---:|---:|---:|---:|---:|\n")
	row := func(label string, f func(SynthPair) AnalyzeFig) {
		p("| %s | %d | %s | %s | %s | %s | %s |\n", label, len(s.Pairs),
			f1(med(s.Pairs, func(x SynthPair) float64 { return f(x).Proc.WallS })),
			f1(med(s.Pairs, func(x SynthPair) float64 { return f(x).Proc.CPUS() })),
			f2(med(s.Pairs, func(x SynthPair) float64 { a := f(x); return div(a.Proc.CPUS(), a.Proc.WallS) })),
			f0(med(s.Pairs, func(x SynthPair) float64 { a := f(x); return div(float64(a.ProbeRows), a.Proc.WallS) })),
			mib(med(s.Pairs, func(x SynthPair) float64 { return float64(f(x).Proc.MaxRSSKiB) })))
	}
	row("one core (`GOMAXPROCS=1`)", func(x SynthPair) AnalyzeFig { return x.One })
	row(fmt.Sprintf("every core (%d)", s.Machine.NProc), func(x SynthPair) AnalyzeFig { return x.All })
	identical := 0
	for _, x := range s.Pairs {
		if x.Identical {
			identical++
		}
	}
	p("\nEvery core is %sx faster in wall time than one (median of the pairs). Outputs (summary.json, reports, every\n",
		f2(med(s.Pairs, func(x SynthPair) float64 { return div(x.One.Proc.WallS, x.All.Proc.WallS) })))
	p("export) identical byte for byte on one core and on every core: %d of %d pairs.\n", identical, len(s.Pairs))
	return b.String()
}

func loadRange(pairs []SynthPair) string {
	lo, hi := pairs[0].LoadAvg[0], pairs[0].LoadAvg[0]
	for _, x := range pairs {
		lo, hi = min(lo, x.LoadAvg[0], x.LoadAvg[1]), max(hi, x.LoadAvg[0], x.LoadAvg[1])
	}
	return fmt.Sprintf("%.1f–%.1f", lo, hi)
}

// synthTarget is the targets table's row for the analyzer, or "" without a
// synthetic run.
func synthTarget(s *SynthResult) string {
	if s == nil || s.Input == nil || len(s.Pairs) == 0 {
		return ""
	}
	wall := med(s.Pairs, func(x SynthPair) float64 { return x.All.Proc.WallS })
	cores := med(s.Pairs, func(x SynthPair) float64 { return div(x.All.Proc.CPUS(), x.All.Proc.WallS) })
	same := true
	for _, x := range s.Pairs {
		same = same && x.Identical
	}
	verdict := "met"
	if s.Input.ProbeRows < 1000000 || wall >= 30 || !same {
		verdict = "**missed**"
	}
	return fmt.Sprintf("| analyzer: 1,000,000 probe rows of a real-like scan (~250,000 distinct certificates) < 30 s on every core, same outputs | %s rows, %s leaves: %.1f s, %s cores used; outputs on one and on every core identical: %v | %s |\n",
		num(int(s.Input.ProbeRows)), num(int(s.Input.Leaves)), wall, f2(cores), same, verdict)
}
