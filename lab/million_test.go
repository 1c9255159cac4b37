package lab

import (
	"context"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestMillion is the one-off scale measurement of README.md: run with
// LAB_MILLION=1 (and -timeout 10m); it is skipped otherwise.
func TestMillion(t *testing.T) {
	if os.Getenv("LAB_MILLION") == "" {
		t.Skip("set LAB_MILLION=1 to measure a 1,000,000-domain lab")
	}
	for _, noTruth := range []bool{true, false} {
		t0 := time.Now()
		l, err := Start(context.Background(), Config{WorldParams: WorldParams{Domains: 1_000_000, Seed: 1}, DNSAddr: "127.0.0.1:0", OutDir: t.TempDir(),
			NoTruth: noTruth, TruthBackground: true})
		if err != nil {
			t.Fatal(err)
		}
		el := time.Since(t0)
		t.Logf("no_truth=%v serving after %v, rss=%s", noTruth, el, vmRSS())
		if err := l.WaitTruth(context.Background()); err != nil {
			t.Fatal(err)
		}
		el = time.Since(t0)
		runtime.GC()
		t.Logf("no_truth=%v truth complete after %v targets=%d rss=%s goroutines=%d", noTruth, el, l.Info.Targets, vmRSS(), runtime.NumGoroutine())
		fi, _ := os.Stat(l.TruthHostsPath())
		fd, _ := os.Stat(l.TruthDomainsPath())
		if fi != nil && fd != nil {
			t.Logf("truth-hosts %d MB, truth-domains %d MB", fi.Size()>>20, fd.Size()>>20)
		}
		l.Close()
	}
}

func vmRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") || strings.HasPrefix(line, "VmHWM:") {
			out = append(out, strings.Join(strings.Fields(line), " "))
		}
	}
	return strings.Join(out, ", ")
}
