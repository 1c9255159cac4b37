package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func loadField(dir string) (*FieldResult, error) {
	b, err := os.ReadFile(filepath.Join(dir, "field.json"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var fr FieldResult
	if err := json.Unmarshal(b, &fr); err != nil {
		return nil, fmt.Errorf("field.json: %v", err)
	}
	return &fr, nil
}

// zdnsQueriesPerDomain is what zdns mxlookup --ipv4-lookup asks on the
// proving ground, where every domain has one MX host: MX, then A of it. zdns
// does not count its queries; mxsurvey's manifest does.
const zdnsQueriesPerDomain = 2

// writeField renders the field phase.
func writeField(p func(string, ...any), fr *FieldResult) {
	rs := fr.Rounds
	p("## Side by side with zgrab2 and zdns (the proving ground)\n\n")
	p("One lab built for the comparison (`lab %s`): %s domains, each with one MX name of its own\n", strings.Join(provingGround, " "), num(fr.Domains))
	p("on two of a pool of 200 addresses (%s targets), every server TLS 1.3 with one ECDSA P-256 certificate, latency off,\n", num(int(fr.Targets)))
	p("the lab on the same 2 cores as the tool measured. Every tool runs with concurrency %d and its rate limits lifted\n", fr.Conc)
	p("(mxsurvey `-rate 0 -dns-rate 0 -ip-interval 0 -per-ip-concurrency %d`, zgrab2 `--server-rate-limit=1000000`,\n", fr.Conc)
	p("zdns has none), one after the other against the same lab; each round runs every tool once, ratios are taken\n")
	p("within a round, and the figures are the medians of %d round%s (%s, commit %s).\n", len(rs), plural(len(rs)), fr.Machine.Date, fr.Machine.Commit)
	p("mxsurvey does what a user's scan does: it resolves the domains (MX, A, AAAA, and PTR of each address; with the\n")
	p("default `-policies` also the MTA-STS and TLS-RPT TXT records, the TLSA records of each MX host, DNSSEC status by\n")
	p("the AD bit, and the MTA-STS policy fetch over HTTPS where a record asks for one), probes, and writes Parquet;\n")
	p("zgrab2 is given the scan's targets as `ip,mx_host` rows and only probes. zgrab2 does not send EHLO again after\n")
	p("TLS, mxsurvey does (it records the name the server gives there).\n\n")
	p("When the machine is shared, a tool gets only part of the two cores (the \"cores used\" rows) and the rates\n")
	p("move with the load of others; CPU per item moves much less. The \"two idle cores allow\" rows divide two\n")
	p("cores by the tool's and the lab's CPU per item: the rate each tool would reach if nothing else ran.\n\n")
	if fr.NoAnchors != "" {
		p("**zgrab2 and zdns were not measured: %s.**\n\n", fr.NoAnchors)
	} else if fr.Anchors != "" {
		p("zgrab2 and zdns: built from ../shared/anchors (their README names the upstream commits) into `%s`.\n\n", fr.Anchors)
	}
	if len(rs) == 0 {
		p("(no complete round)\n\n")
		return
	}
	p("```\n")
	for _, k := range []string{"lab", "zdns", "mxsurvey-dns-only", "mxsurvey-dns-policies", "mxsurvey", "zgrab2", "mxsurvey-x25519", "tlsloop-default", "tlsloop-x25519"} {
		if a, ok := fr.Argv[k]; ok {
			p("%-22s %s\n", k+":", strings.Join(a, " "))
		}
	}
	p("```\n\n")

	m := func(f func(FieldRound) float64) float64 { return med(rs, f) }
	ms := func(t func(FieldRound) *ToolFig, f func(*ToolFig) float64) string {
		return f0(m(func(r FieldRound) float64 { return f(t(r)) }))
	}
	rate := func(t *ToolFig) float64 { return t.rate() }
	ratio := func(a, b func(FieldRound) *ToolFig, f func(*ToolFig) float64) string {
		return f2(m(func(r FieldRound) float64 {
			if a(r) == nil || b(r) == nil {
				return nanv
			}
			return div(f(a(r)), f(b(r)))
		}))
	}
	us := func(t func(FieldRound) *ToolFig, f func(*ToolFig) float64) string {
		return f0(m(func(r FieldRound) float64 { return f(t(r)) * 1e6 }))
	}
	cores := func(t *ToolFig) float64 {
		if t == nil {
			return nanv
		}
		return div(t.Proc.CPUS()+t.Proc.LabCPUS, t.Proc.WallS)
	}
	rss := func(t func(FieldRound) *ToolFig) string {
		return mib(m(func(r FieldRound) float64 {
			if t(r) == nil {
				return nanv
			}
			return float64(t(r).Proc.MaxRSSKiB)
		}))
	}
	okOf := func(t func(FieldRound) *ToolFig) string {
		return f0(m(func(r FieldRound) float64 {
			if t(r) == nil {
				return nanv
			}
			return float64(t(r).OK)
		})) + " of " + f0(m(func(r FieldRound) float64 {
			if t(r) == nil {
				return nanv
			}
			return float64(t(r).Items)
		}))
	}
	zg := func(r FieldRound) *ToolFig { return r.ZGrab }
	sc := func(r FieldRound) *ToolFig { return r.Scan }
	sx := func(r FieldRound) *ToolFig { return r.ScanX }
	zd := func(r FieldRound) *ToolFig { return r.ZDNS }
	dn := func(r FieldRound) *ToolFig { return r.DNSOnly }
	dp := func(r FieldRound) *ToolFig { return r.DNSPol }
	qper := func(t *ToolFig) float64 {
		if t == nil {
			return nanv
		}
		if t.Queries == 0 {
			return zdnsQueriesPerDomain
		}
		return div(float64(t.Queries), float64(t.domains()))
	}
	fetchPer := func(n func(*ToolFig) int64) func(*ToolFig) float64 {
		return func(t *ToolFig) float64 {
			if t == nil {
				return nanv
			}
			return div(float64(n(t)), float64(t.domains()))
		}
	}
	fetches := fetchPer(func(t *ToolFig) int64 { return t.Fetches })
	https := fetchPer(func(t *ToolFig) int64 { return t.HTTPS })
	f2s := func(t func(FieldRound) *ToolFig, f func(*ToolFig) float64) string {
		return f2(m(func(r FieldRound) float64 { return f(t(r)) }))
	}

	p("### Probes\n\n")
	p("| | zgrab2 smtp | mxsurvey, default groups | mxsurvey `-tls-groups x25519` | ratio default (mxsurvey / zgrab2) | ratio both X25519 |\n")
	p("|---|---:|---:|---:|---:|---:|\n")
	p("| key exchange negotiated (probes) | %s | %s | %s | | |\n", groups(rs, zg), groups(rs, sc), groups(rs, sx))
	p("| **probes/s** | %s | %s | %s | **%s** | **%s** |\n", ms(zg, rate), ms(sc, rate), ms(sx, rate),
		ratio(sc, zg, rate), ratio(sx, zg, rate))
	cpu := func(t *ToolFig) float64 { return t.cpuPer() }
	p("| CPU per probe, µs (the tool's process) | %s | %s | %s | %s | %s |\n", us(zg, cpu), us(sc, cpu), us(sx, cpu),
		ratio(sc, zg, cpu), ratio(sx, zg, cpu))
	lab := func(t *ToolFig) float64 { return t.labPer() }
	p("| lab CPU per probe, µs (the servers' side) | %s | %s | %s | | |\n", us(zg, lab), us(sc, lab), us(sx, lab))
	both := func(t *ToolFig) float64 { return t.cpuPer() + t.labPer() }
	p("| tool + lab CPU per probe, µs | %s | %s | %s | %s | %s |\n", us(zg, both), us(sc, both), us(sx, both),
		ratio(sc, zg, both), ratio(sx, zg, both))
	bound := func(t *ToolFig) float64 { return div(2, both(t)) }
	p("| probes/s two idle cores allow (2 / tool + lab CPU per probe) | %s | %s | %s | %s | %s |\n", ms(zg, bound), ms(sc, bound), ms(sx, bound),
		ratio(sc, zg, bound), ratio(sx, zg, bound))
	p("| cores used (tool + lab, of 2) | %s | %s | %s | | |\n", f2(m(func(r FieldRound) float64 { return cores(r.ZGrab) })),
		f2(m(func(r FieldRound) float64 { return cores(r.Scan) })), f2(m(func(r FieldRound) float64 { return cores(r.ScanX) })))
	p("| peak RSS | %s | %s | %s | | |\n", rss(zg), rss(sc), rss(sx))
	bytesPer := func(t *ToolFig) float64 { return t.bytesPer() }
	p("| output bytes per probe | %s (JSON) | %s (Parquet) | %s (Parquet) | | |\n", ms(zg, bytesPer), ms(sc, bytesPer), ms(sx, bytesPer))
	p("| probes with a TLS handshake | %s | %s | %s | | |\n", okOf(zg), okOf(sc), okOf(sx))
	p("| DNS queries per domain (mxsurvey resolves; zgrab2 is given the targets) | | %s | %s | | |\n", f2s(sc, qper), f2s(sx, qper))
	p("| MTA-STS policy fetches per domain (started / TLS completed) | | %s / %s | %s / %s | | |\n",
		f2s(sc, fetches), f2s(sc, https), f2s(sx, fetches), f2s(sx, https))
	lp := func(g string) func(FieldRound) *LoopFig {
		return func(r FieldRound) *LoopFig {
			if g == "x25519" {
				return r.TLSX
			}
			return r.TLS
		}
	}
	lrate := func(l *LoopFig) float64 {
		if l == nil {
			return nanv
		}
		return l.OpsPerS
	}
	lcpu := func(l *LoopFig) float64 {
		if l == nil {
			return nanv
		}
		return l.PerOpUs
	}
	p("| bare Go handshake loop (tlsloop, %d in flight): handshakes/s | | %s | %s | | |\n", fr.Conc,
		f0(m(func(r FieldRound) float64 { return lrate(lp("default")(r)) })), f0(m(func(r FieldRound) float64 { return lrate(lp("x25519")(r)) })))
	p("| … its CPU per handshake, µs (inside the loop) | | %s | %s | | |\n",
		f0(m(func(r FieldRound) float64 { return lcpu(lp("default")(r)) })), f0(m(func(r FieldRound) float64 { return lcpu(lp("x25519")(r)) })))
	p("| mxsurvey CPU per probe / bare handshake CPU | | %s | %s | | |\n",
		f2(m(func(r FieldRound) float64 { return div(r.Scan.cpuPer()*1e6, lcpu(r.TLS)) })),
		f2(m(func(r FieldRound) float64 { return div(r.ScanX.cpuPer()*1e6, lcpu(r.TLSX)) })))

	p("\n### DNS only\n\n")
	p("zdns asks MX, then A of each exchange (%d queries per domain here). mxsurvey `-policies=false` asks MX, then A and\n", zdnsQueriesPerDomain)
	p("AAAA of each MX host; with the default `-policies` it also asks, with the DO bit, the domain's `_mta-sts` and\n")
	p("`_smtp._tls` TXT records beside its MX, the TLSA records (`_25._tcp`) of each MX host, and A and AAAA of\n")
	p("`mta-sts.<domain>` where a record asks for a policy fetch (the fetch itself is blocked here: no `-allow`). Both\n")
	p("record the domain, its hosts and addresses in Parquet (each address as a blocked target row), the policies run\n")
	p("also its policies and tlsa rows. Queries per domain are mxsurvey's own count (its manifest), retries included.\n\n")
	p("| | zdns mxlookup | mxsurvey DNS-only, `-policies=false` | mxsurvey DNS-only, default `-policies` | ratio `-policies=false` / zdns | ratio `-policies` / zdns |\n")
	p("|---|---:|---:|---:|---:|---:|\n")
	row := func(name string, f func(*ToolFig) float64, fmtv func(float64) string, withRatio bool) {
		v := func(t func(FieldRound) *ToolFig) string {
			return fmtv(m(func(r FieldRound) float64 { return f(t(r)) }))
		}
		r1, r2 := "", ""
		if withRatio {
			r1, r2 = ratio(dn, zd, f), ratio(dp, zd, f)
		}
		p("| %s | %s | %s | %s | %s | %s |\n", name, v(zd), v(dn), v(dp), r1, r2)
	}
	row("DNS queries per domain", qper, f2, true)
	row("**domains/s**", rate, f0, true)
	row("queries/s", func(t *ToolFig) float64 { return t.rate() * qper(t) }, f0, true)
	usv := func(f func(*ToolFig) float64) func(*ToolFig) float64 {
		return func(t *ToolFig) float64 { return f(t) * 1e6 }
	}
	row("CPU per domain, µs", usv(cpu), f0, true)
	perQ := func(t *ToolFig) float64 { return div(t.cpuPer(), qper(t)) }
	row("**CPU per query, µs**", usv(perQ), f1, true)
	row("lab CPU per domain, µs", usv(lab), f0, false)
	row("domains/s two idle cores allow (2 / tool + lab CPU per domain)", bound, f0, true)
	row("cores used (tool + lab, of 2)", cores, f2, false)
	p("| peak RSS | %s | %s | %s | | |\n", rss(zd), rss(dn), rss(dp))
	p("| output bytes per domain | %s (JSON) | %s (Parquet: mx) | %s (Parquet: mx, policies, tlsa) | | |\n", ms(zd, bytesPer), ms(dn, bytesPer), ms(dp, bytesPer))
	p("| domains answered NOERROR | %s | %s | %s | | |\n", okOf(zd), okOf(dn), okOf(dp))
	p("| MTA-STS policy fetches per domain (started; blocked here) | | | %s | | |\n", f2s(dp, fetches))

	p("\n### Every round (the spread)\n\n")
	p("| round | zdns domains/s | mxsurvey DNS-only domains/s (`-policies=false` / `-policies`) | zgrab2 probes/s | mxsurvey probes/s | mxsurvey x25519 probes/s | tlsloop default / x25519 handshakes/s |\n")
	p("|---:|---:|---:|---:|---:|---:|---:|\n")
	for i, r := range rs {
		p("| %d | %s | %s / %s | %s | %s | %s | %s / %s |\n", i+1, f0(r.ZDNS.rate()), f0(r.DNSOnly.rate()), f0(r.DNSPol.rate()), f0(r.ZGrab.rate()),
			f0(r.Scan.rate()), f0(r.ScanX.rate()), f0(lrate(r.TLS)), f0(lrate(r.TLSX)))
	}
	p("\n")
}

// groups lists the key exchanges a tool negotiated over the rounds.
func groups(rs []FieldRound, t func(FieldRound) *ToolFig) string {
	sum := map[string]int64{}
	for _, r := range rs {
		if f := t(r); f != nil {
			for g, n := range f.Groups {
				sum[g] += n
			}
		}
	}
	if len(sum) == 0 {
		return "–"
	}
	var keys []string
	for g := range sum {
		keys = append(keys, g)
	}
	sort.Slice(keys, func(i, j int) bool { return sum[keys[i]] > sum[keys[j]] })
	var parts []string
	for _, g := range keys {
		if g == "" {
			g = "(none)"
		}
		parts = append(parts, g)
	}
	return strings.Join(parts, ", ")
}

// fieldTargets adds the field's rows to the targets table.
func fieldTargets(p func(string, ...any), fr *FieldResult, status func(bool) string) {
	rs := fr.Rounds
	if len(rs) == 0 || fr.NoAnchors != "" {
		return
	}
	r := func(a, b func(FieldRound) *ToolFig, f func(*ToolFig) float64) float64 {
		return med(rs, func(x FieldRound) float64 {
			if a(x) == nil || b(x) == nil {
				return nanv
			}
			return div(f(a(x)), f(b(x)))
		})
	}
	rate := func(t *ToolFig) float64 { return t.rate() }
	// A figure these results lack (a run before the step existed) is not
	// a miss.
	st := func(v float64, ok bool) string {
		if v != v {
			return "not measured in these results"
		}
		return status(ok)
	}
	zg := func(x FieldRound) *ToolFig { return x.ZGrab }
	x := r(func(x FieldRound) *ToolFig { return x.ScanX }, zg, rate)
	d := r(func(x FieldRound) *ToolFig { return x.Scan }, zg, rate)
	p("| probes/s ≥ 1.5× zgrab2 at equal key exchange (X25519), proving ground | %sx | %s |\n", f2(x), st(x, x >= 1.5))
	p("| probes/s ≥ 1.3× zgrab2 at each tool's default | %sx | %s |\n", f2(d), st(d, d >= 1.3))
	zd := func(x FieldRound) *ToolFig { return x.ZDNS }
	perQ := func(t *ToolFig) float64 {
		if t.Queries == 0 {
			return div(t.cpuPer(), zdnsQueriesPerDomain)
		}
		return div(t.Proc.CPUS(), float64(t.Queries))
	}
	for _, d := range []struct {
		what string
		t    func(FieldRound) *ToolFig
	}{
		{"asking AAAA and the policy records (default `-policies`)", func(x FieldRound) *ToolFig { return x.DNSPol }},
		{"asking AAAA, `-policies=false`", func(x FieldRound) *ToolFig { return x.DNSOnly }},
	} {
		dr, q := r(d.t, zd, rate), r(d.t, zd, perQ)
		p("| DNS-only domains/s ≥ 1× zdns mxlookup at the same concurrency, %s | %sx | %s |\n", d.what, f2(dr), st(dr, dr >= 1))
		p("| DNS CPU per query ≤ zdns's, %s | %sx | %s |\n", d.what, f2(q), st(q, q <= 1))
	}
}
