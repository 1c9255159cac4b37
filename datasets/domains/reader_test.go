package domains

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func gz(t testing.TB, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	if _, err := w.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func readAll(t testing.TB, r *Reader) []Entry {
	t.Helper()
	var out []Entry
	for {
		e, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("Next after %d entries: %v", len(out), err)
		}
		out = append(out, e)
	}
}

func ok(line int, rank int64, in, domain string) Entry {
	return Entry{Line: line, Rank: rank, Input: in, Domain: domain}
}

func bad(line int, rank int64, in, reason string) Entry {
	return Entry{Line: line, Rank: rank, Input: in, Err: reason}
}

func TestReader(t *testing.T) {
	longLine := strings.Repeat("a", MaxLineLen-4) + ".com" // exactly MaxLineLen: read, but invalid
	tooLong := strings.Repeat("b", 100_000)                // longer than the read buffer
	tests := []struct {
		name   string
		format Format
		in     string
		want   []Entry
	}{
		{
			name:   "list with comments and blank lines",
			format: FormatList,
			in:     "# top domains\n\nexample.com\n  Example.ORG.  \n\t\n# end\nbücher.example\n",
			want: []Entry{
				ok(3, 0, "example.com", "example.com"),
				ok(4, 0, "Example.ORG.", "example.org"),
				ok(7, 0, "bücher.example", "xn--bcher-kva.example"),
			},
		},
		{
			name:   "list keeps invalid lines",
			format: FormatList,
			in:     "example.com\ncom\n1,example.net\n*.example\n192.0.2.1\n-bad-.example\nr3---sn-abc.example\n",
			want: []Entry{
				ok(1, 0, "example.com", "example.com"),
				bad(2, 0, "com", "invalid domain: single label"),
				bad(3, 0, "1,example.net", `invalid domain: invalid character ","`),
				bad(4, 0, "*.example", `invalid domain: invalid character "*"`),
				bad(5, 0, "192.0.2.1", "invalid domain: IP address literal"),
				bad(6, 0, "-bad-.example", `invalid domain: label "-bad-" starts or ends with a hyphen`),
				ok(7, 0, "r3---sn-abc.example", "r3---sn-abc.example"),
			},
		},
		{
			name:   "list without final newline",
			format: FormatList,
			in:     "a.example\nb.example",
			want:   []Entry{ok(1, 0, "a.example", "a.example"), ok(2, 0, "b.example", "b.example")},
		},
		{
			name:   "empty input",
			format: FormatAuto,
			in:     "",
		},
		{
			name:   "only comments",
			format: FormatCSV,
			in:     "# nothing\n\n",
		},
		{
			name:   "csv without header",
			format: FormatCSV,
			in:     "1,google.com\n2,Facebook.com\n3,bücher.example\n",
			want: []Entry{
				ok(1, 1, "google.com", "google.com"),
				ok(2, 2, "Facebook.com", "facebook.com"),
				ok(3, 3, "bücher.example", "xn--bcher-kva.example"),
			},
		},
		{
			name:   "csv with header",
			format: FormatCSV,
			in:     "rank,domain\n1,google.com\n2,youtube.com\n",
			want:   []Entry{ok(2, 1, "google.com", "google.com"), ok(3, 2, "youtube.com", "youtube.com")},
		},
		{
			name:   "csv header after comment",
			format: FormatAuto,
			in:     "# Tranco list\nRank,Domain,Category\n1,google.com,search\n",
			want:   []Entry{ok(3, 1, "google.com", "google.com")},
		},
		{
			name:   "header only on the first record",
			format: FormatCSV,
			in:     "1,google.com\nrank,domain\n",
			want:   []Entry{ok(1, 1, "google.com", "google.com"), bad(2, 0, "domain", `invalid rank "rank"`)},
		},
		{
			name:   "csv quoted fields and extra columns",
			format: FormatCSV,
			in:     "\"1\",\"google.com\"\n2, \"youtube.com\" ,extra,more\n3,\"a\"\"b.com\"\n4,\"x.com\n5,\"y.com\"z\n",
			want: []Entry{
				ok(1, 1, "google.com", "google.com"),
				ok(2, 2, "youtube.com", "youtube.com"),
				bad(3, 3, `a"b.com`, `invalid domain: invalid character "\""`),
				bad(4, 0, `4,"x.com`, "invalid CSV: unterminated quote"),
				bad(5, 0, `5,"y.com"z`, "invalid CSV: text after closing quote"),
			},
		},
		{
			name:   "csv bad ranks",
			format: FormatCSV,
			in:     "1,a.example\nx,b.example\n-3,c.example\n1.5,d.example\n99999999999999999999,e.example\n,f.example\n0,g.example\n",
			want: []Entry{
				ok(1, 1, "a.example", "a.example"),
				bad(2, 0, "b.example", `invalid rank "x"`),
				bad(3, 0, "c.example", `invalid rank "-3"`),
				bad(4, 0, "d.example", `invalid rank "1.5"`),
				bad(5, 0, "e.example", `invalid rank "99999999999999999999"`),
				ok(6, 0, "f.example", "f.example"), // empty rank: none
				ok(7, 0, "g.example", "g.example"), // 0: none
			},
		},
		{
			name:   "csv bad first rank with a domain is not a header",
			format: FormatCSV,
			in:     "abc,google.com\n",
			want:   []Entry{bad(1, 0, "google.com", `invalid rank "abc"`)},
		},
		{
			name:   "csv edge fields",
			format: FormatCSV,
			in:     "1,\n2,com\nplain.example\n",
			want: []Entry{
				bad(1, 1, "", "invalid domain: empty"),
				bad(2, 2, "com", "invalid domain: single label"),
				ok(3, 0, "plain.example", "plain.example"), // no comma: a domain without rank
			},
		},
		{
			name:   "auto mixes list and csv lines",
			format: FormatAuto,
			in:     "1,google.com\nexample.org\n3,example.net\n",
			want: []Entry{
				ok(1, 1, "google.com", "google.com"),
				ok(2, 0, "example.org", "example.org"),
				ok(3, 3, "example.net", "example.net"),
			},
		},
		{
			name:   "empty format means auto",
			format: "",
			in:     "1,google.com\n",
			want:   []Entry{ok(1, 1, "google.com", "google.com")},
		},
		{
			name:   "CRLF line endings",
			format: FormatAuto,
			in:     "rank,domain\r\n1,google.com\r\n\r\nexample.org\r\n",
			want:   []Entry{ok(2, 1, "google.com", "google.com"), ok(4, 0, "example.org", "example.org")},
		},
		{
			name:   "UTF-8 BOM",
			format: FormatCSV,
			in:     "\ufeff1,google.com\n2,\ufeffbad.com\n",
			want: []Entry{
				ok(1, 1, "google.com", "google.com"),
				ok(2, 2, "\ufeffbad.com", "bad.com"), // elsewhere U+FEFF is ignored by UTS #46 mapping
			},
		},
		{
			name:   "UTF-8 BOM before header",
			format: FormatAuto,
			in:     "\ufeffrank,domain\n1,google.com\n",
			want:   []Entry{ok(2, 1, "google.com", "google.com")},
		},
		{
			name:   "long lines",
			format: FormatList,
			in:     longLine + "\na" + longLine + "\n" + tooLong + "\nok.example\n" + tooLong,
			want: []Entry{
				bad(1, 0, longLine, "invalid domain: label longer than 63 bytes"),
				bad(2, 0, strings.Repeat("a", maxInputPrefix)+"…", "line too long"),
				bad(3, 0, strings.Repeat("b", maxInputPrefix)+"…", "line too long"),
				ok(4, 0, "ok.example", "ok.example"),
				bad(5, 0, strings.Repeat("b", maxInputPrefix)+"…", "line too long"),
			},
		},
		{
			name:   "invalid UTF-8 input is cleaned",
			format: FormatList,
			in:     "ex\xffample.com\n",
			want:   []Entry{bad(1, 0, "ex\uFFFDample.com", "invalid domain: not valid UTF-8")},
		},
	}
	for _, tt := range tests {
		for _, compressed := range []bool{false, true} {
			name := tt.name
			in := []byte(tt.in)
			if compressed {
				name += " gzip"
				in = gz(t, tt.in)
			}
			t.Run(name, func(t *testing.T) {
				r, err := NewReader(bytes.NewReader(in), tt.format)
				if err != nil {
					t.Fatal(err)
				}
				got := readAll(t, r)
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("entries:\n got %+v\nwant %+v", got, tt.want)
				}
				if _, err := r.Next(); err != io.EOF {
					t.Errorf("Next after EOF = %v, want io.EOF", err)
				}
				if err := r.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
		}
	}
}

func TestReaderFormatError(t *testing.T) {
	if _, err := NewReader(strings.NewReader(""), "tsv"); err == nil {
		t.Error("NewReader with format tsv: no error")
	}
	for _, s := range []string{"", "auto", "LIST", " csv ", "zone"} {
		if _, err := ParseFormat(s); err != nil {
			t.Errorf("ParseFormat(%q): %v", s, err)
		}
	}
}

// errReader returns data, then err.
type errReader struct {
	data []byte
	err  error
}

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestReaderIOErrors(t *testing.T) {
	boom := errors.New("disk on fire")

	// An error before anything was read.
	if _, err := NewReader(&errReader{err: boom}, FormatAuto); !errors.Is(err, boom) {
		t.Errorf("NewReader on failing reader: %v, want %v", err, boom)
	}

	// Gzip magic without a valid header.
	if _, err := NewReader(bytes.NewReader([]byte{0x1f, 0x8b, 0, 0}), FormatAuto); err == nil {
		t.Error("NewReader on broken gzip header: no error")
	}

	// An error in the middle: the complete line is returned, then the error,
	// and it sticks.
	r, err := NewReader(&errReader{data: []byte("a.example\nb.exa"), err: boom}, FormatList)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := r.Next(); err != nil || e.Domain != "a.example" {
		t.Fatalf("first Next = %+v, %v", e, err)
	}
	for range 2 {
		if _, err := r.Next(); !errors.Is(err, boom) || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("Next = %v, want wrapped %v saying line 2", err, boom)
		}
	}

	// A truncated gzip stream is an error, not a silent EOF.
	z := gz(t, strings.Repeat("x.example\n", 1000))
	r, err = NewReader(bytes.NewReader(z[:len(z)-10]), FormatList)
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, err := r.Next()
		if err == io.EOF {
			t.Fatal("truncated gzip read to io.EOF")
		}
		if err != nil {
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("truncated gzip: %v, want io.ErrUnexpectedEOF", err)
			}
			break
		}
	}
}

func TestOpen(t *testing.T) {
	dir := t.TempDir()
	content := "rank,domain\n1,google.com\n2,example.org\n"
	plain := filepath.Join(dir, "list.csv")
	packed := filepath.Join(dir, "list.bin") // gzip, whatever the name says
	if err := os.WriteFile(plain, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(packed, gz(t, content), 0o644); err != nil {
		t.Fatal(err)
	}
	want := []Entry{ok(2, 1, "google.com", "google.com"), ok(3, 2, "example.org", "example.org")}
	for _, path := range []string{plain, packed} {
		r, err := Open(path, FormatAuto)
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, r); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v, want %+v", path, got, want)
		}
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if _, err := r.Next(); err == nil {
			t.Error("Next after Close: no error")
		}
		n, err := Count(path, FormatAuto)
		if err != nil || n != 2 { // the header is not a domain
			t.Errorf("Count(%s) = %d, %v; want 2", path, n, err)
		}
	}
	if _, err := Open(filepath.Join(dir, "missing"), FormatAuto); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open(missing) = %v, want os.ErrNotExist", err)
	}
	if _, err := Count(filepath.Join(dir, "missing"), FormatAuto); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Count(missing) = %v, want os.ErrNotExist", err)
	}
	if n, err := Count("-", FormatAuto); n != 0 || err != nil {
		t.Errorf("Count(-) = %d, %v; want 0, nil", n, err)
	}
}

func TestSample(t *testing.T) {
	r, err := Open(filepath.Join("sample", "top-sample.csv"), FormatAuto)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	entries := readAll(t, r)
	if len(entries) < 40 {
		t.Fatalf("sample has %d entries, want about 50", len(entries))
	}
	d := NewDedup()
	for i, e := range entries {
		if e.Err != "" || e.Rank != int64(i+1) || d.Seen(e.Domain) {
			t.Errorf("sample entry %d: %+v (want valid, rank %d, unique)", i, e, i+1)
		}
	}
}
