package analyze

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"

	"github.com/parquet-go/parquet-go"
)

// HostRow is one row of hosts.csv and hosts.parquet: the probe row's names
// and outcome beside everything the analyzer computed for it, so notebooks
// can recount any figure without re-implementing verification or matching.
//
// A column named like a column of survey.ProbeRow holds that column's value,
// copied by name (hostFromProbe, from the columns the analyzer reads), with
// the certificate described as the analyzer described it: a column added to
// HostRow and to probeRow, as survey.ProbeRow has it, needs no code here.
// The others are the analyzer's own.
type HostRow struct {
	IP              string   `parquet:"ip,dict"`
	Port            int32    `parquet:"port"`
	MXHost          string   `parquet:"mx_host,dict"`
	PTRHost         string   `parquet:"ptr_host"`
	Outcome         string   `parquet:"outcome,dict"`
	ErrorClass      string   `parquet:"error_class,dict"`
	BannerHost      string   `parquet:"banner_host"`
	EHLOHost        string   `parquet:"ehlo_host"`
	PostTLSEHLOHost string   `parquet:"post_tls_ehlo_host"`
	STARTTLSOffered bool     `parquet:"starttls_offered"`
	TLSVersion      string   `parquet:"tls_version,dict"`
	TLSGroup        string   `parquet:"tls_group,dict"`
	CertSHA256      string   `parquet:"cert_sha256"`
	CertSubjectCN   string   `parquet:"cert_subject_cn"`
	CertSANDNS      []string `parquet:"cert_san_dns,list"`
	CertIssuer      string   `parquet:"cert_issuer,dict"`
	CertKeyType     string   `parquet:"cert_key_type,dict"`
	CertKeyBits     int32    `parquet:"cert_key_bits"`

	Issuer         string `parquet:"issuer,dict"` // "CN / O", as in the issuers top list
	WithCert       bool   `parquet:"with_cert"`
	Trusted        bool   `parquet:"trusted"`
	SelfSigned     bool   `parquet:"self_signed"`
	Expired        bool   `parquet:"expired"`
	NotYetValid    bool   `parquet:"not_yet_valid"`
	Wildcard       bool   `parquet:"wildcard"`
	WildcardUsed   bool   `parquet:"wildcard_used"`
	CNOnly         bool   `parquet:"cn_only"`
	MatchMX        bool   `parquet:"match_mx"`
	MatchBanner    bool   `parquet:"match_banner"`
	MatchEHLO      bool   `parquet:"match_ehlo"`
	MatchPostTLS   bool   `parquet:"match_post_tls_ehlo"`
	MatchPTR       bool   `parquet:"match_ptr"`
	ValidForMX     bool   `parquet:"valid_for_mx"`
	ServerSoftware string `parquet:"server_software,dict"`
	MXProvider     string `parquet:"mx_provider,dict"`

	// DANE (docs/statistics.md): false and empty when the scan did not
	// measure it.
	TLSAPresent bool   `parquet:"tlsa_present"`
	TLSASecure  bool   `parquet:"tlsa_secure"`
	TLSABogus   bool   `parquet:"tlsa_bogus"`
	DANEValid   bool   `parquet:"dane_valid"`
	DANEResult  string `parquet:"dane_result,dict"` // the RFC 8460 result type a DANE sender reports
}

// hostFromProbe pairs the fields of HostRow with the fields of probeRow of
// the same column name: [host field, probe field]. hostCertFromProbe does
// the same with survey.ProbeRow for the cert_* columns, which describe the
// leaf (survey.ProbeRow.SetCert).
var (
	hostFromProbe     = sameColumns(reflect.TypeFor[HostRow](), reflect.TypeFor[probeRow](), "")
	hostCertFromProbe = sameColumns(reflect.TypeFor[HostRow](), reflect.TypeFor[survey.ProbeRow](), "cert_")
)

// sameColumns pairs the fields of dst and src that have the same column
// name, starting with prefix. A pair whose types differ is a programming
// error that every test of the package meets at once, so it panics.
func sameColumns(dst, src reflect.Type, prefix string) [][2]int {
	byName := map[string]int{}
	for i := range src.NumField() {
		if name := columnName(src.Field(i)); strings.HasPrefix(name, prefix) {
			byName[name] = i
		}
	}
	var pairs [][2]int
	for i := range dst.NumField() {
		j, ok := byName[columnName(dst.Field(i))]
		if !ok {
			continue
		}
		if dst.Field(i).Type != src.Field(j).Type {
			panic(fmt.Sprintf("analyze: %s.%s is %s, %s.%s is %s: one column, two types", dst.Name(), dst.Field(i).Name,
				dst.Field(i).Type, src.Name(), src.Field(j).Name, src.Field(j).Type))
		}
		pairs = append(pairs, [2]int{i, j})
	}
	return pairs
}

// table writes the same rows as CSV and Parquet, on a goroutine of its own
// (segments arrive over a channel, in order), so that encoding and
// compressing the exports overlaps the analysis. The CSV header comes from
// the Parquet tags so the two exports cannot drift apart.
type table[T any] struct {
	csvFile, pqFile *os.File
	csv             *bufio.Writer
	pq              *parquet.GenericWriter[T]
	buf             []T
	segments        chan *segment[T]
	done            chan error
	// free holds segments written and ready for reuse. A sync.Pool lost
	// them at every collection, and the next segments grew their buffers
	// again: half a gigabyte of garbage per million rows.
	free chan *segment[T]
}

// freeSegments bounds the segments kept for reuse: those in flight, a few
// per worker (runPass decodes 2 x workers row groups ahead) and those
// queued to the table's goroutine, come back to it; more are dropped.
const freeSegments = 16

// segment is a run of rows in export order with their CSV records, which
// the workers format (add) so that the table's goroutine only writes. The
// table takes segments back once written: a million rows then cost a few
// segments' worth of memory, not a million rows' worth of garbage.
type segment[T any] struct {
	rows []T
	csv  bytes.Buffer
	w    *csv.Writer // into csv; flushed by the table
	rec  []string
}

// exportRowGroup bounds the rows parquet-go buffers before writing a row group.
const exportRowGroup = 50_000

func newTable[T any](dir, name string) (*table[T], error) {
	t := &table[T]{segments: make(chan *segment[T], 4), done: make(chan error, 1), free: make(chan *segment[T], freeSegments)}
	var err error
	if t.csvFile, err = os.Create(filepath.Join(dir, name+".csv")); err != nil {
		return nil, fmt.Errorf("creating export: %w", err)
	}
	if t.pqFile, err = os.Create(filepath.Join(dir, name+".parquet")); err != nil {
		t.csvFile.Close()
		return nil, fmt.Errorf("creating export: %w", err)
	}
	t.csv = bufio.NewWriterSize(t.csvFile, 1<<20)
	t.pq = parquet.NewGenericWriter[T](t.pqFile, store.Compression(),
		parquet.MaxRowsPerRowGroup(exportRowGroup))
	var zero T
	header := csv.NewWriter(t.csv)
	err = header.Write(columnNames(reflect.TypeOf(zero)))
	header.Flush()
	if err = errors.Join(err, header.Error()); err != nil {
		t.close()
		return nil, fmt.Errorf("writing export: %w", err)
	}
	go t.run()
	return t, nil
}

// segment returns an empty segment for about n rows.
func (t *table[T]) segment(n int) *segment[T] {
	var seg *segment[T]
	select {
	case seg = <-t.free:
	default:
		seg = &segment[T]{}
		seg.w = csv.NewWriter(&seg.csv)
	}
	seg.rows = slices.Grow(seg.rows[:0], n)
	seg.csv.Reset()
	return seg
}

// add appends a row and its CSV record.
func (seg *segment[T]) add(row T) error {
	*seg.next() = row
	return seg.record()
}

// next appends a zero row for the caller to fill in place, which spares a
// copy of the row (and, for a row filled through reflection, its
// allocation); record then formats it. The pointer is valid until the next
// call.
func (seg *segment[T]) next() *T {
	var zero T
	seg.rows = append(seg.rows, zero)
	return &seg.rows[len(seg.rows)-1]
}

// record appends the CSV record of the last row, as the table's csv.Writer
// would format it.
func (seg *segment[T]) record() error {
	seg.rec = csvRecord(reflect.ValueOf(&seg.rows[len(seg.rows)-1]).Elem(), seg.rec[:0])
	return seg.w.Write(seg.rec)
}

// exportBatch rows are buffered before each Parquet write: the same writes
// whatever the segments, so that the file is the same byte for byte.
const exportBatch = 256

// run writes segments until the channel closes. After an error it keeps
// draining, so that senders never block, and reports the error at the end.
func (t *table[T]) run() {
	var err error
	for seg := range t.segments {
		seg.w.Flush()
		if err == nil {
			err = t.write(seg)
		}
		clear(seg.rows)
		select {
		case t.free <- seg:
		default:
		}
	}
	t.done <- err
}

func (t *table[T]) write(seg *segment[T]) error {
	if err := seg.w.Error(); err != nil {
		return fmt.Errorf("writing export: %w", err)
	}
	if _, err := t.csv.Write(seg.csv.Bytes()); err != nil {
		return fmt.Errorf("writing export: %w", err)
	}
	for _, row := range seg.rows {
		t.buf = append(t.buf, row)
		if len(t.buf) == exportBatch {
			if err := t.flushBuf(); err != nil {
				return err
			}
		}
	}
	return nil
}

// send hands a segment to the table's goroutine, which owns it from now.
func (t *table[T]) send(seg *segment[T]) {
	t.segments <- seg
}

func (t *table[T]) flushBuf() error {
	if _, err := t.pq.Write(t.buf); err != nil {
		return fmt.Errorf("writing export: %w", err)
	}
	clear(t.buf)
	t.buf = t.buf[:0]
	return nil
}

func (t *table[T]) finish() error {
	close(t.segments)
	err := <-t.done
	if err == nil {
		err = t.flushBuf()
	}
	err = errors.Join(err, t.csv.Flush(), t.pq.Close())
	return errors.Join(err, t.close())
}

// abort stops the table's goroutine and closes the files as they are.
func (t *table[T]) abort() {
	close(t.segments)
	<-t.done
	t.close()
}

func (t *table[T]) close() error {
	return errors.Join(t.csvFile.Close(), t.pqFile.Close())
}

func columnNames(rt reflect.Type) []string {
	names := make([]string, rt.NumField())
	for i := range names {
		names[i] = columnName(rt.Field(i))
	}
	return names
}

// columnName is a field's Parquet column name, the first part of its tag.
func columnName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("parquet"), ",")
	return name
}

func csvRecord(v reflect.Value, rec []string) []string {
	for i := 0; i < v.NumField(); i++ {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			rec = append(rec, f.String())
		case reflect.Bool:
			rec = append(rec, strconv.FormatBool(f.Bool()))
		case reflect.Int32, reflect.Int64:
			rec = append(rec, strconv.FormatInt(f.Int(), 10))
		case reflect.Slice:
			if names, ok := f.Interface().([]string); ok {
				rec = append(rec, strings.Join(names, " "))
				continue
			}
			rec = append(rec, fmt.Sprint(f.Interface()))
		default:
			rec = append(rec, fmt.Sprint(f.Interface()))
		}
	}
	return rec
}

// outputs are the files written while rows stream; the rest is written by
// finish once the counts are final.
type outputs struct {
	dir     string
	hosts   *table[HostRow]
	domains *table[DomainRow]
	done    bool
}

func openOutputs(dir string) (*outputs, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating report directory: %w", err)
	}
	o := &outputs{dir: dir}
	var err error
	if o.hosts, err = newTable[HostRow](dir, "hosts"); err != nil {
		return nil, err
	}
	if o.domains, err = newTable[DomainRow](dir, "domains"); err != nil {
		o.hosts.abort()
		return nil, err
	}
	return o, nil
}

// abort closes the files after a failed analysis; they stay behind,
// incomplete, next to no summary.json, which says that the run failed.
func (o *outputs) abort() {
	if o.done {
		return
	}
	o.hosts.abort()
	o.domains.abort()
}

// hostRow is a probe row's line in hosts.csv: what the analyzer parsed is
// what it counted, so the certificate is described as the analyzer
// described it, not as an older scanner may have, and a notebook's recount
// agrees with summary.json.
// row is a zero HostRow to fill; scratch is the caller's, reused from row
// to row.
func hostRow(row *HostRow, r *probeRow, h *hostResult, scratch *survey.ProbeRow) {
	dst, src := reflect.ValueOf(row).Elem(), reflect.ValueOf(r).Elem()
	for _, p := range hostFromProbe {
		dst.Field(p[0]).Set(src.Field(p[1]))
	}
	row.CertSHA256 = h.certSHA
	if h.withCert {
		seen := scratch
		seen.SetCert(h.cert.Leaf.Cert, "")
		seen.CertSHA256 = h.certSHA
		src := reflect.ValueOf(seen).Elem()
		for _, p := range hostCertFromProbe {
			dst.Field(p[0]).Set(src.Field(p[1]))
		}
	}
	row.ServerSoftware, row.MXProvider = h.software, h.provider
	row.TLSAPresent, row.TLSASecure, row.TLSABogus = h.tlsa.present(), h.tlsa.secure(), h.tlsa.bogus()
	row.DANEValid, row.DANEResult = h.daneValid, string(h.daneResult)
	if h.withCert {
		l := h.cert.Leaf
		row.Issuer, row.WithCert = l.IssuerLabel, true
		row.Trusted, row.SelfSigned = h.cert.Trusted, l.Cert.SelfSigned
		row.Expired, row.NotYetValid = h.cert.Expired, h.cert.NotYetValid
		row.Wildcard, row.WildcardUsed, row.CNOnly = l.Wildcard, h.wildcardUsed, l.CNOnly
		row.MatchMX, row.MatchBanner, row.MatchEHLO = h.matchMX, h.matchBanner, h.matchEHLO
		row.MatchPostTLS, row.MatchPTR, row.ValidForMX = h.matchPost, h.matchPTR, h.validForMX
	}
}

func (o *outputs) finish(s *Summary, top map[string]map[string]int64) error {
	o.done = true
	err := errors.Join(o.hosts.finish(), o.domains.finish())
	if err != nil {
		return err
	}
	for _, t := range topDefs {
		if err := writeTopCSV(filepath.Join(o.dir, "top_"+t.Name+".csv"), ranked(top[t.Name])); err != nil {
			return err
		}
	}
	if err := writeJSON(filepath.Join(o.dir, "summary.json"), s); err != nil {
		return err
	}
	if s.Comparison != nil {
		if err := writeJSON(filepath.Join(o.dir, "compare.json"), s.Comparison); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(o.dir, "report.md"), []byte(markdownReport(s)), 0o644); err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	html, err := htmlReport(s)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.dir, "report.html"), html, 0o644); err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	return nil
}

func writeTopCSV(path string, entries []TopEntry) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("writing top list: %w", err)
	}
	w := csv.NewWriter(f)
	werr := w.Write([]string{"name", "count"})
	for _, e := range entries {
		if werr != nil {
			break
		}
		werr = w.Write([]string{e.Name, strconv.FormatInt(e.Count, 10)})
	}
	w.Flush()
	if err := errors.Join(werr, w.Error(), f.Close()); err != nil {
		return fmt.Errorf("writing top list %s: %w", path, err)
	}
	return nil
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", filepath.Base(path), err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Base(path), err)
	}
	return nil
}
