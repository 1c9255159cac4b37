package peer

import (
	"bytes"
	"reflect"
	"testing"
)

func tlsRecord(typ byte, payload []byte) []byte {
	return append([]byte{typ, 3, 3, byte(len(payload) >> 8), byte(len(payload))}, payload...)
}

func hsMsg(typ byte, body []byte) []byte {
	return append([]byte{typ, byte(len(body) >> 16), byte(len(body) >> 8), byte(len(body))}, body...)
}

func u24(b []byte) []byte {
	return append([]byte{byte(len(b) >> 16), byte(len(b) >> 8), byte(len(b))}, b...)
}

func certMsg(certs ...[]byte) []byte {
	var list []byte
	for _, c := range certs {
		list = append(list, u24(c)...)
	}
	return hsMsg(11, u24(list))
}

func TestPlaintextChain(t *testing.T) {
	a, b := []byte("leaf certificate"), []byte("intermediate")
	hello := hsMsg(2, bytes.Repeat([]byte{1}, 40))
	flight := append(append([]byte{}, hello...), certMsg(a, b)...)
	flight = append(flight, hsMsg(14, nil)...) // ServerHelloDone
	tests := []struct {
		name string
		in   []byte
		want [][]byte
	}{
		{"one record", tlsRecord(22, flight), [][]byte{a, b}},
		{"message split over records", append(tlsRecord(22, flight[:50]), tlsRecord(22, flight[50:])...), [][]byte{a, b}},
		{"warning alert before", append(tlsRecord(21, []byte{1, 0}), tlsRecord(22, flight)...), [][]byte{a, b}},
		{"TLS 1.3: encrypted after ChangeCipherSpec", append(append(tlsRecord(22, hello), tlsRecord(20, []byte{1})...),
			tlsRecord(22, certMsg(a))...), nil},
		{"truncated record", tlsRecord(22, flight)[:60], nil},
		{"truncated certificate list", tlsRecord(22, append(append([]byte{}, hello...), hsMsg(11, []byte{0, 0, 9, 0, 0, 20, 'x'})...)), nil},
		{"empty certificate list", tlsRecord(22, hsMsg(11, []byte{0, 0, 0})), nil},
		{"not TLS", []byte("220 hello\r\n"), nil},
		{"nothing", nil, nil},
	}
	for _, tt := range tests {
		if got := plaintextChain(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

// Seeds for FuzzPlaintextChain, each with what is odd about it.
func FuzzPlaintextChain(f *testing.F) {
	f.Add(tlsRecord(22, certMsg([]byte("leaf"), []byte("ca"))))  // well-formed
	f.Add(tlsRecord(22, hsMsg(11, []byte{0xff, 0xff, 0xff, 0}))) // list length beyond the message
	f.Add(tlsRecord(22, hsMsg(11, []byte{0, 0, 4, 0xff, 0xff, 0xff, 1})))
	f.Add([]byte{22, 3, 3, 0xff, 0xff}) // record longer than the input
	f.Add([]byte{22, 3, 3, 0, 0})       // empty record
	f.Fuzz(func(t *testing.T, in []byte) {
		total := 0
		for _, c := range plaintextChain(in) {
			total += len(c)
		}
		if total > len(in) {
			t.Fatalf("chain of %d bytes from %d input bytes", total, len(in))
		}
	})
}

func TestSNIName(t *testing.T) {
	for in, want := range map[string]string{
		"mx.example.com.": "mx.example.com", "mx.example.com": "mx.example.com", "": "",
		"192.0.2.1": "", "2001:db8::1": "", "[2001:db8::1]": "",
	} {
		if got := SNIName(in); got != want {
			t.Errorf("SNIName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCapText(t *testing.T) {
	if got := CapText("héllo", 2); got != "h" {
		t.Errorf("cut inside a rune: %q", got)
	}
	if got := CapText("hello", 3); got != "hel" {
		t.Errorf("%q", got)
	}
	if got := CapText("\xff\xff\xff\xff\xff\xff", 3); len(got) != 3 {
		t.Errorf("invalid UTF-8 cut to %d", len(got))
	}
}
