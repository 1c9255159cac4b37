package domains

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/miekg/dns"
)

// Entry is one input domain.
type Entry struct {
	Line   int    // 1-based line number in the input (for zone files: line of the record)
	Rank   int64  // from CSV rank column; 0 if none
	Input  string // the domain as written in the input (trimmed)
	Domain string // normalised A-label form; empty when Err != ""
	Err    string // non-empty: why the line is not a valid domain
}

// Format is the form of an input file.
type Format string

const (
	FormatAuto Format = "auto" // list or CSV detected per line: a line with a comma is rank,domain
	FormatList Format = "list"
	FormatCSV  Format = "csv"
	FormatZone Format = "zone"
)

// ParseFormat parses a format name as given on a command line; "" means
// [FormatAuto].
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case "":
		return FormatAuto, nil
	case FormatAuto, FormatList, FormatCSV, FormatZone:
		return f, nil
	}
	return "", fmt.Errorf("datasets: unknown input format %q (want auto, list, csv or zone)", s)
}

const (
	// MaxLineLen is the longest line, without its line ending, read as a
	// record. A longer line yields an Entry with Err "line too long".
	MaxLineLen = 4096
	// bufSize is the read buffer; it bounds the memory held per line.
	bufSize = 64 << 10
	// maxZoneLine bounds a zone file line; the zone lexer would otherwise
	// grow its token buffer without limit.
	maxZoneLine = 64 << 10
	// maxInputPrefix is how much of an overlong line is kept in Entry.Input.
	maxInputPrefix = 256
)

// ErrZoneLineTooLong is returned (wrapped) by Next when a zone file line
// exceeds 64 KiB.
var ErrZoneLineTooLong = errors.New("zone file line longer than 64 KiB")

// Reader streams the entries of one input. It is not safe for concurrent use.
type Reader struct {
	name    string // for error messages
	format  Format
	closers []io.Closer
	br      *bufio.Reader
	err     error // sticky: io.EOF or the first read error

	line    int // lines read so far
	records int // records (non-blank, non-comment lines) seen so far

	// zone files
	zp         *dns.ZoneParser
	zc         *lineCounter
	apex, prev string
}

// Open opens path ("-" = os.Stdin), transparently gunzips, and returns a
// streaming reader. The caller must Close it (Close does not close stdin).
func Open(path string, format Format) (*Reader, error) {
	if path == "-" {
		return newReader(os.Stdin, format, "stdin", nil)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("datasets: %w", err)
	}
	r, err := newReader(f, format, path, f)
	if err != nil {
		// The open error is what matters; a close error of a read-only
		// file adds nothing.
		_ = f.Close()
		return nil, err
	}
	return r, nil
}

// NewReader wraps any io.Reader (gzip detected by magic bytes). Closing the
// Reader does not close r.
//
// It fails when format is unknown, when r cannot be read, or when r starts
// with the gzip magic but has no valid gzip header.
func NewReader(r io.Reader, format Format) (*Reader, error) {
	return newReader(r, format, "input", nil)
}

func newReader(r io.Reader, format Format, name string, c io.Closer) (*Reader, error) {
	format, err := ParseFormat(string(format))
	if err != nil {
		return nil, err
	}
	rd := &Reader{name: name, format: format}
	if c != nil {
		rd.closers = append(rd.closers, c)
	}
	src, gz, err := decompress(r, name)
	if err != nil {
		return nil, err
	}
	if gz != nil {
		rd.closers = append([]io.Closer{gz}, rd.closers...)
	}
	rd.br = src
	if format == FormatZone {
		rd.zc = &lineCounter{br: src, max: maxZoneLine}
		// Origin "." makes relative names before any $ORIGIN absolute,
		// which is what a file without $ORIGIN means in practice.
		// $INCLUDE stays disabled (the default): it would read other files.
		rd.zp = dns.NewZoneParser(rd.zc, ".", "")
		rd.zp.SetDefaultTTL(3600) // TTLs are irrelevant here; don't fail on a missing one
	}
	return rd, nil
}

// decompress buffers r and, when it starts with the gzip magic bytes,
// returns a buffered reader of the decompressed stream and the gzip reader.
func decompress(r io.Reader, name string) (*bufio.Reader, *gzip.Reader, error) {
	br := bufio.NewReaderSize(r, bufSize)
	magic, err := br.Peek(2)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("datasets: reading %s: %w", name, err)
	}
	if len(magic) < 2 || magic[0] != 0x1f || magic[1] != 0x8b {
		return br, nil, nil
	}
	gz, err := gzip.NewReader(br)
	if err != nil {
		return nil, nil, fmt.Errorf("datasets: reading gzip header of %s: %w", name, err)
	}
	return bufio.NewReaderSize(gz, bufSize), gz, nil
}

// Close releases the decompressor and the file opened by Open.
func (r *Reader) Close() error {
	var errs []error
	for _, c := range r.closers {
		if err := c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	r.closers = nil
	if r.err == nil {
		r.err = errors.New("datasets: reader closed")
	}
	return errors.Join(errs...)
}

// Next returns the next entry, io.EOF at the end; other errors are I/O
// errors (wrapped with %w, saying what was being read), or for zone files
// parse errors (a *dns.ParseError, with its line). After an error, Next
// returns the same error again.
//
// An entry that is not a valid domain is not an error: it has Err set.
func (r *Reader) Next() (Entry, error) {
	if r.err != nil {
		return Entry{}, r.err
	}
	var (
		e   Entry
		err error
	)
	if r.zp != nil {
		e, err = r.nextZone()
	} else {
		e, err = r.nextLine()
	}
	if err != nil {
		r.err = err
	}
	return e, err
}

func (r *Reader) nextLine() (Entry, error) {
	for {
		raw, tooLong, err := r.readLine()
		if err != nil {
			if err == io.EOF {
				return Entry{}, io.EOF
			}
			return Entry{}, fmt.Errorf("datasets: reading %s line %d: %w", r.name, r.line+1, err)
		}
		r.line++
		if r.line == 1 {
			raw = bytes.TrimPrefix(raw, []byte("\ufeff")) // UTF-8 byte order mark
		}
		if tooLong {
			r.records++
			return Entry{Line: r.line, Input: clean(truncate(string(raw), maxInputPrefix)), Err: "line too long"}, nil
		}
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 || raw[0] == '#' {
			continue
		}
		e, skip := r.parseRecord(string(raw))
		r.records++
		if skip {
			continue
		}
		return e, nil
	}
}

// readLine returns the next line without its line ending. A line longer than
// MaxLineLen is consumed up to its end and returned as a prefix with tooLong
// set. At the end of input it returns io.EOF.
func (r *Reader) readLine() (line []byte, tooLong bool, err error) {
	line, err = r.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		prefix := bytes.Clone(line[:maxInputPrefix+utf8.UTFMax])
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = r.br.ReadSlice('\n')
		}
		if err != nil && err != io.EOF {
			return nil, false, err
		}
		return prefix, true, nil
	}
	if err == io.EOF {
		if len(line) == 0 {
			return nil, false, io.EOF
		}
		err = nil // last line without a newline
	}
	if err != nil {
		return nil, false, err
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) > MaxLineLen {
		return line[:maxInputPrefix+utf8.UTFMax], true, nil
	}
	return line, false, nil
}

// parseRecord turns one trimmed, non-comment line into an Entry. skip is set
// for a CSV header line.
func (r *Reader) parseRecord(s string) (e Entry, skip bool) {
	e.Line = r.line
	if r.records == 0 && isHeader(s, r.format) {
		return e, true
	}
	if !isCSV(s, r.format) {
		e.Input = clean(s)
		e.Domain, e.Err = normalizeEntry(s)
		return e, false
	}
	f, nf, err := splitCSV(s)
	if err != nil {
		e.Input = clean(s)
		e.Err = "invalid CSV: " + err.Error()
		return e, false
	}
	if nf == 1 { // FormatCSV, a line without a comma: a domain without rank
		dom := strings.TrimSpace(f[0])
		e.Input = clean(dom)
		e.Domain, e.Err = normalizeEntry(dom)
		return e, false
	}
	rankStr, dom := strings.TrimSpace(f[0]), strings.TrimSpace(f[1])
	rank, rankErr := parseRank(rankStr)
	e.Input = clean(dom)
	if rankErr {
		e.Err = fmt.Sprintf("invalid rank %q", truncate(rankStr, 32))
		return e, false
	}
	e.Rank = rank
	e.Domain, e.Err = normalizeEntry(dom)
	return e, false
}

// isCSV says whether the trimmed record line s is read as CSV in format.
func isCSV(s string, format Format) bool {
	return format == FormatCSV || format == FormatAuto && strings.IndexByte(s, ',') >= 0
}

// isHeader says whether s, the first record line of a list or CSV input
// (trimmed), is a header such as "rank,domain": read as CSV, with no
// number where the rank goes and no dot where the domain goes. Reader
// skips it and Count does not count it, so a progress total is the number
// of domains.
func isHeader(s string, format Format) bool {
	if !isCSV(s, format) {
		return false
	}
	f, nf, err := splitCSV(s)
	if err != nil || nf != 2 {
		return false
	}
	_, badRank := parseRank(strings.TrimSpace(f[0]))
	return badRank && strings.IndexByte(strings.TrimSpace(f[1]), '.') < 0
}

func normalizeEntry(s string) (domain, reason string) {
	d, err := Normalize(s)
	if err != nil {
		return "", err.Error()
	}
	return d, ""
}

// parseRank parses a rank: a non-negative decimal integer, or empty (no
// rank). 0 is accepted and means no rank, as in Entry. bad reports an
// invalid rank.
func parseRank(s string) (rank int64, bad bool) {
	if s == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, true
	}
	return n, false
}

// splitCSV returns the first one or two fields of a CSV line (RFC 4180
// quoting, within one line); further fields are ignored.
func splitCSV(s string) (f [2]string, nf int, err error) {
	i := 0
	for {
		var field string
		field, i, err = csvField(s, i)
		if err != nil {
			return f, nf, err
		}
		f[nf] = field
		nf++
		if nf == len(f) || i >= len(s) {
			return f, nf, nil
		}
		i++ // the comma
	}
}

// csvField reads the field starting at s[i] and returns it with the index of
// the comma that ends it, or len(s).
func csvField(s string, i int) (string, int, error) {
	j := i
	for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
		j++
	}
	if j == len(s) || s[j] != '"' {
		if k := strings.IndexByte(s[i:], ','); k >= 0 {
			return s[i : i+k], i + k, nil
		}
		return s[i:], len(s), nil
	}
	var b strings.Builder
	k := j + 1
	for {
		if k >= len(s) {
			return "", 0, errors.New("unterminated quote")
		}
		if s[k] == '"' {
			if k+1 < len(s) && s[k+1] == '"' {
				b.WriteByte('"')
				k += 2
				continue
			}
			k++
			break
		}
		b.WriteByte(s[k])
		k++
	}
	for k < len(s) && (s[k] == ' ' || s[k] == '\t') {
		k++
	}
	if k < len(s) && s[k] != ',' {
		return "", 0, errors.New("text after closing quote")
	}
	return b.String(), k, nil
}

// clean makes s valid UTF-8 (invalid bytes become U+FFFD), so that Input can
// be stored in a string column.
func clean(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
