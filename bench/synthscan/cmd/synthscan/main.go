// Command synthscan writes the analyzer benchmark's synthetic scan (package
// bench/synthscan) by hand; make bench writes and caches its own.
//
//	synthscan -o DIR [-probe-rows 1000000] [-seed 1] [-shards 1] [-part-rows 0]
//
// It prints the result (synthscan.json) and how to analyze it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"

	"github.com/mxsurvey/mxsurvey/bench/synthscan"
)

func main() {
	var cfg synthscan.Config
	flag.StringVar(&cfg.Dir, "o", "", "output directory (required; its content is replaced)")
	flag.Int64Var(&cfg.ProbeRows, "probe-rows", 1_000_000, "probe rows to write")
	flag.Int64Var(&cfg.Seed, "seed", 1, "seed: the same seed gives the same scan")
	flag.IntVar(&cfg.Shards, "shards", 1, "scan directories (shards) to split the domains over")
	flag.Int64Var(&cfg.PartRows, "part-rows", 0, "rows per Parquet part (0: the scanner's default)")
	flag.Parse()
	if cfg.Dir == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: synthscan -o DIR [-probe-rows N] [-seed N] [-shards N] [-part-rows N]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := synthscan.Generate(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "synthscan:", err)
		os.Exit(1)
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	fmt.Printf("%s\nanalyze it: mxsurvey analyze -roots %s -o REPORTDIR %s\n", b, res.Roots, strings.Join(res.Dirs, " "))
}
