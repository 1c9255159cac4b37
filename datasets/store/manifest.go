package store

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"
)

// Version is the tool version written into every part and manifest: the
// module version when built from a tagged module, else the VCS revision.
var Version = toolVersion()

func toolVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "devel-" + s.Value[:12]
		}
	}
	return "devel"
}

// Scan statuses in the manifest.
const (
	StatusRunning     = "running"
	StatusComplete    = "complete"
	StatusInterrupted = "interrupted"
	StatusFailed      = "failed"
)

// Manifest describes one scan directory. It is rewritten atomically at the
// start, periodically, and at the end, so a killed scan still says
// "running" and what it had counted by then.
type Manifest struct {
	Tool          string            `json:"tool"`
	ToolVersion   string            `json:"tool_version"`
	SchemaVersion int               `json:"schema_version"`
	Args          []string          `json:"args"`
	Options       map[string]any    `json:"options"`
	Host          string            `json:"host"`
	Started       time.Time         `json:"started"`
	Ended         *time.Time        `json:"ended,omitempty"`
	Status        string            `json:"status"`
	Error         string            `json:"error,omitempty"`
	Resumes       []time.Time       `json:"resumes,omitempty"`
	Counts        map[string]int64  `json:"counts"`
	Outcomes      map[string]int64  `json:"outcomes"`
	ErrorClasses  map[string]int64  `json:"error_classes"`
	DNSStatuses   map[string]int64  `json:"dns_statuses"`
	Parts         map[string]int    `json:"parts"`
	Extra         map[string]string `json:"extra,omitempty"`
}

// ManifestName is the manifest's file name inside a scan directory.
const ManifestName = "manifest.json"

// WriteManifest replaces dir/manifest.json atomically.
func WriteManifest(dir string, m *Manifest) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding manifest: %w", err)
	}
	tmp := filepath.Join(dir, "."+ManifestName+".tmp")
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, ManifestName)); err != nil {
		return fmt.Errorf("writing manifest: %w", err)
	}
	return nil
}

// ReadManifest reads dir/manifest.json.
func ReadManifest(dir string) (*Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		return nil, fmt.Errorf("reading manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("parsing manifest %s: %w", filepath.Join(dir, ManifestName), err)
	}
	return &m, nil
}
