package survey

import (
	"runtime/debug"
	"time"
)

// Tool names the program that writes a dataset, in every manifest.
const Tool = "mxsurvey"

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

// Manifest describes one scan directory (docs/schema.md). The scanner
// rewrites it atomically at the start, periodically, and at the end, so a
// killed scan still says "running" and what it had counted by then.
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
