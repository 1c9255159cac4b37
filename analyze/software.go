package analyze

import "strings"

// softwarePatterns names the server from its own words. Order matters: the
// first match wins, and more specific products come before the MTAs they are
// built on (Zimbra ships Postfix). The greeting is tried before the EHLO
// replies because it is where servers announce themselves. The table is
// deliberately small: anything else is "unknown", which is honest.
var softwarePatterns = []struct {
	name  string
	words []string // lowercase; matched as whole words (qmail: any prefix, as netqmail, notqmail)
}{
	{"Google", []string{"mx.google.com"}},
	{"Microsoft ESMTP", []string{"microsoft esmtp", "microsoft exchange"}},
	{"Zimbra", []string{"zimbra"}},
	{"Postfix", []string{"postfix"}},
	{"Exim", []string{"exim"}},
	{"Sendmail", []string{"sendmail"}},
	{"OpenSMTPD", []string{"opensmtpd"}},
	{"qmail", []string{"qmail"}},
	{"Haraka", []string{"haraka"}},
}

// Software labels outside the pattern table.
const (
	softwareCiscoMasked = "Cisco (masked ****)"
	softwareUnknown     = "unknown"
)

// serverSoftware classifies a host by its greeting and EHLO replies. It
// returns "" when there was no greeting, so that hosts never reached do not
// inflate "unknown".
func serverSoftware(banner string, ehlo ...string) string {
	if banner == "" {
		return ""
	}
	if maskedBanner(banner) {
		return softwareCiscoMasked
	}
	for _, text := range append([]string{banner}, ehlo...) {
		if text == "" {
			continue
		}
		// One lowercase copy and plain substring searches: the regexp
		// version of this table was a third of the analyzer's CPU.
		lower := strings.ToLower(text)
		for _, p := range softwarePatterns {
			for _, w := range p.words {
				if containsWord(lower, w, p.name != "qmail") {
					return p.name
				}
			}
		}
	}
	return softwareUnknown
}

// containsWord reports whether w occurs in s with a word boundary after it
// and, when left is set, before it (regexp's \b: between [0-9A-Za-z_] and
// anything else, or the text's end).
func containsWord(s, w string, left bool) bool {
	for i := 0; ; {
		j := strings.Index(s[i:], w)
		if j < 0 {
			return false
		}
		at := i + j
		end := at + len(w)
		if (!left || at == 0 || !wordByte(s[at-1])) && (end == len(s) || !wordByte(s[end])) {
			return true
		}
		i = at + 1
	}
}

func wordByte(c byte) bool {
	return c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// maskedBanner recognises the greeting of Cisco PIX/ASA "SMTP fixup", which
// replaces every character after the reply code with '*' except some digits
// and spaces ("220 ******************2*0*0*0*"), hiding the real server.
func maskedBanner(banner string) bool {
	line, _, _ := strings.Cut(banner, "\n")
	line = strings.TrimRight(line, "\r ")
	if len(line) < 5 || (line[3] != ' ' && line[3] != '-') {
		return false
	}
	stars := 0
	for _, c := range line[4:] {
		switch {
		case c == '*':
			stars++
		case c == ' ' || (c >= '0' && c <= '9'):
		default:
			return false
		}
	}
	return stars >= 4
}
