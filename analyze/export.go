package analyze

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"github.com/mxsurvey/mxsurvey/datasets/survey"

	"github.com/parquet-go/parquet-go"
)

// HostRow is one row of hosts.csv and hosts.parquet: the probe row's names
// and outcome beside everything the analyzer computed for it, so notebooks
// can recount any figure without re-implementing verification or matching.
type HostRow struct {
	IP              string `parquet:"ip,dict"`
	Port            int32  `parquet:"port"`
	MXHost          string `parquet:"mx_host,dict"`
	PTRHost         string `parquet:"ptr_host"`
	Outcome         string `parquet:"outcome,dict"`
	ErrorClass      string `parquet:"error_class,dict"`
	BannerHost      string `parquet:"banner_host"`
	EHLOHost        string `parquet:"ehlo_host"`
	PostTLSEHLOHost string `parquet:"post_tls_ehlo_host"`
	STARTTLSOffered bool   `parquet:"starttls_offered"`
	TLSVersion      string `parquet:"tls_version,dict"`
	TLSGroup        string `parquet:"tls_group,dict"`
	CertSHA256      string `parquet:"cert_sha256"`
	CertSubjectCN   string `parquet:"cert_subject_cn"`
	CertSANDNS      string `parquet:"cert_san_dns"`
	CertIssuer      string `parquet:"cert_issuer,dict"`
	KeyType         string `parquet:"key_type,dict"`
	KeyBits         int32  `parquet:"key_bits"`
	WithCert        bool   `parquet:"with_cert"`
	Trusted         bool   `parquet:"trusted"`
	SelfSigned      bool   `parquet:"self_signed"`
	Expired         bool   `parquet:"expired"`
	NotYetValid     bool   `parquet:"not_yet_valid"`
	Wildcard        bool   `parquet:"wildcard"`
	WildcardUsed    bool   `parquet:"wildcard_used"`
	CNOnly          bool   `parquet:"cn_only"`
	MatchMX         bool   `parquet:"match_mx"`
	MatchBanner     bool   `parquet:"match_banner"`
	MatchEHLO       bool   `parquet:"match_ehlo"`
	MatchPostTLS    bool   `parquet:"match_post_tls_ehlo"`
	MatchPTR        bool   `parquet:"match_ptr"`
	ValidForMX      bool   `parquet:"valid_for_mx"`
	ServerSoftware  string `parquet:"server_software,dict"`
	MXProvider      string `parquet:"mx_provider,dict"`
}

// table writes the same rows as CSV and Parquet. The CSV header comes from
// the Parquet tags so the two exports cannot drift apart.
type table[T any] struct {
	csvFile, pqFile *os.File
	csv             *csv.Writer
	pq              *parquet.GenericWriter[T]
	buf             []T
	rec             []string
}

// exportRowGroup bounds the rows parquet-go buffers before writing a row group.
const exportRowGroup = 50_000

func newTable[T any](dir, name string) (*table[T], error) {
	t := &table[T]{}
	var err error
	if t.csvFile, err = os.Create(filepath.Join(dir, name+".csv")); err != nil {
		return nil, fmt.Errorf("creating export: %w", err)
	}
	if t.pqFile, err = os.Create(filepath.Join(dir, name+".parquet")); err != nil {
		t.csvFile.Close()
		return nil, fmt.Errorf("creating export: %w", err)
	}
	t.csv = csv.NewWriter(t.csvFile)
	t.pq = parquet.NewGenericWriter[T](t.pqFile, parquet.Compression(&parquet.Zstd),
		parquet.MaxRowsPerRowGroup(exportRowGroup))
	var zero T
	if err := t.csv.Write(columnNames(reflect.TypeOf(zero))); err != nil {
		t.close()
		return nil, fmt.Errorf("writing export: %w", err)
	}
	return t, nil
}

// exportBatch rows are buffered before each Parquet write.
const exportBatch = 256

func (t *table[T]) write(row T) error {
	t.rec = csvRecord(reflect.ValueOf(row), t.rec[:0])
	if err := t.csv.Write(t.rec); err != nil {
		return fmt.Errorf("writing export: %w", err)
	}
	t.buf = append(t.buf, row)
	if len(t.buf) == exportBatch {
		return t.flushBuf()
	}
	return nil
}

func (t *table[T]) flushBuf() error {
	if _, err := t.pq.Write(t.buf); err != nil {
		return fmt.Errorf("writing export: %w", err)
	}
	t.buf = t.buf[:0]
	return nil
}

func (t *table[T]) finish() error {
	err := t.flushBuf()
	t.csv.Flush()
	err = errors.Join(err, t.csv.Error(), t.pq.Close())
	return errors.Join(err, t.close())
}

func (t *table[T]) close() error {
	return errors.Join(t.csvFile.Close(), t.pqFile.Close())
}

func columnNames(rt reflect.Type) []string {
	names := make([]string, rt.NumField())
	for i := range names {
		names[i], _, _ = strings.Cut(rt.Field(i).Tag.Get("parquet"), ",")
	}
	return names
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
		o.hosts.close()
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
	o.hosts.close()
	o.domains.close()
}

func (o *outputs) host(r *survey.ProbeRow, h *hostResult) error {
	row := HostRow{
		IP: r.IP, Port: r.Port, MXHost: r.MXHost, PTRHost: r.PTRHost,
		Outcome: r.Outcome, ErrorClass: r.ErrorClass,
		BannerHost: r.BannerHost, EHLOHost: r.EHLOHost, PostTLSEHLOHost: r.PostTLSEHLOHost,
		STARTTLSOffered: r.STARTTLSOffered, TLSVersion: r.TLSVersion, TLSGroup: r.TLSGroup,
		CertSHA256:     h.certSHA,
		CertSubjectCN:  r.CertSubjectCN,
		CertSANDNS:     strings.Join(r.CertSANDNS, " "),
		CertIssuer:     r.CertIssuer,
		KeyType:        r.CertKeyType,
		KeyBits:        r.CertKeyBits,
		ServerSoftware: h.software,
		MXProvider:     h.provider,
	}
	if h.withCert {
		// What the analyzer parsed is what it counted: export that, not the
		// scanner's copy, so a notebook's recount agrees with summary.json.
		l := h.cert.Leaf
		row.WithCert = true
		row.CertSubjectCN = l.SubjectCN
		row.CertSANDNS = strings.Join(l.DNSNames, " ")
		row.CertIssuer = l.Issuer
		row.KeyType, row.KeyBits = l.KeyType, int32(l.KeyBits)
		row.Trusted, row.SelfSigned = h.cert.Trusted, l.SelfSigned
		row.Expired, row.NotYetValid = h.cert.Expired, h.cert.NotYetValid
		row.Wildcard, row.WildcardUsed, row.CNOnly = l.Wildcard, h.wildcardUsed, l.CNOnly
		row.MatchMX, row.MatchBanner, row.MatchEHLO = h.matchMX, h.matchBanner, h.matchEHLO
		row.MatchPostTLS, row.MatchPTR, row.ValidForMX = h.matchPost, h.matchPTR, h.validForMX
	}
	return o.hosts.write(row)
}

func (o *outputs) domain(d *DomainRow) error {
	return o.domains.write(*d)
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
