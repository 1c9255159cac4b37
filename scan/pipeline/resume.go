package pipeline

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
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
func (r *run) prepareOut() (done *domains.Dedup, carried []target, m *survey.Manifest, err error) {
	done = domains.NewDedup()
	old, merr := store.ReadManifest(r.cfg.Out)
	switch {
	case merr == nil && !r.cfg.Resume:
		return nil, nil, nil, fmt.Errorf("%s already holds a scan (status %s): use -resume to continue it, or another -o", r.cfg.Out, old.Status)
	case merr != nil && !errors.Is(merr, os.ErrNotExist):
		return nil, nil, nil, fmt.Errorf("output directory %s unusable: %w", r.cfg.Out, merr)
	}
	if err := os.MkdirAll(r.cfg.Out, 0o755); err != nil {
		return nil, nil, nil, fmt.Errorf("creating output directory: %w", err)
	}
	m = r.newManifest()
	if old != nil {
		if old.SchemaVersion != survey.SchemaVersion {
			return nil, nil, nil, fmt.Errorf("%s was written with schema version %d, this mxsurvey writes %d: resume with the same version", r.cfg.Out, old.SchemaVersion, survey.SchemaVersion)
		}
		if err := r.checkResumePolicies(old); err != nil {
			return nil, nil, nil, err
		}
		m.Started = old.Started
		m.Resumes = append(old.Resumes, time.Now().UTC())
		if carried, err = r.resume(done); err != nil {
			return nil, nil, nil, err
		}
		if err := r.resumePolicies(done); err != nil {
			return nil, nil, nil, err
		}
	}
	if err := store.WriteManifest(r.cfg.Out, m); err != nil {
		return nil, nil, nil, err
	}
	return done, carried, m, nil
}

// resume reads the rows an earlier run committed: it marks their domains
// done and their probed targets known, and returns the targets referenced
// by an mx row but never probed (lost when that run was killed).
func (r *run) resume(done *domains.Dedup) (carried []target, err error) {
	referenced := map[string]target{}
	err = store.ReadAll(survey.MXDir(r.cfg.Out), func(row *survey.MXRow) error {
		// A row cannot tell an invalid input line from a valid domain
		// whose resolution failed with "error" (a CNAME loop): mark
		// both keys done; neither can collide with the other kind.
		done.Seen(row.Domain)
		if row.DNSStatus == survey.DNSError && row.MXHost == "" {
			done.Seen(invalidKey(row.Input))
		}
		if row.IP != "" {
			if ip, perr := netip.ParseAddr(row.IP); perr == nil {
				t := target{ip: ip, mxHost: row.MXHost}
				referenced[t.key()] = t
			}
		}
		r.c.resumedMXRows.Add(1)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading committed mx rows to resume: %w", err)
	}
	err = store.ReadAll(survey.ProbesDir(r.cfg.Out), func(row *survey.ProbeRow) error {
		k := survey.TargetKey(row.IP, row.MXHost)
		r.targets[k] = struct{}{}
		delete(referenced, k)
		r.c.resumedProbeRows.Add(1)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading committed probe rows to resume: %w", err)
	}
	for _, t := range referenced {
		carried = append(carried, t)
	}
	slog.Info("resuming", "dir", r.cfg.Out, "domains_done", done.Len(), "probes_done", len(r.targets), "targets_to_reprobe", len(carried))
	return carried, nil
}
