package world

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// The bytes a server sends, as functions of its record: the SMTP server
// writes them and the truth states from them what a scan reads. Replies the
// truth does not state (502, 503, 221, ...) belong to lab/smtpserver.

// manyExtCount is the number of extensions EHLOManyExt advertises.
const manyExtCount = 5000

// CodeChangeLine is the line of an EHLOCodeChange reply (0-based) whose code
// is 251 instead of 250.
const CodeChangeLine = 2

// Chain50Pad is how many unrelated CAs cert_chain_50 appends to leaf and
// intermediate: 50 certificates sent.
const Chain50Pad = 48

// labExtensions is the lab dialect's EHLO reply after its first line.
// STARTTLS is never advertised after TLS (RFC 3207 4.2).
func labExtensions(c *SMTP, postTLS bool) []string {
	out := []string{"PIPELINING", "SIZE 10240000"}
	if c.EHLO == EHLOManyExt && !postTLS {
		out = append(out, "STARTTLS")
		for k := range manyExtCount - 6 {
			out = append(out, fmt.Sprintf("X-LAB-EXT-%04d", k+1))
		}
		return append(out, "ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8")
	}
	if postTLS {
		out = append(out, c.PostExtra...)
	} else {
		switch c.Advert {
		case AdvertUpper:
			out = append(out, "STARTTLS")
		case AdvertLower:
			out = append(out, "starttls")
		}
	}
	return append(out, "ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8")
}

// Extensions is the server's EHLO reply after its first line, as sent. The
// lists are shared: callers copy before changing them.
func (s *Server) Extensions(postTLS bool) []string {
	if s.Dialect == DialectLab {
		return labExtensions(&s.Case.SMTP, postTLS)
	}
	if postTLS {
		return dialectExtensions[s.Dialect][1]
	}
	return dialectExtensions[s.Dialect][0]
}

// EHLOLines is the EHLO reply as sent, codes included, without line endings;
// helo is the client's EHLO argument and peer its address (Exim and
// Microsoft echo them).
func (s *Server) EHLOLines(postTLS bool, helo string, peer netip.Addr) []string {
	lines := multi("250", s.WireName(s.ehloName(postTLS))+s.Case.SMTP.Junk+s.helloText(helo, peer), s.Extensions(postTLS))
	if s.Case.SMTP.EHLO == EHLOCodeChange && !postTLS {
		lines[CodeChangeLine] = "251" + lines[CodeChangeLine][3:]
	}
	return lines
}

// HELOLine is the one-line reply to HELO.
func (s *Server) HELOLine(postTLS bool, helo string, peer netip.Addr) string {
	return "250 " + s.WireName(s.ehloName(postTLS)) + s.helloText(helo, peer)
}

func (s *Server) ehloName(postTLS bool) string {
	if postTLS {
		return s.PostEHLO
	}
	return s.EHLO
}

// RefusalLine is the greeting of an OpenRefuse server.
func (s *Server) RefusalLine() string {
	r := s.Case.SMTP.Refusal
	return strconv.Itoa(r.Code) + " " + s.Banner + " " + r.Text
}

// STARTTLSRefusal is the answer to STARTTLS of a server whose case refuses
// it ("" when it does not).
func (s *Server) STARTTLSRefusal() string {
	r := s.Case.SMTP.STARTTLS
	if r.Code == 0 {
		return ""
	}
	return strconv.Itoa(r.Code) + " " + r.Text
}

// multi formats a multi-line reply: code-text for all but the last line.
func multi(code string, first string, rest []string) []string {
	out := make([]string, 1+len(rest))
	for i := range out {
		l := first
		if i > 0 {
			l = rest[i-1]
		}
		sep := "-"
		if i == len(out)-1 {
			sep = " "
		}
		out[i] = code + sep + l
	}
	return out
}

// Foreign is what a server of another protocol sends on connect.
func (s *Server) Foreign() []byte {
	switch s.Case.SMTP.Open {
	case OpenHTTP:
		body := "<html><head><title>400 Bad Request</title></head><body><h1>400 Bad Request</h1></body></html>\r\n"
		return []byte("HTTP/1.1 400 Bad Request\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: " +
			strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body)
	case OpenSSH:
		return []byte("SSH-2.0-OpenSSH_9.6p1 Debian-3\r\n")
	case OpenNUL:
		return append(make([]byte, 64), '\r', '\n')
	case OpenBinary:
		b := s.Garbage(160)
		b[0], b[1], b[2] = 0x16, 0x00, 0xff // not a digit; a NUL; never valid UTF-8
		b[100] = '\n'                       // the end of the one "line" a reader takes
		return b
	}
	return nil
}

// Garbage is n seeded bytes without a line feed.
func (s *Server) Garbage(n int) []byte {
	b := make([]byte, 0, n+8)
	for k := 0; len(b) < n; k++ {
		b = binary.LittleEndian.AppendUint64(b, s.w.hash(tagGarbage, s.Slot*64+k))
	}
	b = b[:n]
	for i, c := range b {
		if c == '\n' {
			b[i] = 0
		}
	}
	return b
}

// FirstLine is b up to and including its first LF (all of b without one).
func FirstLine(b []byte) []byte {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i+1]
	}
	return b
}

// Hostile streams. The tarpit trickles TarpitLine, over and over; the
// endless line is EndlessHead followed by 'x' (EndlessChunk) until the
// client leaves; the 10 MiB greeting is HugeFirst, copies of HugeChunk and
// Greeting.
func (s *Server) TarpitLine() string  { return "220-" + s.Banner + " tarpit: one byte every 3 s\r\n" }
func (s *Server) EndlessHead() string { return "220 " + s.Banner + " " }
func (s *Server) HugeFirst() string {
	return "220-" + s.Banner + " ESMTP mxsurvey-lab: a 10 MiB greeting follows\r\n"
}

// HugeChunk is 64 lines of 1 KiB: "220-0123...\r\n" (read-only).
var HugeChunk = func() []byte {
	line := "220-" + strings.Repeat("0123456789abcdef", 63) + "0123456789\r\n"
	return []byte(strings.Repeat(line, 64))
}()

// EndlessChunk is 64 KiB of the endless line (read-only).
var EndlessChunk = bytes.Repeat([]byte("x"), 64<<10)

// SayHost is what a scan writes as banner_host (or ehlo_host) for a name
// the lab greets with (docs/schema.md): the name, except a dotless one
// other than localhost, which is no host name: "".
func SayHost(name string) string {
	if name != "localhost" && !strings.Contains(name, ".") {
		return ""
	}
	return name
}

// BannerHost is the banner_host a scan writes for the server's greeting.
func (s *Server) BannerHost() string {
	if s.Dialect == DialectMasked {
		return ""
	}
	return SayHost(s.Banner)
}
