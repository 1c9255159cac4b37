package pipeline

import (
	"fmt"
	"log/slog"
	"maps"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// newManifest starts the manifest of this run, status running.
func (r *run) newManifest() *survey.Manifest {
	host, _ := os.Hostname() // provenance only: an unknown host is ""
	opts := options(r.cfg)
	opts["dnssec"] = r.dnssecOption()
	return &survey.Manifest{Tool: survey.Tool, ToolVersion: survey.Version, SchemaVersion: survey.SchemaVersion,
		Args: r.cfg.Args, Options: opts, Host: host, Started: time.Now().UTC(), Status: survey.StatusRunning}
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

// refreshManifest rewrites a snapshot of m with the counts so far.
func (r *run) refreshManifest(m *survey.Manifest) {
	snapshot := *m
	r.fillCounts(&snapshot)
	if err := store.WriteManifest(r.cfg.Out, &snapshot); err != nil {
		slog.Warn("updating manifest", "err", err)
	}
}

func (r *run) fillManifest(m *survey.Manifest, tw *tables, pw *store.PartWriter[survey.ProbeRow]) {
	r.fillCounts(m)
	dirs := map[string]string{survey.MXTable: survey.MXDir(r.cfg.Out), survey.ProbesTable: survey.ProbesDir(r.cfg.Out)}
	if r.cfg.Policies {
		dirs[survey.TLSATable], dirs[survey.PoliciesTable] = survey.TLSADir(r.cfg.Out), survey.PoliciesDir(r.cfg.Out)
	}
	m.Parts = map[string]int{}
	for table, dir := range dirs {
		parts, _ := store.Parts(dir) // a listing error leaves the count at 0; the rows counts below still hold
		m.Parts[table] = len(parts)
	}
	written := tw.committed()
	_, written[survey.ProbesTable] = pw.Committed()
	m.Counts["mx_rows_written"] = written[survey.MXTable]
	m.Counts["probe_rows_written"] = written[survey.ProbesTable]
	if r.cfg.Policies {
		m.Counts["policy_rows_written"] = written[survey.PoliciesTable]
		m.Counts["tlsa_rows_written"] = written[survey.TLSATable]
	}
}

func (r *run) fillCounts(m *survey.Manifest) {
	c := &r.c
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
	st := r.resolver.Stats()
	m.Counts["dns_queries"] = int64(st.Queries)
	m.Counts["dns_retries"] = int64(st.Retries)
	m.Counts["dns_tcp_fallbacks"] = int64(st.TCPFallbacks)
	m.Counts["dns_cache_hits"] = int64(st.CacheHits)
	if r.cfg.Policies {
		m.Counts["policy_rows"] = r.pol.rows.Load()
		m.Counts["tlsa_rows"] = r.pol.tlsaRows.Load()
		m.Counts["sts_fetches"] = r.pol.fetched.Load()
		m.Counts["resumed_policy_rows"] = r.pol.resumedRows.Load()
		m.Counts["resumed_tlsa_rows"] = r.pol.resumedTLSA.Load()
	}
	c.mu.Lock()
	m.Outcomes = maps.Clone(c.outcomes)
	m.ErrorClasses = maps.Clone(c.errorClasses)
	m.DNSStatuses = maps.Clone(c.dnsStatuses)
	c.mu.Unlock()
}
