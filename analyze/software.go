package analyze

import (
	"regexp"
	"strings"
)

// softwarePatterns names the server from its own words. Order matters: the
// first match wins, and more specific products come before the MTAs they are
// built on (Zimbra ships Postfix). The greeting is tried before the EHLO
// replies because it is where servers announce themselves. The table is
// deliberately small: anything else is "unknown", which is honest.
var softwarePatterns = []struct {
	name string
	re   *regexp.Regexp
}{
	{"Google", regexp.MustCompile(`(?i)\bmx\.google\.com\b`)},
	{"Microsoft ESMTP", regexp.MustCompile(`(?i)\bmicrosoft esmtp\b|\bmicrosoft exchange\b`)},
	{"Zimbra", regexp.MustCompile(`(?i)\bzimbra\b`)},
	{"Postfix", regexp.MustCompile(`(?i)\bpostfix\b`)},
	{"Exim", regexp.MustCompile(`(?i)\bexim\b`)},
	{"Sendmail", regexp.MustCompile(`(?i)\bsendmail\b`)},
	{"OpenSMTPD", regexp.MustCompile(`(?i)\bopensmtpd\b`)},
	{"qmail", regexp.MustCompile(`(?i)qmail\b`)}, // netqmail, notqmail
	{"Haraka", regexp.MustCompile(`(?i)\bharaka\b`)},
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
		for _, p := range softwarePatterns {
			if p.re.MatchString(text) {
				return p.name
			}
		}
	}
	return softwareUnknown
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
