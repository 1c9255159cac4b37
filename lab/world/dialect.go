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
type dialect uint8

const (
	dialectLab       dialect = iota // "220 <name> ESMTP mxsurvey-lab"
	dialectPostfix                  // Postfix as Debian ships it
	dialectExim                     // Exim 4.96 with Debian's default banner
	dialectMicrosoft                // Exchange / Microsoft 365 style
	dialectMasked                   // a masking firewall or gateway: "220 ****", the name only in EHLO
	numDialects
)

var dialectLabel = [numDialects]string{
	dialectLab: "lab", dialectPostfix: "postfix", dialectExim: "exim",
	dialectMicrosoft: "microsoft", dialectMasked: "masked",
}

func (d dialect) String() string { return dialectLabel[d] }

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
		dialectPostfix:   {postfixExtensions, withoutSTARTTLS(postfixExtensions)},
		dialectExim:      {eximExtensions, withoutSTARTTLS(eximExtensions)},
		dialectMicrosoft: {microsoftExtensions, withoutSTARTTLS(microsoftExtensions)},
		dialectMasked:    {maskedExtensions, withoutSTARTTLS(maskedExtensions)},
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

// serverExtensions is the EHLO reply of s after its first line. The lists
// are shared: callers copy before changing them.
func serverExtensions(s *server, postTLS bool) []string {
	if s.dialect == dialectLab {
		return extensions(s.cas, postTLS)
	}
	if postTLS {
		return dialectExtensions[s.dialect][1]
	}
	return dialectExtensions[s.dialect][0]
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

// wireName is a name as s sends it: Microsoft's servers uppercase their
// machine label (BN8NAM11FT036.mail.protection.outlook.com); a scan
// lowercases host names, so the truth keeps the lowercase name.
func (s *server) wireName(name string) string {
	if s.dialect != dialectMicrosoft {
		return name
	}
	label, rest, _ := strings.Cut(name, ".")
	if rest == "" {
		return strings.ToUpper(label)
	}
	return strings.ToUpper(label) + "." + rest
}

// bannerHost is the banner_host a scan writes for s's greeting.
func (s *server) bannerHost() string {
	if s.dialect == dialectMasked {
		return ""
	}
	return sayHost(s.banner)
}

// greeting is the 220 greeting of a server that sends an ordinary one; now
// is the time of the connection (Exim and Microsoft say it).
func greeting(s *server, now time.Time) string {
	name := s.wireName(s.banner)
	switch s.dialect {
	case dialectPostfix:
		return "220 " + name + " ESMTP Postfix (Debian/GNU)\r\n"
	case dialectExim:
		first := name + " ESMTP Exim 4.96 " + now.UTC().Format(eximTime)
		return strings.Join(multi("220", first, s.greetTail), "\r\n") + "\r\n"
	case dialectMicrosoft:
		return "220 " + name + " Microsoft ESMTP MAIL Service ready at " + now.UTC().Format(microsoftTime) + "\r\n"
	case dialectMasked:
		return maskedGreeting
	}
	return "220 " + name + replyJunk(s.cas) + " ESMTP mxsurvey-lab\r\n"
}

// helloText is what follows the server's name on the first line of its
// EHLO (and HELO) reply: Exim and Microsoft echo the client.
func helloText(s *server, helo string, peer netip.Addr) string {
	switch s.dialect {
	case dialectExim:
		return " Hello " + helo + " [" + peer.String() + "]"
	case dialectMicrosoft:
		return " Hello [" + peer.String() + "]"
	}
	return ""
}

// startTLSReady is the 220 reply to STARTTLS.
func startTLSReady(s *server) string {
	switch s.dialect {
	case dialectExim:
		return "220 TLS go ahead"
	case dialectMicrosoft:
		return "220 2.0.0 SMTP server ready"
	case dialectMasked:
		return "220 Go ahead with TLS"
	}
	return "220 2.0.0 Ready to start TLS" // Postfix, and the lab's own
}

// Dialect shares, drawn per operator (a provider, a hosting server, a
// self-hosted leader: all its addresses run one daemon) from the seed.
//
// providerDialect: tenant-like providers are Microsoft's, filtering gateways
// mask their greeting, the suite-like and internal-banner ones keep the
// lab's; classic providers draw 50% Postfix, 25% Exim, 25% lab.
func (w *World) providerDialect(p int) dialect {
	switch w.providers[p].style {
	case styleTenant:
		return dialectMicrosoft
	case styleGateway:
		return dialectMasked
	case styleSuite, styleInternal:
		return dialectLab
	}
	switch w.hash(tagProvDialect, p) % 4 {
	case 0, 1:
		return dialectPostfix
	case 2:
		return dialectExim
	}
	return dialectLab
}

// hostingDialect: shared hosting is mostly cPanel (Exim; half of them with
// cPanel's three-line greeting), some Plesk (Postfix): 60% Exim, 30%
// Postfix, 10% lab.
func (w *World) hostingDialect(h int) dialect {
	switch w.hash(tagHostingDialect, h) % 10 {
	case 0, 1, 2, 3, 4, 5:
		return dialectExim
	case 6, 7, 8:
		return dialectPostfix
	}
	return dialectLab
}

// hostingCPanel says whether an Exim hosting server greets with cPanel's
// three lines.
func (w *World) hostingCPanel(h int) bool { return w.hash(tagHostingDialect, h)>>32%2 == 0 }

// selfDialect: self-hosted machines run 45% Postfix, 20% Exim, 10% Exchange,
// 5% behind a masking firewall, 20% the lab's own.
func (w *World) selfDialect(leader int) dialect {
	switch u := w.hash(tagSelfDialect, leader) % 20; {
	case u < 9:
		return dialectPostfix
	case u < 13:
		return dialectExim
	case u < 15:
		return dialectMicrosoft
	case u < 16:
		return dialectMasked
	}
	return dialectLab
}
