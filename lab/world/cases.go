package world

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// caseID names one behaviour the lab can give a domain. Case domains each get
// their own MX host and server so that one case never blurs another.
type caseID uint8

const (
	caseNone caseID = iota

	cCertMX
	cCertBannerOnly
	cCertBoth
	cCertWildcard
	cCertWildcardMulti
	cCertWildcardPartial
	cCertWildcardTLD
	cCertCNOnly
	cCertSelfSigned
	cCertSnakeoil
	cCertExpired
	cCertNotYetValid
	cCertUnknownCA
	cCertMissingIntermediate
	cCertRSA
	cCertECDSAP384
	cTLS12Only

	cSMTPEHLODiffers
	cSMTPPostTLSDiffers
	cSMTPNoSTARTTLS
	cSMTPSTARTTLSLowercase
	cSMTPSTARTTLS454
	cSMTPGreeting554
	cSMTPBusy421
	cSMTPHELOOnly
	cSMTPRefused
	cSMTPSilent

	cDNSNullMX
	cDNSImplicitMX
	cDNSNoMX
	cDNSNXDomain
	cDNSServfail
	cDNSTimeout
	cDNSDomainCNAME
	cDNSMXCNAME
	cDNSMXNoAddress
	cDNSMXNXDomain
	cDNSMXPrivate
	cDNSMXLinkLocal
	cDNSMXDocIPv6
	cDNSManyMX

	// Hostile and broken peers (the "hostile" group, with smtp_silent,
	// dns_timeout and dns_many_mx).
	cSMTPTarpit
	cSMTPEndlessLine
	cSMTPGreeting10MB
	cSMTPEHLOCodeChange
	cSMTPEHLOManyExt
	cSMTPHTTP
	cSMTPSSH
	cSMTPBinary
	cSMTPNULBytes
	cSMTPInvalidUTF8
	cSMTPBannerScript
	cSMTPResetConnect
	cSMTPResetEHLO
	cSMTPResetTLS
	cSMTPSTARTTLSPlaintext
	cSMTPSTARTTLSGarbage
	cCertChain50
	cCertParseLeafTLS12
	cCertParseLeafTLS13
	cCertParseIntermediateTLS12
	cDNSCNAMELoop
	cDNSMXHundreds
	cDNSMXIPLiteral
	cDNSWrongID
	cDNSWrongQuestion

	numCases
)

// caseInfo is the catalogue entry: the name used in -cases, truth files and
// lab.json, and a one-line description for -h and the README.
type caseInfo struct {
	name    string
	desc    string
	hostile bool // member of the "hostile" group of -cases
}

var caseTable = [numCases]caseInfo{
	caseNone:                 {},
	cCertMX:                  {"cert_mx", "CA-signed certificate for the MX name; banner = EHLO = MX name", false},
	cCertBannerOnly:          {"cert_banner_only", "certificate for the banner name smtp.<d> only; MX name mx.<d> (the seed's case)", false},
	cCertBoth:                {"cert_both", "certificate with SANs for both the MX name and the banner name smtp.<d>", false},
	cCertWildcard:            {"cert_wildcard", "certificate *.<d> covering the MX name", false},
	cCertWildcardMulti:       {"cert_wildcard_multi", "certificate *.*.test (wildcard not only in the left-most label): matches nothing", false},
	cCertWildcardPartial:     {"cert_wildcard_partial", "certificate m*.<d> (partial-label wildcard): matches nothing", false},
	cCertWildcardTLD:         {"cert_wildcard_tld", "certificate *.test (too broad: test is a suffix): matches nothing", false},
	cCertCNOnly:              {"cert_cn_only", "CA-signed, CN = MX name, no SAN extension", false},
	cCertSelfSigned:          {"cert_self_signed", "self-signed certificate for the MX name", false},
	cCertSnakeoil:            {"cert_snakeoil", "self-signed default certificate CN=localhost, SAN localhost (Debian snakeoil style)", false},
	cCertExpired:             {"cert_expired", "CA-signed for the MX name, expired (2021-2022)", false},
	cCertNotYetValid:         {"cert_not_yet_valid", "CA-signed for the MX name, valid from 2090", false},
	cCertUnknownCA:           {"cert_unknown_ca", "signed by a CA that is not in ca.pem", false},
	cCertMissingIntermediate: {"cert_missing_intermediate", "signed by the lab intermediate, which the server does not send", false},
	cCertRSA:                 {"cert_rsa", "like cert_mx with an RSA 2048 key", false},
	cCertECDSAP384:           {"cert_ecdsa_p384", "like cert_mx with an ECDSA P-384 key", false},
	cTLS12Only:               {"tls12_only", "like cert_mx, server speaks TLS 1.2 at most", false},
	cSMTPEHLODiffers:         {"smtp_ehlo_differs", "banner names mx.<d>, EHLO reply names smtp.<d>", false},
	cSMTPPostTLSDiffers:      {"smtp_post_tls_differs", "EHLO after TLS names smtp.<d> and adds AUTH PLAIN LOGIN", false},
	cSMTPNoSTARTTLS:          {"smtp_no_starttls", "EHLO reply without STARTTLS", false},
	cSMTPSTARTTLSLowercase:   {"smtp_starttls_lowercase", "EHLO reply advertises 'starttls' in lower case", false},
	cSMTPSTARTTLS454:         {"smtp_starttls_454", "STARTTLS advertised, answered 454", false},
	cSMTPGreeting554:         {"smtp_greeting_554", "554 greeting (RFC 3207/5321 refusal), then waits for QUIT", false},
	cSMTPBusy421:             {"smtp_busy_421", "421 greeting, then closes", false},
	cSMTPHELOOnly:            {"smtp_helo_only", "EHLO answered 502; HELO works (no extensions, so no STARTTLS)", false},
	cSMTPRefused:             {"smtp_refused", "MX host's only address is AAAA ::1, where nothing listens: connection refused", false},
	cSMTPSilent:              {"smtp_silent", "accepts the connection and never sends a byte", true},
	cDNSNullMX:               {"dns_null_mx", "RFC 7505 null MX (MX 0 .)", false},
	cDNSImplicitMX:           {"dns_implicit_mx", "no MX; the domain's own A record is the implicit MX (RFC 5321 5.1)", false},
	cDNSNoMX:                 {"dns_no_mx", "no MX and no address for the domain", false},
	cDNSNXDomain:             {"dns_nxdomain", "domain in the list that does not exist", false},
	cDNSServfail:             {"dns_servfail", "every query for the domain gets SERVFAIL", false},
	cDNSTimeout:              {"dns_timeout", "every query for the domain is dropped", true},
	cDNSDomainCNAME:          {"dns_domain_cname", "the domain is a CNAME to real.<d>, which has the MX", false},
	cDNSMXCNAME:              {"dns_mx_cname", "the MX host mx.<d> is a CNAME to host.<d>", false},
	cDNSMXNoAddress:          {"dns_mx_no_address", "the MX host exists but has no A/AAAA", false},
	cDNSMXNXDomain:           {"dns_mx_nxdomain", "the MX host does not exist", false},
	cDNSMXPrivate:            {"dns_mx_private", "the MX host's address is 10.0.0.1 (must be blocked)", false},
	cDNSMXLinkLocal:          {"dns_mx_link_local", "the MX host's address is 169.254.169.254 (must be blocked)", false},
	cDNSMXDocIPv6:            {"dns_mx_doc_ipv6", "the MX host's only address is in 2001:db8::/32 (must be blocked)", false},
	cDNSManyMX:               {"dns_many_mx", "100 MX records (UDP answer truncated, TCP needed), all on one server", true},

	cSMTPTarpit:                 {"smtp_tarpit", "tarpit: a greeting trickled one byte every 3 s, forever", true},
	cSMTPEndlessLine:            {"smtp_endless_line", "greeting line that never ends (no LF), until the client leaves", true},
	cSMTPGreeting10MB:           {"smtp_greeting_10mb", "valid multi-line 220 greeting of 10 MiB (1 KiB lines)", true},
	cSMTPEHLOCodeChange:         {"smtp_ehlo_code_change", "EHLO reply whose third line says 251 instead of 250", true},
	cSMTPEHLOManyExt:            {"smtp_ehlo_many_ext", "EHLO reply with 5000 extensions (STARTTLS among the first)", true},
	cSMTPHTTP:                   {"smtp_http", "an HTTP server: answers with an HTTP 400 response", true},
	cSMTPSSH:                    {"smtp_ssh", "an SSH server: SSH-2.0 banner", true},
	cSMTPBinary:                 {"smtp_binary", "binary garbage instead of a greeting (NUL, invalid UTF-8, one LF)", true},
	cSMTPNULBytes:               {"smtp_nul_bytes", "64 NUL bytes and CRLF instead of a greeting", true},
	cSMTPInvalidUTF8:            {"smtp_invalid_utf8", "valid SMTP whose greeting and EHLO text hold invalid UTF-8 and a NUL", true},
	cSMTPBannerScript:           {"smtp_banner_script", "valid SMTP with <script>alert(1)</script> in the greeting and EHLO", true},
	cSMTPResetConnect:           {"smtp_reset_connect", "TCP reset (SO_LINGER 0 close) 0.5 s after accepting, before any byte", true},
	cSMTPResetEHLO:              {"smtp_reset_ehlo", "greets, then resets the connection on EHLO", true},
	cSMTPResetTLS:               {"smtp_reset_tls", "accepts STARTTLS, reads the ClientHello, then resets", true},
	cSMTPSTARTTLSPlaintext:      {"smtp_starttls_plaintext", "accepts STARTTLS, then answers the ClientHello in plain SMTP text", true},
	cSMTPSTARTTLSGarbage:        {"smtp_starttls_garbage", "accepts STARTTLS, then sends binary garbage instead of TLS", true},
	cCertChain50:                {"cert_chain_50", "like cert_mx, but the chain sent holds 50 certificates (48 unrelated CAs appended)", true},
	cCertParseLeafTLS12:         {"cert_parse_leaf_tls12", "TLS 1.2 at most; the leaf says X.509 version 6, which crypto/x509 rejects", true},
	cCertParseLeafTLS13:         {"cert_parse_leaf_tls13", "as cert_parse_leaf_tls12 over TLS 1.3: the chain is encrypted and lost", true},
	cCertParseIntermediateTLS12: {"cert_parse_intermediate_tls12", "TLS 1.2 at most; valid leaf, the second certificate is not a certificate", true},
	cDNSCNAMELoop:               {"dns_cname_loop", "the domain is a CNAME loop: <d> -> loop1.<d> -> loop2.<d> -> <d>", true},
	cDNSMXHundreds:              {"dns_mx_hundreds", "300 MX records, all on one server (a scan keeps the 64 most preferred)", true},
	cDNSMXIPLiteral:             {"dns_mx_ip_literal", "MX target is an IPv4 address written as a name (MX 10 127.x.y.z.)", true},
	cDNSWrongID:                 {"dns_wrong_id", "every answer for the domain carries the wrong message ID", true},
	cDNSWrongQuestion:           {"dns_wrong_question", "every answer for the domain echoes a different question name", true},
}

func (c caseID) String() string { return caseTable[c].name }

func caseByName(name string) (caseID, bool) {
	for i := caseID(1); i < numCases; i++ {
		if caseTable[i].name == name {
			return i, true
		}
	}
	return 0, false
}

// CaseNames lists every case in catalogue order.
func CaseNames() []string {
	out := make([]string, 0, numCases-1)
	for i := caseID(1); i < numCases; i++ {
		out = append(out, caseTable[i].name)
	}
	return out
}

// DefaultCaseShare is the share of domains each case gets unless -cases says
// otherwise. Small worlds get a minimum count per case instead (see
// caseCounts) so that every case shows up at -domains 1000.
const DefaultCaseShare = 0.0005

// HostileCaseShare is the built-in share of the hostile peers added after
// dns_many_mx: smaller, since some are expensive for a scan (a tarpit holds a
// probe until its step deadline, dns_mx_hundreds is 300 targets). Small worlds
// still get the minimum count of each.
const HostileCaseShare = 0.0001

// GroupHostile names, in -cases, every case marked hostile: hostile=0 turns
// them all off, hostile=0.01 gives each that share.
const GroupHostile = "hostile"

func builtinShare(c caseID) float64 {
	if c > cDNSManyMX {
		return HostileCaseShare
	}
	return DefaultCaseShare
}

// HostileCaseNames lists the cases of the hostile group in catalogue order.
func HostileCaseNames() []string {
	var out []string
	for i := caseID(1); i < numCases; i++ {
		if caseTable[i].hostile {
			out = append(out, caseTable[i].name)
		}
	}
	return out
}

// ParseCases reads a -cases spec: comma-separated name=share pairs, where the
// name "default" sets every case not named explicitly and the group name
// "hostile" every hostile case not named explicitly (a case's own name wins
// over its group, its group over "default").
func ParseCases(spec string) (map[string]float64, error) {
	out := map[string]float64{}
	if strings.TrimSpace(spec) == "" {
		return out, nil
	}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, val, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("lab: -cases: %q is not name=share", part)
		}
		name = strings.TrimSpace(name)
		if _, known := caseByName(name); !known && name != "default" && name != GroupHostile {
			return nil, fmt.Errorf("lab: -cases: unknown case %q (see -h)", name)
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil || f < 0 || f > 1 {
			return nil, fmt.Errorf("lab: -cases: share for %q must be a number in [0,1]", name)
		}
		out[name] = f
	}
	return out, nil
}

// caseCounts turns shares into whole domain counts. A case with a positive
// share gets at least minCount domains, so that small test worlds still hold
// every case; an explicit share of 0 turns the case off.
func caseCounts(n int, shares map[string]float64) ([numCases]int, error) {
	var counts [numCases]int
	minCount := n / 300
	minCount = max(1, min(minCount, 3))
	total := 0
	for c := caseID(1); c < numCases; c++ {
		share := builtinShare(c)
		if v, ok := shares["default"]; ok {
			share = v
		}
		if v, ok := shares[GroupHostile]; ok && caseTable[c].hostile {
			share = v
		}
		if v, ok := shares[caseTable[c].name]; ok {
			share = v
		}
		if share <= 0 {
			continue
		}
		k := int(share*float64(n) + 0.5)
		counts[c] = max(k, minCount)
		total += counts[c]
	}
	if total > n {
		return counts, fmt.Errorf("lab: the cases need %d domains but the world has %d: raise -domains or lower -cases", total, n)
	}
	return counts, nil
}

func sortedCaseCounts(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
