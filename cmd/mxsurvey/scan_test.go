package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestBadScanCommandLines: every bad command line ends with a one-line
// error and errUsage (exit 2) before any DNS or SMTP traffic.
func TestBadScanCommandLines(t *testing.T) {
	// A "resolver" that counts what it receives and never answers.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var packets atomic.Int64
	go func() {
		buf := make([]byte, 512)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			packets.Add(1)
		}
	}()
	dir := t.TempDir()
	list := filepath.Join(dir, "d.txt")
	if err := os.WriteFile(list, []byte("a.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"-resolver", pc.LocalAddr().String(), "-ehlo-name", "scanner.test", "-quiet"}
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
		{"negative retries", []string{"-dns-retries", "-1", "-o", dir + "/o", list}, "-dns-retries"},
		{"port out of range", []string{"-port", "70000", "-o", dir + "/o", list}, "-port"},
		{"no output", []string{list}, "-o DIR"},
		{"no input", []string{"-o", dir + "/o"}, "no domain list"},
		{"two inputs", []string{"-o", dir + "/o", list, list}, "one domain list"},
		{"bad resolver", []string{"-resolver", "dns.example:53", "-o", dir + "/o", list}, "-resolver"},
		{"bad allow", []string{"-allow", "10.0.0.0/33", "-o", dir + "/o", list}, "-allow"},
		{"unreadable blocklist", []string{"-blocklist", dir + "/missing.txt", "-o", dir + "/o", list}, "blocklist"},
		{"unknown tls group", []string{"-tls-groups", "x448", "-o", dir + "/o", list}, "unknown group"},
		{"unknown format", []string{"-format", "xml", "-o", dir + "/o", list}, "format"},
		{"no ehlo name", []string{"-ehlo-name", "", "-o", dir + "/o", list}, "-ehlo-name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			err := scanCommand(context.Background(), append(append([]string{}, base...), tt.args...), &stderr, &stderr)
			if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want errUsage mentioning %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
	time.Sleep(50 * time.Millisecond) // a query in flight would have arrived by now
	if n := packets.Load(); n != 0 {
		t.Errorf("bad command lines sent %d DNS packets", n)
	}
	if _, err := os.Stat(dir + "/o"); !os.IsNotExist(err) {
		t.Errorf("a bad command line created the output directory: %v", err)
	}
}

// The help is not an error, and names every flag.
func TestScanHelp(t *testing.T) {
	var stderr bytes.Buffer
	if err := scanCommand(context.Background(), []string{"-h"}, &stderr, &stderr); err != nil {
		t.Fatalf("-h: %v", err)
	}
	for _, f := range []string{"-o", "-ehlo-name", "-resume", "-checkpoint", "-format", "-shard", "-resolver", "-dns-timeout",
		"-dns-retries", "-dns-concurrency", "-dns-rate", "-ptr", "-concurrency", "-rate", "-per-ip-concurrency",
		"-ip-interval", "-port", "-timeout", "-step-timeout", "-tls-groups", "-ipv6", "-allow", "-blocklist", "-quiet", "-progress"} {
		if !strings.Contains(stderr.String(), "\n  "+f+" ") && !strings.Contains(stderr.String(), "\n  "+f+"\n") {
			t.Errorf("usage lacks %s", f)
		}
	}
}
