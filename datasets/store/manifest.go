package store

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// WriteManifest replaces dir's manifest atomically: a reader sees the old
// one or the new one, never half of either.
func WriteManifest(dir string, m *survey.Manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding manifest: %w", err)
	}
	tmp := filepath.Join(dir, "."+survey.ManifestFile+".tmp")
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	if err := os.Rename(tmp, survey.ManifestPath(dir)); err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	return nil
}

// ReadManifest reads dir's manifest. Fields it does not know are ignored,
// so a newer scanner's manifest still reads.
func ReadManifest(dir string) (*survey.Manifest, error) {
	path := survey.ManifestPath(dir)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	var m survey.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("parsing manifest %s: %w", path, err)
	}
	return &m, nil
}
