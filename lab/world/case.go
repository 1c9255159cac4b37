package world

import "net/netip"

// Case is one behaviour of the lab, stated once. The DNS server answers from
// its DNS shape, the SMTP server runs its script with its TLS limits, the
// certificate authority makes the certificate its rule describes, and the
// truth states from the same record what a scan must write, ending with End.
// The zero value of every part is the ordinary: an MX mx.<d> on the
// domain's own address, a server greeting and answering in its dialect, TLS
// 1.3, a certificate for the MX name from the lab intermediate, outcome ok;
// an unsigned zone without TLSA, MTA-STS or TLS-RPT records.
type Case struct {
	Name    string  // in -cases, the truth's cases and lab.json
	Desc    string  // one line for -h and the README
	Hostile bool    // member of the "hostile" group of -cases; the truth states its server-sent text
	Share   float64 // built-in share of domains; 0 is DefaultCaseShare

	DNS  DNS
	SMTP SMTP
	TLS  TLS
	Cert CertRule
	End  End

	// Transport security policies (policy.go).
	DNSSEC DNSSEC
	DANE   DANE
	STS    STS
	RPT    RPT

	index int // position in the table: the order of the case ranges
}

// End is the outcome and error_class a scan's row must hold for the case
// (DESIGN 3); the zero value is outcome ok.
type End struct {
	Outcome, Class string
}

// DNS is the shape of a case domain's zone and what a resolver must make of
// it.
type DNS struct {
	Status string    // the dns_status a resolver reports; "" is ok
	Answer Answer    // how every name of the domain is answered
	Spoil  Spoil     // what is wrong with every answer for the domain and its MX host
	Via    Via       // how the domain's name leads to its MX records
	MX     MXShape   // the MX records
	Count  int       // MXMany: how many
	Host   HostShape // what the MX host's name holds
	Addr   netip.Addr
}

// Answer is how the lab's DNS server answers every name of a domain.
type Answer uint8

const (
	AnswerRecords  Answer = iota // the records of the shape
	AnswerNXDomain               // NXDOMAIN: the domain does not exist
	AnswerServfail               // SERVFAIL
	AnswerDrop                   // no reply at all: the client times out
)

// Spoil is what is wrong with every answer for a name: the dns_wrong_id and
// dns_wrong_question cases. The records are the right ones, so a resolver
// that accepted the answer would go on to probe (and show in a scan).
type Spoil uint8

const (
	SpoilNone     Spoil = iota
	SpoilID             // the reply's message ID differs from the query's (XOR 0x5a5a)
	SpoilQuestion       // the reply's question names mismatch.<name>
)

// Via is how a domain's name leads to its MX records.
type Via uint8

const (
	ViaDirect Via = iota // the domain holds them
	ViaCNAME             // the domain is a CNAME to real.<d>, which holds them
	ViaLoop              // <d> -> loop1.<d> -> loop2.<d> -> <d>: none are ever reached
)

// MXShape is what MX records a case domain has.
type MXShape uint8

const (
	MXOne      MXShape = iota // MX 10 mx.<d>
	MXNull                    // RFC 7505 null MX (MX 0 .)
	MXNone                    // no MX, and no address for the domain
	MXImplicit                // no MX; the domain's own A record is the implicit MX (RFC 5321 5.1)
	MXMany                    // Count MX records mx001..mxNNN.<d>, preferences 10, 11, ...
	MXLiteral                 // MX 10 <the domain's own address written as a name>: no name to look up
)

// HostShape is what the MX host's name holds.
type HostShape uint8

const (
	HostServed HostShape = iota // an A record: the domain's own address, where its server runs
	HostEmpty                   // the name exists without A or AAAA
	HostNX                      // the name does not exist
	HostCNAME                   // mx.<d> is a CNAME to host.<d>, which holds the served address
	HostAddr                    // one address nothing of the lab serves: DNS.Addr (A or AAAA)
	HostDocV6                   // an AAAA in 2001:db8:ffff::/48 (documentation, never contacted)
)

// SMTP is a server's script: what it does on connect, in its greeting, to
// EHLO, to STARTTLS and after it. The zero value is an ordinary session.
type SMTP struct {
	Open     Open
	Refusal  Reply // Open == OpenRefuse: the greeting
	WaitQUIT bool  // after the refusal, answer 503 until QUIT (RFC 5321 3.1) instead of closing

	Banner   Name   // the name the greeting says: the MX name, or the server's own
	EHLOName Name   // the name of the EHLO reply: the banner's, or the server's own
	PostName Name   // the same after TLS
	Junk     string // text right after the host name in the greeting and the EHLO reply

	EHLO      EHLO
	Advert    Advert   // how the EHLO reply advertises STARTTLS
	PostExtra []string // extensions advertised after TLS only

	STARTTLS   Reply // the answer to STARTTLS when not 220 (a refusal)
	AfterReady AfterReady
}

// Reply is a reply line: code and text.
type Reply struct {
	Code int
	Text string
}

// Open is what a server does when a client connects.
type Open uint8

const (
	OpenGreet   Open = iota // an ordinary greeting in the server's dialect
	OpenSilent              // accepts and never sends a byte
	OpenReset               // a TCP reset (SO_LINGER 0 close) half a second after the accept
	OpenRefuse              // greets with SMTP.Refusal (421, 554)
	OpenTarpit              // a greeting trickled one byte every 3 s, forever
	OpenEndless             // a greeting line that never ends
	OpenHuge                // a well-formed 220 greeting of 10 MiB, then an ordinary session
	// Other protocols than SMTP, last (Foreign).
	OpenHTTP   // an HTTP server's 400 response
	OpenSSH    // an SSH server's banner
	OpenBinary // binary garbage with one LF
	OpenNUL    // NUL bytes and CRLF
)

// Foreign says whether a server speaks another protocol than SMTP.
func (o Open) Foreign() bool { return o >= OpenHTTP }

// Name says which name a reply carries.
type Name uint8

const (
	NameDefault Name = iota // the greeting: the (first) MX name; EHLO: the greeting's name
	NameOwn                 // the server's own name: smtp.<d>, or smtp<k>.<p> at a classic provider
)

// EHLO is how a server answers EHLO.
type EHLO uint8

const (
	EHLOOK         EHLO = iota // 250 and the extensions
	EHLORefuse                 // 502; HELO works (so there are no extensions)
	EHLOReset                  // a TCP reset
	EHLOCodeChange             // the reply's third line says 251 instead of 250
	EHLOManyExt                // 5000 extensions, STARTTLS the third
)

// Advert is how the EHLO reply advertises STARTTLS.
type Advert uint8

const (
	AdvertUpper Advert = iota // STARTTLS
	AdvertLower               // starttls
	AdvertNone                // not at all (and STARTTLS is answered 502)
)

// AfterReady is what a server does after its 220 to STARTTLS.
type AfterReady uint8

const (
	AfterHandshake AfterReady = iota // a TLS handshake
	AfterReset                       // reads the ClientHello, then a TCP reset
	AfterPlaintext                   // reads the ClientHello, answers with a plain SMTP greeting
	AfterGarbage                     // reads the ClientHello, answers with 512 garbage bytes
)

// TLS are a server's TLS limits.
type TLS struct {
	MaxTLS12 bool // TLS 1.2 at most
}

// Offered says whether the server advertises STARTTLS: its EHLO reply
// names it (in any case), and EHLO is answered at all.
func (s *SMTP) Offered() bool {
	return s.Advert != AdvertNone && s.EHLO != EHLORefuse
}
