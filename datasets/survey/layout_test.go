package survey

import "testing"

func TestPartNumber(t *testing.T) {
	for _, tt := range []struct {
		name string
		n    int
		ok   bool
	}{
		{PartName(0), 0, true},
		{PartName(42), 42, true},
		{"part-123456.parquet", 123456, true}, // more parts than five digits
		{".part-00001.parquet.tmp", 0, false}, // uncommitted
		{"part-00001.parquet.tmp", 0, false},
		{"part-.parquet", 0, false},
		{"part-1a.parquet", 0, false},
		{"part--1.parquet", 0, false},
		{"part-00001.PARQUET", 0, false},
		{"manifest.json", 0, false},
	} {
		if n, ok := PartNumber(tt.name); n != tt.n || ok != tt.ok {
			t.Errorf("PartNumber(%q) = %d, %v; want %d, %v", tt.name, n, ok, tt.n, tt.ok)
		}
	}
	if PartName(7) != "part-00007.parquet" {
		t.Errorf("PartName(7) = %q", PartName(7))
	}
}

func TestTargetKey(t *testing.T) {
	for _, tt := range []struct{ ip, host, want string }{
		{"192.0.2.1", "mx.example", "192.0.2.1|mx.example"},
		{"2001:DB8:0:0::1", "mx.example", "2001:db8::1|mx.example"},
		{"2001:db8::1", "mx.example", "2001:db8::1|mx.example"},
		{"::ffff:192.0.2.1", "mx.example", "::ffff:192.0.2.1|mx.example"}, // a mapped address stays one
		{"", "", "|"},
		{"not an address", "mx.example", "not an address|mx.example"},
	} {
		if got := TargetKey(tt.ip, tt.host); got != tt.want {
			t.Errorf("TargetKey(%q, %q) = %q, want %q", tt.ip, tt.host, got, tt.want)
		}
		if got := string(AppendTargetKey([]byte("x"), tt.ip, tt.host)); got != "x"+tt.want {
			t.Errorf("AppendTargetKey(x, %q, %q) = %q, want x%s", tt.ip, tt.host, got, tt.want)
		}
	}
}
