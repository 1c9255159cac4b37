// Old appliances still send certificates with negative serial numbers, which
// Go rejects since 1.23: as in cmd/mxsurvey.
//go:debug x509negativeserial=1

// Command profiled runs one mxsurvey command (scan, analyze or lab) exactly as
// bin/mxsurvey does, with runtime/pprof around it: a CPU profile of the whole
// run, and a heap profile taken whenever the in-use heap plus goroutine
// stacks reach a new peak (checked every -mem-every), with the runtime's
// memory figures at that peak in FILE.json and its goroutines in
// FILE.goroutines; and, to find where work waits
// rather than where it burns CPU, an execution trace (go tool trace) and
// block and mutex profiles.
//
//	profiled [-cpuprofile F] [-memprofile F] [-mem-every 1s] [-trace F] [-blockprofile F] [-mutexprofile F] scan|analyze|lab ARGS...
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"syscall"
	"time"

	"github.com/mxsurvey/mxsurvey/analyze"
	"github.com/mxsurvey/mxsurvey/lab"
	"github.com/mxsurvey/mxsurvey/scan/pipeline"
)

var commands = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) error{
	"scan":    pipeline.Command,
	"analyze": analyze.Command,
	"lab":     lab.Command,
}

// peak is written next to the heap profile.
type peak struct {
	At          string `json:"at"`
	HeapInuse   uint64 `json:"heap_inuse"`
	StackInuse  uint64 `json:"stack_inuse"`
	Sys         uint64 `json:"sys"`
	Goroutines  int    `json:"goroutines"`
	HeapObjects uint64 `json:"heap_objects"`
}

func main() {
	fs := flag.NewFlagSet("profiled", flag.ExitOnError)
	cpuFile := fs.String("cpuprofile", "", "write a CPU profile of the whole command here")
	memFile := fs.String("memprofile", "", "write the heap profile at the peak of heap+stack in use here")
	every := fs.Duration("mem-every", time.Second, "how often to check for a new memory peak")
	traceFile := fs.String("trace", "", "write an execution trace of the whole command here (go tool trace)")
	blockFile := fs.String("blockprofile", "", "write a profile of where goroutines blocked (every blocking event) here")
	mutexFile := fs.String("mutexprofile", "", "write a profile of mutex contention (every event) here")
	_ = fs.Parse(os.Args[1:])
	if fs.NArg() < 1 || commands[fs.Arg(0)] == nil {
		fmt.Fprintln(os.Stderr, "usage: profiled [-cpuprofile F] [-memprofile F] scan|analyze|lab ARGS...")
		os.Exit(2)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	if *cpuFile != "" {
		f, err := os.Create(*cpuFile)
		if err != nil {
			fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatal(err)
		}
		defer func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		}()
	}
	if *traceFile != "" {
		f, err := os.Create(*traceFile)
		if err != nil {
			fatal(err)
		}
		if err := trace.Start(f); err != nil {
			fatal(err)
		}
		defer func() {
			trace.Stop()
			_ = f.Close()
		}()
	}
	if *blockFile != "" {
		runtime.SetBlockProfileRate(1)
		defer writeProfile("block", *blockFile)
	}
	if *mutexFile != "" {
		runtime.SetMutexProfileFraction(1)
		defer writeProfile("mutex", *mutexFile)
	}
	done := make(chan struct{})
	memDone := make(chan struct{})
	if *memFile != "" {
		go func() {
			defer close(memDone)
			var best uint64
			t := time.NewTicker(*every)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
				}
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse+ms.StackInuse <= best {
					continue
				}
				best = ms.HeapInuse + ms.StackInuse
				writeHeap(*memFile, peak{At: time.Now().UTC().Format(time.RFC3339Nano), HeapInuse: ms.HeapInuse,
					StackInuse: ms.StackInuse, Sys: ms.Sys, Goroutines: runtime.NumGoroutine(), HeapObjects: ms.HeapObjects})
			}
		}()
	} else {
		close(memDone)
	}
	err := commands[fs.Arg(0)](ctx, fs.Args()[1:], os.Stdout, os.Stderr)
	close(done)
	<-memDone
	if err != nil {
		fmt.Fprintln(os.Stderr, "profiled:", err)
		pprof.StopCPUProfile()
		trace.Stop()
		os.Exit(1)
	}
}

func writeProfile(name, path string) {
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "profiled:", err)
		return
	}
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		fmt.Fprintln(os.Stderr, "profiled:", err)
	}
	_ = f.Close()
}

func writeHeap(path string, p peak) {
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil || f.Close() != nil {
		return
	}
	_ = os.Rename(path+".tmp", path)
	b, _ := json.MarshalIndent(p, "", "  ")
	_ = os.WriteFile(path+".json", b, 0o644)
	// What the goroutines (and so the stacks) were doing at the peak.
	if g, err := os.Create(path + ".goroutines"); err == nil {
		_ = pprof.Lookup("goroutine").WriteTo(g, 1)
		_ = g.Close()
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "profiled:", err)
	os.Exit(2)
}
