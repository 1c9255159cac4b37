package world

import (
	"net/netip"
	"strings"
	"time"
)

// Dialects are how the background servers talk: the greeting, the EHLO
// reply and the STARTTLS reply of the mail servers our realservers/ suite
// ran (Postfix and Exim from Debian's packages) and of two kinds seen on the
// internet (Microsoft's, a masking Cisco appliance). Case servers keep the
// lab's own dialect: their replies are what the case tests hold, byte for
// byte. The truth states what a scan derives from each dialect (banner_host,
// ehlo_host, the extensions, starttls_code), never the raw text: Exim and
// Microsoft put the time of the connection into their greeting.
type Dialect uint8

const (
	DialectLab       Dialect = iota // "220 <name> ESMTP mxsurvey-lab"
	DialectPostfix                  // Postfix as Debian ships it
	DialectExim                     // Exim 4.96 with Debian's default banner
	DialectMicrosoft                // Exchange / Microsoft 365 style
	DialectMasked                   // a masking firewall or gateway: "220 ****", the name only in EHLO
	numDialects
)

var dialectLabel = [numDialects]string{
	DialectLab: "lab", DialectPostfix: "postfix", DialectExim: "exim",
	DialectMicrosoft: "microsoft", DialectMasked: "masked",
}

func (d Dialect) String() string { return dialectLabel[d] }

// Extension lists after the EHLO reply's first line, as the servers send
// them before TLS; after TLS the same without STARTTLS (RFC 3207 4.2).
var (
	postfixExtensions = []string{"PIPELINING", "SIZE 10240000", "VRFY", "ETRN", "STARTTLS",
		"ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8", "CHUNKING"}
	eximExtensions = []string{"SIZE 52428800", "8BITMIME", "PIPELINING", "PIPECONNECT", "CHUNKING",
		"STARTTLS", "SMTPUTF8", "HELP"}
	microsoftExtensions = []string{"SIZE 157286400", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES",
		"STARTTLS", "8BITMIME", "BINARYMIME", "CHUNKING", "SMTPUTF8"}
	maskedExtensions = []string{"8BITMIME", "SIZE 10485760", "STARTTLS"} // Cisco ESA (AsyncOS)

	dialectExtensions = [numDialects][2][]string{
		DialectPostfix:   {postfixExtensions, withoutSTARTTLS(postfixExtensions)},
		DialectExim:      {eximExtensions, withoutSTARTTLS(eximExtensions)},
		DialectMicrosoft: {microsoftExtensions, withoutSTARTTLS(microsoftExtensions)},
		DialectMasked:    {maskedExtensions, withoutSTARTTLS(maskedExtensions)},
	}
)

func withoutSTARTTLS(ext []string) []string {
	var out []string
	for _, e := range ext {
		if e != "STARTTLS" {
			out = append(out, e)
		}
	}
	return out
}

// Greeting dates: Exim's $tod_full pads the day, Microsoft's does not.
const (
	eximTime      = "Mon, 02 Jan 2006 15:04:05 -0700"
	microsoftTime = "Mon, 2 Jan 2006 15:04:05 -0700"
)

// Lines after the first of Exim's multi-line greetings (smtp_banner with
// "\n"): cPanel's, and the one of realservers/ (its eximMultiBanner).
var (
	cpanelGreeting = []string{"We do not authorize the use of this system to transport unsolicited, ", "and/or bulk e-mail."}
	noUCEGreeting  = []string{"No UCE. This is a multi-line greeting."}
)

// maskedGreeting is what a masking gateway leaves of the greeting.
const maskedGreeting = "220 ********************************\r\n"

// WireName is a name as s sends it: Microsoft's servers uppercase their
// machine label (BN8NAM11FT036.mail.protection.outlook.com); a scan
// lowercases host names, so the truth keeps the lowercase name.
func (s *Server) WireName(name string) string {
	if s.Dialect != DialectMicrosoft {
		return name
	}
	label, rest, _ := strings.Cut(name, ".")
	if rest == "" {
		return strings.ToUpper(label)
	}
	return strings.ToUpper(label) + "." + rest
}

// Greeting is the greeting of a server that sends an ordinary one; now is
// the time of the connection (Exim and Microsoft say it).
func (s *Server) Greeting(now time.Time) string {
	name := s.WireName(s.Banner)
	switch s.Dialect {
	case DialectPostfix:
		return "220 " + name + " ESMTP Postfix (Debian/GNU)\r\n"
	case DialectExim:
		first := name + " ESMTP Exim 4.96 " + now.UTC().Format(eximTime)
		return strings.Join(multi("220", first, s.greetTail), "\r\n") + "\r\n"
	case DialectMicrosoft:
		return "220 " + name + " Microsoft ESMTP MAIL Service ready at " + now.UTC().Format(microsoftTime) + "\r\n"
	case DialectMasked:
		return maskedGreeting
	}
	return "220 " + name + s.Case.SMTP.Junk + " ESMTP mxsurvey-lab\r\n"
}

// helloText is what follows the server's name on the first line of its
// EHLO (and HELO) reply: Exim and Microsoft echo the client.
func (s *Server) helloText(helo string, peer netip.Addr) string {
	switch s.Dialect {
	case DialectExim:
		return " Hello " + helo + " [" + peer.String() + "]"
	case DialectMicrosoft:
		return " Hello [" + peer.String() + "]"
	}
	return ""
}

// STARTTLSReady is the 220 reply to STARTTLS.
func (s *Server) STARTTLSReady() string {
	switch s.Dialect {
	case DialectExim:
		return "220 TLS go ahead"
	case DialectMicrosoft:
		return "220 2.0.0 SMTP server ready"
	case DialectMasked:
		return "220 Go ahead with TLS"
	}
	return "220 2.0.0 Ready to start TLS" // Postfix, and the lab's own
}

// Dialect shares, drawn per operator (a provider, a hosting server, a
// self-hosted leader: all its addresses run one daemon) from the seed.
var (
	// classicProviderDialects: 50% Postfix, 25% Exim, 25% lab.
	classicProviderDialects = []weighted[Dialect]{{2, DialectPostfix}, {1, DialectExim}, {1, DialectLab}}
	// hostingDialects: shared hosting is mostly cPanel (Exim; half of them
	// with cPanel's three-line greeting), some Plesk (Postfix).
	hostingDialects = []weighted[Dialect]{{6, DialectExim}, {3, DialectPostfix}, {1, DialectLab}}
	// selfDialects: self-hosted machines.
	selfDialects = []weighted[Dialect]{{9, DialectPostfix}, {4, DialectExim}, {2, DialectMicrosoft}, {1, DialectMasked}, {4, DialectLab}}
)

// providerDialect: tenant-like providers are Microsoft's, filtering gateways
// mask their greeting, the suite-like and internal-banner ones keep the
// lab's; classic providers draw.
func (w *World) providerDialect(p int) Dialect {
	switch w.providers[p].style {
	case StyleTenant:
		return DialectMicrosoft
	case StyleGateway:
		return DialectMasked
	case StyleSuite, StyleInternal:
		return DialectLab
	}
	return pick(classicProviderDialects, w.hash(tagProvDialect, p))
}

func (w *World) hostingDialect(h int) Dialect {
	return pick(hostingDialects, w.hash(tagHostingDialect, h))
}

// hostingCPanel says whether an Exim hosting server greets with cPanel's
// three lines: half of them.
func (w *World) hostingCPanel(h int) bool { return pick(oneIn2, w.hash(tagHostingDialect, h)>>32) }

func (w *World) selfDialect(leader int) Dialect {
	return pick(selfDialects, w.hash(tagSelfDialect, leader))
}
