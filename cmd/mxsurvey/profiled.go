//go:build profiled

// A profiled build of mxsurvey (go build -tags profiled, as scripts/bench.sh
// makes bin/bench/profiled) runs one command exactly as bin/mxsurvey does,
// with runtime/pprof around it: a CPU profile of the whole run, and a heap
// profile taken whenever the in-use heap plus goroutine stacks reach a new
// peak (checked every -mem-every), with the runtime's memory figures at that
// peak in FILE.json and its goroutines in FILE.goroutines; and, to find
// where work waits rather than where it burns CPU, an execution trace (go
// tool trace) and block and mutex profiles. Being the same main package, it
// cannot drift from the command it measures.
//
//	profiled [-cpuprofile F] [-memprofile F] [-mem-every 1s] [-trace F] [-blockprofile F] [-mutexprofile F] scan|analyze|lab ARGS...

package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"time"
)

// peak is written next to the heap profile.
type peak struct {
	At          string `json:"at"`
	HeapInuse   uint64 `json:"heap_inuse"`
	StackInuse  uint64 `json:"stack_inuse"`
	Sys         uint64 `json:"sys"`
	Goroutines  int    `json:"goroutines"`
	HeapObjects uint64 `json:"heap_objects"`
}

// profile parses the profiling flags in front of the command and runs the
// command under them.
func profile(args []string, run func([]string) int) int {
	fs := flag.NewFlagSet("profiled", flag.ContinueOnError)
	cpuFile := fs.String("cpuprofile", "", "write a CPU profile of the whole command here")
	memFile := fs.String("memprofile", "", "write the heap profile at the peak of heap+stack in use here")
	every := fs.Duration("mem-every", time.Second, "how often to check for a new memory peak")
	traceFile := fs.String("trace", "", "write an execution trace of the whole command here (go tool trace)")
	blockFile := fs.String("blockprofile", "", "write a profile of where goroutines blocked (every blocking event) here")
	mutexFile := fs.String("mutexprofile", "", "write a profile of mutex contention (every event) here")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cpuFile != "" {
		f, err := os.Create(*cpuFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "profiled:", err)
			return 2
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "profiled:", err)
			return 2
		}
		defer func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		}()
	}
	if *traceFile != "" {
		f, err := os.Create(*traceFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "profiled:", err)
			return 2
		}
		if err := trace.Start(f); err != nil {
			fmt.Fprintln(os.Stderr, "profiled:", err)
			return 2
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
	code := run(fs.Args())
	close(done)
	<-memDone
	return code
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
