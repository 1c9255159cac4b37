package pipeline

import (
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// newManifest starts the manifest of this run, status running, with the
// wiring's facts from the start (a killed coordinator's -resume needs its
// scan's NATS name).
func (s *Scan) newManifest() *survey.Manifest {
	host, _ := os.Hostname() // provenance only: an unknown host is ""
	m := &survey.Manifest{Tool: survey.Tool, ToolVersion: survey.Version, SchemaVersion: survey.SchemaVersion,
		Args: s.cfg.Args, Options: options(s.cfg), Host: host, Started: time.Now().UTC(), Status: survey.StatusRunning}
	if s.wiring.Manifest != nil {
		s.wiring.Manifest(m)
	}
	return m
}

// options are the manifest's record of cfg (defaults applied): every field
// tagged `option:"name"` in Config and in the configurations it embeds, by
// that name. A duration or other fmt.Stringer is recorded as its text, a
// list of Stringers as a list of texts, a field tagged "name,len" as its
// length, anything else as it is. So an option added to a configuration is
// recorded by its tag, and a recorded value is the one the scan used.
func options(cfg Config) map[string]any {
	m := map[string]any{}
	addOptions(m, reflect.ValueOf(cfg))
	return m
}

var stringerType = reflect.TypeFor[fmt.Stringer]()

func addOptions(m map[string]any, v reflect.Value) {
	for i := range v.NumField() {
		f, fv := v.Type().Field(i), v.Field(i)
		tag, ok := f.Tag.Lookup("option")
		if !ok {
			if fv.Kind() == reflect.Struct {
				addOptions(m, fv) // Resolve, Probe
			}
			continue
		}
		name, how, _ := strings.Cut(tag, ",")
		switch {
		case how == "len":
			m[name] = fv.Len()
		case f.Type.Implements(stringerType):
			m[name] = fv.Interface().(fmt.Stringer).String()
		case fv.Kind() == reflect.Slice && f.Type.Elem().Implements(stringerType):
			texts := make([]string, fv.Len())
			for j := range texts {
				texts[j] = fv.Index(j).Interface().(fmt.Stringer).String()
			}
			m[name] = texts
		default:
			m[name] = fv.Interface()
		}
	}
}

// manifestEvery is how often the manifest is rewritten while a scan runs,
// so that a killed scan leaves its counts behind.
const manifestEvery = 30 * time.Second

// refreshManifest rewrites a snapshot of the manifest with the counts so
// far.
func (s *Scan) refreshManifest() {
	snapshot := *s.m
	s.fillCounts(&snapshot)
	if err := store.WriteManifest(s.cfg.Out, &snapshot); err != nil {
		slog.Warn("updating manifest", "err", err)
	}
}

func (s *Scan) fillManifest(m *survey.Manifest) {
	s.fillCounts(m)
	m.Parts = map[string]int{}
	for _, t := range s.sink.tables() {
		parts, _ := store.Parts(filepath.Join(s.cfg.Out, t.name())) // a listing error leaves the count at 0; the rows counts below still hold
		m.Parts[t.name()] = len(parts)
		_, m.Counts[rowsWrittenKey(t.name())] = t.committed()
	}
}

// rowsWrittenKey names the manifest's count of the rows committed to a
// table: TABLE_rows_written, in the singular where the manifest always
// said so (probe_rows_written, policy_rows_written).
func rowsWrittenKey(table string) string {
	switch table {
	case survey.ProbesTable:
		return "probe_rows_written"
	case survey.PoliciesTable:
		return "policy_rows_written"
	}
	return table + "_rows_written"
}

func (s *Scan) fillCounts(m *survey.Manifest) {
	c := &s.c
	m.Counts = map[string]int64{
		"input_lines":        c.read.Load(),
		"duplicates":         c.duplicates.Load(),
		"invalid":            c.invalid.Load(),
		"domains_resolved":   c.resolved.Load(),
		"mx_rows":            c.mxRows.Load() + c.invalid.Load(),
		"targets":            c.targets.Load(),
		"probes":             c.probes.Load(),
		"resumed_skipped":    c.resumedSkip.Load(),
		"resumed_mx_rows":    c.resumedMXRows.Load(),
		"resumed_probe_rows": c.resumedProbeRows.Load(),
	}
	st := s.wiring.DNSStats()
	m.Counts["dns_queries"] = int64(st.Queries)
	m.Counts["dns_retries"] = int64(st.Retries)
	m.Counts["dns_tcp_fallbacks"] = int64(st.TCPFallbacks)
	m.Counts["dns_cache_hits"] = int64(st.CacheHits)
	if s.cfg.Policies {
		m.Counts["policy_rows"] = c.pol.rows.Load()
		m.Counts["tlsa_rows"] = c.pol.tlsaRows.Load()
		m.Counts["sts_fetches"] = c.pol.fetched.Load()
		m.Counts["resumed_policy_rows"] = c.pol.resumedRows.Load()
		m.Counts["resumed_tlsa_rows"] = c.pol.resumedTLSA.Load()
	}
	c.mu.Lock()
	m.Outcomes = maps.Clone(c.outcomes)
	m.ErrorClasses = maps.Clone(c.errorClasses)
	m.DNSStatuses = maps.Clone(c.dnsStatuses)
	c.mu.Unlock()
	if s.wiring.Manifest != nil {
		s.wiring.Manifest(m)
	}
}
