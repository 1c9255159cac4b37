package world

import (
	"reflect"
	"testing"
)

func TestWorldDeterminism(t *testing.T) {
	mk := func(seed int64) *World {
		w, err := New(Params{Domains: 5000, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	a, b, c := mk(1), mk(1), mk(2)
	type derived struct {
		D      Domain
		MX     []MXHost
		Cases  []string
		Status string
	}
	of := func(w *World, i int) derived {
		d := w.Domain(i)
		return derived{d, w.MXHosts(d), w.Cases(d), w.Status(d)}
	}
	differs := 0
	for i := range 5000 {
		da, db, dc := of(a, i), of(b, i), of(c, i)
		if !reflect.DeepEqual(da, db) {
			t.Fatalf("domain %d differs between two worlds of seed 1", i)
		}
		if !reflect.DeepEqual(da.MX, dc.MX) || !reflect.DeepEqual(da.Cases, dc.Cases) {
			differs++
		}
	}
	if differs < 2500 {
		t.Errorf("seed 2 differs from seed 1 in only %d of 5000 domains", differs)
	}
	for s := range 2000 {
		ip := a.SlotAddr(s)
		if got, ok := a.AddrSlot(ip); !ok || got != s {
			t.Fatalf("slot %d -> %s -> %d %v", s, ip, got, ok)
		}
		if b := ip.As4(); b[1] == 0 || b[1] == 255 {
			t.Fatalf("slot %d at %s, outside 127.1-254", s, ip)
		}
	}
	for i := range 5000 {
		if j, ok := a.parseDomain(a.DomainName(i)); !ok || j != i {
			t.Fatalf("parseDomain(%s) = %d %v", a.DomainName(i), j, ok)
		}
	}
}

func TestShares(t *testing.T) {
	if _, err := ParseCases("nope=0.1"); err == nil {
		t.Error("unknown case accepted")
	}
	m, err := ParseCases("default=0,cert_banner_only=0.05")
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(Params{Domains: 2000, Seed: 3, Cases: m})
	if err != nil {
		t.Fatal(err)
	}
	if w.caseTotal != 100 || w.CaseCount(caseCertBannerOnly) != 100 {
		t.Errorf("case total %d, banner_only %d; want 100", w.caseTotal, w.CaseCount(caseCertBannerOnly))
	}
}

func TestCaseGroups(t *testing.T) {
	hostile := HostileCaseNames()
	if len(hostile) < 25 {
		t.Fatalf("hostile group: %v", hostile)
	}
	count := func(spec string) (on, hostileOn int) {
		t.Helper()
		m, err := ParseCases(spec)
		if err != nil {
			t.Fatal(err)
		}
		w, err := New(Params{Domains: 300, Seed: 1, Cases: m})
		if err != nil {
			t.Fatal(err)
		}
		for i := range cases {
			if w.counts[i] > 0 {
				on++
				if cases[i].Hostile {
					hostileOn++
				}
			}
		}
		return on, hostileOn
	}
	if on, h := count(""); h != len(hostile) || on != len(cases) {
		t.Errorf("default world: %d cases on, %d hostile", on, h)
	}
	if on, h := count("hostile=0"); h != 0 || on != len(cases)-len(hostile) {
		t.Errorf("hostile=0: %d on, %d hostile", on, h)
	}
	if on, h := count("default=0,hostile=0.001"); on != len(hostile) || h != len(hostile) {
		t.Errorf("only hostile: %d on, %d hostile", on, h)
	}
	if on, h := count("hostile=0,smtp_tarpit=0.01"); h != 1 || on != len(cases)+1-len(hostile) {
		t.Errorf("a case's own share wins over its group: %d on, %d hostile", on, h)
	}
}
