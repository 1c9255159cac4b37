package smtpreply

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

// Seeds for FuzzRead: each says what is unusual about it.
var readSeeds = []string{
	"220 mx.example.com ESMTP Postfix\r\n",                 // ordinary greeting
	"220-mx.example.com\r\n220-more\r\n220 done\r\n",       // multi-line greeting
	"250-mx.example.com\r\n250-SIZE 1\r\n250 STARTTLS\r\n", // EHLO reply
	"220 bare LF\n",                // LF without CR
	"220\r\n",                      // code only
	"",                             // nothing at all
	"220 no line ending",           // EOF mid line
	"250-a\r\n",                    // EOF mid reply
	"250-a\r\n251 b\r\n",           // continuation code differs
	"HTTP/1.1 400 Bad Request\r\n", // not SMTP
	"\x16\x03\x01\x00\x05hello",    // a TLS record instead of SMTP
	"220 \xff\xfe\x00 binary\r\n",  // non-UTF-8 and NUL in text
	"220 a\r220 b\r\n",             // bare CR inside a line
	"250-" + strings.Repeat("x", 3000) + "\r\n250 y\r\n", // line over the cap
	strings.Repeat("250-a\r\n", 50) + "250 b\r\n",        // many lines
	"099 code below range\r\n",                           // code out of range
	"220-\r\n220 \r\n",                                   // empty texts
}

func FuzzRead(f *testing.F) {
	for _, s := range readSeeds {
		f.Add(s, 64, 5, 256)
	}
	f.Fuzz(func(t *testing.T, in string, maxLine, maxLines, maxBytes int) {
		// Keep limits small and positive so the caps are exercised.
		lim := Limits{MaxLineBytes: 1 + abs(maxLine)%300, MaxLines: 1 + abs(maxLines)%20, MaxBytes: 1 + abs(maxBytes)%2000}
		br := bufio.NewReaderSize(strings.NewReader(in), 16)
		r, err := Read(br, lim)
		if len(r.Raw) > lim.MaxBytes {
			t.Fatalf("Raw %d bytes > MaxBytes %d", len(r.Raw), lim.MaxBytes)
		}
		if !strings.HasPrefix(in, r.Raw) {
			t.Fatalf("Raw %q is not a prefix of the input", r.Raw)
		}
		if len(r.Lines) > lim.MaxLines {
			t.Fatalf("%d lines > MaxLines %d", len(r.Lines), lim.MaxLines)
		}
		for _, l := range r.Lines {
			if len(l) > lim.MaxLineBytes {
				t.Fatalf("line of %d bytes > MaxLineBytes", len(l))
			}
		}
		if err == nil {
			if r.Code < 100 || r.Code > 599 || len(r.Lines) == 0 {
				t.Fatalf("success with code %d, %d lines", r.Code, len(r.Lines))
			}
			if !strings.HasSuffix(r.Raw, "\n") {
				t.Fatalf("success without a line ending: %q", r.Raw)
			}
			return
		}
		known := []error{ErrLineTooLong, ErrTooManyLines, ErrTooLarge, ErrMalformed, io.EOF, io.ErrUnexpectedEOF}
		for _, k := range known {
			if errors.Is(err, k) {
				return
			}
		}
		t.Fatalf("unexpected error %v", err)
	})
}

// Seeds for FuzzHost: each says what is unusual about it.
var hostSeeds = []string{
	"220 mx.example.com ESMTP",         // the common case
	"mx.example.com ESMTP",             // no code: names no host
	"123-mx.example.com",               // a code-like prefix with '-'
	"220 ********",                     // masked banner
	"220 192.0.2.1 ESMTP",              // bare address: not a name
	"220 [192.0.2.1]",                  // IPv4 literal
	"220 [IPv6:2001:db8::1]",           // IPv6 literal
	"220 [IPv6:fe80::1%25eth0]",        // zone in a literal
	"220 [",                            // unterminated literal
	"220 .",                            // just a dot
	"220 a..b",                         // empty label
	"220 LOCALHOST.",                   // localhost with trailing dot
	"220 \xc3\xa4.example",             // non-ASCII label
	"250-",                             // separator and nothing
	"220 " + strings.Repeat("a.", 130), // over 253 characters
}

func FuzzHost(f *testing.F) {
	for _, s := range hostSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		h := Host(line)
		if h == "" {
			return
		}
		if h != strings.ToLower(h) || strings.HasSuffix(h, ".") || strings.ContainsAny(h, " \t\r\n") {
			t.Fatalf("Host(%q) = %q: not normalised", line, h)
		}
		if !strings.Contains(strings.ToLower(line), strings.TrimSuffix(h, ".")) {
			t.Fatalf("Host(%q) = %q: not taken from the line", line, h)
		}
		if h != "localhost" && !strings.HasPrefix(h, "[") && (len(h) > 253 || !strings.Contains(h, ".")) {
			t.Fatalf("Host(%q) = %q: not a dotted name", line, h)
		}
		// Normalising is idempotent.
		if again := Host("220 " + h); again != h {
			t.Fatalf("Host(220 Host(%q)) = %q, want %q", line, again, h)
		}
	})
}

func abs(n int) int {
	if n < 0 {
		if n == -n { // math.MinInt
			return 0
		}
		return -n
	}
	return n
}
