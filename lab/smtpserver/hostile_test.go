package smtpserver

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/lab/truth"
	"github.com/mxsurvey/mxsurvey/lab/world"
)

// The hostile cases are checked against the servers with the tests' own
// minimal client, as the ordinary cases are in checkTarget: what the server
// sends must be what the truth says it sends.

// hostileConversation says whether a target needs checkHostile rather than
// checkTarget's ordinary conversation.
func hostileConversation(h truth.Host) bool {
	if len(h.Cases) == 0 {
		return false
	}
	c, ok := world.CaseByName(h.Cases[len(h.Cases)-1])
	if !ok {
		return false
	}
	sc := &c.SMTP
	switch {
	case sc.Open != world.OpenGreet && sc.Open != world.OpenSilent && sc.Open != world.OpenRefuse,
		sc.EHLO == world.EHLOReset || sc.EHLO == world.EHLOCodeChange || sc.EHLO == world.EHLOManyExt,
		c.End.Outcome == world.OutTLS:
		return true
	}
	return false
}

func rawOf(h truth.Host, col string) (truth.Text, bool) {
	for _, r := range h.Raw {
		if r.Column == col {
			return r, true
		}
	}
	return truth.Text{}, false
}

// rawConn is a connection read byte-exactly, line by line.
type rawConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, l *fixture, h truth.Host) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", net.JoinHostPort(h.IP, strconv.Itoa(l.SMTPPort)), 2*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", h.MXHost, err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, r: bufio.NewReaderSize(c, 64<<10)}
}

// reply reads one reply as bytes; err is the read error, if any.
func (rc *rawConn) reply() ([]byte, []string, error) {
	var all []byte
	var lines []string
	for {
		rc.c.SetReadDeadline(time.Now().Add(3 * time.Second))
		l, err := rc.r.ReadBytes('\n')
		all = append(all, l...)
		if err != nil {
			return all, lines, err
		}
		s := strings.TrimRight(string(l), "\r\n")
		lines = append(lines, s)
		if len(s) < 4 || s[3] != '-' {
			return all, lines, nil
		}
	}
}

func (rc *rawConn) cmd(line string) ([]byte, []string, error) {
	if _, err := fmt.Fprintf(rc.c, "%s\r\n", line); err != nil {
		return nil, nil, err
	}
	return rc.reply()
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

// checkRawBanner holds an exact banner of the truth against the greeting.
func checkRawBanner(t *testing.T, l *fixture, h truth.Host) {
	want, ok := rawOf(h, "banner")
	if !ok || !want.Exact {
		return
	}
	rc := dialRaw(t, l, h)
	got, _, err := rc.reply()
	if err != nil || !bytes.Equal(got, want.Bytes) {
		t.Errorf("%s %v: greeting %q (%v), truth %q", h.MXHost, h.Cases, got, err, want.Bytes)
	}
}

// checkHostile runs the conversation a hostile case allows and holds what the
// server does against the truth.
func checkHostile(t *testing.T, l *fixture, h truth.Host) {
	c, _ := world.CaseByName(h.Cases[len(h.Cases)-1])
	sc := &c.SMTP
	rc := dialRaw(t, l, h)
	banner, _ := rawOf(h, "banner")
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("%s %v: %s", h.MXHost, h.Cases, fmt.Sprintf(format, args...))
	}
	switch {
	case sc.Open == world.OpenTarpit:
		b := make([]byte, 8)
		rc.c.SetReadDeadline(time.Now().Add(time.Second))
		n, err := rc.c.Read(b)
		if n != 1 || err != nil || b[0] != banner.Bytes[0] {
			fail("first read %q %v, want one byte %q", b[:n], err, banner.Bytes[:1])
		}
		rc.c.SetReadDeadline(time.Now().Add(time.Second))
		if n, err := rc.c.Read(b); n != 0 || !isTimeout(err) {
			fail("a second byte within 1s: %q %v", b[:n], err)
		}
		return
	case sc.Open == world.OpenEndless:
		rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, 1<<20)
		if _, err := io.ReadFull(rc.r, got); err != nil {
			fail("reading 1 MiB: %v", err)
		}
		if bytes.IndexByte(got, '\n') >= 0 || !bytes.HasPrefix(got, banner.Bytes) {
			fail("1 MiB of the endless line: LF at %d, starts %q, truth %q", bytes.IndexByte(got, '\n'), got[:80], banner.Bytes)
		}
		return
	case sc.Open == world.OpenHuge:
		total, lines := 0, 0
		var first []byte
		for {
			rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, err := rc.r.ReadBytes('\n')
			if err != nil {
				fail("greeting: %v after %d bytes", err, total)
				return
			}
			if first == nil {
				first = append(line, []byte(nil)...)
			}
			total += len(line)
			lines++
			if !bytes.HasPrefix(line, []byte("220")) {
				fail("greeting line %d %q", lines, line[:10])
				return
			}
			if line[3] == ' ' {
				break
			}
		}
		if total < 10<<20 || !bytes.HasPrefix(banner.Bytes, first) || banner.Exact || !banner.Capped {
			fail("greeting of %d bytes, %d lines, first %q; truth %q", total, lines, first, banner.Bytes)
		}
		if _, lines, err := rc.cmd("EHLO probe.test"); err != nil || !strings.HasPrefix(lines[0], "250") {
			fail("EHLO after the huge greeting: %q %v", lines, err)
		}
		return
	case sc.Open.Foreign():
		rc.c.SetReadDeadline(time.Now().Add(3 * time.Second))
		line, err := rc.r.ReadBytes('\n')
		if err != nil || !banner.Exact || !bytes.Equal(line, banner.Bytes) {
			fail("first line %q %v, truth %q", line, err, banner.Bytes)
		}
		if len(line) >= 3 && line[0] >= '0' && line[0] <= '9' {
			fail("starts with a digit: could pass for a reply")
		}
		return
	case sc.Open == world.OpenReset:
		rc.c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if n, err := rc.c.Read(make([]byte, 10)); n != 0 || !isReset(err) {
			fail("read %d %v, want a reset", n, err)
		}
		return
	}

	// The rest greet properly (with the text the truth states, if it does).
	got, lines, err := rc.reply()
	if err != nil || (banner.Bytes != nil && !bytes.Equal(got, banner.Bytes)) || firstToken(lines[0][4:]) != h.BannerHost {
		fail("greeting %q %v, truth %q", got, err, banner.Bytes)
		return
	}
	ehloRaw, _ := rawOf(h, "ehlo_reply")
	switch sc.EHLO {
	case world.EHLOReset:
		if _, _, err := rc.cmd("EHLO probe.test"); !isReset(err) {
			fail("EHLO: %v, want a reset", err)
		}
		return
	case world.EHLOCodeChange:
		all, lines, err := rc.cmd("EHLO probe.test")
		if err != nil || !ehloRaw.Exact || !bytes.HasPrefix(all, ehloRaw.Bytes) {
			fail("EHLO reply %q %v, truth %q", all, err, ehloRaw.Bytes)
			return
		}
		// The truth's reply ends with the first line whose code is not the
		// first line's.
		kept := strings.Split(strings.TrimSuffix(string(ehloRaw.Bytes), "\r\n"), "\r\n")
		for i, k := range kept {
			if (k[:3] != lines[0][:3]) != (i == len(kept)-1) {
				fail("line %d %q of the stated reply", i, k)
			}
		}
		if want := extOf(kept[1:]); !slices.Equal(want, h.EHLOExtensions) || h.STARTTLSOffered {
			fail("extensions %q, truth %q starttls %v", want, h.EHLOExtensions, h.STARTTLSOffered)
		}
		return
	case world.EHLOManyExt:
		all, lines, err := rc.cmd("EHLO probe.test")
		if err != nil || len(lines) < 2000 || !bytes.HasPrefix(all, ehloRaw.Bytes) || !ehloRaw.Capped {
			fail("EHLO reply of %d lines %v, truth starts %q", len(lines), err, ehloRaw.Bytes)
			return
		}
		if want := extOf(lines[1:world.AssumeMaxReplyLines]); !slices.Equal(want, h.EHLOExtensions) || !h.STARTTLSOffered ||
			!slices.Contains(want, "STARTTLS") {
			fail("extensions within the cap differ from the truth's (%d vs %d)", len(want), len(h.EHLOExtensions))
		}
		return
	}
	if _, _, err := rc.cmd("EHLO probe.test"); err != nil {
		fail("EHLO: %v", err)
		return
	}
	if _, lines, err := rc.cmd("STARTTLS"); err != nil || !strings.HasPrefix(lines[0], "220 ") || h.STARTTLSCode != 220 {
		fail("STARTTLS %q %v", lines, err)
		return
	}
	rec := &recordingConn{Conn: rc.c}
	tc := tls.Client(rec, &tls.Config{ServerName: h.MXHost, InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(3 * time.Second))
	err = tc.Handshake()
	if err == nil {
		fail("handshake succeeded")
		return
	}
	if isTimeout(err) {
		fail("handshake timed out: the server must fail it, not stall")
		return
	}
	var rhe tls.RecordHeaderError
	chain := clearChain(rec.buf)
	switch {
	case sc.AfterReady == world.AfterReset:
		if !isReset(err) {
			fail("handshake: %v, want a reset", err)
		}
	case sc.AfterReady == world.AfterPlaintext || sc.AfterReady == world.AfterGarbage:
		if !errors.As(err, &rhe) {
			fail("handshake: %v, want a record that is no TLS", err)
		}
	case !c.TLS.MaxTLS12:
		if chain != nil {
			fail("certificate chain in clear over TLS 1.3")
		}
	default: // TLS 1.2: the chain travelled in clear
		if len(chain) != h.CertChainLen || fmt.Sprintf("%x", sha256.Sum256(chain[0])) != h.CertSHA256 {
			fail("chain in clear: %d certificates; truth %d, sha %s", len(chain), h.CertChainLen, h.CertSHA256)
			return
		}
		leaf, lerr := x509.ParseCertificate(chain[0])
		_, ierr := x509.ParseCertificate(chain[1])
		if (lerr != nil) != (c.Cert.Broken == world.BrokenLeaf) || ierr == nil && c.Cert.Broken == world.BrokenIntermediate {
			fail("parse: leaf %v, second %v", lerr, ierr)
		}
		if leaf != nil {
			kt, kb := keyOf(leaf)
			if leaf.Subject.CommonName != h.CertSubjectCN || leaf.Issuer.String() != h.CertIssuer ||
				kt != h.CertKeyType || kb != h.CertKeyBits || selfSigned(leaf) != h.CertSelfSigned {
				fail("leaf %s by %s, key %s %d, self-signed %v; truth %+v", leaf.Subject, leaf.Issuer, kt, kb, selfSigned(leaf), h)
			}
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func extOf(lines []string) []string {
	var out []string
	for _, l := range lines {
		k, rest, found := strings.Cut(l[4:], " ")
		k = strings.ToUpper(k)
		if found {
			k += " " + rest
		}
		out = append(out, k)
	}
	return out
}

// recordingConn keeps what the server sent during a handshake.
type recordingConn struct {
	net.Conn
	buf []byte
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.buf = append(c.buf, p[:n]...)
	return n, err
}

// clearChain is the test's own reading of a Certificate message (RFC 5246
// 7.4.2) from the server's TLS records before ChangeCipherSpec; nil when
// there is none in clear (TLS 1.3).
func clearChain(b []byte) [][]byte {
	var hs []byte
	for len(b) >= 5 && b[0] == 22 {
		n := int(b[3])<<8 | int(b[4])
		if len(b) < 5+n {
			break
		}
		hs = append(hs, b[5:5+n]...)
		b = b[5+n:]
	}
	for len(hs) >= 4 {
		typ, n := hs[0], int(hs[1])<<16|int(hs[2])<<8|int(hs[3])
		if len(hs) < 4+n {
			return nil
		}
		body := hs[4 : 4+n]
		hs = hs[4+n:]
		if typ != 11 || len(body) < 3 {
			continue
		}
		var chain [][]byte
		for list := body[3:]; len(list) >= 3; {
			m := int(list[0])<<16 | int(list[1])<<8 | int(list[2])
			if len(list) < 3+m {
				return nil
			}
			chain = append(chain, list[3:3+m])
			list = list[3+m:]
		}
		return chain
	}
	return nil
}
