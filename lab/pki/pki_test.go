package pki

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"path/filepath"
	"reflect"
	"testing"
)

// TestCreateCertificate holds the lab's signing shortcut against
// x509.CreateCertificate: the same DER, byte for byte.
func TestCreateCertificate(t *testing.T) {
	a, err := newAuthority(42)
	if err != nil {
		t.Fatal(err)
	}
	specs := []certSpec{
		{cn: "mx.amber1.test", sans: []string{"mx.amber1.test"}},
		{cn: "mx.amber1.test", sans: []string{"mx.amber1.test"}, issuer: issSelf, key: keyP384},
		{cn: "localhost", sans: []string{"localhost"}, issuer: issSelf, key: keyRSA2048},
		{cn: "mx.amber1.test", issuer: issUnknown, validity: validExpired},
		{cn: "*.mail.provider2.test", sans: []string{"*.mail.provider2.test"}, key: keyRSA2048},
	}
	for _, sp := range specs {
		is, err := a.make(sp)
		if err != nil {
			t.Fatal(err)
		}
		got := is.tls.Certificate[0]
		tmpl, parent, signer := a.template(sp)
		want, err := x509.CreateCertificate(nil, tmpl, parent, tmpl.PublicKey, signer)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: DER differs from x509.CreateCertificate's", sp.id())
		}
		if _, err := x509.ParseCertificate(got); err != nil {
			t.Errorf("%s: %v", sp.id(), err)
		}
	}
}

// TestTruthJSON holds the hand-rolled truth encoders against encoding/json.
func TestTruthJSON(t *testing.T) {
	_, tr := testLab(t)
	for i := range tr.Domains {
		want, _ := json.Marshal(&tr.Domains[i])
		if got := appendTruthDomain(nil, &tr.Domains[i]); !bytes.Equal(got, append(want, '\n')) {
			t.Fatalf("domain row differs:\n%s\n%s", got, want)
		}
	}
	for i := range tr.Hosts {
		want, _ := json.Marshal(&tr.Hosts[i])
		if got := appendTruthHost(nil, &tr.Hosts[i]); !bytes.Equal(got, append(want, '\n')) {
			t.Fatalf("host row differs:\n%s\n%s", got, want)
		}
	}
	odd := TruthDomain{Domain: "a\"<b>\x01é", CNAMEs: []string{}, Cases: []string{"x&y"}}
	want, _ := json.Marshal(&odd)
	if got := appendTruthDomain(nil, &odd); !bytes.Equal(got, append(want, '\n')) {
		t.Errorf("escaping:\n%s\n%s", got, want)
	}
}

// TestTruthBackground: with TruthBackground, Start returns while the truth
// is written; ReadTruth waits for it and reads what a synchronous lab writes.
func TestTruthBackground(t *testing.T) {
	_, want := testLab(t)
	dir := t.TempDir()
	l, err := Start(context.Background(), Config{WorldParams: WorldParams{Domains: 1000, Seed: 7}, DNSAddr: "127.0.0.1:0", OutDir: dir, TruthBackground: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got, err := ReadTruth(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Domains) != len(want.Domains) || len(got.Hosts) != len(want.Hosts) {
		t.Fatalf("background truth: %d domains %d hosts, synchronous %d %d", len(got.Domains), len(got.Hosts), len(want.Domains), len(want.Hosts))
	}
	for i := range got.Hosts {
		g, w := got.Hosts[i], want.Hosts[i]
		g.Port, w.Port = 0, 0
		if g.CertKeyType == "RSA" {
			g.CertSHA256, w.CertSHA256 = "", "" // one RSA key per run
		}
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("row %d differs:\n%+v\n%+v", i, g, w)
		}
	}
	if err := l.WaitTruth(context.Background()); err != nil || !l.Info.TruthReady || l.Info.Targets != len(got.Hosts) {
		t.Errorf("WaitTruth: %v, info %+v", err, l.Info)
	}
	// No lab.json: the files are read as they are; -no-truth: an error.
	dir2 := t.TempDir()
	l2, err := Start(context.Background(), Config{WorldParams: WorldParams{Domains: 100, Seed: 7}, DNSAddr: "127.0.0.1:0", OutDir: dir2, NoTruth: true})
	if err != nil {
		t.Fatal(err)
	}
	l2.Close()
	if _, err := ReadTruth(dir2); err == nil {
		t.Error("ReadTruth of a -no-truth lab: no error")
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".*.tmp")); len(m) > 0 {
		t.Errorf("temporary files left: %v", m)
	}
}
