package smtpreply

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

func read(s string, lim Limits) (Reply, error) {
	return Read(bufio.NewReader(strings.NewReader(s)), lim)
}

func TestReadGreetings(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		code  int
		lines []string
		host  string
	}{
		{"postfix", "220 mx.example.com ESMTP Postfix (Debian/GNU)\r\n", 220,
			[]string{"mx.example.com ESMTP Postfix (Debian/GNU)"}, "mx.example.com"},
		{"exim", "220 mail.example.org ESMTP Exim 4.96 Mon, 01 Jan 2024 10:00:00 +0000\r\n", 220,
			[]string{"mail.example.org ESMTP Exim 4.96 Mon, 01 Jan 2024 10:00:00 +0000"}, "mail.example.org"},
		{"microsoft", "220 BN8NAM11FT036.mail.protection.outlook.com Microsoft ESMTP MAIL Service ready at Mon, 1 Jan 2024 10:00:00 +0000 [08DC0A1B2C3D4E5F]\r\n", 220,
			[]string{"BN8NAM11FT036.mail.protection.outlook.com Microsoft ESMTP MAIL Service ready at Mon, 1 Jan 2024 10:00:00 +0000 [08DC0A1B2C3D4E5F]"},
			"bn8nam11ft036.mail.protection.outlook.com"},
		{"google", "220 mx.google.com ESMTP a1-20020a170902ab0100b001d0c41b1234si123456plb.123 - gsmtp\r\n", 220,
			[]string{"mx.google.com ESMTP a1-20020a170902ab0100b001d0c41b1234si123456plb.123 - gsmtp"}, "mx.google.com"},
		{"cisco masked", "220 ***************************\r\n", 220,
			[]string{"***************************"}, ""},
		{"cisco masked with digits", "220 ****************2*0***0**0****\r\n", 220,
			[]string{"****************2*0***0**0****"}, ""},
		{"multi-line greeting", "220-mx1.example.net ESMTP\r\n220-no UCE\r\n220 ready\r\n", 220,
			[]string{"mx1.example.net ESMTP", "no UCE", "ready"}, "mx1.example.net"},
		{"no smtp service", "554 No SMTP service here\r\n", 554, []string{"No SMTP service here"}, ""},
		{"temp reject", "421 4.7.0 mx.example.com Error: too many connections\r\n", 421,
			[]string{"4.7.0 mx.example.com Error: too many connections"}, ""},
		{"no host", "220 ESMTP ready\r\n", 220, []string{"ESMTP ready"}, ""},
		{"bare LF", "220 mx.example.com ESMTP\n", 220, []string{"mx.example.com ESMTP"}, "mx.example.com"},
		{"bare code", "220\r\n", 220, []string{""}, ""},
		{"code and space only", "220 \r\n", 220, []string{""}, ""},
		{"trailing dot upper case", "220 MX.Example.COM. ESMTP\r\n", 220, []string{"MX.Example.COM. ESMTP"}, "mx.example.com"},
		{"localhost", "220 localhost ESMTP Sendmail\r\n", 220, []string{"localhost ESMTP Sendmail"}, "localhost"},
		{"ipv4 literal", "220 [192.0.2.1] ESMTP\r\n", 220, []string{"[192.0.2.1] ESMTP"}, "[192.0.2.1]"},
		{"ipv6 literal", "220 [IPv6:2001:DB8::1] ESMTP\r\n", 220, []string{"[IPv6:2001:DB8::1] ESMTP"}, "[ipv6:2001:db8::1]"},
		{"bare ipv4", "220 192.0.2.1 ESMTP\r\n", 220, []string{"192.0.2.1 ESMTP"}, ""},
		{"qmail single word", "220 mail ESMTP\r\n", 220, []string{"mail ESMTP"}, ""},
		{"underscore", "220 smtp_relay.example.com ESMTP\r\n", 220, []string{"smtp_relay.example.com ESMTP"}, "smtp_relay.example.com"},
		{"tab after host", "220 mx.example.com\tESMTP\r\n", 220, []string{"mx.example.com\tESMTP"}, "mx.example.com"},
		{"continuation dash with empty text", "220-\r\n220 mx.example.com\r\n", 220, []string{"", "mx.example.com"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := read(tt.in, Limits{})
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if r.Code != tt.code || !reflect.DeepEqual(r.Lines, tt.lines) || r.Raw != tt.in {
				t.Errorf("Read = %d %q raw %q; want %d %q raw %q", r.Code, r.Lines, r.Raw, tt.code, tt.lines, tt.in)
			}
			if got := HostOf(r); got != tt.host {
				t.Errorf("HostOf = %q, want %q", got, tt.host)
			}
			first := strings.SplitN(tt.in, "\n", 2)[0]
			if got := Host(first); got != tt.host {
				t.Errorf("Host(%q) = %q, want %q", first, got, tt.host)
			}
		})
	}
}

func TestReadSequential(t *testing.T) {
	// Pipelined replies must be read one at a time, leaving the next intact.
	br := bufio.NewReader(strings.NewReader("220 a.example ESMTP\r\n250-b.example\r\n250 SIZE 1\r\n"))
	r1, err := Read(br, Limits{})
	if err != nil || r1.Code != 220 {
		t.Fatalf("first = %+v, %v", r1, err)
	}
	r2, err := Read(br, Limits{})
	if err != nil || r2.Code != 250 || len(r2.Lines) != 2 {
		t.Fatalf("second = %+v, %v", r2, err)
	}
	if _, err := Read(br, Limits{}); !errors.Is(err, io.EOF) {
		t.Fatalf("third: err = %v, want io.EOF", err)
	}
}

func TestReadErrors(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		lim   Limits
		want  error
		code  int
		lines []string
		raw   string
	}{
		{"empty", "", Limits{}, io.EOF, 0, nil, ""},
		{"eof mid line", "220 mx.exa", Limits{}, io.ErrUnexpectedEOF, 0, nil, "220 mx.exa"},
		{"eof mid reply", "250-a\r\n", Limits{}, io.ErrUnexpectedEOF, 250, []string{"a"}, "250-a\r\n"},
		{"not a reply", "HTTP/1.1 400 Bad Request\r\n", Limits{}, ErrMalformed, 0,
			[]string{"HTTP/1.1 400 Bad Request"}, "HTTP/1.1 400 Bad Request\r\n"},
		{"code mismatch", "250-a\r\n251 b\r\n", Limits{}, ErrMalformed, 250, []string{"a", "b"}, "250-a\r\n251 b\r\n"},
		{"bad separator", "220_mx\r\n", Limits{}, ErrMalformed, 0, []string{"220_mx"}, "220_mx\r\n"},
		{"two digits", "22 x\r\n", Limits{}, ErrMalformed, 0, []string{"22 x"}, "22 x\r\n"},
		{"code out of range", "999 x\r\n", Limits{}, ErrMalformed, 0, []string{"999 x"}, "999 x\r\n"},
		{"line too long", "220 " + strings.Repeat("a", 20) + "\r\n", Limits{MaxLineBytes: 10}, ErrLineTooLong, 0, nil, "220 aaaaaa"},
		{"line exactly at cap", "220 abcd\r\n", Limits{MaxLineBytes: 10}, nil, 220, []string{"abcd"}, "220 abcd\r\n"},
		{"too many lines", "250-a\r\n250-b\r\n250-c\r\n250 d\r\n", Limits{MaxLines: 2}, ErrTooManyLines, 250,
			[]string{"a", "b"}, "250-a\r\n250-b\r\n"},
		{"too large", "250-aaaa\r\n250-bbbb\r\n250 c\r\n", Limits{MaxBytes: 14}, ErrTooLarge, 250,
			[]string{"aaaa"}, "250-aaaa\r\n250-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := read(tt.in, tt.lim)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if r.Code != tt.code || !reflect.DeepEqual(r.Lines, tt.lines) || r.Raw != tt.raw {
				t.Errorf("Read = %d %q raw %q; want %d %q raw %q", r.Code, r.Lines, r.Raw, tt.code, tt.lines, tt.raw)
			}
		})
	}
}

// A line longer than bufio's buffer goes through the ErrBufferFull path, both
// when it fits the cap and when it does not.
func TestReadLongLineSmallBuffer(t *testing.T) {
	long := "250 " + strings.Repeat("x", 100) + "\r\n"
	br := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(long)), 16)
	r, err := Read(br, Limits{MaxLineBytes: 200})
	if err != nil || r.Raw != long {
		t.Fatalf("fits: %v %q", err, r.Raw)
	}
	br = bufio.NewReaderSize(strings.NewReader(long), 16)
	r, err = Read(br, Limits{MaxLineBytes: 50})
	if !errors.Is(err, ErrLineTooLong) || len(r.Raw) != 50 {
		t.Fatalf("over: %v len %d", err, len(r.Raw))
	}
}

// The memory a reply costs is bounded by the caps, not by what is sent.
func TestReadAllocationBounded(t *testing.T) {
	huge := "220 " + strings.Repeat("a", 1<<20)
	allocs := testing.AllocsPerRun(5, func() {
		br := bufio.NewReaderSize(strings.NewReader(huge), 4096)
		if _, err := Read(br, Limits{MaxLineBytes: 2048}); !errors.Is(err, ErrLineTooLong) {
			t.Fatal(err)
		}
	})
	// bufio's buffer, the line (<= 2048 bytes, a few growths) and the error.
	if allocs > 12 {
		t.Errorf("allocs = %v", allocs)
	}
}

func TestHost(t *testing.T) {
	tests := []struct{ in, want string }{
		{"220 mx.example.com ESMTP Postfix", "mx.example.com"},
		{"220 ESMTP ready", ""},
		{"220 ********", ""},
		{"250 OK", ""},
		{"250-Hello", ""},
		{"250-mx.example.com Hello [1.2.3.4]", "mx.example.com"},
		{"mx.example.com Hello [1.2.3.4]", ""},   // no code: not a reply line (use HostOf)
		{"123-mx.example.com", "mx.example.com"}, // code 123, '-' separator
		{"220 123-mx.example.com", "123-mx.example.com"},
		{"ESMTP ready", ""},
		{"", ""},
		{"220", ""},
		{"220 ", ""},
		{"220  mx.example.com", "mx.example.com"}, // doubled space
		{"220 mx.example.com.", "mx.example.com"},
		{"220 mx.example.com..", ""},
		{"220 .example.com", ""},
		{"220 mx..example.com", ""},
		{"220 LOCALHOST.", "localhost"},
		{"220 localhost.localdomain ESMTP", "localhost.localdomain"},
		{"220 [192.0.2.1]", "[192.0.2.1]"},
		{"220 [192.0.2.256]", ""},
		{"220 [IPv6:::1]", "[ipv6:::1]"},
		{"220 [ipv6:fe80::1%eth0]", ""},
		{"220 [2001:db8::1]", ""}, // IPv6 literal without its tag
		{"220 [IPv6:192.0.2.1]", ""},
		{"220 [mx.example.com]", ""},
		{"220 192.0.2.1 ESMTP", ""},
		{"220 10.0.0", ""},
		{"220 1.example.com", "1.example.com"},
		{"220 123.example.com", "123.example.com"},
		{"220 xn--bcher-kva.example", "xn--bcher-kva.example"},
		{"220 mx.example.com, ESMTP", ""},
		{"220 mx.exämple.com", ""},
		{"220 " + strings.Repeat("a", 64) + ".example", ""},
		{"220 " + strings.Repeat("a.", 126) + "ab", ""}, // 254 chars
		{"220 " + strings.Repeat("a.", 125) + "abc", strings.Repeat("a.", 125) + "abc"},
		{"220 mx.example.com\r\n", "mx.example.com"},
	}
	for _, tt := range tests {
		if got := Host(tt.in); got != tt.want {
			t.Errorf("Host(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestHostOf(t *testing.T) {
	// "220 220 mx.example.com": the text's first token is "220", not a name;
	// HostOf reads the text after the code and so returns "".
	r, err := read("220 220 mx.example.com ESMTP\r\n", Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if got := HostOf(r); got != "" {
		t.Errorf("HostOf = %q", got)
	}
	if got := HostOf(Reply{}); got != "" {
		t.Errorf("HostOf(zero) = %q", got)
	}
	// A malformed first line keeps its text in Lines but has no code.
	r, _ = read("mx.example.com ESMTP\r\n", Limits{})
	if got := HostOf(r); got != "" || len(r.Lines) != 1 {
		t.Errorf("HostOf(malformed) = %q, %q", got, r.Lines)
	}
	r, _ = read("220 123-mx.example.com ESMTP\r\n", Limits{})
	if got := HostOf(r); got != "123-mx.example.com" {
		t.Errorf("HostOf(digits) = %q", got)
	}
}

func TestExtensions(t *testing.T) {
	in := "250-mx.example.com Hello client.example [192.0.2.9]\r\n" +
		"250-SIZE 10240000\r\n" +
		"250-8BITMIME\r\n" +
		"250-auth PLAIN LOGIN\r\n" +
		"250-starttls  \r\n" +
		"250-\r\n" +
		"250-X-Custom-Thing a=b\r\n" +
		"250 SMTPUTF8\r\n"
	r, err := read(in, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"SIZE 10240000", "8BITMIME", "AUTH PLAIN LOGIN", "STARTTLS", "X-CUSTOM-THING a=b", "SMTPUTF8"}
	if got := Extensions(r); !reflect.DeepEqual(got, want) {
		t.Errorf("Extensions = %q, want %q", got, want)
	}
	for kw, want := range map[string]bool{
		"STARTTLS": true, "starttls": true, "StartTLS": true, "SIZE": true, "AUTH": true,
		"PIPELINING": false, "mx.example.com": false, "": false, // not even against the empty line
	} {
		if got := HasExtension(r, kw); got != want {
			t.Errorf("HasExtension(%q) = %v", kw, got)
		}
	}
	one, _ := read("250 mx.example.com\r\n", Limits{})
	if Extensions(one) != nil || HasExtension(one, "STARTTLS") {
		t.Error("single-line reply has no extensions")
	}
	// The first line is never an extension, whatever it says.
	first, _ := read("250-STARTTLS\r\n250 SIZE\r\n", Limits{})
	if HasExtension(first, "STARTTLS") {
		t.Error("first line taken as extension")
	}
}

func TestDefaultLimits(t *testing.T) {
	if got := (Limits{}).WithDefaults(); got != DefaultLimits() || got.MaxLineBytes != 2048 || got.MaxLines != 1000 || got.MaxBytes != 65536 {
		t.Errorf("defaults = %+v", got)
	}
	if !IsCap(fmt.Errorf("x: %w", ErrTooLarge)) || IsCap(ErrMalformed) {
		t.Error("IsCap")
	}
}

func ExampleRead() {
	in := "250-mx.example.com Hello [192.0.2.9]\r\n250-SIZE 10240000\r\n250 starttls\r\n"
	r, err := Read(bufio.NewReader(strings.NewReader(in)), Limits{})
	fmt.Println(r.Code, err)
	fmt.Println(HostOf(r))
	fmt.Println(Extensions(r), HasExtension(r, "STARTTLS"))
	// Output:
	// 250 <nil>
	// mx.example.com
	// [SIZE 10240000 STARTTLS] true
}

func ExampleHost() {
	fmt.Printf("%q\n", Host("220 BN8NAM11FT036.mail.protection.outlook.com Microsoft ESMTP MAIL Service ready"))
	fmt.Printf("%q\n", Host("220 ***************"))
	fmt.Printf("%q\n", Host("220 192.0.2.1 ESMTP"))
	// Output:
	// "bn8nam11ft036.mail.protection.outlook.com"
	// ""
	// ""
}
