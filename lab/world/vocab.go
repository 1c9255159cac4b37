package world

// The dataset's vocabulary as the case table and the truth use it. The
// values are those of the dataset contract (docs/schema.md); they are spelled
// out here, not imported, so that the lab and the scanner share no code
// (DESIGN 6).
const (
	StatusOK        = "ok"
	StatusNXDomain  = "nxdomain"
	StatusNoMX      = "no_mx"
	StatusNullMX    = "null_mx"
	StatusServfail  = "servfail"
	StatusTimeout   = "timeout"
	StatusNoAddress = "no_address"
	StatusError     = "error"
	// StatusNoRecords: NOERROR without records of the type asked (tlsa,
	// mta_sts and tlsrpt statuses).
	StatusNoRecords = "no_records"

	// DNSSEC statuses (mx_dnssec, addr_dnssec, tlsa_dnssec, ...); empty when
	// not determined.
	DNSSECSecure   = "secure"
	DNSSECInsecure = "insecure"
	DNSSECBogus    = "bogus"

	OutOK       = "ok"
	OutConnect  = "connect"
	OutBanner   = "banner"
	OutEHLO     = "ehlo"
	OutSTARTTLS = "starttls"
	OutTLS      = "tls"
	OutSkipped  = "skipped"

	ErrTimeout    = "timeout"
	ErrRefused    = "refused"
	ErrReset      = "reset"
	ErrProtocol   = "protocol"
	ErrRejected   = "rejected"
	ErrNoSTARTTLS = "no_starttls"
	ErrTLSOther   = "tls_other"
	ErrCertParse  = "cert_parse"
	ErrTooLarge   = "too_large"
	ErrBlocked    = "blocked"
	// The MTA-STS fetch's own classes (sts_error_class).
	ErrNoAddress = "no_address"

	// RFC 8460 §4.3 result types, as tlsrpt_results counts them.
	ResultSTARTTLSNotSupported = "starttls-not-supported"
	ResultHostMismatch         = "certificate-host-mismatch"
	ResultCertExpired          = "certificate-expired"
	ResultCertNotTrusted       = "certificate-not-trusted"
	ResultValidationFailure    = "validation-failure"
	ResultTLSAInvalid          = "tlsa-invalid"
	ResultDNSSECInvalid        = "dnssec-invalid"
	ResultSTSFetchError        = "sts-policy-fetch-error"
	ResultSTSInvalid           = "sts-policy-invalid"
	ResultSTSWebPKIInvalid     = "sts-webpki-invalid"
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

	AssumeMaxMX         = 64       // MX hosts kept of a domain, the most preferred (ties by name)
	AssumeMaxTXTRecords = 64       // TXT (and TLSA) records kept of an RRset
	AssumeMaxTXTBytes   = 2048     // bytes kept of one TXT record, its strings joined
	AssumeMaxBodyKept   = 64 << 10 // bytes kept of an MTA-STS policy body
	AssumeMaxBodyRead   = 1 << 20  // bytes of a policy body read at most (more: too_large)
)
