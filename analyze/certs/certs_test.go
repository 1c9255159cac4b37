package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
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

// Many goroutines checking the same few chains at once: each leaf is parsed
// once and each (chain, day) verified once, the results are those of a
// sequential check, and the counters do not depend on the interleaving.
func TestCheckConcurrent(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	root := testpki.Make(testpki.Spec{CN: "Root", IsCA: true}, nil)
	inter := testpki.Make(testpki.Spec{CN: "Issuing CA", IsCA: true}, root)
	var chains [][][]byte
	for i := range 8 {
		leaf := testpki.Make(testpki.Spec{CN: "mx.example.com", DNSNames: []string{fmt.Sprintf("mx%d.example.com", i)}}, inter)
		if i%2 == 0 {
			chains = append(chains, testpki.Chain(leaf, inter))
		} else {
			chains = append(chains, testpki.Chain(leaf)) // intermediate missing: not trusted
		}
	}
	v := New(testpki.Pool(root))
	const workers, rounds = 16, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				i := (w + r) % len(chains)
				at := now.Add(time.Duration(r%2) * 24 * time.Hour) // two days
				res, err := v.Check(chains[i], at)
				if err != nil || res.Trusted != (i%2 == 0) {
					t.Errorf("chain %d: %+v, %v", i, res, err)
				}
			}
		})
	}
	wg.Wait()
	checks := workers * rounds
	if s := v.Stats(); s.LeavesParsed != len(chains) || s.Verifications != 2*len(chains) || s.TrustHits != checks-2*len(chains) {
		t.Errorf("stats = %+v, want %d leaves parsed, %d verifications, %d hits", s, len(chains), 2*len(chains), checks-2*len(chains))
	}
}

// The verdict for a cache key must not depend on which probe of the key came
// first. Here the intermediate becomes valid at 10:00 and the leaf expires at
// 20:00: probes at 11:00 and 15:00 share a key, whichever is checked first.
func TestTrustIndependentOfOrder(t *testing.T) {
	day := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	root := testpki.Make(testpki.Spec{CN: "Root", IsCA: true}, nil)
	inter := testpki.Make(testpki.Spec{CN: "Issuing CA", IsCA: true, NotBefore: day.Add(10 * time.Hour)}, root)
	leaf := testpki.Make(testpki.Spec{CN: "mx.example.com", DNSNames: []string{"mx.example.com"},
		NotAfter: day.Add(20 * time.Hour)}, inter)
	chain := testpki.Chain(leaf, inter)
	want := map[int]bool{1: false, 11: true, 15: true, 21: false}
	for _, order := range [][]int{{1, 11, 15, 21}, {21, 15, 11, 1}, {15, 1, 21, 11}} {
		v := New(testpki.Pool(root))
		for _, h := range order {
			r, err := v.Check(chain, day.Add(time.Duration(h)*time.Hour))
			if err != nil || r.Trusted != want[h] {
				t.Errorf("order %v, %02d:00: trusted=%v (%v), want %v", order, h, r.Trusted, err, want[h])
			}
		}
		if s := v.Stats(); s.Verifications != 3 {
			t.Errorf("order %v: %d verifications, want 3 (before 10:00, 10:00-20:00, after 20:00)", order, s.Verifications)
		}
	}
}

func TestFirstInstant(t *testing.T) {
	day := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	mk := func(nb, na time.Time) *x509.Certificate { return &x509.Certificate{NotBefore: nb, NotAfter: na} }
	always := mk(day.AddDate(-1, 0, 0), day.AddDate(1, 0, 0))
	fromTen := mk(day.Add(10*time.Hour), day.AddDate(1, 0, 0))
	untilTwenty := mk(day.AddDate(-1, 0, 0), day.Add(20*time.Hour))
	tests := []struct {
		name   string
		certs  []*x509.Certificate
		period string
		at     time.Time
		want   time.Time
	}{
		{"all valid all day", []*x509.Certificate{always, always}, "11", day.Add(15 * time.Hour), day},
		{"not yet valid", []*x509.Certificate{fromTen}, "0", day.Add(5 * time.Hour), day},
		{"valid from ten", []*x509.Certificate{fromTen}, "1", day.Add(15 * time.Hour), day.Add(10 * time.Hour)},
		{"expired after twenty", []*x509.Certificate{untilTwenty}, "0", day.Add(21 * time.Hour), day.Add(20*time.Hour + time.Nanosecond)},
		{"both", []*x509.Certificate{untilTwenty, fromTen}, "11", day.Add(15 * time.Hour), day.Add(10 * time.Hour)},
		{"unparsed intermediate skipped", []*x509.Certificate{always, fromTen}, "1x1", day.Add(12 * time.Hour), day.Add(10 * time.Hour)},
	}
	for _, tt := range tests {
		if got := firstInstant(dayOf(tt.at), tt.certs, []byte(tt.period), tt.at); !got.Equal(tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
