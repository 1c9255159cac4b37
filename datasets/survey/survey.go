// Package survey is the mxsurvey dataset contract (docs/schema.md): the row
// types of the mx, probes, tlsa and policies tables (their struct tags are
// the column names that notebooks, the analyzer and other engines read), the
// stable vocabularies of dns_status, outcome, error_class and the DNSSEC
// status, the schema version,
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
//
// Version 2 added the DNSSEC columns of mx and the tlsa and policies tables;
// readers of version 1 scans find those columns empty and the tables absent.
const SchemaVersion = 2

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
	// DNSNoRecords is a NOERROR answer without records of the type asked
	// (NODATA), where that is a result of its own: tlsa_status,
	// mta_sts_status, tlsrpt_status.
	DNSNoRecords = "no_records"
)

// DNSSEC statuses of an RRset lookup (mx_dnssec, addr_dnssec, tlsa_dnssec,
// mta_sts_dnssec, tlsrpt_dnssec). The scanner does not validate signatures:
// it reads the AD bit of a validating resolver it trusts (the manifest's
// dnssec option says whether it did).
const (
	// DNSSECSecure: the answer or the denial came with AD=1 (RFC 4035 §3.2.3),
	// on every response of its CNAME chain.
	DNSSECSecure = "secure"
	// DNSSECInsecure: an answer or denial without AD.
	DNSSECInsecure = "insecure"
	// DNSSECBogus: SERVFAIL, and an answer (NOERROR or NXDOMAIN) when asked
	// again with CD=1 (RFC 4035 §3.2.2): the data exists but does not
	// validate.
	DNSSECBogus = "bogus"
	// DNSSECUnknown: not determined: the lookup failed (its status says how),
	// or the resolver is not trusted for AD, or policies were off.
	DNSSECUnknown = ""
)

// Values of the manifest's "dnssec" option: whether the DNSSEC columns were
// filled from the resolver's AD bit.
const (
	DNSSECTrusted   = "trusted"   // the resolver is on loopback, or -trust-ad
	DNSSECUntrusted = "untrusted" // DO was set, AD ignored: every DNSSEC column is empty
	DNSSECOff       = "off"       // -policies=false: no DO bit, no DNSSEC columns, no tlsa or policies table
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
	// The MTA-STS fetch's own classes (sts_error_class), besides those above.
	ErrNoAddress = "no_address" // mta-sts.<domain> does not exist or has no address
	ErrDNS       = "dns"        // the address lookup of mta-sts.<domain> failed
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

	// Version 2. MXDNSSEC is the status of the MX RRset (of the domain's
	// address RRset for an implicit MX); MXHostCNAMEs the CNAMEs followed
	// resolving the host's addresses, which RFC 7672 §2.2.2 needs to place
	// its TLSA records; AddrDNSSEC the status of the A or AAAA RRset that
	// yielded ip (of the A lookup when there is no ip).
	MXDNSSEC     string   `parquet:"mx_dnssec,dict"`
	MXHostCNAMEs []string `parquet:"mx_host_cnames,list"`
	AddrDNSSEC   string   `parquet:"addr_dnssec,dict"`
}

// TLSARow is one row per distinct MX host of a scan: its TLSA records for
// SMTP (RFC 7672: _25._tcp.<host>) and their DNSSEC status. The analyzer
// joins it to probes on mx_host.
type TLSARow struct {
	MXHost string `parquet:"mx_host,dict"`
	// TLSAName is the owner name whose answer is recorded: the CNAME-expanded
	// host's when the host's address chain is secure and TLSA records are
	// there, else the host's own (RFC 7672 §2.2.2); empty when the host is
	// not a name that can be asked.
	TLSAName    string    `parquet:"tlsa_name"`
	TLSAStatus  string    `parquet:"tlsa_status,dict"` // ok, no_records, or a DNS failure
	TLSADNSSEC  string    `parquet:"tlsa_dnssec,dict"`
	TLSARecords []string  `parquet:"tlsa_records,list"` // "usage selector mtype hexdata", lower hex, as received
	TLSACNAMEs  []string  `parquet:"tlsa_cnames,list"`  // CNAMEs followed from tlsa_name
	TLSAError   string    `parquet:"tlsa_error"`
	QueriedAt   time.Time `parquet:"queried_at,timestamp(millisecond)"`
}

// PolicyRow is one row per valid input domain: its MTA-STS (RFC 8461) and
// TLS-RPT (RFC 8460) TXT records, and the MTA-STS policy fetch when a record
// asked for one. Everything is raw: the analyzer decides what is valid.
type PolicyRow struct {
	Domain string `parquet:"domain,dict"`

	MTASTSStatus string   `parquet:"mta_sts_status,dict"` // _mta-sts.<domain> TXT: ok, no_records, or a DNS failure
	MTASTSDNSSEC string   `parquet:"mta_sts_dnssec,dict"`
	MTASTSTXT    []string `parquet:"mta_sts_txt,list"` // each RR's strings concatenated (RFC 8461 §3.1)
	MTASTSError  string   `parquet:"mta_sts_error"`

	TLSRPTStatus string   `parquet:"tlsrpt_status,dict"` // _smtp._tls.<domain> TXT
	TLSRPTDNSSEC string   `parquet:"tlsrpt_dnssec,dict"`
	TLSRPTTXT    []string `parquet:"tlsrpt_txt,list"`
	TLSRPTError  string   `parquet:"tlsrpt_error"`

	QueriedAt time.Time `parquet:"queried_at,timestamp(millisecond)"`

	// STSFetched: an MTA-STS TXT record starts with "v=STSv1", so the policy
	// was fetched; the sts_* columns below are empty otherwise.
	STSFetched       bool      `parquet:"sts_fetched"`
	STSURL           string    `parquet:"sts_url"`
	STSIP            string    `parquet:"sts_ip,dict"`
	STSStartedAt     time.Time `parquet:"sts_started_at,timestamp(millisecond),optional"`
	STSDurationMS    int64     `parquet:"sts_duration_ms"`
	STSErrorClass    string    `parquet:"sts_error_class,dict"` // "" for a complete HTTP response
	STSError         string    `parquet:"sts_error"`
	STSHTTPStatus    int32     `parquet:"sts_http_status"`
	STSContentType   string    `parquet:"sts_content_type"`
	STSLocation      string    `parquet:"sts_location"`
	STSBody          []byte    `parquet:"sts_body"`
	STSBodyLen       int64     `parquet:"sts_body_len"`
	STSBodyTruncated bool      `parquet:"sts_body_truncated"`
	STSTLSVersion    string    `parquet:"sts_tls_version,dict"`
	STSCertChain     [][]byte  `parquet:"sts_cert_chain,list"`
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
