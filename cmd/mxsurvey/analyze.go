package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/mxsurvey/mxsurvey/analyze"
	"github.com/mxsurvey/mxsurvey/internal/gcmem"
)

// heapFloor is the heap the analyzer grows to before collecting
// (gcmem.HeapFloor), about the peak the runtime's default reaches anyway
// for that many rows, so that the collector runs less often without
// raising the peak much: about 500 bytes per probe and mx row read (220
// MB at 100,000 lab domains, 434,000 rows), up to 1 GiB (a million
// real-like probe rows with 4.7 million mx rows peaked at 1.06 GB after 58
// collections; 14 with the floor). A fixed 1 GiB floor took the analysis
// of 100,000 lab domains from 220 MB to 1.08 GB.
func heapFloor(rows int64) uint64 {
	return uint64(min(rows*bytesPerRow, maxHeapFloor))
}

const (
	bytesPerRow  = 512
	maxHeapFloor = 1 << 30
)

// analyzeCommand is "mxsurvey analyze". -h prints the usage and returns
// nil, so that asking for help is not reported as a failure.
func analyzeCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("analyze", flag.ContinueOnError)
	fs.SetOutput(stderr)
	roots := fs.String("roots", "", "PEM `bundle` of trusted roots (default: the system roots)")
	old := fs.String("compare", "", "older scan directory or summary.json to compare with (`OLD`)")
	out := fs.String("o", "", "report `directory` to write (required)")
	quiet := fs.Bool("quiet", false, "no progress lines; log warnings only")
	top := fs.Int("top", 20, "entries per top list in the reports and summary.json")
	workers := fs.Int("workers", 0, "goroutines decoding and evaluating row groups (0: one per core); the results do not depend on it")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `usage: mxsurvey analyze [-roots bundle.pem] [-compare OLD] [-quiet] [-workers N] -o REPORTDIR SCANDIR...

Reads the Parquet dataset of one or more scan directories (shards of one scan
are merged) and writes summary.json, report.md, report.html, hosts.csv/.parquet,
domains.csv/.parquet and top_*.csv to REPORTDIR; with -compare also
compare.json. Definitions of every figure: docs/statistics.md.

Flags:
`)
		fs.PrintDefaults()
	}
	if done, err := parseFlags(fs, args); done {
		return err
	}
	if *out == "" || fs.NArg() == 0 {
		return fmt.Errorf("%w: -o REPORTDIR and at least one SCANDIR are required (mxsurvey analyze -h)", errUsage)
	}
	level := slog.LevelInfo
	progress := stderr
	if *quiet {
		level, progress = slog.LevelWarn, nil
	}
	opts := analyze.Options{
		Dirs:      fs.Args(),
		RootsFile: *roots,
		OutDir:    *out,
		Compare:   *old,
		TopN:      *top,
		Workers:   *workers,
		Progress:  progress,
		Logger:    slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
	}
	if rows, err := analyze.Rows(opts.Dirs); err == nil { // on error Analyze says what is wrong
		defer gcmem.HeapFloor(heapFloor(rows))()
	}
	s, err := analyze.Analyze(ctx, opts)
	if err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	fmt.Fprintf(stdout, "analyzed %d hosts and %d domains; %d hosts with a certificate, %s match the MX name\nreport: %s\n",
		s.Hosts["total"], s.Domains["total"], s.Hosts["with_cert"],
		analyze.Share(s.Hosts["match_mx"], s.Hosts["with_cert"]), *out)
	return nil
}
