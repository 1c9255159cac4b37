package guard

import (
	"net/netip"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	allow := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	block := []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("127.66.0.0/16"),
		netip.MustParsePrefix("203.0.113.7/32")}
	strict := New(nil, []netip.Prefix{netip.MustParsePrefix("8.8.8.0/24")})
	lab := New(allow, block)
	tests := []struct {
		p      *Policy
		addr   string
		ok     bool
		reason string
	}{
		{strict, "8.8.4.4", true, ""},
		{strict, "8.8.8.8", false, ReasonBlocklisted},
		{strict, "2a00:1450:4001::1b", true, ""},
		{strict, "127.0.0.1", false, ReasonSpecialPurpose},
		{strict, "10.0.0.1", false, ReasonSpecialPurpose},
		{strict, "169.254.169.254", false, ReasonSpecialPurpose},
		{strict, "0.0.0.0", false, ReasonSpecialPurpose},
		{strict, "192.168.1.1", false, ReasonSpecialPurpose},
		{strict, "172.31.255.255", false, ReasonSpecialPurpose},
		{strict, "172.32.0.1", true, ""},
		{strict, "100.64.0.1", false, ReasonSpecialPurpose},
		{strict, "255.255.255.255", false, ReasonSpecialPurpose},
		{strict, "224.0.0.1", false, ReasonSpecialPurpose},
		{strict, "::1", false, ReasonSpecialPurpose},
		{strict, "::", false, ReasonSpecialPurpose},
		{strict, "fe80::1", false, ReasonSpecialPurpose},
		{strict, "fd00::1", false, ReasonSpecialPurpose},
		{strict, "2001:db8::25", false, ReasonSpecialPurpose},
		{strict, "::ffff:10.0.0.1", false, ReasonSpecialPurpose}, // mapped v4 is judged as v4
		{strict, "::ffff:8.8.4.4", true, ""},
		{strict, "fe80::1%eth0", false, ReasonSpecialPurpose},
		{lab, "127.1.2.3", true, ""},
		{lab, "::1", true, ""},
		{lab, "127.66.1.1", false, ReasonBlocklisted}, // the blocklist beats -allow
		{lab, "10.0.0.1", false, ReasonSpecialPurpose},
		{lab, "169.254.169.254", false, ReasonSpecialPurpose},
		{lab, "198.51.100.9", false, ReasonBlocklisted},
		{lab, "203.0.113.7", false, ReasonBlocklisted},
	}
	for _, tt := range tests {
		ok, reason := tt.p.Check(netip.MustParseAddr(tt.addr))
		if ok != tt.ok || reason != tt.reason {
			t.Errorf("Check(%s) = %v %q, want %v %q", tt.addr, ok, reason, tt.ok, tt.reason)
		}
	}
	if ok, reason := strict.Check(netip.Addr{}); ok || reason != ReasonInvalid {
		t.Errorf("zero address: %v %q", ok, reason)
	}
}

func TestParseBlocklist(t *testing.T) {
	got, err := parseBlocklist(strings.NewReader("# opt-outs\n192.0.2.0/24\n\n198.51.100.7 # one host\n2001:db8::/32\n10.1.2.3/8\n"), "t")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"192.0.2.0/24", "198.51.100.7/32", "2001:db8::/32", "10.0.0.0/8"}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Errorf("line %d: %s, want %s", i, got[i], want[i])
		}
	}
	_, err = parseBlocklist(strings.NewReader("192.0.2.0/24\nnot-an-address\n"), "bl.txt")
	if err == nil || !strings.Contains(err.Error(), "bl.txt line 2") {
		t.Fatalf("bad line error = %v", err)
	}
}

// A worker's guard on top of a scan's: an address passes only when both
// let it, so neither the scan nor the worker can widen the other.
func TestAnd(t *testing.T) {
	lab := netip.MustParsePrefix("127.0.0.0/8")
	scan := New([]netip.Prefix{lab}, []netip.Prefix{netip.MustParsePrefix("127.9.0.0/16")})
	worker := New([]netip.Prefix{netip.MustParsePrefix("127.1.0.0/16")}, []netip.Prefix{netip.MustParsePrefix("127.1.2.0/24")})
	both := scan.And(worker)
	for addr, want := range map[string]bool{
		"127.1.1.1": true,  // allowed by both
		"127.1.2.3": false, // the worker's blocklist
		"127.9.0.1": false, // the scan's blocklist
		"127.5.0.1": false, // special-purpose, allowed by the scan only
		"192.0.2.1": false, // documentation: allowed by neither
		"8.8.8.8":   true,
	} {
		if ok, _ := both.Check(netip.MustParseAddr(addr)); ok != want {
			t.Errorf("%s: allowed %v, want %v", addr, ok, want)
		}
	}
	if ok, _ := scan.Check(netip.MustParseAddr("127.5.0.1")); !ok {
		t.Error("And changed the scan's own policy")
	}
}
