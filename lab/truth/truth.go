// Package truth states what a scan and an analysis of the lab must
// produce: one Domain per domain (the mx rows of a scan) and one Host per
// target (its probe row, plus the analyzer's facts). It states them from
// the lab's own configuration, the world and its case records (lab/world),
// never by running the scanner's parsers or the analyzer's matcher
// (DESIGN 6), so that one bug cannot hide on both sides. The JSON tags of
// Domain, MX and Host are the dataset's column names (docs/schema.md): e2e
// compares every column with the field of the same name.
package truth

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mxsurvey/mxsurvey/lab/pki"
	"github.com/mxsurvey/mxsurvey/lab/world"
)

// MX is one MX host of a domain as a resolver must find it.
type MX struct {
	Host       string   `json:"host"`
	Preference int32    `json:"preference"`
	HostStatus string   `json:"host_status"`
	IPs        []string `json:"ips"`
	// The mx rows' columns of the host (schema 2): the CNAMEs of its
	// address lookup, and the DNSSEC status of its address RRsets (the
	// lab's A and AAAA of a name are judged alike).
	CNAMEs     []string `json:"mx_host_cnames,omitempty"`
	AddrDNSSEC string   `json:"addr_dnssec"`
}

// Domain is one line of truth-domains.jsonl: what resolving the domain
// must produce (the mx rows of a scan).
type Domain struct {
	Domain     string   `json:"domain"`
	Rank       int64    `json:"rank"`
	DNSStatus  string   `json:"dns_status"`
	ImplicitMX bool     `json:"implicit_mx"`
	CNAMEs     []string `json:"cnames"`
	MX         []MX     `json:"mx"`
	Cases      []string `json:"cases"`
	MXDNSSEC   string   `json:"mx_dnssec"`
	// Policy is the domain's policies row; Facts its verdicts (policy.go).
	Policy Policy      `json:"policy"`
	Facts  DomainFacts `json:"facts"`
}

// Facts are the analyzer's per-probe facts, stated from the case that made
// the certificate, never computed by a matcher.
type Facts struct {
	Trusted          bool `json:"trusted"`
	Expired          bool `json:"expired"`
	NotYetValid      bool `json:"not_yet_valid"`
	SelfSigned       bool `json:"self_signed"`
	Wildcard         bool `json:"wildcard"`
	WildcardUsed     bool `json:"wildcard_used"`
	CNOnly           bool `json:"cn_only"`
	MatchMX          bool `json:"match_mx"`
	MatchBanner      bool `json:"match_banner"`
	MatchEHLO        bool `json:"match_ehlo"`
	MatchPostTLSEHLO bool `json:"match_post_tls_ehlo"`
	MatchPTR         bool `json:"match_ptr"`
	ValidForMX       bool `json:"valid_for_mx"`
}

// Host is one line of truth-hosts.jsonl: the probe row a scan must write
// for the target (ip, mx_host), with SNI = mx_host, a client offering TLS
// 1.3 and Go's default key exchange groups, IPv6 enabled and 127.0.0.0/8
// and ::1/128 allowed.
type Host struct {
	IP         string   `json:"ip"`
	Port       int32    `json:"port"`
	MXHost     string   `json:"mx_host"`
	Cases      []string `json:"cases"`
	LatencyMS  int64    `json:"latency_ms"`
	Dialect    string   `json:"dialect,omitempty"` // lab, postfix, exim, microsoft, masked (README "Dialects"); empty without a server
	PTRHost    string   `json:"ptr_host"`
	PTRStatus  string   `json:"ptr_status"`
	Outcome    string   `json:"outcome"`
	ErrorClass string   `json:"error_class"`

	BannerCode     int32    `json:"banner_code"`
	BannerHost     string   `json:"banner_host"`
	EHLOVerb       string   `json:"ehlo_verb"`
	EHLOCode       int32    `json:"ehlo_code"`
	EHLOHost       string   `json:"ehlo_host"`
	EHLOExtensions []string `json:"ehlo_extensions"`

	STARTTLSOffered bool  `json:"starttls_offered"`
	STARTTLSCode    int32 `json:"starttls_code"`

	TLSVersion     string     `json:"tls_version"`
	TLSGroup       string     `json:"tls_group"` // spelled as docs/schema.md: X25519MLKEM768, X25519, P-256, ...
	CertSubjectCN  string     `json:"cert_subject_cn"`
	CertSANDNS     []string   `json:"cert_san_dns"`
	CertIssuer     string     `json:"cert_issuer"`
	CertNotBefore  *time.Time `json:"cert_not_before,omitempty"`
	CertNotAfter   *time.Time `json:"cert_not_after,omitempty"`
	CertSHA256     string     `json:"cert_sha256"`
	CertChainLen   int        `json:"cert_chain_len"`
	CertKeyType    string     `json:"cert_key_type"`
	CertKeyBits    int32      `json:"cert_key_bits"`
	CertSelfSigned bool       `json:"cert_self_signed"`

	PostTLSEHLOCode       int32    `json:"post_tls_ehlo_code"`
	PostTLSEHLOHost       string   `json:"post_tls_ehlo_host"`
	PostTLSEHLOExtensions []string `json:"post_tls_ehlo_extensions"`

	Facts *Facts `json:"facts,omitempty"` // nil when no handshake completes
	DANE  DANE   `json:"dane"`            // the facts under DANE (policy.go)

	// Raw is what the lab knows of the server-sent text of hostile cases
	// (absent for the others).
	Raw []Text `json:"raw,omitempty"`
}

// Text is what the lab knows of one column of server-sent text.
type Text struct {
	Column string `json:"column"` // banner or ehlo_reply
	// Bytes (base64 in JSON: they may be any bytes) is the column's value when
	// Exact, else the beginning of what the server sends: a trickle (the
	// tarpit) or a stream beyond the caps (Capped). The column and Bytes then
	// agree on their common length.
	Bytes  []byte `json:"bytes"`
	Exact  bool   `json:"exact"`
	Capped bool   `json:"capped"` // the server sends more than a scan may keep: the column is cut at a cap
}

// Truth is the content of a lab directory's truth files.
type Truth struct {
	Domains []Domain
	Hosts   []Host
	TLSA    []TLSA
}

// ReadFiles loads the three truth files (JSON Lines). A million-domain
// truth is large; tests use small worlds.
func ReadFiles(domainsPath, hostsPath, tlsaPath string) (*Truth, error) {
	t := &Truth{}
	var err error
	if t.Domains, err = readJSONL[Domain](domainsPath); err != nil {
		return nil, err
	}
	if t.Hosts, err = readJSONL[Host](hostsPath); err != nil {
		return nil, err
	}
	if t.TLSA, err = readJSONL[TLSA](tlsaPath); err != nil {
		return nil, err
	}
	return t, nil
}

// readJSONL reads a file of JSON lines of T.
func readJSONL[T any](path string) ([]T, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dec := json.NewDecoder(bufio.NewReaderSize(f, 1<<20))
	var out []T
	for dec.More() {
		var v T
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("lab: %s: %w", path, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// Stater states the truth of one running lab: its world, its certificates,
// the SMTP port a scan probes and the port of its policy hosts.
type Stater struct {
	w       *world.World
	auth    *pki.Authority
	port    int
	stsPort int

	provOnce  sync.Once
	prov      []Host           // the classic providers' targets' rows
	provTLSA  []TLSA           // their MX hosts' tlsa rows
	provRows  map[string]*Host // prov by targetKey
	provViews views            // their MX hosts
	provErr   error
}

// NewStater states the truth of w with the certificates of auth, for a scan
// of SMTP port port and of MTA-STS policies on stsPort.
func NewStater(w *world.World, auth *pki.Authority, port, stsPort int) *Stater {
	return &Stater{w: w, auth: auth, port: port, stsPort: stsPort}
}

// Domain states what resolving d yields, and its policies row; its
// verdicts need its targets' rows (Rows). vs holds the views of its MX
// hosts made so far, and gets the others.
func (st *Stater) Domain(d world.Domain, vs views) Domain {
	w := st.w
	t := Domain{Domain: d.Name, Rank: int64(d.Index + 1), DNSStatus: w.Status(d), ImplicitMX: w.ImplicitMX(d),
		CNAMEs: w.CNAMEs(d), Cases: w.Cases(d)}
	t.MXDNSSEC = st.lookup(d.Name, hasAny).dnssec
	if t.DNSStatus == world.StatusOK {
		for _, h := range w.MXHosts(d) {
			m := MX{Host: h.Name, Preference: int32(h.Pref), HostStatus: h.Status}
			for _, s := range h.Slots {
				m.IPs = append(m.IPs, w.SlotAddr(s).String())
			}
			for _, a := range h.Addrs {
				m.IPs = append(m.IPs, a.String())
			}
			a := st.view(vs, h).addr
			m.CNAMEs, m.AddrDNSSEC = a.cnames, a.dnssec
			t.MX = append(t.MX, m)
		}
	}
	sort.SliceStable(t.MX, func(a, b int) bool { return t.MX[a].Preference < t.MX[b].Preference })
	t.Policy = st.policy(d)
	return t
}

// providers states the rows of the classic providers' targets and MX
// hosts once: they are written first, and the verdicts of their customers
// read them.
func (st *Stater) providers() error {
	st.provOnce.Do(func() {
		vs := views{}
		for _, h := range st.w.ProviderMXHosts() {
			r, err := st.tlsaRow(st.view(vs, h))
			if err != nil {
				st.provErr = err
				return
			}
			st.provTLSA = append(st.provTLSA, r)
		}
		st.provRows = map[string]*Host{}
		for _, t := range st.w.ProviderTargets() {
			h, err := st.host(t, nil, true, vs)
			if err != nil {
				st.provErr = err
				return
			}
			st.prov = append(st.prov, h)
		}
		for i := range st.prov {
			st.provRows[targetKey(st.prov[i].IP, st.prov[i].MXHost)] = &st.prov[i]
		}
		st.provViews = vs
	})
	return st.provErr
}

// Providers states the rows of the classic providers' targets and the tlsa
// rows of their MX hosts, which no domain owns; they come first in
// truth-hosts.jsonl and truth-tlsa.jsonl.
func (st *Stater) Providers() ([]Host, []TLSA, error) {
	if err := st.providers(); err != nil {
		return nil, nil, err
	}
	return st.prov, st.provTLSA, nil
}

// Rows states domain d and appends to hosts the rows of the targets it
// owns (world.World.OwnedTargets), to tlsa the tlsa rows of the MX hosts it
// owns. memo spares making one certificate twice for the domain; it is
// cleared first.
func (st *Stater) Rows(d world.Domain, memo map[string]pki.Digest, hosts []Host, tlsa []TLSA) (Domain, []Host, []TLSA, error) {
	clear(memo)
	if err := st.providers(); err != nil {
		return Domain{}, hosts, tlsa, err
	}
	vs := views{}
	first := len(hosts)
	for _, t := range st.w.OwnedTargets(d) {
		h, err := st.host(t, memo, true, vs)
		if err != nil {
			return Domain{}, hosts, tlsa, err
		}
		hosts = append(hosts, h)
	}
	for _, h := range st.w.OwnedMXHosts(d) {
		r, err := st.tlsaRow(st.view(vs, h))
		if err != nil {
			return Domain{}, hosts, tlsa, err
		}
		tlsa = append(tlsa, r)
	}
	td := st.Domain(d, vs)
	if !td.needsFacts(st.w.STSOf(d)) {
		td.Facts = st.domainFacts(d, &td, nil)
		return td, hosts, tlsa, nil
	}
	rows := map[string]*Host{}
	for i := range hosts[first:] {
		h := &hosts[first+i]
		rows[targetKey(h.IP, h.MXHost)] = h
	}
	// Targets others write: a classic provider's, a self-hosted leader's.
	for _, t := range st.w.Targets(d) {
		k := targetKey(t.IP.String(), t.MX)
		if rows[k] != nil {
			continue
		}
		if h := st.provRows[k]; h != nil {
			rows[k] = h
			continue
		}
		// Only for the verdicts: the certificate's digest is not needed.
		h, err := st.host(t, memo, false, vs)
		if err != nil {
			return Domain{}, hosts, tlsa, err
		}
		rows[k] = &h
	}
	td.Facts = st.domainFacts(d, &td, rows)
	return td, hosts, tlsa, nil
}

// All states the whole truth in memory, in the order of the truth files:
// for small worlds and tests (a lab streams it).
func (st *Stater) All() (*Truth, error) {
	hosts, tlsa, err := st.Providers()
	if err != nil {
		return nil, err
	}
	t := &Truth{Hosts: slices.Clone(hosts), TLSA: slices.Clone(tlsa)}
	memo := map[string]pki.Digest{}
	for i := range st.w.Len() {
		var d Domain
		if d, t.Hosts, t.TLSA, err = st.Rows(st.w.Domain(i), memo, t.Hosts, t.TLSA); err != nil {
			return nil, err
		}
		t.Domains = append(t.Domains, d)
	}
	return t, nil
}

// upperKeywords is an extension list as a scan stores it: keyword
// uppercased, parameters as sent.
func upperKeywords(ext []string) []string {
	out := make([]string, len(ext))
	for i, e := range ext {
		k, rest, found := strings.Cut(e, " ")
		out[i] = strings.ToUpper(k)
		if found {
			out[i] += " " + rest
		}
	}
	return out
}

// Host states the probe row for one target and its facts. memo spares
// making one certificate twice for a domain.
func (st *Stater) Host(t world.Target, memo map[string]pki.Digest) (Host, error) {
	return st.host(t, memo, true, views{})
}

// host is Host, without the certificate's digest (made by making the
// certificate) unless digest; vs are the views of the domain's MX hosts.
func (st *Stater) host(t world.Target, memo map[string]pki.Digest, digest bool, vs views) (Host, error) {
	h, err := st.probe(t, memo, digest)
	if err != nil {
		return h, err
	}
	h.DANE = st.dane(t, &h, st.view(vs, t.Host))
	return h, nil
}

// probe states the probe row for one target, reading the script of its
// server's case step by step up to where the case says the conversation
// ends.
func (st *Stater) probe(t world.Target, memo map[string]pki.Digest, digest bool) (Host, error) {
	h := Host{IP: t.IP.String(), Port: int32(st.port), MXHost: t.MX}
	if t.Server == nil {
		h.Cases = []string{t.Case.Name}
		h.Outcome, h.ErrorClass = t.Case.End.Outcome, t.Case.End.Class
		if h.Outcome != world.OutSkipped {
			// The scan looked the address up: it has no PTR. A skipped
			// target may or may not be looked up: no PTR status.
			h.PTRStatus = world.StatusNXDomain
		}
		return h, nil
	}
	s := t.Server
	c := s.Case
	sc := &c.SMTP
	h.Cases = s.CasesOf()
	h.LatencyMS = s.Latency.Milliseconds()
	h.Dialect = s.Dialect.String()
	h.PTRHost, h.PTRStatus = s.PTR, world.StatusOK
	if s.PTR == "" {
		h.PTRStatus = world.StatusNXDomain
	}
	h.Outcome, h.ErrorClass = world.OutOK, ""
	if c.End.Outcome != "" {
		h.Outcome, h.ErrorClass = c.End.Outcome, c.End.Class
	}
	raw := func(col string, b []byte, exact, capped bool) {
		h.Raw = append(h.Raw, Text{Column: col, Bytes: b, Exact: exact, Capped: capped})
	}

	// The greeting.
	switch sc.Open {
	case world.OpenSilent, world.OpenReset:
		return h, nil
	case world.OpenTarpit:
		// One byte per 3 s: no line completes within any step deadline
		// under a minute, so there is no code and no host.
		raw("banner", []byte(s.TarpitLine()), false, false)
		return h, nil
	case world.OpenEndless:
		// The line cap ends the read; an unfinished line has no code.
		raw("banner", append([]byte(s.EndlessHead()), world.EndlessChunk[:64]...), false, true)
		return h, nil
	case world.OpenHuge:
		// The reply cap ends the read; the lines read so far are well-formed.
		h.BannerCode, h.BannerHost = 220, world.SayHost(s.Banner)
		raw("banner", append([]byte(s.HugeFirst()), world.HugeChunk[:1024]...), false, true)
		return h, nil
	case world.OpenRefuse:
		h.BannerCode, h.BannerHost = int32(sc.Refusal.Code), world.SayHost(s.Banner)
		return h, nil
	}
	if sc.Open.Foreign() {
		// The first line is not a reply line: a reader stops there.
		raw("banner", world.FirstLine(s.Foreign()), true, false)
		return h, nil
	}
	h.BannerCode, h.BannerHost = 220, s.BannerHost()
	if c.Hostile {
		raw("banner", []byte(s.Greeting(time.Time{})), true, false)
	}

	// EHLO (HELO).
	h.EHLOVerb, h.EHLOCode, h.EHLOHost = "EHLO", 250, world.SayHost(s.EHLO)
	switch sc.EHLO {
	case world.EHLORefuse:
		h.EHLOVerb = "HELO" // a HELO reply has no extensions
	case world.EHLOReset:
		h.EHLOCode, h.EHLOHost = 0, ""
		return h, nil
	case world.EHLOCodeChange:
		// A reader stops at the line whose code differs, and keeps it: the
		// extensions are those of the lines before it and of it; STARTTLS,
		// further down, is not seen.
		lines := s.EHLOLines(false, "", ehloPeer)[:world.CodeChangeLine+1]
		h.EHLOExtensions = upperKeywords(s.Extensions(false)[:world.CodeChangeLine])
		raw("ehlo_reply", []byte(strings.Join(lines, "\r\n")+"\r\n"), true, false)
		return h, nil
	case world.EHLOManyExt:
		// The scan keeps AssumeMaxReplyLines lines (the first names the
		// host); STARTTLS is the third extension, so it is seen.
		h.EHLOExtensions = upperKeywords(s.Extensions(false)[:world.AssumeMaxReplyLines-1])
		h.STARTTLSOffered = slices.Contains(h.EHLOExtensions, "STARTTLS")
		raw("ehlo_reply", []byte(strings.Join(s.EHLOLines(false, "", ehloPeer)[:4], "\r\n")+"\r\n"), false, true)
		return h, nil
	default:
		h.EHLOExtensions = upperKeywords(s.Extensions(false))
		if c.Hostile {
			raw("ehlo_reply", []byte(strings.Join(s.EHLOLines(false, "", ehloPeer), "\r\n")+"\r\n"), true, false)
		}
	}

	// STARTTLS.
	h.STARTTLSOffered = slices.Contains(h.EHLOExtensions, "STARTTLS")
	if !h.STARTTLSOffered {
		return h, nil
	}
	if sc.STARTTLS.Code != 0 {
		h.STARTTLSCode = int32(sc.STARTTLS.Code)
		return h, nil
	}
	h.STARTTLSCode = 220

	// TLS. A handshake that fails shows its chain only when the server sent
	// it in clear (TLS 1.2); in TLS 1.3 it is encrypted, and after a reset,
	// a plain text or garbage answer there is none.
	if h.Outcome == world.OutTLS && (sc.AfterReady != world.AfterHandshake || !c.TLS.MaxTLS12) {
		return h, nil
	}
	sp := s.CertSpec(t.MX)
	if digest {
		dg, err := st.auth.Digest(sp, s.Shared, memo)
		if err != nil {
			return h, err
		}
		h.CertSHA256, h.CertChainLen = dg.SHA256, dg.ChainLen
	}
	if sp.Broken == world.BrokenLeaf {
		return h, nil // nothing of the leaf but its hash
	}
	h.CertSubjectCN, h.CertSANDNS = sp.CN, sp.SANs
	h.CertKeyType, h.CertKeyBits = sp.Key.KeyFacts()
	h.CertSelfSigned = sp.Issuer == world.IssuerSelf
	h.CertIssuer = st.auth.IssuerName(sp)
	nb, na := sp.Validity.Dates()
	h.CertNotBefore, h.CertNotAfter = &nb, &na
	if h.Outcome == world.OutTLS {
		// The chain travelled in clear and is kept, but the handshake
		// failed: no TLS version, no facts (a chain recovered from a failed
		// handshake is evidence, not a certificate in use).
		return h, nil
	}
	h.TLSVersion = world.TLSVersion(c.TLS.MaxTLS12)
	h.TLSGroup = world.NegotiatedGroup(c.TLS.MaxTLS12)

	// EHLO after TLS.
	h.PostTLSEHLOCode, h.PostTLSEHLOHost = 250, world.SayHost(s.PostEHLO)
	h.PostTLSEHLOExtensions = upperKeywords(s.Extensions(true))
	h.Facts = facts(s, sp, t.MX)
	return h, nil
}

// ehloPeer is the client address the truth's EHLO lines are made with:
// only Exim's and Microsoft's replies echo it, and the truth states the raw
// EHLO reply of hostile (lab-dialect) servers only.
var ehloPeer netip.Addr

// facts states the analyzer's facts from the case. exact holds the names the
// lab wrote into the certificate (SANs, or the CN when there is no SAN);
// byWildcard holds the names the lab knows a valid wildcard covers: only a
// CertWildcard rule makes one, for *.<zone>; the target's MX name and the
// server's Wild names are one label under that zone by construction (a
// gateway's mta<k>.int.<p> banner is not). A CertFixed name with a "*" is a
// wildcard the lab knows to cover nothing. The names matched are those a
// scan writes: a dotless banner is no banner_host (world.SayHost).
func facts(s *world.Server, sp world.CertSpec, mx string) *Facts {
	f := &Facts{
		Trusted:     sp.Issuer == world.IssuerLab && sp.Validity == world.ValidNow,
		Expired:     sp.Validity == world.ValidExpired,
		NotYetValid: sp.Validity == world.ValidFuture,
		SelfSigned:  sp.Issuer == world.IssuerSelf,
		CNOnly:      sp.SANs == nil,
	}
	exact := map[string]bool{}
	byWildcard := map[string]bool{}
	switch r := s.CertRule(); {
	case r.Names == world.CertWildcard:
		f.Wildcard = true
		byWildcard[mx] = true
		for _, n := range s.Wild {
			byWildcard[n] = true
		}
	case r.Names == world.CertFixed && strings.Contains(sp.CN, "*"):
		f.Wildcard = true
	default:
		if sp.SANs == nil {
			exact[sp.CN] = true
		}
		for _, n := range sp.SANs {
			exact[n] = true
		}
	}
	match := func(name string) bool {
		if name == "" {
			return false
		}
		if !exact[name] && byWildcard[name] {
			f.WildcardUsed = true
		}
		return exact[name] || byWildcard[name]
	}
	f.MatchMX = match(mx)
	f.MatchBanner = match(s.BannerHost())
	f.MatchEHLO = match(world.SayHost(s.EHLO))
	f.MatchPostTLSEHLO = match(world.SayHost(s.PostEHLO))
	f.MatchPTR = match(s.PTR)
	f.ValidForMX = f.Trusted && f.MatchMX && !f.Expired && !f.NotYetValid
	return f
}
