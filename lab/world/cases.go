package world

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// The case table: every behaviour of the lab, one record each (see Case).
// Adding a case is adding a record here (and a test that it shows): the
// servers and the truth follow. The order is the order of the case ranges
// in the world (kindOf): a record inserted before others moves their
// domains, so new cases go at the end.
var cases = indexed([]Case{
	{Name: "cert_mx", Desc: "CA-signed certificate for the MX name; banner = EHLO = MX name"},
	{Name: "cert_banner_only", Desc: "certificate for the banner name smtp.<d> only; MX name mx.<d> (the seed's case)",
		SMTP: SMTP{Banner: NameOwn}, Cert: CertRule{Names: CertBanner}},
	{Name: "cert_both", Desc: "certificate with SANs for both the MX name and the banner name smtp.<d>",
		SMTP: SMTP{Banner: NameOwn}, Cert: CertRule{Names: CertMXAndBanner}},
	{Name: "cert_wildcard", Desc: "certificate *.<d> covering the MX name", Cert: CertRule{Names: CertWildcard}},
	{Name: "cert_wildcard_multi", Desc: "certificate *.*.test (wildcard not only in the left-most label): matches nothing",
		Cert: CertRule{Names: CertFixed, Fixed: "*.*.test"}},
	{Name: "cert_wildcard_partial", Desc: "certificate m*.<d> (partial-label wildcard): matches nothing",
		Cert: CertRule{Names: CertFixed, Fixed: "m*." + zonePlaceholder}},
	{Name: "cert_wildcard_tld", Desc: "certificate *.test (too broad: test is a suffix): matches nothing",
		Cert: CertRule{Names: CertFixed, Fixed: "*.test"}},
	{Name: "cert_cn_only", Desc: "CA-signed, CN = MX name, no SAN extension", Cert: CertRule{NoSAN: true}},
	{Name: "cert_self_signed", Desc: "self-signed certificate for the MX name", Cert: CertRule{Issuer: IssuerSelf}},
	{Name: "cert_snakeoil", Desc: "self-signed default certificate CN=localhost, SAN localhost (Debian snakeoil style)",
		Cert: CertRule{Names: CertFixed, Fixed: "localhost", Issuer: IssuerSelf, Key: KeyRSA2048}},
	{Name: "cert_expired", Desc: "CA-signed for the MX name, expired (2021-2022)", Cert: CertRule{Validity: ValidExpired}},
	{Name: "cert_not_yet_valid", Desc: "CA-signed for the MX name, valid from 2090", Cert: CertRule{Validity: ValidFuture}},
	{Name: "cert_unknown_ca", Desc: "signed by a CA that is not in ca.pem", Cert: CertRule{Issuer: IssuerUnknown}},
	{Name: "cert_missing_intermediate", Desc: "signed by the lab intermediate, which the server does not send",
		Cert: CertRule{Issuer: IssuerLabNoChain}},
	{Name: "cert_rsa", Desc: "like cert_mx with an RSA 2048 key", Cert: CertRule{Key: KeyRSA2048}},
	{Name: "cert_ecdsa_p384", Desc: "like cert_mx with an ECDSA P-384 key", Cert: CertRule{Key: KeyP384}},
	{Name: "tls12_only", Desc: "like cert_mx, server speaks TLS 1.2 at most", TLS: TLS{MaxTLS12: true}},

	{Name: "smtp_ehlo_differs", Desc: "banner names mx.<d>, EHLO reply names smtp.<d>",
		SMTP: SMTP{EHLOName: NameOwn, PostName: NameOwn}},
	{Name: "smtp_post_tls_differs", Desc: "EHLO after TLS names smtp.<d> and adds AUTH PLAIN LOGIN",
		SMTP: SMTP{PostName: NameOwn, PostExtra: []string{"AUTH PLAIN LOGIN"}}},
	{Name: "smtp_no_starttls", Desc: "EHLO reply without STARTTLS",
		SMTP: SMTP{Advert: AdvertNone}, End: End{OutSTARTTLS, ErrNoSTARTTLS}},
	{Name: "smtp_starttls_lowercase", Desc: "EHLO reply advertises 'starttls' in lower case", SMTP: SMTP{Advert: AdvertLower}},
	{Name: "smtp_starttls_454", Desc: "STARTTLS advertised, answered 454",
		SMTP: SMTP{STARTTLS: Reply{454, "4.7.0 TLS not available due to local problem"}}, End: End{OutSTARTTLS, ErrRejected}},
	{Name: "smtp_greeting_554", Desc: "554 greeting (RFC 3207/5321 refusal), then waits for QUIT",
		SMTP: SMTP{Open: OpenRefuse, Refusal: Reply{554, "No SMTP service here"}, WaitQUIT: true}, End: End{OutBanner, ErrRejected}},
	{Name: "smtp_busy_421", Desc: "421 greeting, then closes",
		SMTP: SMTP{Open: OpenRefuse, Refusal: Reply{421, "Service not available, closing transmission channel"}}, End: End{OutBanner, ErrRejected}},
	{Name: "smtp_helo_only", Desc: "EHLO answered 502; HELO works (no extensions, so no STARTTLS)",
		SMTP: SMTP{EHLO: EHLORefuse}, End: End{OutSTARTTLS, ErrNoSTARTTLS}},
	// Nothing listens on [::1]:port: the lab's SMTP listener is tcp4 only.
	{Name: "smtp_refused", Desc: "MX host's only address is AAAA ::1, where nothing listens: connection refused",
		DNS: DNS{Host: HostAddr, Addr: netip.IPv6Loopback()}, End: End{OutConnect, ErrRefused}},
	{Name: "smtp_silent", Desc: "accepts the connection and never sends a byte", Hostile: true,
		SMTP: SMTP{Open: OpenSilent}, End: End{OutBanner, ErrTimeout}},

	{Name: "dns_null_mx", Desc: "RFC 7505 null MX (MX 0 .)", DNS: DNS{Status: StatusNullMX, MX: MXNull}},
	{Name: "dns_implicit_mx", Desc: "no MX; the domain's own A record is the implicit MX (RFC 5321 5.1)", DNS: DNS{MX: MXImplicit}},
	{Name: "dns_no_mx", Desc: "no MX and no address for the domain", DNS: DNS{Status: StatusNoMX, MX: MXNone}},
	{Name: "dns_nxdomain", Desc: "domain in the list that does not exist", DNS: DNS{Status: StatusNXDomain, Answer: AnswerNXDomain}},
	{Name: "dns_servfail", Desc: "every query for the domain gets SERVFAIL", DNS: DNS{Status: StatusServfail, Answer: AnswerServfail}},
	{Name: "dns_timeout", Desc: "every query for the domain is dropped", Hostile: true,
		DNS: DNS{Status: StatusTimeout, Answer: AnswerDrop}},
	{Name: "dns_domain_cname", Desc: "the domain is a CNAME to real.<d>, which has the MX", DNS: DNS{Via: ViaCNAME}},
	{Name: "dns_mx_cname", Desc: "the MX host mx.<d> is a CNAME to host.<d>", DNS: DNS{Host: HostCNAME}},
	{Name: "dns_mx_no_address", Desc: "the MX host exists but has no A/AAAA", DNS: DNS{Host: HostEmpty}},
	{Name: "dns_mx_nxdomain", Desc: "the MX host does not exist", DNS: DNS{Host: HostNX}},
	{Name: "dns_mx_private", Desc: "the MX host's address is 10.0.0.1 (must be blocked)",
		DNS: DNS{Host: HostAddr, Addr: netip.MustParseAddr("10.0.0.1")}, End: End{OutSkipped, ErrBlocked}},
	{Name: "dns_mx_link_local", Desc: "the MX host's address is 169.254.169.254 (must be blocked)",
		DNS: DNS{Host: HostAddr, Addr: netip.MustParseAddr("169.254.169.254")}, End: End{OutSkipped, ErrBlocked}},
	{Name: "dns_mx_doc_ipv6", Desc: "the MX host's only address is in 2001:db8::/32 (must be blocked)",
		DNS: DNS{Host: HostDocV6}, End: End{OutSkipped, ErrBlocked}},
	{Name: "dns_many_mx", Desc: "100 MX records (UDP answer truncated, TCP needed), all on one server", Hostile: true,
		DNS: DNS{MX: MXMany, Count: 100}, Cert: CertRule{Names: CertAllMX}},

	// Hostile and broken peers (the "hostile" group, with smtp_silent,
	// dns_timeout and dns_many_mx).
	{Name: "smtp_tarpit", Desc: "tarpit: a greeting trickled one byte every 3 s, forever", Hostile: true, Share: HostileCaseShare,
		SMTP: SMTP{Open: OpenTarpit}, End: End{OutBanner, ErrTimeout}},
	{Name: "smtp_endless_line", Desc: "greeting line that never ends (no LF), until the client leaves", Hostile: true, Share: HostileCaseShare,
		SMTP: SMTP{Open: OpenEndless}, End: End{OutBanner, ErrTooLarge}},
	{Name: "smtp_greeting_10mb", Desc: "valid multi-line 220 greeting of 10 MiB (1 KiB lines)", Hostile: true, Share: HostileCaseShare,
		SMTP: SMTP{Open: OpenHuge}, End: End{OutBanner, ErrTooLarge}},
	{Name: "smtp_ehlo_code_change", Desc: "EHLO reply whose third line says 251 instead of 250", Hostile: true, Share: HostileCaseShare,
		SMTP: SMTP{EHLO: EHLOCodeChange}, End: End{OutEHLO, ErrProtocol}},
	{Name: "smtp_ehlo_many_ext", Desc: "EHLO reply with 5000 extensions (STARTTLS among the first)", Hostile: true, Share: HostileCaseShare,
		SMTP: SMTP{EHLO: EHLOManyExt}, End: End{OutEHLO, ErrTooLarge}},
	{Name: "smtp_http", Desc: "an HTTP server: answers with an HTTP 400 response", Hostile: true, Share: HostileCaseShare,
		SMTP: SMTP{Open: OpenHTTP}, End: End{OutBanner, ErrProtocol}},
	{Name: "smtp_ssh", Desc: "an SSH server: SSH-2.0 banner", Hostile: true, Share: HostileCaseShare,
		SMTP: SMTP{Open: OpenSSH}, End: End{OutBanner, ErrProtocol}},
	{Name: "smtp_binary", Desc: "binary garbage instead of a greeting (NUL, invalid UTF-8, one LF)", Hostile: true, Share: HostileCaseShare,
		SMTP: SMTP{Open: OpenBinary}, End: End{OutBanner, ErrProtocol}},
	{Name: "smtp_nul_bytes", Desc: "64 NUL bytes and CRLF instead of a greeting", Hostile: true, Share: HostileCaseShare,
		SMTP: SMTP{Open: OpenNUL}, End: End{OutBanner, ErrProtocol}},
	{Name: "smtp_invalid_utf8", Desc: "valid SMTP whose greeting and EHLO text hold invalid UTF-8 and a NUL", Hostile: true, Share: HostileCaseShare,
		SMTP: SMTP{Junk: " caf\xe9 \xff\xfe\xc3\x28 nul\x00here"}},
	{Name: "smtp_banner_script", Desc: "valid SMTP with <script>alert(1)</script> in the greeting and EHLO", Hostile: true, Share: HostileCaseShare,
		SMTP: SMTP{Junk: " <script>alert(1)</script>"}},
	{Name: "smtp_reset_connect", Desc: "TCP reset (SO_LINGER 0 close) 0.5 s after accepting, before any byte", Hostile: true, Share: HostileCaseShare,
		SMTP: SMTP{Open: OpenReset}, End: End{OutBanner, ErrReset}},
	{Name: "smtp_reset_ehlo", Desc: "greets, then resets the connection on EHLO", Hostile: true, Share: HostileCaseShare,
		SMTP: SMTP{EHLO: EHLOReset}, End: End{OutEHLO, ErrReset}},
	{Name: "smtp_reset_tls", Desc: "accepts STARTTLS, reads the ClientHello, then resets", Hostile: true, Share: HostileCaseShare,
		SMTP: SMTP{AfterReady: AfterReset}, End: End{OutTLS, ErrReset}},
	{Name: "smtp_starttls_plaintext", Desc: "accepts STARTTLS, then answers the ClientHello in plain SMTP text", Hostile: true, Share: HostileCaseShare,
		SMTP: SMTP{AfterReady: AfterPlaintext}, End: End{OutTLS, ErrTLSOther}},
	{Name: "smtp_starttls_garbage", Desc: "accepts STARTTLS, then sends binary garbage instead of TLS", Hostile: true, Share: HostileCaseShare,
		SMTP: SMTP{AfterReady: AfterGarbage}, End: End{OutTLS, ErrTLSOther}},
	{Name: "cert_chain_50", Desc: "like cert_mx, but the chain sent holds 50 certificates (48 unrelated CAs appended)", Hostile: true, Share: HostileCaseShare,
		Cert: CertRule{Pad: Chain50Pad}},
	// TLS 1.2: the chain travels in clear and is kept, but the handshake
	// fails; of a leaf that does not parse only its hash is known.
	{Name: "cert_parse_leaf_tls12", Desc: "TLS 1.2 at most; the leaf says X.509 version 6, which crypto/x509 rejects", Hostile: true, Share: HostileCaseShare,
		TLS: TLS{MaxTLS12: true}, Cert: CertRule{Broken: BrokenLeaf}, End: End{OutTLS, ErrCertParse}},
	// TLS 1.3 encrypts the certificate: nothing of the chain is seen.
	{Name: "cert_parse_leaf_tls13", Desc: "as cert_parse_leaf_tls12 over TLS 1.3: the chain is encrypted and lost", Hostile: true, Share: HostileCaseShare,
		Cert: CertRule{Broken: BrokenLeaf}, End: End{OutTLS, ErrTLSOther}},
	{Name: "cert_parse_intermediate_tls12", Desc: "TLS 1.2 at most; valid leaf, the second certificate is not a certificate", Hostile: true, Share: HostileCaseShare,
		TLS: TLS{MaxTLS12: true}, Cert: CertRule{Broken: BrokenIntermediate}, End: End{OutTLS, ErrCertParse}},
	// A resolver follows <d> -> loop1 -> loop2 and stops when the chain
	// comes back to <d>.
	{Name: "dns_cname_loop", Desc: "the domain is a CNAME loop: <d> -> loop1.<d> -> loop2.<d> -> <d>", Hostile: true, Share: HostileCaseShare,
		DNS: DNS{Status: StatusError, Via: ViaLoop, MX: MXNone}},
	{Name: "dns_mx_hundreds", Desc: "300 MX records, all on one server (a scan keeps the 64 most preferred)", Hostile: true, Share: HostileCaseShare,
		DNS: DNS{MX: MXMany, Count: 300}, Cert: CertRule{Names: CertAllMX}},
	// RFC 5321 5.1 wants a name: an address is not looked up, and the
	// (unserved) address is not probed.
	{Name: "dns_mx_ip_literal", Desc: "MX target is an IPv4 address written as a name (MX 10 127.x.y.z.)", Hostile: true, Share: HostileCaseShare,
		DNS: DNS{MX: MXLiteral}},
	// A reply with another ID is not the reply to the query: the client
	// keeps waiting for one, and times out.
	{Name: "dns_wrong_id", Desc: "every answer for the domain carries the wrong message ID", Hostile: true, Share: HostileCaseShare,
		DNS: DNS{Status: StatusTimeout, Spoil: SpoilID}},
	// A reply to another question is rejected: a malformed answer.
	{Name: "dns_wrong_question", Desc: "every answer for the domain echoes a different question name", Hostile: true, Share: HostileCaseShare,
		DNS: DNS{Status: StatusError, Spoil: SpoilQuestion}},

	// Certificates crypto/x509 refuses to make (lab/pki edits the TBS).
	// Self-signed means issuer == subject and a signature that verifies
	// under the certificate's own key, MD5 included.
	{Name: "cert_self_signed_md5", Desc: "self-signed RSA certificate for the MX name, signed with MD5 (md5WithRSAEncryption, which Go refuses to check)",
		Cert: CertRule{Issuer: IssuerSelf, Key: KeyRSA2048, Sig: SigMD5}},
	// Go's TLS client gives up at a DSA key, after the certificate came in
	// clear: the chain is kept, the handshake failed, so there are no facts.
	{Name: "cert_dsa", Desc: "CA-signed certificate for the MX name with a DSA 1024 key, TLS 1.2 at most (Go's client refuses DSA keys)",
		TLS: TLS{MaxTLS12: true}, Cert: CertRule{Key: KeyDSA}, End: End{OutTLS, ErrTLSOther}},

	// Transport security policies (issue 13; policy.go). DNSSEC: a signed
	// zone answers with AD, a bogus RRset is a SERVFAIL that CD answers.
	{Name: "dnssec_signed", Desc: "signed zone: its answers and denials are secure (AD); no TLSA records", DNSSEC: signed},
	{Name: "dnssec_mx_bogus", Desc: "signed zone whose MX RRset does not validate: SERVFAIL (an answer with CD)",
		DNS: DNS{Status: StatusServfail}, DNSSEC: DNSSEC{Signed: true, Bogus: BogusMX}},
	{Name: "dnssec_addr_bogus", Desc: "signed zone whose MX host's address RRsets do not validate: host_status servfail",
		DNSSEC: DNSSEC{Signed: true, Bogus: BogusAddr}},
	// DANE (RFC 7672): TLSA records at _25._tcp.<MX host> in a signed zone.
	{Name: "dane_311", Desc: "signed zone, TLSA 3 1 1 (DANE-EE, SHA-256 of the leaf's key)", DNSSEC: signed, DANE: dane(tlsaEE)},
	{Name: "dane_301", Desc: "signed zone, TLSA 3 0 1 (DANE-EE, SHA-256 of the leaf certificate)", DNSSEC: signed, DANE: dane(TLSA{3, 0, 1, AssocLeaf})},
	{Name: "dane_312", Desc: "signed zone, TLSA 3 1 2 (DANE-EE, SHA-512 of the leaf's key)", DNSSEC: signed, DANE: dane(TLSA{3, 1, 2, AssocLeaf})},
	{Name: "dane_201", Desc: "signed zone, TLSA 2 0 1 of the lab intermediate (DANE-TA), which signed the leaf for the MX name",
		DNSSEC: signed, DANE: dane(tlsaTA)},
	{Name: "dane_311_stale", Desc: "TLSA 3 1 1 of the key before a rollover: it matches no key the server has", DNSSEC: signed,
		DANE: dane(TLSA{3, 1, 1, AssocPrevKey})},
	{Name: "dane_rollover", Desc: "TLSA 3 1 1 of the old key and 3 1 1 of the current one (a rollover done right)", DNSSEC: signed,
		DANE: dane(TLSA{3, 1, 1, AssocPrevKey}, tlsaEE)},
	{Name: "dane_tlsa_bogus", Desc: "TLSA 3 1 1 whose RRset does not validate: SERVFAIL (an answer with CD)",
		DNSSEC: DNSSEC{Signed: true, Bogus: BogusTLSA}, DANE: dane(tlsaEE)},
	{Name: "dane_unusable", Desc: "TLSA 0 0 1 (PKIX-TA, not for SMTP) and 3 1 1 one byte short: no usable record", DNSSEC: signed,
		DANE: dane(TLSA{0, 0, 1, AssocIntermediate}, TLSA{3, 1, 1, AssocShort})},
	{Name: "dane_insecure", Desc: "TLSA 3 1 1 in an unsigned zone: present, not secure", DANE: dane(tlsaEE)},
	{Name: "dane_ee_name_mismatch", Desc: "TLSA 3 1 1; the certificate names only smtp.<d> (DANE-EE ignores names)", DNSSEC: signed,
		DANE: dane(tlsaEE), SMTP: SMTP{Banner: NameOwn}, Cert: CertRule{Names: CertBanner}},
	{Name: "dane_ta_name_mismatch", Desc: "TLSA 2 0 1 of the intermediate; the certificate names only smtp.<d>", DNSSEC: signed,
		DANE: dane(tlsaTA), SMTP: SMTP{Banner: NameOwn}, Cert: CertRule{Names: CertBanner}},
	{Name: "dane_ee_expired", Desc: "TLSA 3 1 1; the certificate expired (DANE-EE ignores dates)", DNSSEC: signed,
		DANE: dane(tlsaEE), Cert: CertRule{Validity: ValidExpired}},
	{Name: "dane_ta_expired", Desc: "TLSA 2 0 1 of the intermediate; the certificate expired", DNSSEC: signed,
		DANE: dane(tlsaTA), Cert: CertRule{Validity: ValidExpired}},
	{Name: "dane_ee_self_signed", Desc: "TLSA 3 1 1 of a self-signed certificate", DNSSEC: signed,
		DANE: dane(tlsaEE), Cert: CertRule{Issuer: IssuerSelf}},
	{Name: "dane_cname", Desc: "mx.<d> is a CNAME to host.<d> in a signed zone; TLSA 3 1 1 at _25._tcp.host.<d> (RFC 7672 2.2.2)",
		DNSSEC: signed, DNS: DNS{Host: HostCNAME}, DANE: dane(tlsaEE)},
	{Name: "dane_no_starttls", Desc: "TLSA 3 1 1; the server does not offer STARTTLS", DNSSEC: signed, DANE: dane(tlsaEE),
		SMTP: SMTP{Advert: AdvertNone}, End: End{OutSTARTTLS, ErrNoSTARTTLS}},
	// MTA-STS (RFC 8461): the record, the policy host mta-sts.<d> (on the
	// domain's second address, the lab's HTTPS port) and its policy.
	{Name: "sts_enforce", Desc: "MTA-STS record and policy, mode enforce, mx mx.<d>; a TLS-RPT record", STS: sts, RPT: RPTMailto},
	{Name: "sts_testing", Desc: "MTA-STS mode testing; the policy with LF line ends, text/plain; charset=utf-8",
		STS: STS{Record: STSValid, Mode: ModeTesting, Serve: ServeLF}},
	{Name: "sts_none", Desc: "MTA-STS mode none", STS: STS{Record: STSValid, Mode: ModeNone}},
	{Name: "sts_record_split", Desc: "the MTA-STS record in two character-strings", Hostile: true, STS: STS{Record: STSSplit}},
	{Name: "sts_record_duplicate", Desc: "the MTA-STS record twice: not exactly one record", Hostile: true, STS: STS{Record: STSDuplicate}},
	{Name: "sts_record_invalid", Desc: "v=STSv1 with an id that is not 1-32 letters and digits", STS: STS{Record: STSInvalid}},
	{Name: "sts_many_records", Desc: "10,000 TXT records at _mta-sts.<d>, the valid one first: UDP truncated, TCP cut at 64 KiB",
		Hostile: true, Share: HostileCaseShare, STS: STS{Record: STSMany}},
	{Name: "sts_no_host", Desc: "MTA-STS record; mta-sts.<d> does not exist", STS: STS{Record: STSValid, Host: STSHostNX}},
	{Name: "sts_refused", Desc: "mta-sts.<d> is AAAA ::1, where nothing listens: connection refused", STS: STS{Record: STSValid, Host: STSHostRefused}},
	{Name: "sts_private", Desc: "mta-sts.<d> is 10.0.0.1 (must be blocked)", STS: STS{Record: STSValid, Host: STSHostPrivate}},
	{Name: "sts_silent", Desc: "the policy host accepts and never sends a byte", Hostile: true, Share: HostileCaseShare,
		STS: STS{Record: STSValid, Serve: ServeSilent}},
	{Name: "sts_reset", Desc: "the policy host reads the ClientHello, then resets", Hostile: true, Share: HostileCaseShare,
		STS: STS{Record: STSValid, Serve: ServeReset}},
	{Name: "sts_cert_expired", Desc: "the policy host's certificate expired", STS: STS{Record: STSValid, Cert: CertRule{Validity: ValidExpired}}},
	{Name: "sts_cert_wrong_name", Desc: "the policy host's certificate is for www.<d>",
		STS: STS{Record: STSValid, Cert: CertRule{Names: CertFixed, Fixed: "www." + zonePlaceholder}}},
	{Name: "sts_cert_unknown_ca", Desc: "the policy host's certificate is from a CA not in ca.pem", STS: STS{Record: STSValid, Cert: CertRule{Issuer: IssuerUnknown}}},
	{Name: "sts_404", Desc: "the policy host answers 404", STS: STS{Record: STSValid, Serve: Serve404}},
	{Name: "sts_redirect", Desc: "the policy host redirects (301) to https://www.<d>/.well-known/mta-sts.txt (not to be followed)",
		Hostile: true, STS: STS{Record: STSValid, Serve: ServeRedirect}},
	{Name: "sts_html", Desc: "the policy served as text/html", STS: STS{Record: STSValid, Serve: ServeHTML}},
	{Name: "sts_policy_malformed", Desc: "a policy whose mode is \"enforced\"", STS: STS{Record: STSValid, Serve: ServeMalformed}},
	{Name: "sts_policy_huge", Desc: "a policy of 2 MiB (filler lines after it): a scan reads 1 MiB", Hostile: true, Share: HostileCaseShare,
		STS: STS{Record: STSValid, Serve: ServeHuge}},
	{Name: "sts_policy_utf16", Desc: "the policy in UTF-16LE with a byte order mark (not UTF-8)", Hostile: true,
		STS: STS{Record: STSValid, Serve: ServeUTF16}},
	{Name: "sts_mx_mismatch", Desc: "MTA-STS enforce; the policy's mx is smtp-old.<d>, not the MX host", STS: STS{Record: STSValid, MX: STSMXOther}},
	{Name: "sts_mx_wildcard", Desc: "MTA-STS enforce; the policy's mx is *.<d>", STS: STS{Record: STSValid, MX: STSMXWildcard}},
	{Name: "sts_mx_cert_mismatch", Desc: "MTA-STS enforce; the MX certificate names only smtp.<d>", STS: sts,
		SMTP: SMTP{Banner: NameOwn}, Cert: CertRule{Names: CertBanner}},
	{Name: "sts_mx_cert_expired", Desc: "MTA-STS enforce; the MX certificate expired", STS: sts, Cert: CertRule{Validity: ValidExpired}},
	{Name: "sts_mx_self_signed", Desc: "MTA-STS enforce; the MX certificate is self-signed", STS: sts, Cert: CertRule{Issuer: IssuerSelf}},
	{Name: "sts_no_starttls", Desc: "MTA-STS enforce; the server does not offer STARTTLS", STS: sts,
		SMTP: SMTP{Advert: AdvertNone}, End: End{OutSTARTTLS, ErrNoSTARTTLS}},
	// TLS-RPT (RFC 8460) records at _smtp._tls.<d>.
	{Name: "tlsrpt_mailto", Desc: "TLS-RPT record, rua=mailto:", RPT: RPTMailto},
	{Name: "tlsrpt_https", Desc: "TLS-RPT record, rua=https:", RPT: RPTHTTPS},
	{Name: "tlsrpt_split", Desc: "the TLS-RPT record in two character-strings", Hostile: true, RPT: RPTSplit},
	{Name: "tlsrpt_invalid", Desc: "TLS-RPT record with rua=ftp: (only mailto: and https: are allowed)", RPT: RPTInvalid},
	{Name: "tlsrpt_duplicate", Desc: "the TLS-RPT record twice: not exactly one record", Hostile: true, RPT: RPTDuplicate},
	{Name: "dane_and_sts", Desc: "TLSA 3 1 1 in a signed zone and an MTA-STS policy (enforce): a sender applies DANE (RFC 8461 2)",
		DNSSEC: signed, DANE: dane(tlsaEE), STS: sts, RPT: RPTMailto},
})

// Parts the policy cases share.
var (
	signed = DNSSEC{Signed: true}
	tlsaEE = TLSA{3, 1, 1, AssocLeaf}
	tlsaTA = TLSA{2, 0, 1, AssocIntermediate}
	sts    = STS{Record: STSValid}
)

func dane(t ...TLSA) DANE { return DANE{TLSA: t} }

// The cases the background servers show, by name.
var (
	caseCertMX         = caseNamed("cert_mx")
	caseCertBannerOnly = caseNamed("cert_banner_only")
	caseCertBoth       = caseNamed("cert_both")
	caseCertWildcard   = caseNamed("cert_wildcard")
	caseSelfSigned     = caseNamed("cert_self_signed")
	caseSnakeoil       = caseNamed("cert_snakeoil")
	caseCertExpired    = caseNamed("cert_expired")
	caseCertRSA        = caseNamed("cert_rsa")
	caseTLS12Only      = caseNamed("tls12_only")
	caseDocV6          = caseNamed("dns_mx_doc_ipv6") // the 2001:db8:: addresses of providers
)

func indexed(t []Case) []Case {
	for i := range t {
		t[i].index = i
	}
	return t
}

func caseNamed(name string) *Case {
	c, ok := CaseByName(name)
	if !ok {
		panic("lab: no case " + name) // the table is static: a typo in this file
	}
	return c
}

// CaseByName finds a case of the table.
func CaseByName(name string) (*Case, bool) {
	for i := range cases {
		if cases[i].Name == name {
			return &cases[i], true
		}
	}
	return nil, false
}

// AllCases is the case table in catalogue order. Callers must not change it.
func AllCases() []Case { return cases }

// CaseNames lists every case in catalogue order.
func CaseNames() []string {
	out := make([]string, len(cases))
	for i := range cases {
		out[i] = cases[i].Name
	}
	return out
}

// HostileCaseNames lists the cases of the hostile group in catalogue order.
func HostileCaseNames() []string {
	var out []string
	for i := range cases {
		if cases[i].Hostile {
			out = append(out, cases[i].Name)
		}
	}
	return out
}

// DefaultCaseShare is the share of domains each case gets unless -cases says
// otherwise. Small worlds get a minimum count per case instead (see
// caseCounts) so that every case shows up at -domains 1000.
const DefaultCaseShare = 0.0005

// HostileCaseShare is the built-in share of most hostile peers: smaller,
// since some are expensive for a scan (a tarpit holds a probe until its step
// deadline, dns_mx_hundreds is 300 targets). Small worlds still get the
// minimum count of each.
const HostileCaseShare = 0.0001

// GroupHostile names, in -cases, every case marked hostile: hostile=0 turns
// them all off, hostile=0.01 gives each that share.
const GroupHostile = "hostile"

func (c *Case) builtinShare() float64 {
	if c.Share == 0 {
		return DefaultCaseShare
	}
	return c.Share
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
		if _, known := CaseByName(name); !known && name != "default" && name != GroupHostile {
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

// caseCounts turns shares into whole domain counts, by table position. A
// case with a positive share gets at least minCount domains, so that small
// test worlds still hold every case; an explicit share of 0 turns the case
// off.
func caseCounts(n int, shares map[string]float64) ([]int, error) {
	counts := make([]int, len(cases))
	minCount := max(1, min(n/300, 3))
	total := 0
	for i := range cases {
		c := &cases[i]
		share := c.builtinShare()
		if v, ok := shares["default"]; ok {
			share = v
		}
		if v, ok := shares[GroupHostile]; ok && c.Hostile {
			share = v
		}
		if v, ok := shares[c.Name]; ok {
			share = v
		}
		if share <= 0 {
			continue
		}
		counts[i] = max(int(share*float64(n)+0.5), minCount)
		total += counts[i]
	}
	if total > n {
		return counts, fmt.Errorf("lab: the cases need %d domains but the world has %d: raise -domains or lower -cases", total, n)
	}
	return counts, nil
}

// CaseCount is how many domains of the world show case c.
func (w *World) CaseCount(c *Case) int { return w.counts[c.index] }
