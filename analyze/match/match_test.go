package match

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"strings"
	"testing"
)

func TestMatchName(t *testing.T) {
	tests := []struct {
		pattern, host string
		ok, wild      bool
		why           string
	}{
		{"mx.example.com", "mx.example.com", true, false, "exact"},
		{"MX.Example.COM", "mx.example.com", true, false, "case-insensitive pattern"},
		{"mx.example.com", "MX.EXAMPLE.com", true, false, "case-insensitive host"},
		{"mx.example.com.", "mx.example.com", true, false, "trailing dot in pattern"},
		{"mx.example.com", "mx.example.com.", true, false, "trailing dot in host"},
		{"mx.example.com", "mx.example.com..", false, false, "two trailing dots: empty label"},
		{"mx.example.com", "mx2.example.com", false, false, "different name"},
		{"example.com", "mx.example.com", false, false, "parent does not cover child"},
		{"*.example.com", "mx.example.com", true, true, "wildcard matches one label"},
		{"*.EXAMPLE.com", "Mx.example.COM", true, true, "wildcard, mixed case"},
		{"*.example.com", "a.b.example.com", false, false, "wildcard never spans two labels"},
		{"*.example.com", "example.com", false, false, "wildcard needs a non-empty label"},
		{"*.example.com", ".example.com", false, false, "empty left-most label"},
		{"*.example.com", "*.example.com", false, false, "a host containing * is not a host"},
		{"f*.example.com", "foo.example.com", false, false, "partial wildcard (suffix)"},
		{"*f.example.com", "oof.example.com", false, false, "partial wildcard (prefix)"},
		{"f*o.example.com", "foo.example.com", false, false, "partial wildcard (infix)"},
		{"mx.*.example.com", "mx.a.example.com", false, false, "wildcard not left-most"},
		{"*.*.example.com", "a.b.example.com", false, false, "two wildcards"},
		{"*", "localhost", false, false, "bare wildcard"},
		{"*.com", "example.com", false, false, "one label after wildcard"},
		{"*.co.uk", "example.co.uk", false, false, "public suffix after wildcard"},
		{"*.example.co.uk", "mx.example.co.uk", true, true, "registered domain under a multi-label suffix"},
		{"*.test", "mx.test", false, false, "single label after wildcard"},
		{"*.example.test", "mx.example.test", true, true, "unknown TLD: default rule, not a public suffix"},
		{"*.xn--p1ai", "xn--e1afmkfd.xn--p1ai", false, false, "IDN TLD is still a single label"},
		{"xn--mller-kva.example", "müller.example", true, false, "U-label host converted to A-label"},
		{"xn--mller-kva.example", "MÜLLER.example", true, false, "U-label host with upper case"},
		{"*.example.de", "bücher.example.de", true, true, "wildcard covers an IDN label"},
		{"müller.example", "müller.example", false, false, "pattern in U-labels is not an A-label"},
		{"xn--mller-kva.example", "xn--mller-kva.example", true, false, "A-label host as-is"},
		{"192.0.2.1", "192.0.2.1", false, false, "IP addresses are not names"},
		{"*.0.2.1", "192.0.2.1", false, false, "wildcard cannot cover an IP"},
		{"mx.example.com", "[192.0.2.1]", false, false, "address literal"},
		{"[192.0.2.1]", "[192.0.2.1]", false, false, "address literal on both sides"},
		{"2001:db8::1", "2001:db8::1", false, false, "IPv6"},
		{"", "", false, false, "empty"},
		{"mx.example.com", "", false, false, "empty host"},
		{"", "mx.example.com", false, false, "empty pattern"},
		{".", ".", false, false, "root only"},
		{"localhost", "localhost", true, false, "single-label exact match is still a match"},
		{"mx..example.com", "mx..example.com", false, false, "empty inner label"},
	}
	for _, tt := range tests {
		ok, wild := MatchName(tt.pattern, tt.host)
		if ok != tt.ok || wild != tt.wild {
			t.Errorf("%s: MatchName(%q, %q) = %v, %v; want %v, %v", tt.why, tt.pattern, tt.host, ok, wild, tt.ok, tt.wild)
		}
	}
}

func TestNamesAndMatches(t *testing.T) {
	san := &x509.Certificate{
		Subject:  pkix.Name{CommonName: "cn.example.com"},
		DNSNames: []string{"MX.Example.com.", "*.example.com"},
	}
	names, fromCN := Names(san)
	if fromCN || strings.Join(names, " ") != "mx.example.com *.example.com" {
		t.Errorf("Names(san) = %q, %v", names, fromCN)
	}
	if ok, w := Matches(san, "mx.example.com"); !ok || w {
		t.Errorf("exact SAN beats wildcard: got %v, %v", ok, w)
	}
	if ok, w := Matches(san, "other.example.com"); !ok || !w {
		t.Errorf("wildcard SAN: got %v, %v", ok, w)
	}
	if ok, _ := Matches(san, "cn.example.com"); !ok {
		t.Errorf("cn.example.com is covered by the wildcard SAN")
	}
	onlySAN := &x509.Certificate{Subject: pkix.Name{CommonName: "cn.example.org"}, DNSNames: []string{"mx.example.com"}}
	if ok, _ := Matches(onlySAN, "cn.example.org"); ok {
		t.Errorf("CN must be ignored when SAN dNSNames are present")
	}
	cnOnly := &x509.Certificate{Subject: pkix.Name{CommonName: "Mail.Example.org"}}
	names, fromCN = Names(cnOnly)
	if !fromCN || len(names) != 1 || names[0] != "mail.example.org" {
		t.Errorf("Names(cnOnly) = %q, %v", names, fromCN)
	}
	if ok, w := Matches(cnOnly, "mail.example.org"); !ok || w {
		t.Errorf("CN fallback: got %v, %v", ok, w)
	}
	if names, fromCN := Names(&x509.Certificate{}); names != nil || fromCN {
		t.Errorf("no names: got %q, %v", names, fromCN)
	}
	if ok, _ := Matches(nil, "mx.example.com"); ok {
		t.Errorf("nil certificate matched")
	}
}

// FuzzMatchName checks that matching never panics and keeps its invariants on
// arbitrary server-controlled strings.
func FuzzMatchName(f *testing.F) {
	seeds := [][2]string{
		{"mx.example.com", "mx.example.com"},                   // plain exact match
		{"*.example.com", "mx.example.com"},                    // good wildcard
		{"*.co.uk", "example.co.uk"},                           // wildcard over a public suffix
		{"f*.example.com", "foo.example.com"},                  // partial wildcard
		{"*.", "a."},                                           // wildcard with nothing after it
		{"*..", "a.."},                                         // empty labels everywhere
		{"xn--mller-kva.example", "müller.example"},            // IDN conversion
		{"xn--", "\xff\xfe"},                                   // invalid A-label, invalid UTF-8 host
		{"[::1]", "[::1]"},                                     // address literal
		{"192.0.2.1", "192.0.2.1"},                             // IPv4 literal
		{"", "."},                                              // empty and root
		{"*.*", "*.*"},                                         // wildcard-only names
		{strings.Repeat("a.", 200), strings.Repeat("a.", 200)}, // very long name
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, host string) {
		ok, wild := MatchName(pattern, host)
		if wild && !ok {
			t.Fatalf("viaWildcard without a match: %q %q", pattern, host)
		}
		if wild && !strings.HasPrefix(pattern, "*.") {
			t.Fatalf("wildcard match from a pattern without a leading *.: %q %q", pattern, host)
		}
		if ok && !wild && normalize(pattern) != normalize(host) && isASCII(host) {
			t.Fatalf("exact match of different ASCII names: %q %q", pattern, host)
		}
		// Case never matters for ASCII names.
		if ok2, wild2 := MatchName(strings.ToUpper(pattern), host); isASCII(pattern) && (ok2 != ok || wild2 != wild) {
			t.Fatalf("case changed the result: %q %q", pattern, host)
		}
		// A valid ASCII host always matches itself, exactly.
		if h, valid := canonicalHost(host); valid && isASCII(host) && h != "" {
			if ok, wild := MatchName(host, host); !ok || wild {
				t.Fatalf("host %q does not match itself", host)
			}
		}
	})
}

func TestIsAddress(t *testing.T) {
	for s, want := range map[string]bool{
		"192.0.2.1": true, "::1": true, "2001:db8::1": true, "fe80::1%eth0": true, "[192.0.2.1]": true,
		"192.0.2": false, "1234": false, "01.2.3.4": false, "mx.example.com": false, "1.2.3.4.example": false,
		"": false, "%eth0": false, "a:b": false,
	} {
		if got := isAddress(s); got != want {
			t.Errorf("isAddress(%q) = %v, want %v", s, got, want)
		}
	}
}
