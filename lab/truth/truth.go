package truth

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Vocabulary of the truth files. The values are those scan/record defines;
// they are spelled out here, not imported, so that the lab and the scanner
// share no code (DESIGN 6).
const (
	stOK        = "ok"
	stNXDomain  = "nxdomain"
	stNoMX      = "no_mx"
	stNullMX    = "null_mx"
	stServfail  = "servfail"
	stTimeout   = "timeout"
	stNoAddress = "no_address"
	stError     = "error"

	outOK       = "ok"
	outConnect  = "connect"
	outBanner   = "banner"
	outEHLO     = "ehlo"
	outSTARTTLS = "starttls"
	outTLS      = "tls"
	outSkipped  = "skipped"

	errTimeout    = "timeout"
	errRefused    = "refused"
	errReset      = "reset"
	errProtocol   = "protocol"
	errRejected   = "rejected"
	errNoSTARTTLS = "no_starttls"
	errTLSOther   = "tls_other"
	errCertParse  = "cert_parse"
	errTooLarge   = "too_large"
	errBlocked    = "blocked"
)

// What the truth assumes of the scanner's documented caps (docs/schema.md,
// README "caps"): where a hostile server sends more than a cap allows, the
// truth states the fields a scan keeping exactly this much must write (the
// extensions of smtp_ehlo_many_ext). The lab cannot import the scanner's
// constants (DESIGN 6); e2e/hostile_test.go holds these against them.
const (
	AssumeMaxReplyLines = 1000  // lines kept of one reply
	AssumeMaxReplyBytes = 65536 // bytes kept of one reply
	AssumeMaxLineBytes  = 2048  // bytes of one reply line
	AssumeMaxChainCerts = 20    // certificates kept of a chain
)

// TruthMX is one MX host of a domain as a resolver must find it.
type TruthMX struct {
	Host       string   `json:"host"`
	Preference int32    `json:"preference"`
	HostStatus string   `json:"host_status"`
	IPs        []string `json:"ips"`
}

// TruthDomain is one line of truth-domains.jsonl: what resolving the domain
// must produce (the mx rows of a scan).
type TruthDomain struct {
	Domain     string    `json:"domain"`
	Rank       int64     `json:"rank"`
	DNSStatus  string    `json:"dns_status"`
	ImplicitMX bool      `json:"implicit_mx"`
	CNAMEs     []string  `json:"cnames"`
	MX         []TruthMX `json:"mx"`
	Cases      []string  `json:"cases"`
}

// TruthFacts are the analyzer's per-probe facts, stated from the case that
// made the certificate, never computed by a matcher.
type TruthFacts struct {
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

// TruthHost is one line of truth-hosts.jsonl: the probe row a scan must
// write for the target (ip, mx_host), with SNI = mx_host, a client offering
// TLS 1.3, IPv6 enabled and 127.0.0.0/8 and ::1/128 allowed.
type TruthHost struct {
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

	Facts *TruthFacts `json:"facts,omitempty"` // nil when no handshake completes

	// Raw is what the lab knows of the server-sent text of hostile cases
	// (absent for the others).
	Raw []TruthText `json:"raw,omitempty"`
}

// TruthText is what the lab knows of one column of server-sent text.
type TruthText struct {
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
	Domains []TruthDomain
	Hosts   []TruthHost
}

// ReadTruth loads truth-domains.jsonl and truth-hosts.jsonl from a lab
// directory. A million-domain truth is large; tests use small worlds. While
// the directory's lab.json says the truth is still being written it waits
// (WaitTruthFiles); the files appear only complete, so it never reads half
// of one.
func ReadTruth(dir string) (*Truth, error) {
	if err := WaitTruthFiles(context.Background(), dir); err != nil {
		return nil, err
	}
	t := &Truth{}
	if err := readJSONL(filepath.Join(dir, TruthDomainsFile), func(dec *json.Decoder) error {
		var d TruthDomain
		err := dec.Decode(&d)
		if err == nil {
			t.Domains = append(t.Domains, d)
		}
		return err
	}); err != nil {
		return nil, err
	}
	if err := readJSONL(filepath.Join(dir, TruthHostsFile), func(dec *json.Decoder) error {
		var h TruthHost
		err := dec.Decode(&h)
		if err == nil {
			t.Hosts = append(t.Hosts, h)
		}
		return err
	}); err != nil {
		return nil, err
	}
	return t, nil
}

// truthWaitBound bounds how long WaitTruthFiles waits for a lab that is
// alive but does not finish.
const truthWaitBound = 30 * time.Minute

// WaitTruthFiles waits until the lab.json in dir says truth_ready. It returns
// at once when there is no lab.json (files from elsewhere), and an error when
// the lab wrote no truth, failed writing it, or its process is gone.
func WaitTruthFiles(ctx context.Context, dir string) error {
	deadline := time.Now().Add(truthWaitBound)
	for {
		b, err := os.ReadFile(filepath.Join(dir, InfoFile))
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		var info Info
		if err := json.Unmarshal(b, &info); err != nil {
			return fmt.Errorf("lab: %s: %w", InfoFile, err)
		}
		switch {
		case info.TruthReady:
			return nil
		case info.TruthError != "":
			return fmt.Errorf("lab: %s: writing the truth failed: %s", dir, info.TruthError)
		case !info.TruthWritten:
			return fmt.Errorf("lab: %s: the lab wrote no truth files (-no-truth)", dir)
		case info.PID != 0 && !processAlive(info.PID):
			return fmt.Errorf("lab: %s: the truth files are incomplete and the lab (pid %d) is gone", dir, info.PID)
		case time.Now().After(deadline):
			return fmt.Errorf("lab: %s: the truth files are not complete after %v", dir, truthWaitBound)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}

func readJSONL(path string, one func(*json.Decoder) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	dec := json.NewDecoder(bufio.NewReaderSize(f, 1<<20))
	for dec.More() {
		if err := one(dec); err != nil {
			return fmt.Errorf("lab: %s: %w", path, err)
		}
	}
	return nil
}

// truthDomain states what resolving domain d yields. It follows the case
// definitions, not the DNS server's answers, so the tests can hold one
// against the other.
func (w *World) truthDomain(d domain) TruthDomain {
	t := TruthDomain{Domain: d.name, Rank: int64(d.idx + 1), DNSStatus: stOK, Cases: w.domainCases(d)}
	ip := func(slot int) string { return w.slotAddr(slot).String() }
	slot0 := w.slotBase + 2*d.idx
	one := func(host string, ips ...string) {
		t.MX = append(t.MX, TruthMX{Host: host, Preference: 10, HostStatus: stOK, IPs: ips})
	}
	switch d.kind {
	case kindProvider:
		if w.providers[d.provider].style.perDomainMX() {
			sl := w.tenantSlots(d)
			t.MX = []TruthMX{{Host: w.tenantMX(d), Preference: int32(w.tenantPref(d)), HostStatus: stOK, IPs: []string{ip(sl[0]), ip(sl[1])}}}
			break
		}
		for _, h := range w.providers[d.provider].hosts {
			m := TruthMX{Host: h.name, Preference: int32(h.pref), HostStatus: stOK}
			for _, s := range h.slots {
				m.IPs = append(m.IPs, ip(s))
			}
			if h.v6 != "" {
				m.IPs = append(m.IPs, h.v6)
			}
			t.MX = append(t.MX, m)
		}
	case kindHosting:
		one("mail."+d.name, ip(w.slotHostng+d.hosting))
	case kindSelf:
		L := w.domainName(d.leader)
		ls := w.slotBase + 2*d.leader
		switch d.variant {
		case 0:
			one("mx."+L, ip(ls))
		case 1:
			one("mx."+L, ip(ls), ip(ls+1))
		case 2:
			one("mx."+L, ip(ls))
			t.MX = append(t.MX, TruthMX{Host: "mx2." + L, Preference: 20, HostStatus: stOK, IPs: []string{ip(ls + 1)}})
		}
	case kindCase:
		mx := "mx." + d.name
		switch d.cas {
		case cDNSNullMX:
			t.DNSStatus = stNullMX
		case cDNSImplicitMX:
			t.ImplicitMX = true
			t.MX = []TruthMX{{Host: d.name, Preference: 0, HostStatus: stOK, IPs: []string{ip(slot0)}}}
		case cDNSNoMX:
			t.DNSStatus = stNoMX
		case cDNSNXDomain:
			t.DNSStatus = stNXDomain
		case cDNSServfail:
			t.DNSStatus = stServfail
		case cDNSTimeout:
			t.DNSStatus = stTimeout
		case cDNSDomainCNAME:
			t.CNAMEs = []string{"real." + d.name}
			one(mx, ip(slot0))
		case cDNSManyMX, cDNSMXHundreds:
			for k := range mxCount(d.cas) {
				t.MX = append(t.MX, TruthMX{Host: manyMXName(k, d.name), Preference: int32(10 + k), HostStatus: stOK, IPs: []string{ip(slot0)}})
			}
		case cDNSCNAMELoop:
			// A resolver follows <d> -> loop1 -> loop2 and stops when the
			// chain comes back to <d>.
			t.DNSStatus = stError
			t.CNAMEs = []string{"loop1." + d.name, "loop2." + d.name}
		case cDNSMXIPLiteral:
			// RFC 5321 5.1 wants a name: an address is not looked up.
			t.MX = []TruthMX{{Host: w.ipLiteralMX(d), Preference: 10, HostStatus: stError}}
		case cDNSWrongID:
			// A reply with another ID is not the reply to the query: the
			// client keeps waiting for one, and times out.
			t.DNSStatus = stTimeout
		case cDNSWrongQuestion:
			// A reply to another question is rejected: a malformed answer.
			t.DNSStatus = stError
		case cDNSMXNoAddress:
			t.MX = []TruthMX{{Host: mx, Preference: 10, HostStatus: stNoAddress}}
		case cDNSMXNXDomain:
			t.MX = []TruthMX{{Host: mx, Preference: 10, HostStatus: stNXDomain}}
		case cDNSMXPrivate:
			one(mx, addrPrivate.String())
		case cDNSMXLinkLocal:
			one(mx, addrLinkLocal.String())
		case cDNSMXDocIPv6:
			one(mx, w.docV6(d.idx).String())
		case cSMTPRefused:
			one(mx, addrLoop6.String())
		default:
			one(mx, ip(slot0))
		}
	}
	sort.SliceStable(t.MX, func(a, b int) bool { return t.MX[a].Preference < t.MX[b].Preference })
	return t
}

func (w *World) domainCases(d domain) []string {
	switch d.kind {
	case kindCase:
		return []string{d.cas.String()}
	case kindProvider:
		pr := &w.providers[d.provider]
		return bgCases(d.kind, pr.cas, pr.style)
	case kindHosting:
		return bgCases(d.kind, w.hostingCase(d.hosting), w.hostingStyle(d.hosting))
	case kindSelf:
		return bgCases(d.kind, w.selfCase(d.leader), w.selfStyle(d.leader))
	}
	return nil
}

// bgCases labels a background domain or target: kind, server case and, for
// the kinds that name themselves apart from the MX, the style.
func bgCases(k siteKind, c caseID, st bgStyle) []string {
	if st == styleNone {
		return []string{kindLabel[k], c.String()}
	}
	return []string{kindLabel[k], c.String(), styleLabel[st]}
}

// target is one (address, MX name) a scan probes.
type target struct {
	ip  netip.Addr
	mx  string
	srv *server // nil when nothing serves the address
	cas caseID  // for targets without a server
}

// ownedTargets are the targets whose truth rows domain d writes: targets
// shared by several domains are written once, by their owner (providers by
// the writer's preamble, a self-hosted group by its leader).
func (w *World) ownedTargets(d domain) []target {
	var out []target
	add := func(slot int, mx string) {
		if s, ok := w.serverAt(slot); ok {
			out = append(out, target{ip: s.ip, mx: mx, srv: s})
		}
	}
	slot0 := w.slotBase + 2*d.idx
	switch d.kind {
	case kindProvider:
		if w.providers[d.provider].style.perDomainMX() {
			mx := w.tenantMX(d)
			for _, sl := range w.tenantSlots(d) {
				add(sl, mx)
			}
		}
	case kindHosting:
		add(w.slotHostng+d.hosting, "mail."+d.name)
	case kindSelf:
		if d.leader != d.idx {
			return nil
		}
		add(slot0, "mx."+d.name)
		switch d.variant {
		case 1:
			add(slot0+1, "mx."+d.name)
		case 2:
			add(slot0+1, "mx2."+d.name)
		}
	case kindCase:
		mx := "mx." + d.name
		switch d.cas {
		case cDNSImplicitMX:
			add(slot0, d.name)
		case cDNSManyMX, cDNSMXHundreds:
			for k := range mxCount(d.cas) {
				add(slot0, manyMXName(k, d.name))
			}
		case cDNSMXPrivate:
			out = append(out, target{ip: addrPrivate, mx: mx, cas: d.cas})
		case cDNSMXLinkLocal:
			out = append(out, target{ip: addrLinkLocal, mx: mx, cas: d.cas})
		case cDNSMXDocIPv6:
			out = append(out, target{ip: w.docV6(d.idx), mx: mx, cas: d.cas})
		case cSMTPRefused:
			out = append(out, target{ip: addrLoop6, mx: mx, cas: d.cas})
		default:
			if caseHasServer(d.cas) {
				add(slot0, mx)
			}
		}
	}
	return out
}

// providerTargets are every provider's (address, MX host) pairs, IPv6
// documentation addresses included.
func (w *World) providerTargets() []target {
	var out []target
	for p := range w.providers {
		for _, h := range w.providers[p].hosts {
			for _, s := range h.slots {
				srv, _ := w.serverAt(s) // provider slots always have a server
				out = append(out, target{ip: srv.ip, mx: h.name, srv: srv})
			}
			if h.v6 != "" {
				out = append(out, target{ip: netip.MustParseAddr(h.v6), mx: h.name, cas: cDNSMXDocIPv6})
			}
		}
	}
	return out
}

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

func keyFacts(k keyKind) (string, int32) {
	switch k {
	case keyP384:
		return "ECDSA", 384
	case keyRSA2048:
		return "RSA", 2048
	}
	return "ECDSA", 256
}

// hostTruth states the probe row for one target.
func (w *World) hostTruth(a *authority, t target, port int, memo map[string]certDigest) (TruthHost, error) {
	h := TruthHost{IP: t.ip.String(), Port: int32(port), MXHost: t.mx}
	if t.srv == nil {
		h.Cases = []string{t.cas.String()}
		if t.cas == cSMTPRefused {
			// Nothing listens on [::1]:port: the lab's listener is tcp4 only.
			h.Outcome, h.ErrorClass = outConnect, errRefused
			h.PTRStatus = stNXDomain
		} else {
			h.Outcome, h.ErrorClass = outSkipped, errBlocked
		}
		return h, nil
	}
	s := t.srv
	h.Cases = bgCases(s.kind, s.cas, s.style)
	if s.kind == kindCase {
		h.Cases = h.Cases[1:]
	}
	h.LatencyMS = s.latency.Milliseconds()
	h.Dialect = s.dialect.String()
	h.PTRHost, h.PTRStatus = s.ptr, stOK
	if s.ptr == "" {
		h.PTRStatus = stNXDomain
	}
	raw := func(col string, b []byte, exact, capped bool) {
		h.Raw = append(h.Raw, TruthText{Column: col, Bytes: b, Exact: exact, Capped: capped})
	}
	switch s.cas {
	case cSMTPSilent:
		h.Outcome, h.ErrorClass = outBanner, errTimeout
		return h, nil
	case cSMTPTarpit:
		// One byte per tarpitInterval: no line completes within any step
		// deadline under a minute, so there is no code and no host.
		h.Outcome, h.ErrorClass = outBanner, errTimeout
		raw("banner", []byte(tarpitLine(s)), false, false)
		return h, nil
	case cSMTPEndlessLine:
		// The line cap ends the read; an unfinished line has no code.
		h.Outcome, h.ErrorClass = outBanner, errTooLarge
		raw("banner", append([]byte(endlessHead(s)), endlessChunk[:64]...), false, true)
		return h, nil
	case cSMTPGreeting10MB:
		// The reply cap ends the read; the lines read so far are well-formed.
		h.BannerCode, h.BannerHost = 220, s.banner
		h.Outcome, h.ErrorClass = outBanner, errTooLarge
		raw("banner", append([]byte(hugeFirst(s)), hugeChunk[:1024]...), false, true)
		return h, nil
	case cSMTPHTTP, cSMTPSSH, cSMTPBinary, cSMTPNULBytes:
		// The first line is not a reply line: a reader stops there.
		h.Outcome, h.ErrorClass = outBanner, errProtocol
		raw("banner", firstLine(w.notSMTP(s)), true, false)
		return h, nil
	case cSMTPResetConnect:
		h.Outcome, h.ErrorClass = outBanner, errReset
		return h, nil
	case cSMTPBusy421, cSMTPGreeting554:
		h.BannerCode, h.BannerHost = 421, s.banner
		if s.cas == cSMTPGreeting554 {
			h.BannerCode = 554
		}
		h.Outcome, h.ErrorClass = outBanner, errRejected
		return h, nil
	}
	h.BannerCode, h.BannerHost = 220, s.bannerHost()
	if caseTable[s.cas].hostile {
		raw("banner", []byte(greeting(s, time.Time{})), true, false)
	}
	h.EHLOVerb = "EHLO"
	h.EHLOCode, h.EHLOHost = 250, sayHost(s.ehlo)
	switch s.cas {
	case cSMTPHELOOnly:
		h.EHLOVerb = "HELO"
	case cSMTPResetEHLO:
		h.EHLOCode, h.EHLOHost = 0, ""
		h.Outcome, h.ErrorClass = outEHLO, errReset
		return h, nil
	case cSMTPEHLOCodeChange:
		// A reader stops at the line whose code differs, and keeps it: the
		// extensions are those of the lines before it and of it; STARTTLS,
		// further down, is not seen.
		lines := ehloLines(s, false, "", netip.Addr{})[:codeChangeLine+1]
		h.EHLOExtensions = upperKeywords(extensions(s.cas, false)[:codeChangeLine])
		h.Outcome, h.ErrorClass = outEHLO, errProtocol
		raw("ehlo_reply", []byte(strings.Join(lines, "\r\n")+"\r\n"), true, false)
		return h, nil
	case cSMTPEHLOManyExt:
		// The scan keeps AssumeMaxReplyLines lines (the first names the
		// host); STARTTLS is the third extension, so it is seen.
		ext := extensions(s.cas, false)
		h.EHLOExtensions = upperKeywords(ext[:AssumeMaxReplyLines-1])
		h.STARTTLSOffered = true
		h.Outcome, h.ErrorClass = outEHLO, errTooLarge
		raw("ehlo_reply", []byte(strings.Join(ehloLines(s, false, "", netip.Addr{})[:4], "\r\n")+"\r\n"), false, true)
		return h, nil
	default:
		h.EHLOExtensions = upperKeywords(serverExtensions(s, false))
	}
	if caseTable[s.cas].hostile {
		raw("ehlo_reply", []byte(strings.Join(ehloLines(s, false, "", netip.Addr{}), "\r\n")+"\r\n"), true, false)
	}
	h.STARTTLSOffered = startTLSOffered(s.cas)
	if !h.STARTTLSOffered {
		h.Outcome, h.ErrorClass = outSTARTTLS, errNoSTARTTLS
		return h, nil
	}
	if s.cas == cSMTPSTARTTLS454 {
		h.STARTTLSCode = 454
		h.Outcome, h.ErrorClass = outSTARTTLS, errRejected
		return h, nil
	}
	h.STARTTLSCode = 220
	switch s.cas {
	case cSMTPResetTLS:
		h.Outcome, h.ErrorClass = outTLS, errReset
		return h, nil
	case cSMTPSTARTTLSPlaintext, cSMTPSTARTTLSGarbage, cCertParseLeafTLS13:
		// No TLS at all, or a certificate the client cannot parse inside
		// TLS 1.3's encrypted handshake: nothing of the chain is seen.
		h.Outcome, h.ErrorClass = outTLS, errTLSOther
		return h, nil
	}
	h.TLSVersion = "TLS 1.3"
	if maxTLS12(s.cas) {
		h.TLSVersion = "TLS 1.2"
	}
	sp := specFor(s, t.mx)
	dg, err := a.digest(sp, s.shared, memo)
	if err != nil {
		return h, err
	}
	h.CertSHA256, h.CertChainLen = dg.sha256, dg.chainLen
	if sp.broken != brokenNone {
		// TLS 1.2: the chain travelled in clear and is kept, but the
		// handshake failed, so there is no TLS version and no facts.
		h.TLSVersion = ""
		h.Outcome, h.ErrorClass = outTLS, errCertParse
		if sp.broken == brokenLeaf {
			return h, nil // nothing of the leaf but its hash
		}
	}
	h.CertSubjectCN, h.CertSANDNS = sp.cn, sp.sans
	h.CertKeyType, h.CertKeyBits = keyFacts(sp.key)
	h.CertSelfSigned = sp.issuer == issSelf
	switch sp.issuer {
	case issLab, issNoChain:
		h.CertIssuer = a.inter.Subject.String()
	case issUnknown:
		h.CertIssuer = a.unknown.Subject.String()
	case issSelf:
		h.CertIssuer = "CN=" + sp.cn
	}
	nb, na := validFrom, validUntil
	switch sp.validity {
	case validExpired:
		nb, na = expiredFrom, expiredTo
	case validFuture:
		nb, na = futureFrom, futureTo
	}
	h.CertNotBefore, h.CertNotAfter = &nb, &na
	if sp.broken != brokenNone {
		return h, nil
	}
	h.PostTLSEHLOCode, h.PostTLSEHLOHost = 250, sayHost(s.postEHLO)
	h.PostTLSEHLOExtensions = upperKeywords(serverExtensions(s, true))
	h.Outcome = outOK
	h.Facts = certFacts(s, sp, t.mx)
	return h, nil
}

// certFacts states the analyzer's facts from the case. exact holds the names
// the lab wrote into the certificate (SANs, or the CN when there is no SAN);
// byWildcard holds the names the lab knows a valid wildcard covers: only the
// cert_wildcard case makes one, for *.<zone>; the target's MX name and the
// server's wild names are one label under that zone by construction (a
// gateway's mta<k>.int.<p> banner is not). The broken wildcards of the other
// cases cover nothing. The names matched are those a scan writes: a dotless
// banner is no banner_host (sayHost).
func certFacts(s *server, sp certSpec, mx string) *TruthFacts {
	f := &TruthFacts{
		Trusted:     sp.issuer == issLab && sp.validity == validNow,
		Expired:     sp.validity == validExpired,
		NotYetValid: sp.validity == validFuture,
		SelfSigned:  sp.issuer == issSelf,
		CNOnly:      sp.sans == nil,
	}
	exact := map[string]bool{}
	byWildcard := map[string]bool{}
	switch s.cas {
	case cCertWildcard:
		f.Wildcard = true
		byWildcard[mx] = true
		for _, n := range s.wild {
			byWildcard[n] = true
		}
	case cCertWildcardMulti, cCertWildcardPartial, cCertWildcardTLD:
		f.Wildcard = true
	default:
		if sp.sans == nil {
			exact[sp.cn] = true
		}
		for _, n := range sp.sans {
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
	f.MatchBanner = match(s.bannerHost())
	f.MatchEHLO = match(sayHost(s.ehlo))
	f.MatchPostTLSEHLO = match(sayHost(s.postEHLO))
	f.MatchPTR = match(s.ptr)
	f.ValidForMX = f.Trusted && f.MatchMX && !f.Expired && !f.NotYetValid
	return f
}

// certDigest is what the truth needs of a served certificate.
type certDigest struct {
	sha256   string
	chainLen int
}

// digest makes (or fetches) a certificate for its hash. memo spares making
// the same certificate twice for one domain (a host with two addresses);
// shared certificates go through the server's cache, and their digests
// through the authority's.
func (a *authority) digest(sp certSpec, shared bool, memo map[string]certDigest) (certDigest, error) {
	id := sp.id()
	if d, ok := memo[id]; ok {
		return d, nil
	}
	if shared {
		a.mu.Lock()
		d, ok := a.digests[id]
		a.mu.Unlock()
		if ok {
			return d, nil
		}
	}
	is, err := a.make(sp)
	if err != nil {
		return certDigest{}, err
	}
	d := certDigest{sha256: is.sha256, chainLen: len(is.tls.Certificate)}
	if shared {
		a.mu.Lock()
		if len(a.digests) >= maxCachedCerts {
			clear(a.digests)
		}
		a.digests[id] = d
		a.mu.Unlock()
	}
	if memo != nil {
		memo[id] = d
	}
	return d, nil
}
