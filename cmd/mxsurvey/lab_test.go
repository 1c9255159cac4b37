package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/lab"
)

func TestLabHostileFlag(t *testing.T) {
	dir := t.TempDir()
	var out strings.Builder
	err := labCommand(context.Background(), []string{"-hostile", "-domains", "300", "-dns", "127.0.0.1:0", "-smtp-port", "0", "-mta-sts-port", "0",
		"-no-truth", "-duration", "1ms", "-out", dir}, &out, &out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	data, err := os.ReadFile(filepath.Join(dir, lab.InfoFile))
	if err != nil {
		t.Fatal(err)
	}
	var info lab.Info
	if err := json.Unmarshal(data, &info); err != nil {
		t.Fatal(err)
	}
	hostile := lab.HostileCaseNames()
	for _, c := range hostile {
		if info.CaseDomains[c] < 1 {
			t.Errorf("-hostile: no domain for %s", c)
		}
	}
	for c := range info.CaseDomains {
		if !strings.HasPrefix(c, "bg_") && !slices.Contains(hostile, c) {
			t.Errorf("-hostile: case %s is on", c)
		}
	}
}

// TestLabBadCommandLines: every impossible command line is a usage error
// (exit status 2) found before anything is bound or written: the output
// directory is not made.
func TestLabBadCommandLines(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"unknown flag", []string{"-nope", "-out", dir}},
		{"no -out", []string{"-domains", "10"}},
		{"argument", []string{"-out", dir, "extra"}},
		{"bad latency", []string{"-latency", "20ms-1ms", "-out", dir}},
		{"bad latency unit", []string{"-latency", "fast", "-out", dir}},
		{"unknown case", []string{"-cases", "nope=0.1", "-out", dir}},
		{"share out of range", []string{"-cases", "cert_mx=2", "-out", dir}},
		{"too many cases", []string{"-domains", "10", "-cases", "default=0.5", "-out", dir}},
		{"no domains", []string{"-domains", "-1", "-out", dir}},
		{"shares above 1", []string{"-provider-share", "0.9", "-hosting-share", "0.5", "-out", dir}},
		{"negative duration", []string{"-duration", "-1s", "-out", dir}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			args := append([]string{"-dns", "127.0.0.1:0", "-smtp-port", "0", "-mta-sts-port", "0"}, tc.args...)
			err := labCommand(context.Background(), args, &out, &out)
			if !errors.Is(err, errUsage) {
				t.Errorf("%v: %v, want a usage error\n%s", tc.args, err, out.String())
			}
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%v: the output directory was made", tc.args)
			}
		})
	}
}

func TestParseLatency(t *testing.T) {
	for in, want := range map[string][2]time.Duration{
		"0": {}, "": {}, "50ms": {50 * time.Millisecond, 50 * time.Millisecond},
		"20ms-200ms": {20 * time.Millisecond, 200 * time.Millisecond},
	} {
		lo, hi, err := parseLatency(in)
		if err != nil || lo != want[0] || hi != want[1] {
			t.Errorf("parseLatency(%q) = %v %v %v", in, lo, hi, err)
		}
	}
}

// TestLabHelp: -h lists every case of the table.
func TestLabHelp(t *testing.T) {
	var out strings.Builder
	if err := labCommand(context.Background(), []string{"-h"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, c := range lab.CaseNames() {
		if !strings.Contains(out.String(), "  "+c+" ") {
			t.Errorf("-h does not list %s", c)
		}
	}
}
