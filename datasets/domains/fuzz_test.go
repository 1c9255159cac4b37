package domains

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzReader feeds any bytes to a FormatAuto reader: it must not panic, must
// stop, and every entry must have exactly one of Domain and Err.
func FuzzReader(f *testing.F) {
	seeds := []string{
		"rank,domain\n1,google.com\n2,example.org\n",       // good: header and CSV
		"# c\n\nexample.com\r\n",                           // good: comment, blank line, CRLF
		"\ufeff1,bücher.example\n",                         // BOM, then an IDN
		"1,\"unterminated\n",                               // quote never closed
		"1,\"a\"x,b\n",                                     // text after a closing quote
		"x,google.com\n",                                   // rank not a number
		"99999999999999999999,a.example\n",                 // rank overflows int64
		",\n,,\n\"\",\"\"\n",                               // empty fields
		"a..b\n*.example\n192.0.2.1\n[::1]\n",              // invalid names
		"ex\xffample.com\n\xef\xbb\n",                      // invalid UTF-8, half a BOM
		"\x1f\x8b\x08\x00\x00\x00\x00\x00",                 // gzip header, no body
		"\x1f\x8b",                                         // gzip magic only
		strings.Repeat("a", MaxLineLen+1) + "\nb.example",  // line just too long
		"xn--zz.com\nxn--.com\nXN--BCHER-KVA.example",      // bad and good Punycode
		"-bad-.example\nbad-.example\nr3---sn-abc.example", // hyphens at label edges (invalid), inside (valid)
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Add(gz(f, "1,google.com\nbad name\n")) // gzip'd CSV
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data), FormatAuto)
		if err != nil {
			return // e.g. a broken gzip header
		}
		defer r.Close()
		lastLine := 0
		// Each entry needs at least one input byte, after decompression:
		// deflate expands at most 1032:1, so gzip input may yield more
		// entries than it has bytes (testdata/fuzz/FuzzReader/c0c5... is one).
		most := len(data) + 1
		if len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b {
			most = 1032*len(data) + 1
		}
		for n := 0; ; n++ {
			if n > most {
				t.Fatalf("more entries (%d) than the input can hold (%d)", n, most)
			}
			e, err := r.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				return // an I/O error of the gzip stream
			}
			if (e.Domain == "") == (e.Err == "") {
				t.Fatalf("entry %+v: want exactly one of Domain and Err", e)
			}
			if e.Line <= lastLine {
				t.Fatalf("entry %+v: line not increasing after %d", e, lastLine)
			}
			lastLine = e.Line
			if !utf8.ValidString(e.Input) {
				t.Fatalf("entry %+v: Input not valid UTF-8", e)
			}
			if e.Domain != "" {
				if d, err := Normalize(e.Domain); err != nil || d != e.Domain {
					t.Fatalf("entry %+v: Domain does not normalise to itself: %q, %v", e, d, err)
				}
			}
		}
	})
}

// FuzzNormalize checks that Normalize never panics, that what it accepts
// is a valid ASCII host name, and that it is idempotent.
func FuzzNormalize(f *testing.F) {
	seeds := []string{
		"example.com",                   // good
		"Bücher.Example.",               // good: IDN, upper case, trailing dot
		"例え。テスト。",                       // good: ideographic full stops
		"xn--zz.com",                    // invalid Punycode
		"xn--.com",                      // empty Punycode label
		"xn--a.com",                     // Punycode decoding to a control character
		"-bad-.example",                 // label starting and ending with a hyphen
		"xn----dha.example",             // A-label of "ü-": a U-label ending with a hyphen
		"r3---sn-abc.example",           // good: hyphens inside a label
		"a..b",                          // empty label
		".",                             // root only
		"*.example.com",                 // wildcard, not a host
		"foo bar.com",                   // space
		"192.0.2.1",                     // IPv4 literal
		"[IPv6:2001:db8::1]",            // address literal in SMTP form
		"１９２.０.２.１",                     // full-width IPv4 literal
		"1.2.3",                         // numeric TLD
		"com",                           // single label
		"a\u200db.com",                  // ZWJ where ContextJ forbids it
		"\u05d0.com",                    // RTL label: Bidi rule
		"ex\xffample.com",               // invalid UTF-8
		"⑴.com",                         // maps to "(1)"
		"\ufeffexample.com",             // BOM, ignored by mapping
		strings.Repeat("a.", 127) + "a", // 255 bytes
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := Normalize(s)
		if err != nil {
			if d != "" {
				t.Fatalf("Normalize(%q) = %q with error %v", s, d, err)
			}
			return
		}
		if reason := checkHostname(d); reason != "" {
			t.Fatalf("Normalize(%q) = %q, which is invalid: %s", s, d, reason)
		}
		if d2, err := Normalize(d); err != nil || d2 != d {
			t.Fatalf("Normalize(%q) = %q, but Normalize(%q) = %q, %v", s, d, d, d2, err)
		}
	})
}

// FuzzZone feeds any bytes to a FormatZone reader: it must not panic, must
// stop, and every entry must have exactly one of Domain and Err.
func FuzzZone(f *testing.F) {
	f.Add([]byte(testZone))                                    // good: the zone of TestZone
	f.Add([]byte("a.example. NS ns.foo.net."))                 // good: no final newline
	f.Add([]byte("$ORIGIN example.\n@ SOA a. b. 1 2 3 4 5\n")) // apex only
	f.Add([]byte("a NS\nb FOOBAR x\n"))                        // empty rdata, unknown type
	f.Add([]byte("a. NS ( ns.foo.net.\n"))                     // unclosed parenthesis
	f.Add([]byte("$GENERATE 1-3 h$ NS ns.foo.net.\n"))         // generated records
	f.Add([]byte("$INCLUDE /etc/passwd\n"))                    // include, refused
	f.Add([]byte("a\\000b.example. NS ns.\n\"q\". NS ns.\n"))  // escapes and quotes in owners
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data), FormatZone)
		if err != nil {
			return
		}
		defer r.Close()
		for n := 0; n < 1<<17; n++ { // $GENERATE may yield 65536 records per line
			e, err := r.Next()
			if err != nil {
				return
			}
			if (e.Domain == "") == (e.Err == "") {
				t.Fatalf("entry %+v: want exactly one of Domain and Err", e)
			}
		}
	})
}
