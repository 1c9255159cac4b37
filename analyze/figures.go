package analyze

// A figure is one counted statistic with the figure it is a share of. The
// tables below are the single source for summary.json's keys, the reports'
// "N of D (P%)" lines and the comparison, so that a key cannot appear in one
// output and be missing from another. docs/statistics.md explains each one.
type figure struct {
	Key   string
	Label string
	Of    int // index of the denominator in the same table; -1 for none
}

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
	numHostFigures
)

var hostFigures = [numHostFigures]figure{
	hTotal:             {"total", "Hosts (probe rows, one per IP and MX host)", -1},
	hSkipped:           {"skipped", "Skipped, never contacted (blocked, IPv6 disabled)", hTotal},
	hProbed:            {"probed", "Probed", hTotal},
	hConnected:         {"connected", "Connected (TCP)", hProbed},
	hGreeted:           {"greeted", "Sent a greeting (banner)", hConnected},
	hBannerHostPresent: {"banner_host_present", "Greeting names a host", hProbed},
	hBannerIsMX:        {"banner_is_mx", "Greeting names the MX host itself", hBannerHostPresent},
	hSTARTTLSOffered:   {"starttls_offered", "STARTTLS offered", hConnected},
	hTLSOK:             {"tls_ok", "TLS handshake completed", hSTARTTLSOffered},
	hWithCert:          {"with_cert", "Certificate parsed", hTLSOK},
	hCertUnparseable:   {"cert_unparseable", "Certificate not parseable", hTLSOK},
	hCertMissing:       {"cert_missing", "No certificate recorded", hTLSOK},
	hTrusted:           {"trusted", "Chain trusted (names ignored)", hWithCert},
	hSelfSigned:        {"self_signed", "Self-signed", hWithCert},
	hExpired:           {"expired", "Expired at probe time", hWithCert},
	hNotYetValid:       {"not_yet_valid", "Not yet valid at probe time", hWithCert},
	hWildcard:          {"wildcard", "Has a wildcard name", hWithCert},
	hWildcardUsed:      {"wildcard_used", "A host name matched only via a wildcard", hWithCert},
	hCNOnly:            {"cn_only", "Names only in the subject CN (no SAN)", hWithCert},
	hMatchMX:           {"match_mx", "Matches the MX host name", hWithCert},
	hMatchBanner:       {"match_banner", "Matches the greeting's host name", hWithCert},
	hMatchMXOnly:       {"match_mx_only", "Matches the MX name only", hWithCert},
	hMatchBannerOnly:   {"match_banner_only", "Matches the greeting name only", hWithCert},
	hMatchBoth:         {"match_both", "Matches both", hWithCert},
	hMatchNeither:      {"match_neither", "Matches neither", hWithCert},
	hMatchEHLO:         {"match_ehlo", "Matches the EHLO name", hWithCert},
	hMatchPostTLSEHLO:  {"match_post_tls_ehlo", "Matches the EHLO name after TLS", hWithCert},
	hMatchPTR:          {"match_ptr", "Matches the PTR name", hWithCert},
	hValidForMX:        {"valid_for_mx", "Valid for the MX host (trusted, matches, in date)", hWithCert},
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
	numDomainFigures
)

var domainFigures = [numDomainFigures]figure{
	dTotal:          {"total", "Domains", -1},
	dWithMX:         {"with_mx", "With mail servers (MX or implicit MX)", dTotal},
	dImplicitMX:     {"implicit_mx", "Implicit MX (no MX record, address of the domain)", dTotal},
	dNullMX:         {"null_mx", "Null MX (RFC 7505: no mail)", dTotal},
	dNoMX:           {"no_mx", "No MX and no address", dTotal},
	dDNSError:       {"dns_error", "DNS failure (NXDOMAIN, SERVFAIL, timeout, ...)", dTotal},
	dWithProbedMX:   {"with_probed_mx", "At least one MX target probed", dWithMX},
	dSTARTTLSAllMX:  {"starttls_all_mx", "STARTTLS on every probed MX target", dWithMX},
	dPrimaryMXValid: {"primary_mx_valid", "Primary MX valid for its name on every probed target", dWithMX},
	dAnyMXValid:     {"any_mx_valid", "Some MX target valid for its name", dWithMX},
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
