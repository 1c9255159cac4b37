package e2e

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/lab"
)

// How a row is held to the truth, column by column, without a hand-kept
// list of columns:
//
//   - A column is a field of survey.MXRow, survey.ProbeRow, survey.TLSARow
//     or survey.PolicyRow, named by its Parquet tag (the part before the
//     first comma).
//   - The truth states a column when a field of lab.TruthDomain (for mx),
//     lab.TruthHost (for probes), lab.TruthTLSA (for tlsa) or
//     lab.TruthPolicy (a TruthDomain's policies row, with the domain's
//     domain) has that name as its JSON tag (the part before the first
//     comma). The nested MX hosts of a TruthDomain (lab.TruthMX) are
//     flattened into one truth row per host and address by mxTruthRows,
//     which names their fields host, preference, host_status and ips as the
//     columns mx_host, mx_preference, mx_host_status and ip, and keeps the
//     others under their own names.
//   - Every other column must be in noTruth, with the reason it has no truth
//     and, where something can be known, a weaker check.
//
// So a column added with a truth field of the same name is compared without
// being told; a column added with neither fails TestEveryColumnHasATruth; and
// a truth field added for a column listed in noTruth fails it too, until the
// column leaves the table.

// missingTruth is why a column has no truth, and what is checked instead.
type missingTruth struct {
	why string
	// check returns what is wrong with the row's column, or "". The row's
	// columns that have a truth are already compared, so a check may rely
	// on them (a probe's ehlo_code, for one). nil: nothing to check.
	check func(row any) string
}

// noTruth is keyed by "table.column".
var noTruth = map[string]missingTruth{
	"mx.input": {"the lab's list holds each domain by its normalised name", func(row any) string {
		if r := row.(*survey.MXRow); r.Input != r.Domain {
			return fmt.Sprintf("input %q differs from domain %q", r.Input, r.Domain)
		}
		return ""
	}},
	"mx.dns_error":     {"free text of the resolver; dns_status is the stable part", nil},
	"mx.mx_host_error": {"free text of the resolver; mx_host_status is the stable part", nil},
	"mx.ip_version":    {"follows from ip", checkIPVersion},
	"mx.resolved_at":   {"wall clock", nonZeroTime(func(row any) (time.Time, bool) { return row.(*survey.MXRow).ResolvedAt, true })},
	"probes.started_at": {"wall clock", nonZeroTime(func(row any) (time.Time, bool) {
		p := row.(*survey.ProbeRow)
		return p.StartedAt, p.Outcome != survey.OutcomeSkipped
	})},
	"probes.duration_ms":  {"wall clock; TestHostilePeers bounds it", nil},
	"probes.error":        {"free text of Go's errors; error_class is the stable part", nil},
	"probes.banner":       {"server text: the truth states it for the hostile cases only, in raw, held by compareRaw", nil},
	"probes.banner_raw":   {"server bytes: as banner", nil},
	"probes.ehlo_refusal": {"server text, as banner", nil},
	"probes.ehlo_reply":   {"server text, as banner", nil},
	"probes.ehlo_name_sent": {"the scanner's own setting, not the server's", func(row any) string {
		if p := row.(*survey.ProbeRow); p.EHLOCode != 0 && p.EHLONameSent != "scanner.mxsurvey.test" {
			return "ehlo_name_sent = " + p.EHLONameSent
		}
		return ""
	}},
	"probes.starttls_reply":      {"server text, as banner", nil},
	"probes.post_tls_ehlo_reply": {"server text, as banner", nil},
	"probes.tls_cipher": {"the client picks among the server's suites (Go's preference), so it is not the lab's to state", func(row any) string {
		if p := row.(*survey.ProbeRow); p.TLSVersion != "" && p.TLSCipher == "" {
			return "tls_cipher empty after a handshake"
		}
		return ""
	}},
	"probes.cert_chain": {"the DER itself; the truth states its cert_sha256 and cert_chain_len", func(row any) string {
		if p := row.(*survey.ProbeRow); p.TLSVersion != "" && len(p.CertChain) == 0 {
			return "cert_chain empty after a handshake"
		}
		return ""
	}},
	"probes.cert_san_ip": {"the lab's certificates carry no IP address, so the truth states none", func(row any) string {
		if p := row.(*survey.ProbeRow); len(p.CertSANIP) > 0 {
			return fmt.Sprintf("cert_san_ip = %q from a lab certificate", p.CertSANIP)
		}
		return ""
	}},
	"probes.cert_parse_error": {"free text of crypto/x509; the truth states which certificates Go cannot parse through error_class", nil},
	"probes.bytes_read":       {"depends on TLS record sizes; TestHostilePeers bounds it", nil},

	"tlsa.tlsa_error": {"free text of the resolver; tlsa_status is the stable part", nil},
	"tlsa.queried_at": {"wall clock", nonZeroTime(func(row any) (time.Time, bool) { return row.(*survey.TLSARow).QueriedAt, true })},

	"policies.mta_sts_error": {"free text of the resolver (or a note of what was cut); mta_sts_status is the stable part", nil},
	"policies.tlsrpt_error":  {"free text, as mta_sts_error", nil},
	"policies.queried_at":    {"wall clock", nonZeroTime(func(row any) (time.Time, bool) { return row.(*survey.PolicyRow).QueriedAt, true })},
	"policies.sts_started_at": {"wall clock", func(row any) string {
		if p := row.(*survey.PolicyRow); p.STSStartedAt.IsZero() == p.STSFetched {
			return fmt.Sprintf("sts_started_at %v with sts_fetched %v", p.STSStartedAt, p.STSFetched)
		}
		return ""
	}},
	"policies.sts_duration_ms": {"wall clock; TestHostilePeers bounds it", nil},
	"policies.sts_error": {"free text of Go's errors; sts_error_class is the stable part", func(row any) string {
		if p := row.(*survey.PolicyRow); (p.STSError == "") != (p.STSErrorClass == "") {
			return fmt.Sprintf("sts_error %q with sts_error_class %q", p.STSError, p.STSErrorClass)
		}
		return ""
	}},
	"policies.sts_cert_chain": {"the DER itself; the truth states which policies are WebPKI-valid through the verdicts", func(row any) string {
		if p := row.(*survey.PolicyRow); (len(p.STSCertChain) == 0) != (p.STSTLSVersion == "") {
			return fmt.Sprintf("%d certificates kept with sts_tls_version %q", len(p.STSCertChain), p.STSTLSVersion)
		}
		return ""
	}},
}

func checkIPVersion(row any) string {
	r := row.(*survey.MXRow)
	want := int32(0)
	switch {
	case strings.Contains(r.IP, ":"):
		want = 6
	case r.IP != "":
		want = 4
	}
	if r.IPVersion != want {
		return fmt.Sprintf("ip_version %d for ip %q", r.IPVersion, r.IP)
	}
	return ""
}

func nonZeroTime(get func(row any) (t time.Time, applies bool)) func(row any) string {
	return func(row any) string {
		if t, applies := get(row); applies && t.IsZero() {
			return "time not set"
		}
		return ""
	}
}

// tagName is the part of a struct tag before its first comma.
func tagName(f reflect.StructField, key string) string {
	name, _, _ := strings.Cut(f.Tag.Get(key), ",")
	return name
}

// columnNames are the columns of a row type, in field order.
func columnNames(rowType reflect.Type) []string {
	names := make([]string, rowType.NumField())
	for i := range names {
		names[i] = tagName(rowType.Field(i), "parquet")
	}
	return names
}

// truthColumns are the fields of a truth record, by JSON name.
func truthColumns(truth any) map[string]any {
	v := reflect.ValueOf(truth)
	cols := map[string]any{}
	for i := range v.NumField() {
		cols[tagName(v.Type().Field(i), "json")] = v.Field(i).Interface()
	}
	return cols
}

// mxTruthRows flattens a truth domain into the mx rows a scan writes: one
// per MX host and address (the scanner's MX cap applied), one per host
// without an address, one for the domain when it has no host.
func mxTruthRows(d lab.TruthDomain) []map[string]any {
	row := func(m lab.TruthMX, ip string) map[string]any {
		cols := truthColumns(d)
		for k, v := range truthColumns(m) {
			cols[k] = v
		}
		delete(cols, "host")
		delete(cols, "preference")
		delete(cols, "host_status")
		delete(cols, "ips")
		cols["mx_host"], cols["mx_preference"], cols["mx_host_status"], cols["ip"] = m.Host, m.Preference, m.HostStatus, ip
		return cols
	}
	var rows []map[string]any
	for _, m := range capMX(d.MX) {
		if len(m.IPs) == 0 {
			rows = append(rows, row(m, ""))
		}
		for _, ip := range m.IPs {
			rows = append(rows, row(m, ip))
		}
	}
	if len(rows) == 0 {
		rows = append(rows, row(lab.TruthMX{}, ""))
	}
	return rows
}

// policyTruth is the policies row the truth states for a domain.
func policyTruth(d lab.TruthDomain) map[string]any {
	cols := truthColumns(d.Policy)
	cols["domain"] = d.Domain
	return cols
}

// comparable maps a column's value and its truth's to one form: integers of
// any width as int64, times at the dataset's millisecond precision in UTC
// (a nil *time.Time and the zero time alike), lists and bytes with an empty
// one as nil.
func comparable(v any) any {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return comparable(reflect.Zero(rv.Type().Elem()).Interface())
		}
		return comparable(rv.Elem().Interface())
	}
	switch x := v.(type) {
	case time.Time:
		if x.IsZero() {
			return ""
		}
		return x.UTC().Truncate(time.Millisecond).Format(time.RFC3339Nano)
	case []string:
		if len(x) == 0 {
			return []string(nil)
		}
		return x
	case []byte:
		if len(x) == 0 {
			return []byte(nil)
		}
		return x
	}
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int()
	}
	return v
}

// compareRow holds one row (a pointer to a survey row) to its truth: every
// column the truth states must be equal, every other column passes its
// noTruth check. A column with neither is reported.
func compareRow(table string, row any, truth map[string]any) []string {
	var diffs []string
	v := reflect.ValueOf(row).Elem()
	for i, name := range columnNames(v.Type()) {
		if want, ok := truth[name]; ok {
			if got := v.Field(i).Interface(); !reflect.DeepEqual(comparable(got), comparable(want)) {
				diffs = append(diffs, fmt.Sprintf("%s = %#v, truth %#v", name, comparable(got), comparable(want)))
			}
			continue
		}
		m, ok := noTruth[table+"."+name]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("column %s.%s has no truth field and no reason in noTruth", table, name))
		case m.check != nil:
			if d := m.check(row); d != "" {
				diffs = append(diffs, d)
			}
		}
	}
	return diffs
}

// mxRowText shows the columns of an mx row (or truth row) that the truth
// states, in column order.
func mxRowText(cols map[string]any) string {
	stated := mxTruthRows(lab.TruthDomain{})[0]
	var b strings.Builder
	for _, name := range columnNames(reflect.TypeFor[survey.MXRow]()) {
		if _, ok := stated[name]; ok {
			fmt.Fprintf(&b, "%s=%v ", name, comparable(cols[name]))
		}
	}
	return strings.TrimSpace(b.String())
}

// compareMX holds a domain's mx rows to its flattened truth rows: each row
// is matched to a truth row with the same mx_host, ip and mx_preference and
// compared column by column; rows and truth rows left unmatched are
// reported.
func compareMX(d lab.TruthDomain, rows []survey.MXRow) []string {
	type key struct {
		host, ip string
		pref     int64
	}
	truth := map[key][]map[string]any{}
	for _, t := range mxTruthRows(d) {
		k := key{t["mx_host"].(string), t["ip"].(string), comparable(t["mx_preference"]).(int64)}
		truth[k] = append(truth[k], t)
	}
	var diffs []string
	for i := range rows {
		r := &rows[i]
		k := key{r.MXHost, r.IP, int64(r.MXPreference)}
		if len(truth[k]) == 0 {
			diffs = append(diffs, fmt.Sprintf("mx row the truth does not list: %s", mxRowText(rowColumns(r))))
			continue
		}
		t := truth[k][0]
		truth[k] = truth[k][1:]
		for _, diff := range compareRow("mx", r, t) {
			diffs = append(diffs, fmt.Sprintf("mx row %s %s: %s", r.MXHost, r.IP, diff))
		}
	}
	for _, left := range truth {
		for _, t := range left {
			diffs = append(diffs, fmt.Sprintf("no mx row for the truth's %s", mxRowText(t)))
		}
	}
	slices.Sort(diffs)
	return diffs
}

// rowColumns are a row's columns by name.
func rowColumns(r *survey.MXRow) map[string]any {
	v := reflect.ValueOf(r).Elem()
	cols := map[string]any{}
	for i, name := range columnNames(v.Type()) {
		cols[name] = v.Field(i).Interface()
	}
	return cols
}

// TestEveryColumnHasATruth: each column of the dataset is stated by the
// truth or listed in noTruth, never both, and noTruth names only columns.
// It needs no lab: the types are the contract.
func TestEveryColumnHasATruth(t *testing.T) {
	tables := map[string]struct {
		row   reflect.Type
		truth map[string]any
	}{
		"mx":       {reflect.TypeFor[survey.MXRow](), mxTruthRows(lab.TruthDomain{})[0]},
		"probes":   {reflect.TypeFor[survey.ProbeRow](), truthColumns(lab.TruthHost{})},
		"tlsa":     {reflect.TypeFor[survey.TLSARow](), truthColumns(lab.TruthTLSA{})},
		"policies": {reflect.TypeFor[survey.PolicyRow](), policyTruth(lab.TruthDomain{})},
	}
	listed := map[string]bool{}
	for table, tt := range tables {
		for _, name := range columnNames(tt.row) {
			key := table + "." + name
			_, hasTruth := tt.truth[name]
			_, excused := noTruth[key]
			listed[key] = true
			switch {
			case hasTruth && excused:
				t.Errorf("%s has a truth field now: take it out of noTruth (%q)", key, noTruth[key].why)
			case !hasTruth && !excused:
				t.Errorf("%s has no truth field (lab.TruthDomain/TruthMX/TruthHost/TruthTLSA/TruthPolicy JSON name %q) and no reason in noTruth", key, name)
			}
		}
	}
	for key := range noTruth {
		if !listed[key] {
			t.Errorf("noTruth lists %s, which is no column", key)
		}
	}
}
