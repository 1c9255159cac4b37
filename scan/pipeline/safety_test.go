package pipeline

import (
	"bytes"
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
	"github.com/mxsurvey/mxsurvey/internal/cli"
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
	cfg := Config{Input: in, Out: t.TempDir() + "/s", Resolvers: []string{d.addr}, DNSRetries: 0, EHLOName: "scanner.test",
		Port: 2525, IPv6: true, ProbeTimeout: time.Second, StepTimeout: time.Second,
		// The lab range is allowed, but 127.0.0.1 and ::1 are not in it, and
		// the opt-out range is blocklisted inside it.
		Allow: []netip.Prefix{netip.MustParsePrefix("127.62.0.0/15")},
		Block: []netip.Prefix{netip.MustParsePrefix("127.62.0.0/16")},
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			dialed = append(dialed, addr)
			mu.Unlock()
			return nil, syscall.ECONNREFUSED
		}}
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

// TestBadInputFailsBeforeTraffic: every bad command line ends with a
// one-line error and ErrUsage (exit 2) before any DNS or SMTP traffic.
func TestBadInputFailsBeforeTraffic(t *testing.T) {
	d := startDNS(t, []string{"a.test. MX 10 mx.a.test."})
	dir := t.TempDir()
	list := filepath.Join(dir, "d.txt")
	os.WriteFile(list, []byte("a.test\n"), 0o644)
	base := []string{"-resolver", d.addr, "-ehlo-name", "scanner.test", "-quiet"}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"-frobnicate", list}, "flag provided but not defined"},
		{"shard K > N", []string{"-shard", "3/2", "-o", dir + "/o", list}, "between 1 and N"},
		{"shard garbage", []string{"-shard", "half", "-o", dir + "/o", list}, "want K/N"},
		{"negative rate", []string{"-rate", "-5", "-o", dir + "/o", list}, "rates must be"},
		{"negative concurrency", []string{"-concurrency", "-1", "-o", dir + "/o", list}, "concurrency"},
		{"port out of range", []string{"-port", "70000", "-o", dir + "/o", list}, "-port"},
		{"no output", []string{list}, "-o DIR"},
		{"no input", []string{"-o", dir + "/o"}, "no domain list"},
		{"two inputs", []string{"-o", dir + "/o", list, list}, "one domain list"},
		{"bad resolver", []string{"-resolver", "dns.example:53", "-o", dir + "/o", list}, "-resolver"},
		{"bad allow", []string{"-allow", "10.0.0.0/33", "-o", dir + "/o", list}, "-allow"},
		{"unreadable blocklist", []string{"-blocklist", dir + "/missing.txt", "-o", dir + "/o", list}, "blocklist"},
		{"unknown tls group", []string{"-tls-groups", "x448", "-o", dir + "/o", list}, "unknown group"},
		{"unknown format", []string{"-format", "xml", "-o", dir + "/o", list}, "format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			err := Command(context.Background(), append(append([]string{}, base...), tt.args...), &stderr, &stderr)
			if !errors.Is(err, cli.ErrUsage) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrUsage mentioning %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
	if n := d.count("a.test", "MX"); n != 0 {
		t.Errorf("bad command lines sent %d DNS queries", n)
	}
	// No -ehlo-name.
	err := Command(context.Background(), []string{"-resolver", d.addr, "-o", dir + "/o", list}, &bytes.Buffer{}, &bytes.Buffer{})
	if !errors.Is(err, cli.ErrUsage) || !strings.Contains(err.Error(), "-ehlo-name") {
		t.Errorf("missing -ehlo-name: %v", err)
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
	_, err = Run(context.Background(), Config{Input: in, Out: out, Resolvers: []string{pc.LocalAddr().String()},
		DNSTimeout: 100 * time.Millisecond, EHLOName: "scanner.test"})
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
