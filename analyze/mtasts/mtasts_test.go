package mtasts

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/mxsurvey/mxsurvey/analyze/tlsrpt"
)

func TestParseRecord(t *testing.T) {
	spf := "v=spf1 -all"
	tests := []struct {
		name string
		txts []string
		id   string
		err  error
	}{
		{"plain", []string{"v=STSv1; id=20160831085700Z;"}, "20160831085700Z", nil},
		{"no trailing separator", []string{"v=STSv1; id=1"}, "1", nil},
		{"no spaces", []string{"v=STSv1;id=abc"}, "abc", nil},
		{"tabs and spaces around ;", []string{"v=STSv1 \t;\t id=abc \t; "}, "abc", nil},
		{"strings split by DNS, concatenated by the scanner", []string{"v=STSv1; i" + "d=2024"}, "2024", nil},
		{"other TXT records ignored", []string{spf, "v=STSv1; id=x", "google-site-verification=abc"}, "x", nil},
		{"extension fields ignored", []string{"v=STSv1; id=1; foo.bar-baz_1=some:value/x"}, "1", nil},
		{"extension before id", []string{"v=STSv1; ext=1; id=2"}, "2", nil},
		{"repeated id: the first counts", []string{"v=STSv1; id=first; id=second"}, "first", nil},
		{"id of 32 characters", []string{"v=STSv1; id=" + strings.Repeat("a", 32)}, strings.Repeat("a", 32), nil},
		{"v=STSv10 is another version", []string{"v=STSv10; id=1", "v=STSv1; id=2"}, "2", nil},

		{"no TXT at all", nil, "", ErrNoRecord},
		{"only other records", []string{spf}, "", ErrNoRecord},
		{"version is case-sensitive", []string{"v=stsv1; id=1"}, "", ErrNoRecord},
		{"leading space", []string{" v=STSv1; id=1"}, "", ErrNoRecord},
		{"a later version only", []string{"v=STSv2; id=1"}, "", ErrNoRecord},
		{"two records", []string{"v=STSv1; id=1", "v=STSv1; id=2"}, "", ErrMultipleRecords},
		{"two equal records are still two", []string{"v=STSv1; id=1", "v=STSv1; id=1"}, "", ErrMultipleRecords},
		{"a valid and an invalid record", []string{"v=STSv1; id=1", "v=STSv1"}, "", ErrMultipleRecords},
		{"no id", []string{"v=STSv1;"}, "", ErrRecordSyntax},
		{"bare version", []string{"v=STSv1"}, "", ErrRecordSyntax},
		{"only an extension", []string{"v=STSv1; ext=1"}, "", ErrRecordSyntax},
		{"empty id", []string{"v=STSv1; id="}, "", ErrRecordSyntax},
		{"id of 33 characters", []string{"v=STSv1; id=" + strings.Repeat("a", 33)}, "", ErrRecordSyntax},
		{"id with a dash", []string{"v=STSv1; id=2024-01-01"}, "", ErrRecordSyntax},
		{"id with a space", []string{"v=STSv1; id=20 24"}, "", ErrRecordSyntax},
		{"trailing space without ;", []string{"v=STSv1; id=1 "}, "", ErrRecordSyntax},
		{"double separator", []string{"v=STSv1;; id=1"}, "", ErrRecordSyntax},
		{"two trailing separators", []string{"v=STSv1; id=1;;"}, "", ErrRecordSyntax},
		{"comma instead of semicolon", []string{"v=STSv1, id=1"}, "", ErrNoRecord},
		{"space instead of semicolon", []string{"v=STSv1 id=1"}, "", ErrRecordSyntax},
		{"field without =", []string{"v=STSv1; id=1; ext"}, "", ErrRecordSyntax},
		{"extension name starting with _", []string{"v=STSv1; id=1; _x=1"}, "", ErrRecordSyntax},
		{"extension value with a space", []string{"v=STSv1; id=1; x=a b"}, "", ErrRecordSyntax},
		{"extension value with =", []string{"v=STSv1; id=1; x=a=b"}, "", ErrRecordSyntax},
		{"non-ASCII", []string{"v=STSv1; id=1; x=é"}, "", ErrRecordSyntax},
		{"version repeated as a field", []string{"v=STSv1; v=STSv1; id=1"}, "1", nil},
	}
	for _, tt := range tests {
		r, err := ParseRecord(tt.txts)
		if !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) || r.ID != tt.id {
			t.Errorf("%s: ParseRecord(%q) = %+v, %v; want id %q, %v", tt.name, tt.txts, r, err, tt.id, tt.err)
		}
	}
}

func TestParsePolicy(t *testing.T) {
	good := "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 604800\n"
	tests := []struct {
		name string
		body string
		want string // mode|max_age|mx,mx for a valid policy
		err  error
	}{
		{"LF", good, "enforce|604800|mail.example.com,*.example.net", nil},
		{"CRLF", strings.ReplaceAll(good, "\n", "\r\n"), "enforce|604800|mail.example.com,*.example.net", nil},
		{"mixed line endings", "version: STSv1\r\nmode: testing\nmx: a.example\r\nmax_age: 86400", "testing|86400|a.example", nil},
		{"no final line ending", strings.TrimSuffix(good, "\n"), "enforce|604800|mail.example.com,*.example.net", nil},
		{"no space after :", "version:STSv1\nmode:enforce\nmx:a.example\nmax_age:1\n", "enforce|1|a.example", nil},
		{"trailing WSP", "version: STSv1 \nmode: enforce\t\nmx: a.example  \nmax_age: 1 \n", "enforce|1|a.example", nil},
		{"any order", "mx: a.example\nmax_age: 1\nmode: enforce\nversion: STSv1\n", "enforce|1|a.example", nil},
		{"mode none without mx", "version: STSv1\nmode: none\nmax_age: 0\n", "none|0|", nil},
		{"max_age at the limit", "version: STSv1\nmode: none\nmax_age: 31557600\n", "none|31557600|", nil},
		{"max_age with leading zeros", "version: STSv1\nmode: none\nmax_age: 0000000001\n", "none|1|", nil},
		{"unknown keys ignored", "version: STSv1\nmode: none\nmax_age: 1\nfoo: bar baz\nx.y-z_1: ünïcode ok\n", "none|1|", nil},
		{"Mode is an unknown key", "version: STSv1\nmode: none\nMode: enforce\nmax_age: 1\n", "none|1|", nil},
		{"duplicate mode: the first counts", "version: STSv1\nmode: testing\nmode: enforce\nmx: a.example\nmax_age: 1\n", "testing|1|a.example", nil},
		{"duplicate with a bad value is ignored", "version: STSv1\nmode: testing\nmode: bogus\nmax_age: 1\nmax_age: 99999999999\nmx: a.example\n", "testing|1|a.example", nil},
		{"mx in upper case kept as written", "version: STSv1\nmode: enforce\nmx: MX.Example.COM\nmax_age: 1\n", "enforce|1|MX.Example.COM", nil},

		{"empty", "", "", ErrPolicyMissing},
		{"no version", "mode: enforce\nmx: a.example\nmax_age: 1\n", "", ErrPolicyMissing},
		{"no mode", "version: STSv1\nmx: a.example\nmax_age: 1\n", "", ErrPolicyMissing},
		{"no max_age", "version: STSv1\nmode: enforce\nmx: a.example\n", "", ErrPolicyMissing},
		{"enforce without mx", "version: STSv1\nmode: enforce\nmax_age: 1\n", "", ErrPolicyMissing},
		{"testing without mx", "version: STSv1\nmode: testing\nmax_age: 1\n", "", ErrPolicyMissing},
		{"version STSv2", "version: STSv2\nmode: none\nmax_age: 1\n", "", ErrPolicySyntax},
		{"mode in upper case", "version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1\n", "", ErrPolicySyntax},
		{"unknown mode", "version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n", "", ErrPolicySyntax},
		{"max_age over a year", "version: STSv1\nmode: none\nmax_age: 31557601\n", "", ErrPolicySyntax},
		{"max_age of 11 digits", "version: STSv1\nmode: none\nmax_age: 00000000001\n", "", ErrPolicySyntax},
		{"negative max_age", "version: STSv1\nmode: none\nmax_age: -1\n", "", ErrPolicySyntax},
		{"max_age with a unit", "version: STSv1\nmode: none\nmax_age: 1d\n", "", ErrPolicySyntax},
		{"blank line", "version: STSv1\n\nmode: none\nmax_age: 1\n", "", ErrPolicySyntax},
		{"trailing blank line", "version: STSv1\nmode: none\nmax_age: 1\n\n", "", ErrPolicySyntax},
		{"bare CR line ending", "version: STSv1\rmode: none\rmax_age: 1\r", "", ErrPolicySyntax},
		{"space before :", "version : STSv1\nmode: none\nmax_age: 1\n", "", ErrPolicySyntax},
		{"leading space", " version: STSv1\nmode: none\nmax_age: 1\n", "", ErrPolicySyntax},
		{"comment line", "# policy\nversion: STSv1\nmode: none\nmax_age: 1\n", "", ErrPolicySyntax},
		{"unknown key with an empty value", "version: STSv1\nmode: none\nmax_age: 1\nfoo:\n", "", ErrPolicySyntax},
		{"tab inside a value", "version: STSv1\nmode: none\nmax_age: 1\nfoo: a\tb\n", "", ErrPolicySyntax},
		{"mx with a trailing dot", "version: STSv1\nmode: enforce\nmx: a.example.\nmax_age: 1\n", "", ErrPolicySyntax},
		{"mx with two wildcards", "version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n", "", ErrPolicySyntax},
		{"mx with a partial wildcard", "version: STSv1\nmode: enforce\nmx: m*.example\nmax_age: 1\n", "", ErrPolicySyntax},
		{"mx with an inner wildcard", "version: STSv1\nmode: enforce\nmx: mx.*.example\nmax_age: 1\n", "", ErrPolicySyntax},
		{"mx in U-labels", "version: STSv1\nmode: enforce\nmx: bücher.example\nmax_age: 1\n", "", ErrPolicySyntax},
		{"mx label ending in a hyphen", "version: STSv1\nmode: enforce\nmx: mx-.example\nmax_age: 1\n", "", ErrPolicySyntax},
		{"two mx on one line", "version: STSv1\nmode: enforce\nmx: a.example b.example\nmax_age: 1\n", "", ErrPolicySyntax},
		{"empty mx", "version: STSv1\nmode: enforce\nmx:\nmax_age: 1\n", "", ErrPolicySyntax},
		{"an HTML page", "<html><body>Not Found</body></html>\n", "", ErrPolicySyntax},
		{"NUL byte", "version: STSv1\nmode: none\nmax_age: 1\x00\n", "", ErrPolicySyntax},
		{"UTF-8 BOM", "\ufeffversion: STSv1\nmode: none\nmax_age: 1\n", "", ErrPolicySyntax},
		{"Latin-1 body", "version: STSv1\nmode: none\nmax_age: 1\nnote: caf\xe9\n", "", ErrPolicyEncoding},
		{"too large", "version: STSv1\nmode: none\nmax_age: 1\nx: " + strings.Repeat("a", MaxPolicyBytes) + "\n", "", ErrPolicyTooLarge},
	}
	for _, tt := range tests {
		p, err := ParsePolicy([]byte(tt.body))
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("%s: ParsePolicy = %+v, %v; want %v", tt.name, p, err, tt.err)
			}
			if ResultType(err) != tlsrpt.ResultSTSPolicyInvalid {
				t.Errorf("%s: ResultType(%v) = %q", tt.name, err, ResultType(err))
			}
			continue
		}
		got := string(p.Mode) + "|" + strconv.FormatInt(p.MaxAge, 10) + "|" + strings.Join(p.MX, ",")
		if err != nil || got != tt.want {
			t.Errorf("%s: ParsePolicy = %s, %v; want %s", tt.name, got, err, tt.want)
		}
	}
}

func TestPolicyAtSizeLimit(t *testing.T) {
	head := "version: STSv1\nmode: none\nmax_age: 1\nx: "
	body := head + strings.Repeat("a", MaxPolicyBytes-len(head)-1) + "\n"
	if len(body) != MaxPolicyBytes {
		t.Fatalf("body of %d bytes", len(body))
	}
	if _, err := ParsePolicy([]byte(body)); err != nil {
		t.Errorf("a policy of exactly %d bytes: %v", MaxPolicyBytes, err)
	}
}

func TestResultType(t *testing.T) {
	if got := ResultType(nil); got != "" {
		t.Errorf("ResultType(nil) = %q", got)
	}
	if got := ResultType(ErrMultipleRecords); got != "" {
		t.Errorf("a TXT record problem is not a failure type: %q", got)
	}
}

func TestMatchMX(t *testing.T) {
	tests := []struct {
		pattern, host string
		ok            bool
	}{
		{"mail.example.com", "mail.example.com", true},
		{"mail.example.com", "MAIL.Example.com", true},
		{"MAIL.EXAMPLE.COM", "mail.example.com", true},
		{"mail.example.com", "mail.example.com.", true},
		{"mail.example.com.", "mail.example.com", true},
		{"*.example.com", "mx1.example.com", true},
		{"*.example.com", "MX1.EXAMPLE.COM.", true},
		{"*.Example.Com", "mx1.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "a.b.example.com", false},
		{"*.example.com", ".example.com", false},
		{"*.example.com", "mx1.example.org", false},
		{"*.com", "example.com", true}, // no public-suffix rule in RFC 8461 §4.1
		{"*.co.uk", "example.co.uk", true},
		{"mail.example.com", "mx.mail.example.com", false},
		{"example.com", "mail.example.com", false},
		{"mail.example.com", "mail.example.com..", false},
		{"mail..example.com", "mail..example.com", false},
		{"*", "localhost", false},
		{"*.", "a.", false},
		{"*.*.example.com", "a.b.example.com", false},
		{"m*.example.com", "mx.example.com", false},
		{"", "", false},
		{"mail.example.com", "", false},
		{"", "mail.example.com", false},
	}
	for _, tt := range tests {
		if got := MatchMX(tt.pattern, tt.host); got != tt.ok {
			t.Errorf("MatchMX(%q, %q) = %v; want %v", tt.pattern, tt.host, got, tt.ok)
		}
	}
	p, err := ParsePolicy([]byte("version: STSv1\nmode: enforce\nmx: mx1.example.com\nmx: *.backup.example.com\nmax_age: 1\n"))
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{"mx1.example.com": true, "b1.backup.example.com": true, "mx2.example.com": false, "backup.example.com": false} {
		if got := p.Matches(host); got != want {
			t.Errorf("Matches(%q) = %v; want %v", host, got, want)
		}
	}
}

// Seeds for FuzzParsePolicy, each with what is unusual about it.
var policySeeds = []string{
	"version: STSv1\nmode: enforce\nmx: mail.example.com\nmax_age: 604800\n", // valid
	"version: STSv1\r\nmode: testing\r\nmx: *.example.com\r\nmax_age: 1",     // CRLF, no final line ending
	"version: STSv1\nmode: none\nmax_age: 0\n",                               // none without mx
	"version: STSv1\n\nmode: none\nmax_age: 0\n",                             // blank line
	"version: STSv1\rmode: none\rmax_age: 0\r",                               // bare CR
	"max_age: 99999999999\n",                                                 // 11 digits
	"mx: *.\nmx: .\nmx: *..\n",                                               // degenerate patterns
	"x: \xff\xfe\n",                                                          // invalid UTF-8
	"\ufeffversion: STSv1\n",                                                 // BOM
	"version: STSv1\nmode: enforce\nmode: \x00\n",                            // NUL in a duplicate
	":\n:::\n", // empty keys
	"",         // empty body
}

func FuzzParsePolicy(f *testing.F) {
	for _, s := range policySeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := ParsePolicy(body)
		if err != nil {
			if ResultType(err) != tlsrpt.ResultSTSPolicyInvalid {
				t.Fatalf("error %v maps to %q", err, ResultType(err))
			}
			return
		}
		if len(body) > MaxPolicyBytes {
			t.Fatalf("accepted %d bytes", len(body))
		}
		switch p.Mode {
		case ModeEnforce, ModeTesting:
			if len(p.MX) == 0 {
				t.Fatalf("mode %s without mx", p.Mode)
			}
		case ModeNone:
		default:
			t.Fatalf("mode %q", p.Mode)
		}
		if p.MaxAge < 0 || p.MaxAge > MaxMaxAge {
			t.Fatalf("max_age %d", p.MaxAge)
		}
		for _, mx := range p.MX {
			if !bytes.Contains(body, []byte(mx)) {
				t.Fatalf("mx %q not in the body", mx)
			}
			// A pattern always matches a host made from it.
			host := strings.Replace(mx, "*", "x", 1)
			if !p.Matches(host) {
				t.Fatalf("mx %q does not match %q", mx, host)
			}
		}
	})
}

// Seeds for FuzzParseRecord: TXT RRsets, the RRs joined by "\n" (the fuzzer
// needs one value; a TXT RR may hold a newline too, which then splits it).
var recordSeeds = []string{
	"v=STSv1; id=20160831085700Z;", // valid
	"v=spf1 -all\nv=STSv1; id=1",   // with another TXT record
	"v=STSv1; id=1\nv=STSv1; id=1", // duplicate
	"v=STSv1",                      // bare version
	"v=STSv1 ; id=1 ;",             // WSP before the separators
	"v=STSv1;;id=1",                // empty field
	"v=STSv1; id=" + "a",           // shortest id
	"v=STSv1; id=\x00",             // NUL
	"v=STSv1; \xff=1; id=1",        // invalid UTF-8 name
	"v=STSv10; id=1",               // another version
	"v=STSv1; id=1; e=",            // empty extension value
}

func FuzzParseRecord(f *testing.F) {
	for _, s := range recordSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		txts := strings.Split(s, "\n")
		r, err := ParseRecord(txts)
		if err != nil {
			if !errors.Is(err, ErrNoRecord) && !errors.Is(err, ErrMultipleRecords) && !errors.Is(err, ErrRecordSyntax) {
				t.Fatalf("error outside the vocabulary: %v", err)
			}
			return
		}
		if !isID(r.ID) || !strings.Contains(s, "id="+r.ID) {
			t.Fatalf("id %q", r.ID)
		}
	})
}

func FuzzMatchMX(f *testing.F) {
	f.Add("*.example.com", "mx.example.com")   // wildcard
	f.Add("mx.example.com", "MX.example.com.") // case and trailing dot
	f.Add("*.", ".")                           // degenerate
	f.Add("*..", "a..")                        // empty labels
	f.Fuzz(func(t *testing.T, pattern, host string) {
		ok := MatchMX(pattern, host)
		if ok && MatchMX(strings.ToUpper(pattern), host) != ok && isASCII(pattern) {
			t.Fatalf("case changed the result: %q %q", pattern, host)
		}
		if ok && !strings.HasPrefix(pattern, "*.") && !strings.EqualFold(strings.TrimSuffix(pattern, "."), strings.TrimSuffix(host, ".")) {
			t.Fatalf("non-wildcard %q matched a different host %q", pattern, host)
		}
		if ok && strings.HasPrefix(pattern, "*.") && strings.Count(strings.TrimSuffix(host, "."), ".") != strings.Count(strings.TrimSuffix(pattern, "."), ".") {
			t.Fatalf("wildcard %q matched %q with another label count", pattern, host)
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
