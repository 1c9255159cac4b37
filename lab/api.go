package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mxsurvey/mxsurvey/internal/clock"
	"github.com/mxsurvey/mxsurvey/lab/truth"
	"github.com/mxsurvey/mxsurvey/lab/world"
)

// lab is what the command, e2e and other users import; these name the parts
// of its subpackages they need, so that the split by job stays the lab's
// own business.
type (
	// WorldParams are the knobs that shape the world; Config embeds them.
	WorldParams = world.Params
	// Truth is the content of a lab directory's truth files.
	Truth = truth.Truth
	// TruthDomain is one line of truth-domains.jsonl.
	TruthDomain = truth.Domain
	// TruthMX is one MX host of a TruthDomain.
	TruthMX = truth.MX
	// TruthHost is one line of truth-hosts.jsonl: a probe row and its facts.
	TruthHost = truth.Host
	// TruthFacts are the analyzer's facts of a TruthHost.
	TruthFacts = truth.Facts
	// TruthText is what the lab knows of a column of server-sent text.
	TruthText = truth.Text
	// TruthPolicy is the policies row of a TruthDomain.
	TruthPolicy = truth.Policy
	// TruthDomainFacts are the verdicts of a TruthDomain under DANE and MTA-STS.
	TruthDomainFacts = truth.DomainFacts
	// TruthDANE are the DANE facts of a TruthHost.
	TruthDANE = truth.DANE
	// TruthTLSA is one line of truth-tlsa.jsonl: an MX host's tlsa row.
	TruthTLSA = truth.TLSA
)

// What the truth assumes of the scanner's caps (world.AssumeMaxReplyLines).
const (
	AssumeMaxReplyLines = world.AssumeMaxReplyLines
	AssumeMaxReplyBytes = world.AssumeMaxReplyBytes
	AssumeMaxLineBytes  = world.AssumeMaxLineBytes
	AssumeMaxChainCerts = world.AssumeMaxChainCerts
	AssumeMaxMX         = world.AssumeMaxMX
	AssumeMaxTXTRecords = world.AssumeMaxTXTRecords
	AssumeMaxTXTBytes   = world.AssumeMaxTXTBytes
	AssumeMaxBodyKept   = world.AssumeMaxBodyKept
	AssumeMaxBodyRead   = world.AssumeMaxBodyRead
)

// GroupHostile names the hostile cases in WorldParams.Cases.
const GroupHostile = world.GroupHostile

// HostileCaseNames lists the cases of the hostile group in catalogue order.
func HostileCaseNames() []string { return world.HostileCaseNames() }

// ReadTruth loads truth-domains.jsonl, truth-hosts.jsonl and
// truth-tlsa.jsonl from a lab directory. While the directory's lab.json says the truth is still being
// written it waits (WaitTruthFiles); the files appear only complete, so it
// never reads half of one.
func ReadTruth(dir string) (*Truth, error) {
	if err := WaitTruthFiles(context.Background(), dir); err != nil {
		return nil, err
	}
	return truth.ReadFiles(filepath.Join(dir, TruthDomainsFile), filepath.Join(dir, TruthHostsFile), filepath.Join(dir, TruthTLSAFile))
}

// truthWaitBound bounds how long WaitTruthFiles waits for a lab that is
// alive but does not finish.
const truthWaitBound = 30 * time.Minute

// WaitTruthFiles waits until the lab.json in dir says truth_ready. It returns
// at once when there is no lab.json (files from elsewhere), and an error when
// the lab wrote no truth, failed writing it, or its process is gone.
func WaitTruthFiles(ctx context.Context, dir string) error {
	deadline := time.Now().Add(truthWaitBound)
	for {
		b, err := os.ReadFile(filepath.Join(dir, InfoFile))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		var info Info
		if err := json.Unmarshal(b, &info); err != nil {
			return fmt.Errorf("lab: %s: %w", InfoFile, err)
		}
		switch {
		case info.TruthReady:
			return nil
		case info.TruthError != "":
			return fmt.Errorf("lab: %s: writing the truth failed: %s", dir, info.TruthError)
		case !info.TruthWritten:
			return fmt.Errorf("lab: %s: the lab wrote no truth files (-no-truth)", dir)
		case info.PID != 0 && !processAlive(info.PID):
			return fmt.Errorf("lab: %s: the truth files are incomplete and the lab (pid %d) is gone", dir, info.PID)
		case time.Now().After(deadline):
			return fmt.Errorf("lab: %s: the truth files are not complete after %v", dir, truthWaitBound)
		}
		if err := clock.Sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}

// CaseNames lists every case of the table in catalogue order.
func CaseNames() []string { return world.CaseNames() }

// ParseCases reads a -cases spec into WorldParams.Cases: comma-separated
// name=share pairs; "default" sets every case not named, "hostile" every
// hostile case not named.
func ParseCases(spec string) (map[string]float64, error) { return world.ParseCases(spec) }
