package tlsrpt

import (
	"errors"
	"strings"
	"testing"
)

func TestParseRecord(t *testing.T) {
	tests := []struct {
		name string
		txts []string
		rua  string // RUA joined by " "
		err  error
	}{
		{"mailto", []string{"v=TLSRPTv1; rua=mailto:tlsrpt@example.com"}, "mailto:tlsrpt@example.com", nil},
		{"https", []string{"v=TLSRPTv1;rua=https://reports.example.com/v1/tlsrpt"}, "https://reports.example.com/v1/tlsrpt", nil},
		{"trailing separator", []string{"v=TLSRPTv1; rua=mailto:a@example.com;"}, "mailto:a@example.com", nil},
		{"two URIs", []string{"v=TLSRPTv1; rua=mailto:a@example.com,https://r.example.net/x"}, "mailto:a@example.com https://r.example.net/x", nil},
		{"WSP around the comma", []string{"v=TLSRPTv1; rua=mailto:a@example.com \t, https://r.example.net"}, "mailto:a@example.com https://r.example.net", nil},
		{"strings split by DNS, concatenated by the scanner", []string{"v=TLSRPTv1; rua=mailto:tls" + "rpt@example.com"}, "mailto:tlsrpt@example.com", nil},
		{"other TXT records ignored", []string{"v=spf1 -all", "v=TLSRPTv1; rua=mailto:a@example.com"}, "mailto:a@example.com", nil},
		{"rua repeated", []string{"v=TLSRPTv1; rua=mailto:a@example.com; rua=https://r.example.net"}, "mailto:a@example.com https://r.example.net", nil},
		{"extension ignored", []string{"v=TLSRPTv1; ext=1; rua=mailto:a@example.com"}, "mailto:a@example.com", nil},
		{"scheme in upper case", []string{"v=TLSRPTv1; rua=MAILTO:a@example.com"}, "MAILTO:a@example.com", nil},
		{"percent-encoded comma", []string{"v=TLSRPTv1; rua=mailto:a%2Cb@example.com"}, "mailto:a%2Cb@example.com", nil},
		{"mailto with a query", []string{"v=TLSRPTv1; rua=mailto:a@example.com?subject=tls"}, "mailto:a@example.com?subject=tls", nil},
		{"one unsupported scheme among good ones", []string{"v=TLSRPTv1; rua=ftp://x.example,mailto:a@example.com"}, "ftp://x.example mailto:a@example.com", nil},

		{"no TXT", nil, "", ErrNoRecord},
		{"only other records", []string{"v=spf1 -all"}, "", ErrNoRecord},
		{"case-sensitive version", []string{"v=tlsrptv1; rua=mailto:a@example.com"}, "", ErrNoRecord},
		{"another version", []string{"v=TLSRPTv10; rua=mailto:a@example.com"}, "", ErrNoRecord},
		{"two records", []string{"v=TLSRPTv1; rua=mailto:a@example.com", "v=TLSRPTv1; rua=mailto:b@example.com"}, "", ErrMultipleRecords},
		{"duplicate records", []string{"v=TLSRPTv1; rua=mailto:a@example.com", "v=TLSRPTv1; rua=mailto:a@example.com"}, "", ErrMultipleRecords},
		{"no rua", []string{"v=TLSRPTv1;"}, "", ErrRecordSyntax},
		{"bare version", []string{"v=TLSRPTv1"}, "", ErrRecordSyntax},
		{"ruf instead of rua", []string{"v=TLSRPTv1; ruf=mailto:a@example.com"}, "", ErrRecordSyntax},
		{"empty rua", []string{"v=TLSRPTv1; rua="}, "", ErrRecordSyntax},
		{"empty URI in the list", []string{"v=TLSRPTv1; rua=mailto:a@example.com,"}, "", ErrRecordSyntax},
		{"no scheme", []string{"v=TLSRPTv1; rua=tlsrpt@example.com"}, "", ErrRecordSyntax},
		{"mailto without @", []string{"v=TLSRPTv1; rua=mailto:tlsrpt"}, "", ErrRecordSyntax},
		{"https without a host", []string{"v=TLSRPTv1; rua=https:/path"}, "", ErrRecordSyntax},
		{"space inside a URI", []string{"v=TLSRPTv1; rua=mailto:a b@example.com"}, "", ErrRecordSyntax},
		{"unencoded !", []string{"v=TLSRPTv1; rua=mailto:a@example.com!10m"}, "", ErrRecordSyntax},
		{"bad percent-escape", []string{"v=TLSRPTv1; rua=mailto:a%zz@example.com"}, "", ErrRecordSyntax},
		{"trailing space", []string{"v=TLSRPTv1; rua=mailto:a@example.com "}, "", ErrRecordSyntax},
		{"non-ASCII", []string{"v=TLSRPTv1; rua=mailto:ä@example.com"}, "", ErrRecordSyntax},
		{"bad extension value", []string{"v=TLSRPTv1; rua=mailto:a@example.com; x=a b"}, "", ErrRecordSyntax},
		{"only unsupported schemes", []string{"v=TLSRPTv1; rua=http://r.example.net"}, "", ErrNoSupportedRUA},
	}
	for _, tt := range tests {
		r, err := ParseRecord(tt.txts)
		if !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) || strings.Join(r.RUA, " ") != tt.rua {
			t.Errorf("%s: ParseRecord(%q) = %q, %v; want %q, %v", tt.name, tt.txts, r.RUA, err, tt.rua, tt.err)
		}
	}
}

// DateResult is the one place DANE and MTA-STS verdicts take the type of a
// certificate outside its dates from.
func TestDateResult(t *testing.T) {
	tests := []struct {
		name                 string
		expired, notYetValid bool
		want                 ResultType
	}{
		{"in date", false, false, ""},
		{"expired", true, false, ResultCertificateExpired},
		{"not yet valid", false, true, ResultCertificateNotTrusted},
		// NotAfter before NotBefore: both hold; crypto/x509 reports NotBefore first.
		{"inverted validity", true, true, ResultCertificateNotTrusted},
	}
	for _, tt := range tests {
		if got := DateResult(tt.expired, tt.notYetValid); got != tt.want {
			t.Errorf("%s: DateResult(%v, %v) = %q, want %q", tt.name, tt.expired, tt.notYetValid, got, tt.want)
		}
	}
}

func TestResultTypes(t *testing.T) {
	all := ResultTypes()
	if len(all) != 11 {
		t.Fatalf("%d result types", len(all))
	}
	seen := map[ResultType]bool{}
	for _, r := range all {
		if seen[r] || r == "" || strings.ToLower(string(r)) != string(r) {
			t.Errorf("result type %q repeated, empty or not lower case", r)
		}
		seen[r] = true
	}
	all[0] = "changed"
	if ResultTypes()[0] != ResultSTARTTLSNotSupported {
		t.Errorf("a caller changed the list")
	}
}

// Seeds for FuzzParseRecord: TXT RRsets with the RRs joined by "\n".
var recordSeeds = []string{
	"v=TLSRPTv1; rua=mailto:a@example.com",                     // valid
	"v=TLSRPTv1; rua=mailto:a@example.com , https://x.example", // WSP around the comma
	"v=spf1 -all\nv=TLSRPTv1;rua=https://x.example/",           // with another record
	"v=TLSRPTv1; rua=",              // empty rua
	"v=TLSRPTv1; rua=mailto:%",      // truncated escape
	"v=TLSRPTv1; rua=https://[::1",  // bad URL
	"v=TLSRPTv1; rua=ftp://x",       // unsupported scheme
	"v=TLSRPTv1; rua=mailto:\xff@x", // invalid UTF-8
	"v=TLSRPTv1\nv=TLSRPTv1",        // two bare records
	"v=TLSRPTv1 ;rua=mailto:a@b;;",  // doubled separator at the end
}

func FuzzParseRecord(f *testing.F) {
	for _, s := range recordSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRecord(strings.Split(s, "\n"))
		if err != nil {
			for _, e := range []error{ErrNoRecord, ErrMultipleRecords, ErrRecordSyntax, ErrNoSupportedRUA} {
				if errors.Is(err, e) {
					return
				}
			}
			t.Fatalf("error outside the vocabulary: %v", err)
		}
		ok := false
		for _, u := range r.RUA {
			if !strings.Contains(s, u) || strings.ContainsAny(u, " \t,!;") {
				t.Fatalf("rua %q", u)
			}
			ok = ok || supported(u)
		}
		if !ok {
			t.Fatalf("valid without a supported rua: %q", r.RUA)
		}
	})
}
