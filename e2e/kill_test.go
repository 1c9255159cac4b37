package e2e

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/internal/datasetcheck"
	"github.com/mxsurvey/mxsurvey/lab"
)

// buildBinary builds cmd/mxsurvey once per test binary run.
func buildBinary(t *testing.T) string {
	t.Helper()
	return build(t, "mxsurvey", "../cmd/mxsurvey")
}

var (
	buildMu  sync.Mutex
	builtDir string
	built    = map[string]string{}
)

// build builds a Go main package into a directory shared by the tests of
// this run, once per name; extra are go build flags.
func build(t *testing.T, name, pkg string, extra ...string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if bin, ok := built[name]; ok {
		return bin
	}
	if builtDir == "" {
		d, err := os.MkdirTemp("", "mxsurvey-e2e-bin")
		if err != nil {
			t.Fatal(err)
		}
		builtDir = d
	}
	bin := filepath.Join(builtDir, name)
	start := time.Now()
	cmd := exec.Command("go", append(append([]string{"build", "-o", bin}, extra...), pkg)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", pkg, err, out)
	}
	t.Logf("built %s in %v", name, time.Since(start).Round(time.Millisecond))
	built[name] = bin
	return bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtDir != "" {
		os.RemoveAll(builtDir)
	}
	os.Exit(code)
}

type labProcess struct {
	info    lab.Info
	domains string
}

// startLabProcess runs "mxsurvey lab" without truth files and waits for
// its lab.json; extra are more lab flags.
func startLabProcess(t *testing.T, bin string, domains int, extra ...string) *labProcess {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lab")
	cmd := exec.Command(bin, append([]string{"lab", "-domains", strconv.Itoa(domains), "-seed", "5", "-dns", "127.0.0.1:0",
		"-smtp-port", "0", "-mta-sts-port", "0", "-no-truth", "-out", dir}, extra...)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(2 * time.Minute)
	for {
		data, err := os.ReadFile(filepath.Join(dir, lab.InfoFile))
		if err == nil {
			l := &labProcess{domains: filepath.Join(dir, lab.DomainsFile)}
			if err := json.Unmarshal(data, &l.info); err == nil {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("lab did not write %s within 2 minutes", lab.InfoFile)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func scanArgs(l *labProcess, out string, extra ...string) []string {
	args := []string{"scan", "-resolver", l.info.DNS, "-port", strconv.Itoa(l.info.SMTPPort), "-mta-sts-port", strconv.Itoa(l.info.MTASTSPort),
		"-allow", "127.0.0.0/8", "-allow", "::1/128", "-ipv6", "-ehlo-name", "scanner.mxsurvey.test",
		"-rate", "0", "-dns-rate", "0", "-ip-interval", "0", "-timeout", "4s", "-step-timeout", "2s",
		"-dns-timeout", "500ms", "-dns-retries", "1", "-checkpoint", "300ms", "-quiet", "-o", out}
	return append(append(args, extra...), l.domains)
}

// TestKillAndResume kills a lab scan with SIGKILL at random moments and
// resumes it each time, then checks that the dataset holds every input
// domain exactly once, every target exactly once and every MX host's tlsa
// row exactly once (none for a host no mx row names), and that every
// Parquet file reads back whole. A SIGINT in between must end the scan cleanly with
// status 130 and an "interrupted" manifest.
func TestKillAndResume(t *testing.T) {
	if testing.Short() {
		t.Skip("kill/resume test: skipped in -short mode")
	}
	size := 100_000
	if v := os.Getenv("MXSURVEY_KILL_DOMAINS"); v != "" {
		size, _ = strconv.Atoi(v)
	}
	bin := buildBinary(t)
	// The lab runs as its own process too: under -race an in-process lab
	// of this size would be the bottleneck, and separate processes are how
	// it is used.
	l := startLabProcess(t, bin, size)
	out := filepath.Join(t.TempDir(), "scan")
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("random kill moments seeded with %d", seed)

	run := func(resume bool) *exec.Cmd {
		extra := []string{}
		if resume {
			extra = append(extra, "-resume")
		}
		cmd := exec.Command(bin, scanArgs(l, out, extra...)...)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	kills := 0
	for i := 0; i < 4; i++ {
		cmd := run(i > 0)
		wait := time.Duration(500+rng.IntN(3000)) * time.Millisecond
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			t.Logf("run %d finished before its kill moment (%v): %v", i, wait, err)
			continue
		case <-time.After(wait):
		}
		if i == 2 {
			cmd.Process.Signal(syscall.SIGINT)
			err := <-done
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 130 {
				t.Fatalf("SIGINT: exit %v, want status 130", err)
			}
			m, err := store.ReadManifest(out)
			if err != nil || m.Status != survey.StatusInterrupted {
				t.Fatalf("after SIGINT manifest status = %v, %v", m, err)
			}
			t.Logf("run %d interrupted with SIGINT after %v", i, wait)
			continue
		}
		cmd.Process.Kill()
		<-done
		kills++
		t.Logf("run %d killed with SIGKILL after %v", i, wait)
	}
	final := exec.Command(bin, scanArgs(l, out, "-resume")...)
	final.Stderr = os.Stderr
	if err := final.Run(); err != nil {
		t.Fatalf("final resume: %v", err)
	}
	m, err := store.ReadManifest(out)
	if err != nil || m.Status != survey.StatusComplete {
		t.Fatalf("final manifest: %+v %v", m, err)
	}
	if kills == 0 {
		t.Log("no run was killed (all finished early): the test checked a plain scan")
	}

	domains, targets, parts := checkExactlyOnce(t, l.domains, out)
	t.Logf("%d domains, %d targets after %d kills, 1 interrupt and resumes; %d mx parts", domains, targets, kills, parts)
}

// checkExactlyOnce holds the dataset in out to its input
// (datasetcheck.ExactlyOnce): every domain and target once, every MX host
// the mx rows name with one tlsa row and no tlsa row for a host they do
// not name (a kill between the commits of a domain's tables must not leave
// one: docs/schema.md), every part whole. The scans here have policies on,
// so the tlsa table must be there to be checked.
func checkExactlyOnce(t *testing.T, input, out string) (domainCount, targetCount, mxPartCount int) {
	t.Helper()
	if _, err := os.Stat(survey.TLSADir(out)); err != nil {
		t.Errorf("no tlsa table to check: %v", err)
	}
	n, problems, err := datasetcheck.ExactlyOnce(input, out)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Error(p)
	}
	return n.Domains, n.Targets, n.MXParts
}
