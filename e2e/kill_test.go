package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/domains"
	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/lab"
)

// buildBinary builds cmd/mxsurvey once per test binary run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mxsurvey")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/mxsurvey")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building mxsurvey: %v\n%s", err, out)
	}
	return bin
}

type labProcess struct {
	info    lab.Info
	domains string
}

// startLabProcess runs "mxsurvey lab" without truth files and waits for
// its lab.json.
func startLabProcess(t *testing.T, bin string, domains int) *labProcess {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lab")
	cmd := exec.Command(bin, "lab", "-domains", strconv.Itoa(domains), "-seed", "5", "-dns", "127.0.0.1:0",
		"-smtp-port", "0", "-mta-sts-port", "0", "-no-truth", "-out", dir)
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
// domain exactly once and every target exactly once, and that every Parquet
// file reads back whole. A SIGINT in between must end the scan cleanly with
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

	// Every input domain exactly once: all its rows in one part.
	in, err := domains.Open(l.domains, domains.FormatAuto)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for {
		e, err := in.Next()
		if err != nil {
			break
		}
		want[e.Domain] = true
	}
	in.Close()
	partOf := map[string]string{}
	referenced := map[string]bool{}
	mxHosts := map[string]bool{}
	mxParts, _ := store.Parts(survey.MXDir(out))
	dupDomains := 0
	err = readEachPart[survey.MXRow](survey.MXDir(out), func(part string, r *survey.MXRow) {
		if prev, ok := partOf[r.Domain]; ok && prev != part {
			dupDomains++
		}
		partOf[r.Domain] = part
		if r.IP != "" {
			referenced[survey.TargetKey(r.IP, r.MXHost)] = true
		}
		if r.MXHost != "" {
			mxHosts[r.MXHost] = true
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if dupDomains > 0 {
		t.Errorf("%d domains appear in more than one part (scanned twice)", dupDomains)
	}
	missing := 0
	for d := range want {
		if _, ok := partOf[d]; !ok {
			missing++
		}
	}
	if missing > 0 || len(partOf) != len(want) {
		t.Errorf("dataset has %d domains, input %d, %d input domains missing", len(partOf), len(want), missing)
	}
	probed := map[string]int{}
	err = readEachPart[survey.ProbeRow](survey.ProbesDir(out), func(part string, r *survey.ProbeRow) {
		probed[survey.TargetKey(r.IP, r.MXHost)]++
	})
	if err != nil {
		t.Fatal(err)
	}
	twice := 0
	for _, n := range probed {
		if n > 1 {
			twice++
		}
	}
	unprobed := 0
	for k := range referenced {
		if probed[k] == 0 {
			unprobed++
		}
	}
	if twice > 0 || unprobed > 0 || len(probed) != len(referenced) {
		t.Errorf("targets: %d referenced, %d with probe rows, %d probed twice, %d never probed",
			len(referenced), len(probed), twice, unprobed)
	}
	// Policies are on (the command's default): every domain has exactly one
	// policies row and every MX host one tlsa row, whatever the kills hit,
	// since a domain's mx rows are never committed before them.
	polRows, tlsaRows := map[string]int{}, map[string]int{}
	if err := readEachPart[survey.PolicyRow](survey.PoliciesDir(out), func(_ string, r *survey.PolicyRow) { polRows[r.Domain]++ }); err != nil {
		t.Fatal(err)
	}
	if err := readEachPart[survey.TLSARow](survey.TLSADir(out), func(_ string, r *survey.TLSARow) { tlsaRows[r.MXHost]++ }); err != nil {
		t.Fatal(err)
	}
	for what, rows := range map[string]struct {
		got  map[string]int
		want map[string]bool
	}{"domains' policies": {polRows, want}, "MX hosts' tlsa": {tlsaRows, mxHosts}} {
		bad := 0
		for k := range rows.want {
			if rows.got[k] != 1 {
				bad++
			}
		}
		if bad > 0 || len(rows.got) != len(rows.want) {
			t.Errorf("%s rows: %d keys, %d wanted, %d without exactly one row", what, len(rows.got), len(rows.want), bad)
		}
	}
	t.Logf("%d domains, %d targets, %d MX hosts after %d kills, 1 interrupt and resumes; %d mx parts", len(partOf), len(probed), len(mxHosts), kills, len(mxParts))
}

// readEachPart reads every committed part whole, naming the part of each row.
func readEachPart[T any](dir string, fn func(part string, r *T)) error {
	parts, err := store.Parts(dir)
	if err != nil {
		return err
	}
	for _, p := range parts {
		if err := store.ReadPart(p, func(r *T) error { fn(p, r); return nil }); err != nil {
			return fmt.Errorf("part %s does not read back whole: %w", p, err)
		}
	}
	return nil
}
