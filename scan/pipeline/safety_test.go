package pipeline

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/scan/probe"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
)

// TestNeverContactsSpecialOrBlockedAddresses points MX records at addresses
// a scan must never touch and records every dial the scan makes.
func TestNeverContactsSpecialOrBlockedAddresses(t *testing.T) {
	d := startDNS(t, []string{
		"evil.test. MX 10 mx.evil.test.",
		"mx.evil.test. A 10.0.0.1",
		"mx.evil.test. A 169.254.169.254",
		"mx.evil.test. A 0.0.0.0",
		"mx.evil.test. A 127.0.0.1",
		"mx.evil.test. AAAA ::1",
		"mx.evil.test. AAAA fe80::1",
		"optout.test. MX 10 mx.optout.test.",
		"mx.optout.test. A 127.62.0.1",
		"fine.test. MX 10 mx.fine.test.",
		"mx.fine.test. A 127.63.0.1",
	})
	in := filepath.Join(t.TempDir(), "d.txt")
	os.WriteFile(in, []byte("evil.test\noptout.test\nfine.test\n"), 0o644)
	var mu sync.Mutex
	var dialed []string
	cfg := Config{Input: in, Out: t.TempDir() + "/s", Resolve: resolve.Config{Servers: []string{d.addr}}, IPv6: true,
		Probe: probe.Config{EHLOName: "scanner.test", Port: 2525, Timeout: time.Second, StepTimeout: time.Second,
			Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
				mu.Lock()
				dialed = append(dialed, addr)
				mu.Unlock()
				return nil, syscall.ECONNREFUSED
			}},
		// The lab range is allowed, but 127.0.0.1 and ::1 are not in it, and
		// the opt-out range is blocklisted inside it.
		Allow: []netip.Prefix{netip.MustParsePrefix("127.62.0.0/15")},
		Block: []netip.Prefix{netip.MustParsePrefix("127.62.0.0/16")}}
	if _, err := Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if len(dialed) != 1 || dialed[0] != "127.63.0.1:2525" {
		t.Fatalf("dialed %v, want only 127.63.0.1:2525", dialed)
	}
	_, probes := readDataset(t, cfg.Out)
	for _, ip := range []string{"10.0.0.1", "169.254.169.254", "0.0.0.0", "127.0.0.1", "::1", "fe80::1"} {
		p := probes[ip+"|mx.evil.test"]
		if p.Outcome != survey.OutcomeSkipped || p.ErrorClass != survey.ErrBlocked || !strings.Contains(p.Error, "special-purpose") {
			t.Errorf("%s: %s/%s %q, want skipped/blocked special-purpose", ip, p.Outcome, p.ErrorClass, p.Error)
		}
	}
	if p := probes["127.62.0.1|mx.optout.test"]; p.ErrorClass != survey.ErrBlocked || !strings.Contains(p.Error, "blocklisted") {
		t.Errorf("blocklisted target: %+v", p)
	}
	if p := probes["127.63.0.1|mx.fine.test"]; p.Outcome != survey.OutcomeConnect || p.ErrorClass != survey.ErrRefused {
		t.Errorf("allowed target: %s/%s", p.Outcome, p.ErrorClass)
	}
}

// TestDeadResolverStopsTheScan: a resolver that never answers is found
// before any probe, with an error that names it.
func TestDeadResolverStopsTheScan(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	in := filepath.Join(t.TempDir(), "d.txt")
	os.WriteFile(in, []byte("a.test\n"), 0o644)
	out := t.TempDir() + "/s"
	_, err = Run(context.Background(), Config{Input: in, Out: out,
		Resolve: resolve.Config{Servers: []string{pc.LocalAddr().String()}, Timeout: 100 * time.Millisecond},
		Probe:   probe.Config{EHLOName: "scanner.test"}})
	if err == nil || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed start left an output directory")
	}
}

func TestUnwritableOutput(t *testing.T) {
	l := startTestWorld(t, 0)
	file := filepath.Join(t.TempDir(), "a-file")
	os.WriteFile(file, nil, 0o644)
	_, err := Run(context.Background(), l.config(filepath.Join(file, "scan")))
	if err == nil || !strings.Contains(err.Error(), "output directory") {
		t.Fatalf("output under a file: err = %v", err)
	}
}

// TestDiskFull runs a scan into a tiny tmpfs: the scan must end with a
// clear error, a failed manifest if it fits, and no half-written part.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("disk-full test: needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("disk-full test: cannot mount tmpfs here: %v %s", err, out)
	}
	defer exec.Command("umount", dir).Run()
	l := startTestWorld(t, 0)
	// Enough domains that the mx rows outgrow the file system.
	var b strings.Builder
	for i := 0; i < 20000; i++ {
		b.WriteString("host")
		b.WriteString(strings.Repeat("x", i%40))
		b.WriteString(itoa(i))
		b.WriteString(".nx.test\n")
	}
	in := filepath.Join(t.TempDir(), "many.txt")
	os.WriteFile(in, []byte(b.String()), 0o644)
	cfg := l.config(filepath.Join(dir, "scan"))
	cfg.Input = in
	cfg.DNSConcurrency = 20
	cfg.Checkpoint = 50 * time.Millisecond
	done := make(chan error, 1)
	go func() { _, err := Run(context.Background(), cfg); done <- err }()
	select {
	case err := <-done:
		if err == nil || !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("scan into a full disk: err = %v, want ENOSPC", err)
		}
		t.Logf("scan ended with: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("scan into a full disk did not stop within 60s")
	}
	for _, sub := range []string{"mx", "probes"} {
		tmps, _ := filepath.Glob(filepath.Join(dir, "scan", sub, ".part-*.tmp"))
		if len(tmps) > 0 {
			t.Errorf("half-written parts left: %v", tmps)
		}
		parts, _ := store.Parts(filepath.Join(dir, "scan", sub))
		for _, p := range parts {
			if err := store.ReadPart(p, func(*survey.MXRow) error { return nil }); sub == "mx" && err != nil {
				t.Errorf("committed part %s does not read back: %v", p, err)
			}
		}
	}
}
