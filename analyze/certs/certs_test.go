package certs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"encoding/pem"

	"github.com/mxsurvey/mxsurvey/analyze/internal/testpki"
)

func TestCheck(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	root := testpki.Make(testpki.Spec{CN: "Test Root", Org: "Test PKI", IsCA: true}, nil)
	inter := testpki.Make(testpki.Spec{CN: "Test Issuing CA", Org: "Test PKI", IsCA: true}, root)
	other := testpki.Make(testpki.Spec{CN: "Other Root", IsCA: true}, nil)

	good := testpki.Make(testpki.Spec{CN: "mx.example.com", DNSNames: []string{"mx.example.com"}}, inter)
	wild := testpki.Make(testpki.Spec{CN: "example.com", DNSNames: []string{"example.com", "*.example.com"}}, inter)
	partial := testpki.Make(testpki.Spec{CN: "m*.example.com", DNSNames: []string{"m*.example.com"}}, inter)
	cnOnly := testpki.Make(testpki.Spec{CN: "mail.example.org"}, inter)
	expired := testpki.Make(testpki.Spec{CN: "old.example.com", DNSNames: []string{"old.example.com"},
		NotAfter: now.Add(-time.Hour)}, inter)
	future := testpki.Make(testpki.Spec{CN: "new.example.com", DNSNames: []string{"new.example.com"},
		NotBefore: now.Add(time.Hour)}, inter)
	self := testpki.Make(testpki.Spec{CN: "localhost", DNSNames: []string{"localhost"}}, nil)
	unknown := testpki.Make(testpki.Spec{CN: "mx.example.net", DNSNames: []string{"mx.example.net"}}, other)

	tests := []struct {
		name  string
		chain [][]byte
		want  Result
		check func(*testing.T, *Leaf)
	}{
		{"trusted with intermediate", testpki.Chain(good, inter), Result{Trusted: true}, func(t *testing.T, l *Leaf) {
			if l.Wildcard || l.CNOnly || l.Cert.SelfSigned || l.KeyLabel() != "ECDSA 256" || l.IssuerLabel != "Test Issuing CA / Test PKI" {
				t.Errorf("leaf = %+v (%s)", l, l.KeyLabel())
			}
		}},
		{"missing intermediate", testpki.Chain(good), Result{}, nil},
		{"root sent too", testpki.Chain(good, inter, root), Result{Trusted: true}, nil},
		{"wildcard", testpki.Chain(wild, inter), Result{Trusted: true}, func(t *testing.T, l *Leaf) {
			if !l.Wildcard || l.CNOnly {
				t.Errorf("wildcard leaf = %+v", l)
			}
		}},
		{"partial-label wildcard is still a wildcard certificate", testpki.Chain(partial, inter), Result{Trusted: true}, func(t *testing.T, l *Leaf) {
			if !l.Wildcard {
				t.Errorf("m*.example.com not counted as wildcard: %+v", l)
			}
		}},
		{"cn only", testpki.Chain(cnOnly, inter), Result{Trusted: true}, func(t *testing.T, l *Leaf) {
			if !l.CNOnly || !l.FromCN || len(l.Names) != 1 || l.Names[0] != "mail.example.org" {
				t.Errorf("cn-only leaf = %+v", l)
			}
		}},
		{"expired", testpki.Chain(expired, inter), Result{Expired: true}, nil},
		{"not yet valid", testpki.Chain(future, inter), Result{NotYetValid: true}, nil},
		{"self-signed, not a CA", testpki.Chain(self), Result{}, func(t *testing.T, l *Leaf) {
			if !l.Cert.SelfSigned {
				t.Errorf("self-signed leaf not detected")
			}
		}},
		{"unknown CA", testpki.Chain(unknown, other), Result{}, func(t *testing.T, l *Leaf) {
			if l.Cert.SelfSigned {
				t.Errorf("CA-issued leaf counted as self-signed")
			}
		}},
		{"garbage intermediate", [][]byte{good.DER, []byte("not a certificate")}, Result{}, nil},
	}
	v := New(testpki.Pool(root))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for round := 0; round < 2; round++ { // the second round is served from the caches
				got, err := v.Check(tt.chain, now)
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				if got.Trusted != tt.want.Trusted || got.Expired != tt.want.Expired || got.NotYetValid != tt.want.NotYetValid {
					t.Errorf("round %d: got trusted=%v expired=%v notyet=%v, want %+v", round, got.Trusted, got.Expired, got.NotYetValid, tt.want)
				}
				if tt.check != nil {
					tt.check(t, got.Leaf)
				}
			}
		})
	}
	if s := v.Stats(); s.Verifications != len(tests) || s.TrustHits != len(tests) {
		t.Errorf("stats = %+v, want %d verifications and as many hits", s, len(tests))
	}
}

func TestCheckErrors(t *testing.T) {
	v := New(nil)
	if _, err := v.Check(nil, time.Now()); !errors.Is(err, ErrNoChain) {
		t.Errorf("empty chain: %v", err)
	}
	for i := 0; i < 2; i++ {
		if _, err := v.Check([][]byte{[]byte("\x30\x03junk")}, time.Now()); !errors.Is(err, ErrUnparseable) {
			t.Errorf("junk leaf: %v", err)
		}
	}
}

// A certificate expiring in the middle of a day must be trusted before the
// moment and not after it, although both probes share the day's cache key.
func TestTrustChangesWithinADay(t *testing.T) {
	day := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	root := testpki.Make(testpki.Spec{CN: "Root", IsCA: true}, nil)
	leaf := testpki.Make(testpki.Spec{CN: "mx.example.com", DNSNames: []string{"mx.example.com"},
		NotAfter: day.Add(12 * time.Hour)}, root)
	v := New(testpki.Pool(root))
	for _, tc := range []struct {
		at      time.Time
		trusted bool
	}{{day.Add(time.Hour), true}, {day.Add(13 * time.Hour), false}, {day.Add(2 * time.Hour), true}} {
		r, err := v.Check(testpki.Chain(leaf), tc.at)
		if err != nil || r.Trusted != tc.trusted || r.Expired == tc.trusted {
			t.Errorf("at %v: %+v, %v; want trusted=%v", tc.at, r, err, tc.trusted)
		}
	}
}

func TestLoadRoots(t *testing.T) {
	dir := t.TempDir()
	root := testpki.Make(testpki.Spec{CN: "Root", IsCA: true}, nil)
	good := filepath.Join(dir, "roots.pem")
	if err := os.WriteFile(good, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.DER}), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadRoots(good); err != nil {
		t.Errorf("LoadRoots: %v", err)
	}
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("nothing here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadRoots(empty); err == nil {
		t.Errorf("LoadRoots accepted a bundle without certificates")
	}
	if _, err := LoadRoots(filepath.Join(dir, "missing.pem")); err == nil {
		t.Errorf("LoadRoots accepted a missing file")
	}
}
