package domains

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

const testZone = `; example TLD zone, in the form registries publish
$ORIGIN example.
$TTL 86400
@	IN	SOA	ns0.nic.example. hostmaster.nic.example. (
		2024010101 ; serial
		1800 900 604800 86400 )
@	IN	NS	ns0.nic.example.
@	IN	NS	ns1.nic.example.
ns0.nic	IN	A	192.0.2.53
alpha	IN	NS	ns1.foo.net.
alpha	IN	NS	ns2.foo.net.
alpha	IN	DS	12345 13 2 0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF
Beta.example.	172800	IN	NS	ns1.beta.example.
beta.example.	172800	IN	NS	ns2.beta.example.
ns1.beta	IN	A	192.0.2.1
ns1.beta	IN	AAAA	2001:db8::1
xn--bcher-kva	NS	ns.foo.net. ; comment after the record
	NS	ns2.foo.net.
gamma	3600	NS	ns.foo.net.
alpha	IN	NS	ns3.foo.net.
bad\032name	NS	ns.foo.net.
`

func TestZone(t *testing.T) {
	want := []Entry{
		ok(10, 0, "alpha.example", "alpha.example"),
		ok(13, 0, "Beta.example", "beta.example"),
		ok(17, 0, "xn--bcher-kva.example", "xn--bcher-kva.example"),
		ok(19, 0, "gamma.example", "gamma.example"),
		ok(20, 0, "alpha.example", "alpha.example"), // not consecutive: left to Dedup
		bad(21, 0, `bad\032name.example`, `invalid domain: invalid character "\\"`),
	}
	for _, in := range [][]byte{[]byte(testZone), gz(t, testZone)} {
		r, err := NewReader(bytes.NewReader(in), FormatZone)
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, r); !reflect.DeepEqual(got, want) {
			t.Errorf("entries:\n got %+v\nwant %+v", got, want)
		}
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	}

	// Count is approximate: it does not know $ORIGIN and counts owners as
	// written, so "Beta.example." and "xn--bcher-kva" count, the line
	// without owner does not, and the escaped name counts.
	path := filepath.Join(t.TempDir(), "example.zone.gz")
	if err := os.WriteFile(path, gz(t, testZone), 0o644); err != nil {
		t.Fatal(err)
	}
	if n, err := Count(path, FormatZone); err != nil || n != 6 {
		t.Errorf("Count = %d, %v; want 6", n, err)
	}
}

func TestZoneNoOriginNoTrailingNewline(t *testing.T) {
	// Absolute names, no $ORIGIN, no $TTL, no TTLs, last line unterminated.
	in := "com. SOA a.gtld. nstld. 1 2 3 4 5\ncom. NS a.gtld.\nexample.com. NS ns.example.net."
	r, err := NewReader(strings.NewReader(in), FormatZone)
	if err != nil {
		t.Fatal(err)
	}
	want := []Entry{ok(3, 0, "example.com", "example.com")}
	if got := readAll(t, r); !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestZoneErrors(t *testing.T) {
	tests := []struct {
		name, in string
		entries  int // good entries before the error
		is       error
		contains string
	}{
		{
			name:     "bad record",
			in:       "$ORIGIN example.\na NS ns.foo.net.\nb FOOBAR x\n",
			entries:  1,
			contains: "line: 3",
		},
		{
			name:     "include refused",
			in:       "$INCLUDE /etc/passwd\n",
			contains: "$INCLUDE",
		},
		{
			name:    "line too long",
			in:      "a.example. NS ns.foo.net.\nb.example. TXT \"" + strings.Repeat("x", maxZoneLine) + "\"\n",
			entries: 1,
			is:      ErrZoneLineTooLong,
		},
		{
			name:    "truncated gzip",
			in:      truncatedGzip(t, strings.Repeat("a.example. NS ns.foo.net.\n", 1000)),
			entries: -1,
			is:      io.ErrUnexpectedEOF,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewReader(strings.NewReader(tt.in), FormatZone)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for {
				_, err = r.Next()
				if err != nil {
					break
				}
				n++
			}
			if err == io.EOF {
				t.Fatal("no error")
			}
			var pe *dns.ParseError
			if tt.is == nil && !errors.As(err, &pe) {
				t.Errorf("error %v is not a *dns.ParseError", err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.contains) || !strings.HasPrefix(err.Error(), "datasets: parsing zone") {
				t.Errorf("error %q does not say %q", err, tt.contains)
			}
			if tt.entries >= 0 && n != tt.entries {
				t.Errorf("%d entries before the error, want %d", n, tt.entries)
			}
			if _, err2 := r.Next(); err2 != err {
				t.Errorf("error not sticky: %v then %v", err, err2)
			}
		})
	}
}

func truncatedGzip(t testing.TB, s string) string {
	z := gz(t, s)
	return string(z[:len(z)-10])
}
