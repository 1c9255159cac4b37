package pipeline

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/domains"
	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// prepareOut creates the output directory and its manifest, or on -resume
// continues the manifest of an earlier run and reads what that run
// committed: the domains done, and the targets referenced by committed mx
// rows that have no committed probe row.
func (s *Scan) prepareOut() error {
	s.done = domains.NewDedup()
	old, merr := store.ReadManifest(s.cfg.Out)
	switch {
	case merr == nil && !s.cfg.Resume:
		return fmt.Errorf("%s already holds a scan (status %s): use -resume to continue it, or another -o", s.cfg.Out, old.Status)
	case merr != nil && !errors.Is(merr, os.ErrNotExist):
		return fmt.Errorf("output directory %s unusable: %w", s.cfg.Out, merr)
	}
	if err := os.MkdirAll(s.cfg.Out, 0o755); err != nil {
		return fmt.Errorf("creating output directory: %w", err)
	}
	s.m = s.newManifest()
	if old != nil {
		if old.SchemaVersion != survey.SchemaVersion {
			return fmt.Errorf("%s was written with schema version %d, this mxsurvey writes %d: resume with the same version", s.cfg.Out, old.SchemaVersion, survey.SchemaVersion)
		}
		if err := s.checkResumePolicies(old); err != nil {
			return err
		}
		s.m.Started = old.Started
		s.m.Resumes = append(old.Resumes, time.Now().UTC())
		if s.m.Workers == nil {
			s.m.Workers = old.Workers // a cluster scan resumed on one machine
		}
		hosts, err := s.resume()
		if err != nil {
			return err
		}
		if err := s.resumePolicies(hosts); err != nil {
			return err
		}
	}
	return store.WriteManifest(s.cfg.Out, s.m)
}

// resume reads the rows an earlier run committed: it marks their domains
// done and their probed targets known, and keeps the targets referenced
// by an mx row but never probed (lost when that run was killed) to be
// queued first. It returns the MX hosts the mx rows name (policies on).
func (s *Scan) resume() (map[string]struct{}, error) {
	referenced := map[string]Target{}
	hosts := map[string]struct{}{}
	err := store.ReadAll(survey.MXDir(s.cfg.Out), func(row *survey.MXRow) error {
		// A row cannot tell an invalid input line from a valid domain
		// whose resolution failed with "error" (a CNAME loop): mark
		// both keys done; neither can collide with the other kind.
		s.done.Seen(row.Domain)
		if row.DNSStatus == survey.DNSError && row.MXHost == "" {
			s.done.Seen(invalidKey(row.Input))
		}
		if row.MXHost != "" && s.cfg.Policies {
			hosts[row.MXHost] = struct{}{}
		}
		for _, t := range TargetsOf([]survey.MXRow{*row}) {
			referenced[t.Key()] = t
		}
		s.c.resumedMXRows.Add(1)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading committed mx rows to resume: %w", err)
	}
	err = store.ReadAll(survey.ProbesDir(s.cfg.Out), func(row *survey.ProbeRow) error {
		k := survey.TargetKey(row.IP, row.MXHost)
		s.targets.Seen(k)
		if s.probed != nil {
			s.probed.Seen(k)
		}
		delete(referenced, k)
		s.c.resumedProbeRows.Add(1)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading committed probe rows to resume: %w", err)
	}
	for _, t := range referenced {
		s.carried = append(s.carried, t)
	}
	slog.Info("resuming", "dir", s.cfg.Out, "domains_done", s.done.Len(), "probes_done", s.targets.Len(), "targets_to_reprobe", len(s.carried))
	return hosts, nil
}
