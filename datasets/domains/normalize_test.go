package domains

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	long := strings.Repeat(label63+".", 4)[:250] + ".com" // 254 bytes
	tests := []struct {
		in, want, reason string // reason: expected text after "invalid domain: "
	}{
		{in: "example.com", want: "example.com"},
		{in: "  Example.COM  ", want: "example.com"},
		{in: "example.com.", want: "example.com"},
		{in: "EXAMPLE.COM.", want: "example.com"},
		{in: "bücher.example", want: "xn--bcher-kva.example"},
		{in: "BÜCHER.example", want: "xn--bcher-kva.example"},
		{in: "xn--bcher-kva.example", want: "xn--bcher-kva.example"},
		{in: "XN--BCHER-KVA.EXAMPLE", want: "xn--bcher-kva.example"},
		{in: "straße.de", want: "xn--strae-oqa.de"},                            // non-transitional
		{in: "例え。テスト。", want: "xn--r8jz45g.xn--zckzah"},                        // ideographic dots, one trailing
		{in: "ｅｘａｍｐｌｅ．ｃｏｍ", want: "example.com"},                               // full-width mapped
		{in: "пример.рф", want: "xn--e1afmkfd.xn--p1ai"},                       // Cyrillic TLD
		{in: "_dmarc.example.com", want: "_dmarc.example.com"},                 // underscore tolerated
		{in: "r3---sn-ab.googlevideo.com", want: "r3---sn-ab.googlevideo.com"}, // "--" at 3-4 tolerated
		{in: "a-b.example", want: "a-b.example"},
		{in: "r3---sn-abc.example", want: "r3---sn-abc.example"}, // hyphens inside a label
		{in: "xn--a--yka.example", want: "xn--a--yka.example"},   // "a-ü": hyphen inside the U-label
		{in: label63 + ".com", want: label63 + ".com"},
		{in: long[4:], want: long[4:]}, // 250 bytes

		{in: "", reason: "empty"},
		{in: "   ", reason: "empty"},
		{in: ".", reason: "empty"},
		{in: "a..b", reason: "empty label"},
		{in: ".example.com", reason: "empty label"},
		{in: "example.com..", reason: "empty label"},
		{in: "xn--.com", reason: "empty label"},
		{in: "a" + label63 + ".com", reason: "label longer than 63 bytes"},
		{in: long, reason: "name longer than 253 bytes"},
		{in: "foo bar.com", reason: `invalid character " "`},
		{in: "*.example.com", reason: `invalid character "*"`},
		{in: "*", reason: `invalid character "*"`},
		{in: "user@example.com", reason: `invalid character "@"`},
		{in: "http://example.com/", reason: `invalid character ":"`},
		{in: "1,example.com", reason: `invalid character ","`},
		{in: "⑴.com", reason: `invalid character "("`}, // maps to "(1)"
		{in: "-bad-.example", reason: `label "-bad-" starts or ends with a hyphen`},
		{in: "bad-.example", reason: `label "bad-" starts or ends with a hyphen`},
		{in: "-bad.example", reason: `label "-bad" starts or ends with a hyphen`},
		{in: "mx.-.example", reason: `label "-" starts or ends with a hyphen`},
		{in: "example.com-", reason: `label "com-" starts or ends with a hyphen`},
		{in: "ü-.example", reason: `label "ü-" starts or ends with a hyphen`},        // U-label
		{in: "xn----dha.example", reason: `label "ü-" starts or ends with a hyphen`}, // its A-label
		{in: "com", reason: "single label"},
		{in: "localhost", reason: "single label"},
		{in: "com.", reason: "single label"},
		{in: "192.0.2.1", reason: "IP address literal"},
		{in: "192.0.2.1.", reason: "IP address literal"},
		{in: "[192.0.2.1]", reason: "IP address literal"},
		{in: "2001:db8::1", reason: "IP address literal"},
		{in: "[IPv6:2001:db8::1]", reason: "IP address literal"},
		{in: "１９２.０.２.１", reason: "IP address literal"}, // full-width digits
		{in: "1.2.3", reason: "numeric top-level label"},
		{in: "example.c_m", reason: "underscore in top-level label"},
		{in: "ex\xffample.com", reason: "not valid UTF-8"},
		{in: "xn--zz.com", reason: `IDNA: invalid label "zz"`},         // bad Punycode
		{in: "a\u200db.com", reason: `IDNA: invalid label "a\u200db"`}, // ZWJ outside ContextJ
	}
	for _, tt := range tests {
		got, err := Normalize(tt.in)
		if tt.reason == "" {
			if err != nil || got != tt.want {
				t.Errorf("Normalize(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("Normalize(%q) = %q; want error %q", tt.in, got, tt.reason)
			continue
		}
		if got != "" || !errors.Is(err, ErrInvalidDomain) || err.Error() != "invalid domain: "+tt.reason {
			t.Errorf("Normalize(%q) = %q, %q; want error %q", tt.in, got, err, "invalid domain: "+tt.reason)
		}
	}
}

func TestNormalizeIdempotent(t *testing.T) {
	for _, s := range []string{"bücher.example", "Example.COM.", "例え。テスト", "_dmarc.example.com"} {
		a, err := Normalize(s)
		if err != nil {
			t.Fatalf("Normalize(%q): %v", s, err)
		}
		if b, err := Normalize(a); err != nil || b != a {
			t.Errorf("Normalize(%q) = %q, %v; want %q", a, b, err, a)
		}
	}
}
