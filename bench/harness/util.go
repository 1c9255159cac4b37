package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// writeTargets lists the probes of a scan that completed (outcome ok) as
// "IP:PORT MXHOST" lines for tlsloop, and returns how many.
func writeTargets(scanDir, path string) (int64, error) {
	return writeRows(survey.ProbesDir(scanDir), path, func(r *survey.ProbeRow) string {
		if r.Outcome != survey.OutcomeOK {
			return ""
		}
		return joinHostPort(r.IP, r.Port) + " " + r.MXHost
	})
}

// writeRows writes one line per row of the Parquet parts in dir that line
// turns into a non-empty string, and returns how many; none is an error.
func writeRows[T any](dir, path string, line func(*T) string) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	w := bufio.NewWriter(f)
	var n int64
	err = store.ReadAll(dir, func(r *T) error {
		l := line(r)
		if l == "" {
			return nil
		}
		n++
		_, err := fmt.Fprintln(w, l)
		return err
	})
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n == 0 {
		err = fmt.Errorf("%s: no rows to write into %s", dir, path)
	}
	return n, err
}

func joinHostPort(ip string, port int32) string {
	if strings.Contains(ip, ":") {
		return fmt.Sprintf("[%s]:%d", ip, port)
	}
	return fmt.Sprintf("%s:%d", ip, port)
}

// pprofTop is `go tool pprof -top` of a CPU profile, flat or cumulative.
func pprofTop(prof string, cum bool) string {
	args := []string{"tool", "pprof", "-top", "-nodecount=25"}
	if cum {
		args = append(args, "-cum")
	}
	return pprofRun(append(args, prof))
}

// pprofHeap is the top of the in-use space of a heap profile.
func pprofHeap(prof string) string {
	return pprofRun([]string{"tool", "pprof", "-top", "-nodecount=15", "-sample_index=inuse_space", prof})
}

func pprofRun(args []string) string {
	if _, err := os.Stat(args[len(args)-1]); err != nil {
		return "(no profile: " + err.Error() + ")"
	}
	out, err := exec.Command("go", args...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(go %s: %v)\n%s", strings.Join(args, " "), err, out)
	}
	// Drop the header lines that name temporary files.
	var keep []string
	for _, l := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Time:") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

// Machine describes where the figures were measured.
type Machine struct {
	NProc    int    `json:"nproc"`
	MemTotal string `json:"mem_total"`
	CPUModel string `json:"cpu_model"`
	Go       string `json:"go"`
	Kernel   string `json:"kernel"`
	Date     string `json:"date"`
	Commit   string `json:"commit,omitempty"` // HEAD, and whether the tree had changes
}

func machine() Machine {
	m := Machine{NProc: runtime.NumCPU(), Date: time.Now().UTC().Format("2006-01-02 15:04 UTC")}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				var kib int64
				fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "MemTotal:")), "%d", &kib)
				m.MemTotal = fmt.Sprintf("%.1f GiB", float64(kib)/(1<<20))
			}
		}
	}
	if out, err := exec.Command("go", "version").Output(); err == nil {
		m.Go = strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
			m.Commit += " (with uncommitted changes)"
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}
