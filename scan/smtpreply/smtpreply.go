// Package smtpreply parses SMTP replies (RFC 5321 §4.2) as a survey needs
// them: the bytes exactly as received, bounded, plus the few things read out of
// them (the reply code, the host a greeting or EHLO reply names, the EHLO
// extension keywords, among them STARTTLS of RFC 3207).
//
// It does no network I/O of its own, so it can be fuzzed and table-tested
// without servers, and the prober stays a thin conversation around it. Every
// read is bounded (line length, lines per reply, bytes per reply) because the
// other end is an arbitrary, possibly hostile, internet server.
package smtpreply

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// Errors returned by Read. The three caps are separate so that a dataset can
// say which bound a server hit; a caller that only cares whether a cap was hit
// can test IsCap.
var (
	ErrLineTooLong  = errors.New("smtpreply: reply line too long")
	ErrTooManyLines = errors.New("smtpreply: too many reply lines")
	ErrTooLarge     = errors.New("smtpreply: reply too large")
	ErrMalformed    = errors.New("smtpreply: malformed reply")
)

// IsCap reports whether err says a Limits bound was hit.
func IsCap(err error) bool {
	return errors.Is(err, ErrLineTooLong) || errors.Is(err, ErrTooManyLines) || errors.Is(err, ErrTooLarge)
}

// Reply is one SMTP reply, possibly multi-line.
type Reply struct {
	// Code is the 3-digit code of the first line; 0 if the first line has none.
	Code int
	// Lines holds the text of each line after "NNN" and its separator (' ' or
	// '-'), minus the line ending. A line that is not a reply line at all
	// (ErrMalformed) is kept whole, so nothing received is dropped from the
	// parsed view either.
	Lines []string
	// Raw is the reply exactly as received, line endings included, up to
	// Limits.MaxBytes: the evidence a survey stores.
	Raw string
}

// Limits bounds one reply. A zero field takes its default.
type Limits struct {
	MaxLineBytes int // one line, line ending included
	MaxLines     int // lines in one reply
	MaxBytes     int // the whole reply
}

// Defaults: RFC 5321 §4.5.3.1.5 allows 512 octets per reply line; real servers
// exceed it, so the line cap is four times that, as in go-smtp and mox. A
// function rather than a variable so no caller can change another's defaults.
const (
	DefaultMaxLineBytes = 2048
	DefaultMaxLines     = 1000
	DefaultMaxBytes     = 65536
)

// DefaultLimits returns the limits used for zero fields.
func DefaultLimits() Limits {
	return Limits{MaxLineBytes: DefaultMaxLineBytes, MaxLines: DefaultMaxLines, MaxBytes: DefaultMaxBytes}
}

// WithDefaults returns lim with each zero or negative field replaced by its
// default.
func (lim Limits) WithDefaults() Limits {
	d := DefaultLimits()
	if lim.MaxLineBytes <= 0 {
		lim.MaxLineBytes = d.MaxLineBytes
	}
	if lim.MaxLines <= 0 {
		lim.MaxLines = d.MaxLines
	}
	if lim.MaxBytes <= 0 {
		lim.MaxBytes = d.MaxBytes
	}
	return lim
}

// Read reads one reply from br.
//
// What can fail, and what comes back with the error:
//   - ErrLineTooLong, ErrTooManyLines, ErrTooLarge: a cap was hit; the reply
//     read so far is returned, Raw including the capped prefix of the line
//     that overflowed (never more than MaxBytes in all). The rest of the line
//     is left unread: the conversation cannot go on after a cap anyway.
//   - ErrMalformed: a line is not "NNN", "NNN text" or "NNN-text", or a
//     continuation line's code differs from the first line's; the reply so far
//     and the offending line (in Raw and Lines) are returned.
//   - an I/O error from br, wrapped; io.EOF when the peer closed before sending
//     anything, io.ErrUnexpectedEOF when it closed in the middle of a reply.
//
// Code and Lines describe complete lines only; a line cut off by a cap or by
// the end of input is in Raw alone. Lines may end in CRLF or a bare LF; both
// are seen in the wild.
func Read(br *bufio.Reader, lim Limits) (Reply, error) {
	lim = lim.WithDefaults()
	var (
		r     Reply
		raw   []byte
		spans [][2]int // of each line's text in raw
	)
	// Raw is made once, on the way out, and Lines are slices of it: a
	// string per line and per prefix cost a multi-line EHLO reply a dozen
	// copies.
	end := func(err error) (Reply, error) {
		r.Raw = string(raw)
		if len(spans) > 0 {
			r.Lines = make([]string, len(spans))
			for i, sp := range spans {
				r.Lines[i] = r.Raw[sp[0]:sp[1]]
			}
		}
		return r, err
	}
	for {
		line, err := readLine(br, lim.MaxLineBytes)
		// Raw never grows beyond MaxBytes, whatever the line length.
		over := len(raw)+len(line) > lim.MaxBytes
		if over {
			raw = append(raw, line[:lim.MaxBytes-len(raw)]...)
		} else {
			raw = append(raw, line...)
		}
		if err != nil {
			if errors.Is(err, io.EOF) && len(raw) > 0 {
				err = io.ErrUnexpectedEOF
			}
			if !errors.Is(err, ErrLineTooLong) {
				err = fmt.Errorf("smtpreply: %w", err)
			}
			return end(err)
		}
		if over {
			return end(ErrTooLarge)
		}
		text := trimEOL(line)
		textEnd := len(raw) - len(line) + len(text)
		code, sep, rest, ok := splitLine(text)
		if !ok {
			spans = append(spans, [2]int{textEnd - len(text), textEnd})
			return end(fmt.Errorf("%w: line %d is not a reply line", ErrMalformed, len(spans)))
		}
		spans = append(spans, [2]int{textEnd - len(rest), textEnd})
		if len(spans) == 1 {
			r.Code = code
		} else if code != r.Code {
			return end(fmt.Errorf("%w: line %d has code %03d, first line %03d", ErrMalformed, len(spans), code, r.Code))
		}
		if sep != '-' {
			return end(nil)
		}
		if len(spans) >= lim.MaxLines {
			return end(ErrTooManyLines)
		}
	}
}

// readLine returns one line including its ending. ReadSlice hands out a view
// of bufio's own buffer, so the only copy is into line, and that copy never
// grows beyond max bytes: a server sending an endless line costs max bytes of
// memory, not the line's length.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) > max {
			line = append(line, frag[:max-len(line)]...)
			return line, ErrLineTooLong
		}
		line = append(line, frag...)
		switch {
		case err == nil:
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return line, err
		}
	}
}

func trimEOL(line []byte) []byte {
	n := len(line)
	if n > 0 && line[n-1] == '\n' {
		n--
		if n > 0 && line[n-1] == '\r' {
			n--
		}
	}
	return line[:n]
}

// splitLine splits a reply line into code, separator (' ', '-' or 0 for a bare
// "NNN") and text. Codes are any three digits from 100 to 599: RFC 5321 narrows
// the second digit further, but a survey records what servers send rather than
// rejecting it.
func splitLine(text []byte) (code int, sep byte, rest []byte, ok bool) {
	if len(text) < 3 {
		return 0, 0, nil, false
	}
	for _, c := range text[:3] {
		if c < '0' || c > '9' {
			return 0, 0, nil, false
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 || code > 599 {
		return 0, 0, nil, false
	}
	if len(text) == 3 {
		return code, 0, nil, true
	}
	switch text[3] {
	case ' ', '-':
		return code, text[3], text[4:], true
	}
	return 0, 0, nil, false
}

// Host returns the host named by the first line of a reply (RFC 5321 §4.2:
// "220 SP domain [SP text]", and the same shape for the first EHLO reply
// line): the first token after the code and its separator, when it is a
// hostname with at least one dot, "localhost", or an address literal
// ("[192.0.2.1]", "[IPv6:2001:db8::1]", brackets kept); lowercased, one
// trailing dot removed. Anything else gives "": masked banners ("220 *****"),
// bare words ("220 ESMTP ready", "250-Hello") and bare IPv4 addresses
// ("220 192.0.2.1 ESMTP"), because RFC 5321 writes addresses as bracketed
// literals and a bare dotted quad names no host a certificate could match.
//
// firstLine is a reply line as received, code included ("220 mx.example.com
// ESMTP"), with or without its line ending; a line without a code names no
// host. Reply.Lines[0] has its code stripped already: pass the Reply to
// HostOf instead. (Accepting both forms was tried and rejected: a name such
// as "123-mx.example.com" would lose its first label to a guessed code.)
func Host(firstLine string) string {
	_, _, rest, ok := splitLine([]byte(strings.TrimRight(firstLine, "\r\n")))
	if !ok {
		return ""
	}
	return hostToken(string(rest))
}

// HostOf returns the host named by the reply's first line, by the rules of
// Host; a reply whose first line had no code names none.
func HostOf(r Reply) string {
	if r.Code == 0 || len(r.Lines) == 0 {
		return ""
	}
	return hostToken(r.Lines[0])
}

func hostToken(text string) string {
	text = strings.TrimLeft(text, " \t")
	if i := strings.IndexAny(text, " \t"); i >= 0 {
		text = text[:i]
	}
	if text == "" {
		return ""
	}
	if text[0] == '[' {
		return addressLiteral(text)
	}
	name := strings.ToLower(strings.TrimSuffix(text, "."))
	if name == "localhost" {
		return name
	}
	if isHostname(name) {
		return name
	}
	return ""
}

// addressLiteral accepts RFC 5321 §4.1.3 IPv4 and IPv6 literals. General
// address literals ("[tag:...]") are not accepted: none is registered.
func addressLiteral(tok string) string {
	if len(tok) < 3 || tok[len(tok)-1] != ']' {
		return ""
	}
	inner := tok[1 : len(tok)-1]
	if len(inner) > 5 && strings.EqualFold(inner[:5], "IPv6:") {
		a, err := netip.ParseAddr(inner[5:])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return ""
		}
		return strings.ToLower(tok)
	}
	a, err := netip.ParseAddr(inner)
	if err != nil || !a.Is4() {
		return ""
	}
	return tok
}

// isHostname is deliberately lenient about what a label may hold (underscores
// appear in real banners) but insists on the shape of a DNS name with a dot, so
// that words, masks and bare addresses are not taken for names.
func isHostname(name string) bool {
	if len(name) > 253 || !strings.Contains(name, ".") {
		return false
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	// An all-numeric last label is an address ("192.0.2.1"), not a name: no
	// top-level domain is numeric (RFC 3696 §2).
	last := labels[len(labels)-1]
	return strings.Trim(last, "0123456789") != ""
}

// Extensions returns the EHLO keywords advertised by the lines after the
// first: the keyword uppercased (so "starttls" and "STARTTLS" count alike),
// its parameters kept as sent, trailing spaces trimmed, empty lines skipped.
func Extensions(r Reply) []string {
	if len(r.Lines) < 2 {
		return nil
	}
	exts := make([]string, 0, len(r.Lines)-1)
	for _, l := range r.Lines[1:] {
		l = strings.TrimRight(l, " \t")
		if strings.TrimSpace(l) == "" {
			continue
		}
		kw, params, found := strings.Cut(l, " ")
		if found {
			exts = append(exts, strings.ToUpper(kw)+" "+params)
		} else {
			exts = append(exts, strings.ToUpper(kw))
		}
	}
	return exts
}

// HasExtension reports whether an EHLO reply offers keyword, ignoring case,
// surrounding spaces and any parameters (RFC 5321 §2.4: keywords are
// case-insensitive; servers really do send "starttls" and "STARTTLS ").
func HasExtension(r Reply, keyword string) bool {
	keyword = strings.TrimSpace(keyword)
	if len(r.Lines) < 2 || keyword == "" {
		return false
	}
	for _, l := range r.Lines[1:] {
		l = strings.TrimSpace(l)
		kw, _, _ := strings.Cut(l, " ")
		if strings.EqualFold(kw, keyword) {
			return true
		}
	}
	return false
}
