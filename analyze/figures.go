package analyze

import "github.com/mxsurvey/mxsurvey/analyze/tlsrpt"

// A figure is one counted statistic with the figure it is a share of. The
// tables below are the single source for summary.json's keys, the reports'
// "N of D (P%)" lines and the comparison, so that a key cannot appear in one
// output and be missing from another. docs/statistics.md explains each one.
type figure struct {
	Key   string
	Label string
	Of    int // index of the denominator in the same table; -1 for none
	// Needs is what the scan must have measured for the figure to exist:
	// summary.json leaves the key out, and the reports say "not measured",
	// rather than count zero from columns that were never filled.
	Needs measured
}

// measured is how much of the transport security policies a scan recorded
// (scanMeasured): the levels build on each other.
type measured uint8

const (
	measuredBasics   measured = iota // MX, addresses, probes: every scan
	measuredPolicies                 // the tlsa and policies tables (schema 2, policies on)
	measuredDNSSEC                   // and DNSSEC statuses from a trusted resolver (manifest dnssec "trusted")
)

// Host figures. A host is one probe row: one (ip, mx_host) target.
const (
	hTotal = iota
	hSkipped
	hProbed
	hConnected
	hGreeted
	hBannerHostPresent
	hBannerIsMX
	hSTARTTLSOffered
	hTLSOK
	hWithCert
	hCertUnparseable
	hCertMissing
	hTrusted
	hSelfSigned
	hExpired
	hNotYetValid
	hWildcard
	hWildcardUsed
	hCNOnly
	hMatchMX
	hMatchBanner
	hMatchMXOnly
	hMatchBannerOnly
	hMatchBoth
	hMatchNeither
	hMatchEHLO
	hMatchPostTLSEHLO
	hMatchPTR
	hValidForMX
	hTLSAPresent
	hTLSASecure
	hTLSABogus
	hDANEValid
	numHostFigures
)

var hostFigures = [numHostFigures]figure{
	hTotal:             {"total", "Hosts (probe rows, one per IP and MX host)", -1, measuredBasics},
	hSkipped:           {"skipped", "Skipped, never contacted (blocked, IPv6 disabled)", hTotal, measuredBasics},
	hProbed:            {"probed", "Probed", hTotal, measuredBasics},
	hConnected:         {"connected", "Connected (TCP)", hProbed, measuredBasics},
	hGreeted:           {"greeted", "Sent a greeting (banner)", hConnected, measuredBasics},
	hBannerHostPresent: {"banner_host_present", "Greeting names a host", hProbed, measuredBasics},
	hBannerIsMX:        {"banner_is_mx", "Greeting names the MX host itself", hBannerHostPresent, measuredBasics},
	hSTARTTLSOffered:   {"starttls_offered", "STARTTLS offered", hConnected, measuredBasics},
	hTLSOK:             {"tls_ok", "TLS handshake completed", hSTARTTLSOffered, measuredBasics},
	hWithCert:          {"with_cert", "Certificate parsed", hTLSOK, measuredBasics},
	hCertUnparseable:   {"cert_unparseable", "Certificate not parseable", hTLSOK, measuredBasics},
	hCertMissing:       {"cert_missing", "No certificate recorded", hTLSOK, measuredBasics},
	hTrusted:           {"trusted", "Chain trusted (names ignored)", hWithCert, measuredBasics},
	hSelfSigned:        {"self_signed", "Self-signed", hWithCert, measuredBasics},
	hExpired:           {"expired", "Expired at probe time", hWithCert, measuredBasics},
	hNotYetValid:       {"not_yet_valid", "Not yet valid at probe time", hWithCert, measuredBasics},
	hWildcard:          {"wildcard", "Has a wildcard name", hWithCert, measuredBasics},
	hWildcardUsed:      {"wildcard_used", "A host name matched only via a wildcard", hWithCert, measuredBasics},
	hCNOnly:            {"cn_only", "Names only in the subject CN (no SAN)", hWithCert, measuredBasics},
	hMatchMX:           {"match_mx", "Matches the MX host name", hWithCert, measuredBasics},
	hMatchBanner:       {"match_banner", "Matches the greeting's host name", hWithCert, measuredBasics},
	hMatchMXOnly:       {"match_mx_only", "Matches the MX name only", hWithCert, measuredBasics},
	hMatchBannerOnly:   {"match_banner_only", "Matches the greeting name only", hWithCert, measuredBasics},
	hMatchBoth:         {"match_both", "Matches both", hWithCert, measuredBasics},
	hMatchNeither:      {"match_neither", "Matches neither", hWithCert, measuredBasics},
	hMatchEHLO:         {"match_ehlo", "Matches the EHLO name", hWithCert, measuredBasics},
	hMatchPostTLSEHLO:  {"match_post_tls_ehlo", "Matches the EHLO name after TLS", hWithCert, measuredBasics},
	hMatchPTR:          {"match_ptr", "Matches the PTR name", hWithCert, measuredBasics},
	hValidForMX:        {"valid_for_mx", "Valid for the MX host (trusted, matches, in date)", hWithCert, measuredBasics},
	hTLSAPresent:       {"tlsa_present", "MX host has TLSA records (any DNSSEC status)", hTotal, measuredPolicies},
	hTLSASecure:        {"tlsa_secure", "TLSA records DNSSEC-secure, one usable for SMTP", hTotal, measuredDNSSEC},
	hTLSABogus:         {"tlsa_bogus", "TLSA lookup DNSSEC-bogus", hTotal, measuredDNSSEC},
	hDANEValid:         {"dane_valid", "Chain satisfies a usable TLSA record (DANE)", hTLSASecure, measuredDNSSEC},
}

// headline is the seed question's table: what the certificate names.
var headline = []int{hMatchMXOnly, hMatchBannerOnly, hMatchBoth, hMatchNeither}

// Domain figures, from the mx rows joined to the probe rows.
const (
	dTotal = iota
	dWithMX
	dImplicitMX
	dNullMX
	dNoMX
	dDNSError
	dWithProbedMX
	dSTARTTLSAllMX
	dPrimaryMXValid
	dAnyMXValid
	dMXSecure
	dDANEProtected
	dDANEDeliverable
	dMTASTSRecord
	dMTASTSPolicyOK
	dMTASTSEnforce
	dMTASTSDeliverable
	dTLSRPTRecord
	numDomainFigures
)

var domainFigures = [numDomainFigures]figure{
	dTotal:          {"total", "Domains", -1, measuredBasics},
	dWithMX:         {"with_mx", "With mail servers (MX or implicit MX)", dTotal, measuredBasics},
	dImplicitMX:     {"implicit_mx", "Implicit MX (no MX record, address of the domain)", dTotal, measuredBasics},
	dNullMX:         {"null_mx", "Null MX (RFC 7505: no mail)", dTotal, measuredBasics},
	dNoMX:           {"no_mx", "No MX and no address", dTotal, measuredBasics},
	dDNSError:       {"dns_error", "DNS failure (NXDOMAIN, SERVFAIL, timeout, ...)", dTotal, measuredBasics},
	dWithProbedMX:   {"with_probed_mx", "At least one MX target probed", dWithMX, measuredBasics},
	dSTARTTLSAllMX:  {"starttls_all_mx", "STARTTLS on every probed MX target", dWithMX, measuredBasics},
	dPrimaryMXValid: {"primary_mx_valid", "Primary MX valid for its name on every probed target", dWithMX, measuredBasics},
	dAnyMXValid:     {"any_mx_valid", "Some MX target valid for its name", dWithMX, measuredBasics},

	dMXSecure:          {"mx_secure", "MX RRset DNSSEC-secure", dTotal, measuredDNSSEC},
	dDANEProtected:     {"dane_protected", "DANE: secure MX and usable secure TLSA on every probed MX host", dTotal, measuredDNSSEC},
	dDANEDeliverable:   {"dane_deliverable", "DANE sender could deliver (an MX host dane_valid)", dDANEProtected, measuredDNSSEC},
	dMTASTSRecord:      {"mta_sts_record", "One valid MTA-STS TXT record", dTotal, measuredPolicies},
	dMTASTSPolicyOK:    {"mta_sts_policy_ok", "MTA-STS policy fetched, WebPKI-valid and parsed", dMTASTSRecord, measuredPolicies},
	dMTASTSEnforce:     {"mta_sts_enforce", "MTA-STS policy mode enforce", dMTASTSPolicyOK, measuredPolicies},
	dMTASTSDeliverable: {"mta_sts_deliverable", "MTA-STS sender could deliver (a listed MX host valid_for_mx)", dMTASTSEnforce, measuredPolicies},
	dTLSRPTRecord:      {"tlsrpt_record", "One valid TLS-RPT record with a mailto: or https: rua", dTotal, measuredPolicies},
}

// Top lists, in report order, with the figure each is a breakdown of.
type topDef struct {
	Name  string
	Title string
	Of    string // the population counted, in words
}

var topDefs = []topDef{
	{"issuers", "Certificate issuers (CN / O)", "hosts.with_cert"},
	{"key_types", "Leaf key types", "hosts.with_cert"},
	{"tls_versions", "TLS versions", "hosts.tls_ok"},
	{"tls_groups", "TLS key exchange groups", "hosts.tls_ok with a recorded group"},
	{"mx_providers", "MX providers (registered domain of the primary MX)", "domains.with_mx with a primary MX host"},
	{"server_software", "Server software (greeting and EHLO text)", "hosts.greeted"},
	{"outcomes", "Probe outcomes (stage reached)", "hosts.total"},
	{"error_classes", "Error classes", "hosts.total with an error class"},
}

// resultLabels say for people what each RFC 8460 result type means here:
// why a sender honouring the domain's DANE or MTA-STS request would not
// deliver to an MX host.
var resultLabels = map[tlsrpt.ResultType]string{
	tlsrpt.ResultSTARTTLSNotSupported:    "No STARTTLS",
	tlsrpt.ResultCertificateHostMismatch: "Certificate not for the MX host",
	tlsrpt.ResultCertificateExpired:      "Certificate expired",
	tlsrpt.ResultCertificateNotTrusted:   "Certificate not trusted or not yet valid",
	tlsrpt.ResultValidationFailure:       "Handshake failed, TLSA not matched, or MX host not in the policy",
	tlsrpt.ResultTLSAInvalid:             "TLSA records, none usable",
	tlsrpt.ResultDNSSECInvalid:           "TLSA lookup DNSSEC-bogus",
	tlsrpt.ResultDANERequired:            "DANE required by the sender, no secure TLSA",
	tlsrpt.ResultSTSPolicyFetchError:     "MTA-STS policy not fetched (no answer, not 200)",
	tlsrpt.ResultSTSPolicyInvalid:        "MTA-STS policy invalid (type, size, syntax)",
	tlsrpt.ResultSTSWebPKIInvalid:        "MTA-STS policy host's certificate invalid",
}

// resultFigures are summary.json's tlsrpt_results as figures, in RFC 8460
// order, for the reports and the comparison.
func resultFigures() []figure {
	out := make([]figure, 0, len(resultTypes))
	for _, r := range resultTypes {
		out = append(out, figure{string(r), resultLabels[r], -1, measuredDNSSEC})
	}
	return out
}
