// Package survey is the mxsurvey dataset contract (docs/schema.md): the row
// types of the mx and probes tables (their struct tags are the column names
// that notebooks, the analyzer and other engines read), the stable
// vocabularies of dns_status, outcome and error_class, the schema version,
// the layout of a scan directory and the join key of its tables, the
// manifest, and the one description of a certificate that fills the cert_*
// columns.
//
// It does no I/O and imports nothing but the standard library, so that every
// party to the contract can use it: the scanner's stages (which must not pull
// in a Parquet library to fill a row), the writer and reader in package
// store, the analyzer, the end-to-end tests, the benchmarks, and later the
// workers and the coordinator of a distributed scan (DESIGN.md section 8).
package survey

import "time"

// SchemaVersion is bumped whenever a column is added, removed, renamed or
// changes meaning; docs/schema.md documents each version.
const SchemaVersion = 1

// DNS outcomes for a domain (MXRow.DNSStatus) and for an MX host's address
// lookup (MXRow.MXHostStatus). Stable vocabulary: readers filter on it.
const (
	DNSOK       = "ok"
	DNSNXDomain = "nxdomain"
	DNSNoMX     = "no_mx"   // no MX and no address for the implicit MX either
	DNSNullMX   = "null_mx" // RFC 7505 "MX 0 ."
	DNSServfail = "servfail"
	DNSTimeout  = "timeout"
	DNSRefused  = "refused"
	DNSError    = "error"      // invalid input name, CNAME loop, malformed answer, ...
	DNSNoAddr   = "no_address" // MX host exists but has no A/AAAA (mx_host_status only)
)

// Probe outcomes: the stage the conversation reached or failed at.
const (
	OutcomeOK          = "ok"
	OutcomeConnect     = "connect"
	OutcomeBanner      = "banner"
	OutcomeEHLO        = "ehlo"
	OutcomeSTARTTLS    = "starttls"
	OutcomeTLS         = "tls"
	OutcomePostTLSEHLO = "post_tls_ehlo"
	OutcomeSkipped     = "skipped"
)

// Error classes: a small stable vocabulary for why a probe stopped where it
// did. The raw error text is kept beside it in ProbeRow.Error.
const (
	ErrNone         = ""
	ErrTimeout      = "timeout"
	ErrRefused      = "refused"
	ErrReset        = "reset"
	ErrUnreachable  = "unreachable"
	ErrProtocol     = "protocol"      // bytes that are not SMTP, or a malformed reply
	ErrRejected     = "rejected"      // a well-formed SMTP refusal (4xx/5xx)
	ErrNoSTARTTLS   = "no_starttls"   // STARTTLS not offered: the probe ends here by design
	ErrTLSAlert     = "tls_alert"     // the server sent a TLS alert
	ErrTLSOther     = "tls_other"     // any other handshake failure
	ErrCertParse    = "cert_parse"    // handshake done, leaf not parseable by crypto/x509
	ErrTooLarge     = "too_large"     // a byte or line cap was hit
	ErrClosed       = "closed"        // the peer closed the connection (EOF)
	ErrBlocked      = "blocked"       // special-purpose or blocklisted address: never contacted
	ErrIPv6Disabled = "ipv6_disabled" // AAAA recorded but -ipv6 not set
	ErrCanceled     = "canceled"      // the scan was interrupted while this probe ran
	ErrInternal     = "internal"      // a bug in the prober (a recovered panic)
	ErrOther        = "other"
)

// MXRow is one row per (domain, MX host, address), and one row per domain
// whose DNS resolution ended without an address (mx_host and ip empty).
type MXRow struct {
	Domain       string    `parquet:"domain,dict"`
	Rank         int64     `parquet:"rank"`  // 0 when the input had no rank
	Input        string    `parquet:"input"` // the input line's domain as given, before normalisation
	DNSStatus    string    `parquet:"dns_status,dict"`
	DNSError     string    `parquet:"dns_error"`
	ImplicitMX   bool      `parquet:"implicit_mx"`
	CNAMEs       []string  `parquet:"cnames,list"` // CNAMEs followed for the domain's MX query
	MXHost       string    `parquet:"mx_host,dict"`
	MXPreference int32     `parquet:"mx_preference"`
	MXHostStatus string    `parquet:"mx_host_status,dict"`
	MXHostError  string    `parquet:"mx_host_error"`
	IP           string    `parquet:"ip,dict"`
	IPVersion    int32     `parquet:"ip_version"` // 4, 6, or 0 when ip is empty
	ResolvedAt   time.Time `parquet:"resolved_at,timestamp(millisecond)"`
}

// ProbeRow is one row per probed (ip, mx_host). Server-sent text is stored as
// received (capped); names are lowercased without the trailing dot.
type ProbeRow struct {
	IP         string    `parquet:"ip,dict"`
	Port       int32     `parquet:"port"`
	MXHost     string    `parquet:"mx_host,dict"`
	PTRHost    string    `parquet:"ptr_host"`
	PTRStatus  string    `parquet:"ptr_status,dict"`
	StartedAt  time.Time `parquet:"started_at,timestamp(millisecond)"`
	DurationMS int64     `parquet:"duration_ms"`
	Outcome    string    `parquet:"outcome,dict"`
	ErrorClass string    `parquet:"error_class,dict"`
	Error      string    `parquet:"error"`

	Banner     string `parquet:"banner"`
	BannerRaw  []byte `parquet:"banner_raw,optional"` // the greeting's exact bytes, only when banner is not valid UTF-8
	BannerCode int32  `parquet:"banner_code"`
	BannerHost string `parquet:"banner_host,dict"`

	EHLONameSent   string   `parquet:"ehlo_name_sent,dict"`
	EHLOVerb       string   `parquet:"ehlo_verb,dict"` // EHLO, or HELO after EHLO was refused
	EHLORefusal    string   `parquet:"ehlo_refusal"`   // the refused EHLO's reply, when HELO followed
	EHLOReply      string   `parquet:"ehlo_reply"`
	EHLOCode       int32    `parquet:"ehlo_code"`
	EHLOHost       string   `parquet:"ehlo_host,dict"`
	EHLOExtensions []string `parquet:"ehlo_extensions,list"`

	STARTTLSOffered bool   `parquet:"starttls_offered"`
	STARTTLSCode    int32  `parquet:"starttls_code"`
	STARTTLSReply   string `parquet:"starttls_reply"`

	TLSVersion string `parquet:"tls_version,dict"`
	TLSCipher  string `parquet:"tls_cipher,dict"`
	TLSGroup   string `parquet:"tls_group,dict"`

	CertChain      [][]byte  `parquet:"cert_chain,list"`
	CertChainLen   int32     `parquet:"cert_chain_len"` // certificates sent, before the cap on cert_chain
	CertSubjectCN  string    `parquet:"cert_subject_cn"`
	CertSANDNS     []string  `parquet:"cert_san_dns,list"`
	CertSANIP      []string  `parquet:"cert_san_ip,list"`
	CertIssuer     string    `parquet:"cert_issuer"`
	CertNotBefore  time.Time `parquet:"cert_not_before,timestamp(millisecond),optional"`
	CertNotAfter   time.Time `parquet:"cert_not_after,timestamp(millisecond),optional"`
	CertSHA256     string    `parquet:"cert_sha256"`
	CertKeyType    string    `parquet:"cert_key_type,dict"`
	CertKeyBits    int32     `parquet:"cert_key_bits"`
	CertSelfSigned bool      `parquet:"cert_self_signed"`
	CertParseError string    `parquet:"cert_parse_error"`

	PostTLSEHLOReply      string   `parquet:"post_tls_ehlo_reply"`
	PostTLSEHLOCode       int32    `parquet:"post_tls_ehlo_code"`
	PostTLSEHLOHost       string   `parquet:"post_tls_ehlo_host,dict"`
	PostTLSEHLOExtensions []string `parquet:"post_tls_ehlo_extensions,list"`

	BytesRead int64 `parquet:"bytes_read"`
}
