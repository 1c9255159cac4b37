package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is one measured child process.
type Proc struct {
	Name       string   `json:"name"`
	Argv       []string `json:"argv"`
	WallS      float64  `json:"wall_s"`
	UserS      float64  `json:"user_s"`
	SysS       float64  `json:"sys_s"`
	MaxRSSKiB  int64    `json:"max_rss_kib"`    // getrusage ru_maxrss of the child
	PeakRSSKiB int64    `json:"peak_rss_kib"`   // highest VmRSS sampled every 100 ms
	PeakFlight int      `json:"peak_in_flight"` // highest "N in flight" of the progress lines
	// RSSAtPeakFlightKiB is the RSS sampled when the in-flight peak was seen.
	RSSAtPeakFlightKiB int64     `json:"rss_at_peak_flight_kib"`
	LabCPUS            float64   `json:"lab_cpu_s"` // CPU the lab process used meanwhile
	Progress           []Tick    `json:"progress,omitempty"`
	Err                string    `json:"err,omitempty"`
	Log                string    `json:"log"`
	Started            time.Time `json:"started"`
}

// CPUS is user plus system time.
func (p Proc) CPUS() float64 { return p.UserS + p.SysS }

// Tick is one scanner progress line.
type Tick struct {
	T        float64 `json:"t"` // seconds since start
	Probes   int64   `json:"probes"`
	InFlight int     `json:"in_flight"`
	DNS      int64   `json:"dns"`
}

var (
	reFlight = regexp.MustCompile(`probes (\d+) done, (\d+) in flight`)
	reDNS    = regexp.MustCompile(`dns (\d+) queries`)
)

// run starts argv, copies its stderr to logPath (and scans it for progress
// lines), samples its RSS, and waits for it, at most timeout. labPID, when
// non-zero, is a process whose CPU over the same interval is recorded.
func run(ctx context.Context, name string, argv []string, logPath string, timeout time.Duration, labPID int) (Proc, []byte, error) {
	p := Proc{Name: name, Argv: argv, Log: logPath, Started: time.Now().UTC()}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	logf, err := os.Create(logPath)
	if err != nil {
		return p, nil, err
	}
	defer logf.Close()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	lab0 := procCPU(labPID)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return p, nil, err
	}
	var mu sync.Mutex
	var lastRSS int64
	var wg sync.WaitGroup
	wg.Go(func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			if m := reFlight.FindStringSubmatch(line); m != nil {
				t := Tick{T: time.Since(start).Seconds()}
				t.Probes, _ = strconv.ParseInt(m[1], 10, 64)
				t.InFlight, _ = strconv.Atoi(m[2])
				if d := reDNS.FindStringSubmatch(line); d != nil {
					t.DNS, _ = strconv.ParseInt(d[1], 10, 64)
				}
				mu.Lock()
				p.Progress = append(p.Progress, t)
				if t.InFlight > p.PeakFlight {
					p.PeakFlight = t.InFlight
					p.RSSAtPeakFlightKiB = lastRSS
				}
				mu.Unlock()
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	})
	stopSample := make(chan struct{})
	wg.Go(func() {
		tk := time.NewTicker(100 * time.Millisecond)
		defer tk.Stop()
		for {
			if rss, _ := procMem(cmd.Process.Pid); rss > 0 {
				mu.Lock()
				lastRSS = rss
				p.PeakRSSKiB = max(p.PeakRSSKiB, rss)
				mu.Unlock()
			}
			select {
			case <-stopSample:
				return
			case <-tk.C:
			}
		}
	})
	werr := cmd.Wait()
	p.WallS = time.Since(start).Seconds()
	p.LabCPUS = procCPU(labPID) - lab0
	close(stopSample)
	_ = pw.Close()
	wg.Wait()
	if ps := cmd.ProcessState; ps != nil {
		p.UserS = ps.UserTime().Seconds()
		p.SysS = ps.SystemTime().Seconds()
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			p.MaxRSSKiB = ru.Maxrss
		}
	}
	if werr != nil {
		if ctx.Err() == context.DeadlineExceeded {
			werr = fmt.Errorf("%s: timed out after %v: %w", name, timeout, werr)
		} else {
			werr = fmt.Errorf("%s: %w (log: %s)", name, werr, logPath)
		}
		p.Err = werr.Error()
	}
	return p, stdout.Bytes(), werr
}

// procCPU is the user+system CPU of a live process in seconds (0 if pid is 0
// or gone).
func procCPU(pid int) float64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// After the comm field: state is f[0], utime f[11], stime f[12] (fields 14, 15).
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / clkTck
}

// clkTck is USER_HZ, 100 on every Linux this runs on.
const clkTck = 100

// procMem returns VmRSS and VmHWM of a live process in KiB.
func procMem(pid int) (rss, hwm int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rss, _ = strconv.ParseInt(f[1], 10, 64)
		case "VmHWM:":
			hwm, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	return rss, hwm
}

// maxWindowRate is the highest rate of a counter over any window of at least
// win seconds between progress ticks.
func maxWindowRate(ts []Tick, win float64, v func(Tick) int64) float64 {
	best := 0.0
	for i := range ts {
		for j := i + 1; j < len(ts); j++ {
			dt := ts[j].T - ts[i].T
			if dt >= win {
				best = max(best, float64(v(ts[j])-v(ts[i]))/dt)
				break
			}
		}
	}
	return best
}
