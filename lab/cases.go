package lab

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

	numCases
)

// caseInfo is the catalogue entry: the name used in -cases, truth files and
// lab.json, and a one-line description for -h and the README.
type caseInfo struct {
	name string
	desc string
}

var caseTable = [numCases]caseInfo{
	caseNone:                 {"", ""},
	cCertMX:                  {"cert_mx", "CA-signed certificate for the MX name; banner = EHLO = MX name"},
	cCertBannerOnly:          {"cert_banner_only", "certificate for the banner name smtp.<d> only; MX name mx.<d> (the seed's case)"},
	cCertBoth:                {"cert_both", "certificate with SANs for both the MX name and the banner name smtp.<d>"},
	cCertWildcard:            {"cert_wildcard", "certificate *.<d> covering the MX name"},
	cCertWildcardMulti:       {"cert_wildcard_multi", "certificate *.*.test (wildcard not only in the left-most label): matches nothing"},
	cCertWildcardPartial:     {"cert_wildcard_partial", "certificate m*.<d> (partial-label wildcard): matches nothing"},
	cCertWildcardTLD:         {"cert_wildcard_tld", "certificate *.test (too broad: test is a suffix): matches nothing"},
	cCertCNOnly:              {"cert_cn_only", "CA-signed, CN = MX name, no SAN extension"},
	cCertSelfSigned:          {"cert_self_signed", "self-signed certificate for the MX name"},
	cCertSnakeoil:            {"cert_snakeoil", "self-signed default certificate CN=localhost, SAN localhost (Debian snakeoil style)"},
	cCertExpired:             {"cert_expired", "CA-signed for the MX name, expired (2021-2022)"},
	cCertNotYetValid:         {"cert_not_yet_valid", "CA-signed for the MX name, valid from 2090"},
	cCertUnknownCA:           {"cert_unknown_ca", "signed by a CA that is not in ca.pem"},
	cCertMissingIntermediate: {"cert_missing_intermediate", "signed by the lab intermediate, which the server does not send"},
	cCertRSA:                 {"cert_rsa", "like cert_mx with an RSA 2048 key"},
	cCertECDSAP384:           {"cert_ecdsa_p384", "like cert_mx with an ECDSA P-384 key"},
	cTLS12Only:               {"tls12_only", "like cert_mx, server speaks TLS 1.2 at most"},
	cSMTPEHLODiffers:         {"smtp_ehlo_differs", "banner names mx.<d>, EHLO reply names smtp.<d>"},
	cSMTPPostTLSDiffers:      {"smtp_post_tls_differs", "EHLO after TLS names smtp.<d> and adds AUTH PLAIN LOGIN"},
	cSMTPNoSTARTTLS:          {"smtp_no_starttls", "EHLO reply without STARTTLS"},
	cSMTPSTARTTLSLowercase:   {"smtp_starttls_lowercase", "EHLO reply advertises 'starttls' in lower case"},
	cSMTPSTARTTLS454:         {"smtp_starttls_454", "STARTTLS advertised, answered 454"},
	cSMTPGreeting554:         {"smtp_greeting_554", "554 greeting (RFC 3207/5321 refusal), then waits for QUIT"},
	cSMTPBusy421:             {"smtp_busy_421", "421 greeting, then closes"},
	cSMTPHELOOnly:            {"smtp_helo_only", "EHLO answered 502; HELO works (no extensions, so no STARTTLS)"},
	cSMTPRefused:             {"smtp_refused", "MX host's only address is AAAA ::1, where nothing listens: connection refused"},
	cSMTPSilent:              {"smtp_silent", "accepts the connection and never sends a byte"},
	cDNSNullMX:               {"dns_null_mx", "RFC 7505 null MX (MX 0 .)"},
	cDNSImplicitMX:           {"dns_implicit_mx", "no MX; the domain's own A record is the implicit MX (RFC 5321 5.1)"},
	cDNSNoMX:                 {"dns_no_mx", "no MX and no address for the domain"},
	cDNSNXDomain:             {"dns_nxdomain", "domain in the list that does not exist"},
	cDNSServfail:             {"dns_servfail", "every query for the domain gets SERVFAIL"},
	cDNSTimeout:              {"dns_timeout", "every query for the domain is dropped"},
	cDNSDomainCNAME:          {"dns_domain_cname", "the domain is a CNAME to real.<d>, which has the MX"},
	cDNSMXCNAME:              {"dns_mx_cname", "the MX host mx.<d> is a CNAME to host.<d>"},
	cDNSMXNoAddress:          {"dns_mx_no_address", "the MX host exists but has no A/AAAA"},
	cDNSMXNXDomain:           {"dns_mx_nxdomain", "the MX host does not exist"},
	cDNSMXPrivate:            {"dns_mx_private", "the MX host's address is 10.0.0.1 (must be blocked)"},
	cDNSMXLinkLocal:          {"dns_mx_link_local", "the MX host's address is 169.254.169.254 (must be blocked)"},
	cDNSMXDocIPv6:            {"dns_mx_doc_ipv6", "the MX host's only address is in 2001:db8::/32 (must be blocked)"},
	cDNSManyMX:               {"dns_many_mx", "100 MX records (UDP answer truncated, TCP needed), all on one server"},
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

// ParseCases reads a -cases spec: comma-separated name=share pairs, where the
// name "default" sets every case not named explicitly.
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
		if _, known := caseByName(name); !known && name != "default" {
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
	def := DefaultCaseShare
	if v, ok := shares["default"]; ok {
		def = v
	}
	minCount := n / 300
	minCount = max(1, min(minCount, 3))
	total := 0
	for c := caseID(1); c < numCases; c++ {
		share := def
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
