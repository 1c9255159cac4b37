package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Lab is a running "mxsurvey lab".
type Lab struct {
	cmd      *exec.Cmd
	done     chan error
	Dir      string
	DNS      string
	Port     int
	STSPort  int // the MTA-STS policy hosts' HTTPS port
	Domains  int
	Latency  string
	StartS   float64 // from exec to lab.json written
	StartCPU float64 // CPU used to start
	StartRSS int64   // RSS once started, KiB
	log      *os.File
}

// LabStats is recorded per lab.
type LabStats struct {
	Domains   int      `json:"domains"`
	Latency   string   `json:"latency"`
	StartS    float64  `json:"start_s"`
	StartCPUS float64  `json:"start_cpu_s"`
	StartRSS  int64    `json:"start_rss_kib"`
	HWMKiB    int64    `json:"hwm_kib"`
	CPUS      float64  `json:"cpu_s"`
	WallS     float64  `json:"wall_s"`
	Argv      []string `json:"argv"`
}

// startLab starts "mxsurvey lab" with n domains and the given latency (and
// world flags, extra) and waits until it serves.
func startLab(ctx context.Context, argv0 []string, n int, latency, dir string, timeout time.Duration, extra ...string) (*Lab, []string, error) {
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, err
	}
	argv := append(append([]string{}, argv0...), "lab", "-domains", fmt.Sprint(n), "-seed", "1", "-dns", "127.0.0.1:0",
		"-smtp-port", "0", "-mta-sts-port", "0", "-latency", latency, "-no-truth", "-out", filepath.Join(dir, "lab"))
	argv = append(argv, extra...)
	logf, err := os.Create(filepath.Join(dir, "lab.log"))
	if err != nil {
		return nil, nil, err
	}
	l := &Lab{Dir: filepath.Join(dir, "lab"), Domains: n, Latency: latency, done: make(chan error, 1), log: logf}
	l.cmd = exec.Command(argv[0], argv[1:]...)
	l.cmd.Stdout, l.cmd.Stderr = logf, logf
	start := time.Now()
	if err := l.cmd.Start(); err != nil {
		return nil, argv, err
	}
	go func() { l.done <- l.cmd.Wait() }()
	deadline := time.After(timeout)
	for {
		var info struct {
			DNS     string `json:"dns"`
			Port    int    `json:"smtp_port"`
			STSPort int    `json:"mta_sts_port"`
		}
		if b, err := os.ReadFile(filepath.Join(l.Dir, "lab.json")); err == nil && json.Unmarshal(b, &info) == nil && info.Port != 0 {
			l.DNS, l.Port, l.STSPort = info.DNS, info.Port, info.STSPort
			break
		}
		select {
		case err := <-l.done:
			return nil, argv, fmt.Errorf("lab exited before it was ready: %v (log %s)", err, logf.Name())
		case <-deadline:
			l.stop()
			return nil, argv, fmt.Errorf("lab not ready within %v (log %s)", timeout, logf.Name())
		case <-ctx.Done():
			l.stop()
			return nil, argv, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	l.StartS = time.Since(start).Seconds()
	l.StartCPU = procCPU(l.cmd.Process.Pid)
	l.StartRSS, _ = procMem(l.cmd.Process.Pid)
	return l, argv, nil
}

func (l *Lab) pid() int { return l.cmd.Process.Pid }

// stop ends the lab with SIGTERM (so a profiling wrapper writes its
// profile) and returns its totals.
func (l *Lab) stop() LabStats {
	st := LabStats{Domains: l.Domains, Latency: l.Latency, StartS: l.StartS, StartCPUS: l.StartCPU, StartRSS: l.StartRSS}
	_, st.HWMKiB = procMem(l.pid())
	_ = l.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-l.done:
	case <-time.After(30 * time.Second):
		_ = l.cmd.Process.Kill()
		<-l.done
	}
	if ps := l.cmd.ProcessState; ps != nil {
		st.CPUS = ps.UserTime().Seconds() + ps.SystemTime().Seconds()
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			st.HWMKiB = max(st.HWMKiB, ru.Maxrss)
		}
	}
	_ = l.log.Close()
	return st
}
