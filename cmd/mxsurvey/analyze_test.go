package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

func writePart[T any](t *testing.T, dir string, rows []T) {
	t.Helper()
	w, err := store.NewPartWriter[T](dir, store.PartOptions{})
	if err == nil {
		err = errors.Join(w.Write(rows), w.Close())
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestAnalyzeCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if err := analyzeCommand(context.Background(), []string{"-h"}, &stdout, &stderr); err != nil {
		t.Errorf("-h: %v", err)
	}
	for _, f := range []string{"-roots", "-compare", "-quiet", "-o", "-top", "SCANDIR"} {
		if !strings.Contains(stderr.String(), f) {
			t.Errorf("usage lacks %s:\n%s", f, stderr.String())
		}
	}
	for _, args := range [][]string{{"-o", t.TempDir()}, {t.TempDir()}, {"-frobnicate"}} {
		if err := analyzeCommand(context.Background(), args, &stdout, &stderr); !errors.Is(err, errUsage) {
			t.Errorf("%q: err = %v, want errUsage", args, err)
		}
	}

	// A scan of one domain whose one target refused the connection.
	scan := t.TempDir()
	if err := store.WriteManifest(scan, &survey.Manifest{Tool: survey.Tool, SchemaVersion: survey.SchemaVersion, Status: survey.StatusComplete}); err != nil {
		t.Fatal(err)
	}
	writePart(t, survey.MXDir(scan), []survey.MXRow{{Domain: "example.test", DNSStatus: survey.DNSOK, MXHost: "mx.example.test", IP: "192.0.2.1"}})
	writePart(t, survey.ProbesDir(scan), []survey.ProbeRow{{IP: "192.0.2.1", MXHost: "mx.example.test", Outcome: survey.OutcomeConnect, ErrorClass: survey.ErrRefused}})
	stdout.Reset()
	stderr.Reset()
	if err := analyzeCommand(context.Background(), []string{"-quiet", "-o", t.TempDir(), scan}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if stderr.Len() != 0 {
		t.Errorf("-quiet wrote to stderr: %s", stderr.String())
	}
	if !strings.Contains(stdout.String(), "analyzed 1 hosts and 1 domains; 0 hosts with a certificate") {
		t.Errorf("stdout: %s", stdout.String())
	}
	stderr.Reset()
	if err := analyzeCommand(context.Background(), []string{"-o", t.TempDir(), scan}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "probes: 1 rows read") {
		t.Errorf("no progress on stderr without -quiet:\n%s", stderr.String())
	}
}
