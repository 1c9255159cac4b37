package realservers

// Independent evidence about each server, gathered without the scanner: a raw
// capture made with net.Dial (greeting, EHLO, STARTTLS reply as sent), and
// what `openssl s_client -starttls smtp` and Postfix's `posttls-finger` report.
// The parsers of their output are pure functions with their own unit tests
// (parse_test.go).

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Bounds for the test's own SMTP reader: the servers are ours, but a broken
// one must fail the test, not hang it.
const (
	maxReplyLine  = 2048
	maxReplyLines = 100
)

// readReply reads one SMTP reply (RFC 5321 §4.2) and returns its lines
// without line terminators, exactly as sent otherwise. A line ends with LF;
// a CR before it is removed.
func readReply(r *bufio.Reader) ([]string, error) {
	var lines []string
	for len(lines) < maxReplyLines {
		line, err := r.ReadString('\n')
		if len(line) > maxReplyLine {
			return lines, fmt.Errorf("reply line over %d bytes", maxReplyLine)
		}
		if err != nil {
			if line != "" {
				lines = append(lines, line)
			}
			return lines, fmt.Errorf("after %d lines: %w", len(lines), err)
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			return lines, nil
		}
	}
	return lines, fmt.Errorf("reply over %d lines", maxReplyLines)
}

// rawCapture is what one SMTP conversation made by hand showed.
type rawCapture struct {
	Greeting []string // the 220 reply's lines
	EHLO     []string // the EHLO reply's lines
	STARTTLS []string // the STARTTLS reply's lines
	PostTLS  []string // the EHLO reply's lines over TLS
	// Go's view of the handshake (the scanner's TLS library, so these are
	// what the scanner should see; openssl's view is in sClient).
	TLSVersion, TLSCipher string
	TLSGroup              tls.CurveID // the codepoint; its names are docs/schema.md's business
}

// capture talks to a server by hand: greeting, EHLO ehloName, STARTTLS, a
// TLS handshake with SNI = sni (no verification), EHLO again, QUIT.
func capture(ctx context.Context, ip string, port int, sni string) (rawCapture, error) {
	var rc rawCapture
	c, err := dialCtx(ctx, ip, port)
	if err != nil {
		return rc, err
	}
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.SetDeadline(deadline)
	r := bufio.NewReader(c)
	if rc.Greeting, err = readReply(r); err != nil {
		return rc, fmt.Errorf("greeting: %w", err)
	}
	if _, err = fmt.Fprintf(c, "EHLO %s\r\n", ehloName); err != nil {
		return rc, err
	}
	if rc.EHLO, err = readReply(r); err != nil {
		return rc, fmt.Errorf("EHLO: %w", err)
	}
	if _, err = fmt.Fprintf(c, "STARTTLS\r\n"); err != nil {
		return rc, err
	}
	if rc.STARTTLS, err = readReply(r); err != nil {
		return rc, fmt.Errorf("STARTTLS: %w", err)
	}
	if r.Buffered() != 0 {
		return rc, fmt.Errorf("%d bytes after the STARTTLS reply, before the handshake", r.Buffered())
	}
	tc := tls.Client(c, &tls.Config{ServerName: sni, InsecureSkipVerify: true}) // the checks are openssl's
	if err := tc.HandshakeContext(ctx); err != nil {
		return rc, fmt.Errorf("handshake: %w", err)
	}
	st := tc.ConnectionState()
	rc.TLSVersion, rc.TLSCipher, rc.TLSGroup = tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite), st.CurveID
	r = bufio.NewReader(tc)
	if _, err = fmt.Fprintf(tc, "EHLO %s\r\n", ehloName); err != nil {
		return rc, err
	}
	if rc.PostTLS, err = readReply(r); err != nil {
		return rc, fmt.Errorf("EHLO over TLS: %w", err)
	}
	if _, err = fmt.Fprintf(tc, "QUIT\r\n"); err == nil {
		_, _ = readReply(r) // 221; the server may close first
	}
	return rc, nil
}

// replyHost is the host named by a reply's first line, by DESIGN §3's rule,
// written here again on purpose (the lab states its truth without the
// scanner's parsers): the first token after the code and separator, when it
// has a dot, is "localhost", or is an address literal; otherwise "".
func replyHost(lines []string) string {
	if len(lines) == 0 || len(lines[0]) < 5 {
		return ""
	}
	tok, _, _ := strings.Cut(lines[0][4:], " ")
	switch {
	case strings.HasPrefix(tok, "[") && strings.HasSuffix(tok, "]"):
		return tok
	case strings.EqualFold(tok, "localhost"):
		return "localhost"
	case strings.Contains(strings.Trim(tok, "."), "."):
		return strings.ToLower(strings.TrimSuffix(tok, "."))
	}
	return ""
}

// extensions are the EHLO keywords with their parameters (lines after the
// first, code and separator removed, keyword uppercased).
func extensions(lines []string) []string {
	var out []string
	for _, l := range lines[min(1, len(lines)):] {
		if len(l) < 5 {
			continue
		}
		kw, params, has := strings.Cut(l[4:], " ")
		e := strings.ToUpper(kw)
		if has {
			e += " " + params
		}
		out = append(out, e)
	}
	return out
}

// hasKeyword says whether the extensions list a keyword, ignoring case and
// parameters.
func hasKeyword(exts []string, kw string) bool {
	for _, e := range exts {
		k, _, _ := strings.Cut(strings.TrimSpace(e), " ")
		if strings.EqualFold(k, kw) {
			return true
		}
	}
	return false
}

// --- openssl s_client

// sClient is what openssl s_client printed about one STARTTLS connection.
type sClient struct {
	Chain      []string // PEM blocks, in the order printed (-showcerts: as sent)
	Protocol   string   // "TLSv1.3"
	Cipher     string   // "TLS_AES_256_GCM_SHA384"
	KeyLine    string   // the key exchange line as printed: "Server Temp Key: X25519, 253 bits"
	VerifyCode int      // "Verify return code: N (...)"
	VerifyText string
}

var (
	reNewLine    = regexp.MustCompile(`(?m)^New, (\S+), Cipher is (\S+)\s*$`)
	reKeyLine    = regexp.MustCompile(`(?m)^((?:Server Temp Key|Negotiated [^:\n]*group): [^\n]*?)\s*$`)
	reVerify     = regexp.MustCompile(`(?m)^\s*Verify return code: (\d+) \(([^)]*)\)`)
	rePEM        = regexp.MustCompile(`(?s)-----BEGIN CERTIFICATE-----\n.*?-----END CERTIFICATE-----\n?`)
	reFinger     = regexp.MustCompile(`(?i)^\s*sha-?256 Fingerprint=([0-9a-f:]+)\s*$`)
	reExmTodFull = regexp.MustCompile(`[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}`)
)

// parseSClient reads `openssl s_client -showcerts` output (OpenSSL 3).
func parseSClient(out string) (sClient, error) {
	var s sClient
	m := reNewLine.FindStringSubmatch(out)
	if m == nil {
		return s, errors.New("s_client: no \"New, ..., Cipher is ...\" line (handshake failed?)")
	}
	s.Protocol, s.Cipher = m[1], m[2]
	if m := reKeyLine.FindStringSubmatch(out); m != nil {
		s.KeyLine = m[1]
	}
	if m := reVerify.FindStringSubmatch(out); m != nil {
		s.VerifyCode, _ = strconv.Atoi(m[1]) // \d+ of a few digits
		s.VerifyText = m[2]
	} else {
		s.VerifyCode = -1
	}
	// The chain is printed once, before the "---\nServer certificate" or
	// "No client certificate" part; session tickets do not repeat it.
	head := out
	if i := strings.Index(out, "\nSSL handshake has read"); i >= 0 {
		head = out[:i]
	}
	for _, b := range rePEM.FindAllString(head, -1) {
		s.Chain = append(s.Chain, strings.TrimRight(b, "\n")+"\n")
	}
	if len(s.Chain) == 0 {
		return s, errors.New("s_client: no certificate printed")
	}
	return s, nil
}

// parseFingerprint reads `openssl x509 -fingerprint -sha256 -noout` output
// into lowercase hex without colons.
func parseFingerprint(out string) (string, error) {
	for _, l := range strings.Split(out, "\n") {
		if m := reFinger.FindStringSubmatch(l); m != nil {
			return normFingerprint(m[1]), nil
		}
	}
	return "", fmt.Errorf("no SHA256 fingerprint in %q", out)
}

// normFingerprint: lowercase hex, no colons or spaces.
func normFingerprint(s string) string {
	return strings.ToLower(strings.NewReplacer(":", "", " ", "").Replace(strings.TrimSpace(s)))
}

// normTLSVersion maps "TLSv1.3", "TLS 1.3", "tls1.3", "TLS13" to "tls1.3".
func normTLSVersion(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.NewReplacer("v", "", " ", "", "_", "").Replace(s)
	if len(s) == 5 && strings.HasPrefix(s, "tls1") { // "tls13"
		s = "tls1." + s[4:]
	}
	return s
}

// maskExim replaces Exim's $tod_full timestamp, which changes per connection.
func maskExim(s string) string { return reExmTodFull.ReplaceAllString(s, "<tod_full>") }

// --- posttls-finger

// finger is what posttls-finger logged about one connection.
type finger struct {
	Trust       string // Verified, Trusted, Untrusted or Anonymous
	Protocol    string // TLSv1.3
	Cipher      string
	KeyExchange string // X25519
	SubjectCN   string
	IssuerCN    string
	Fingerprint string // certificate fingerprint (lowercase hex), with -d sha256
	PKeyFP      string
	Chain       []string // PEM blocks with -C
}

var (
	reFingerConn = regexp.MustCompile(`(?m)(Verified|Trusted|Untrusted|Anonymous) TLS connection established to [^:]+:\d+: (\S+) with cipher (\S+) \(\d+/\d+ bits\)(?: key-exchange (\S+))?`)
	reFingerPeer = regexp.MustCompile(`(?m)subject_CN=([^,]*), issuer_CN=([^,]*), fingerprint=([0-9A-Fa-f:]+), pkey_fingerprint=([0-9A-Fa-f:]+)`)
)

// parsePosttlsFinger reads posttls-finger -L summary,peercert [-C] output.
func parsePosttlsFinger(out string) (finger, error) {
	var f finger
	m := reFingerConn.FindStringSubmatch(out)
	if m == nil {
		return f, errors.New("posttls-finger: no \"TLS connection established\" line")
	}
	f.Trust, f.Protocol, f.Cipher, f.KeyExchange = m[1], m[2], m[3], m[4]
	if m := reFingerPeer.FindStringSubmatch(out); m != nil {
		f.SubjectCN, f.IssuerCN = m[1], m[2]
		f.Fingerprint, f.PKeyFP = normFingerprint(m[3]), normFingerprint(m[4])
	}
	for _, b := range rePEM.FindAllString(out, -1) {
		f.Chain = append(f.Chain, strings.TrimRight(b, "\n")+"\n")
	}
	return f, nil
}

// --- running the tools

// runSClient connects with openssl s_client as a mail administrator would
// (stdin empty: it closes after the handshake), with SNI = the MX name, the
// test CA as the only trust anchor and the MX name checked.
func (l *lab) runSClient(ctx context.Context, ip, mx string) (sClient, string, error) {
	out, err := run(ctx, "", l.tools.openssl, "s_client",
		"-starttls", "smtp", "-name", ehloName,
		"-connect", net.JoinHostPort(ip, strconv.Itoa(l.port)), "-servername", mx,
		"-crlf", "-showcerts", "-CAfile", l.caFile, "-verify_hostname", mx)
	if err != nil {
		return sClient{}, out, err
	}
	sc, err := parseSClient(out)
	return sc, out, err
}

// opensslFingerprint runs openssl x509 -fingerprint -sha256 -noout on a PEM.
func (l *lab) opensslFingerprint(ctx context.Context, pemBlock string) (string, error) {
	out, err := run(ctx, pemBlock, l.tools.openssl, "x509", "-fingerprint", "-sha256", "-noout")
	if err != nil {
		return "", err
	}
	return parseFingerprint(out)
}

// runFinger runs posttls-finger at the "secure" level with the test CA and
// the MX name as the name to match, SNI = MX name.
func (l *lab) runFinger(ctx context.Context, s serverSpec) (finger, string, error) {
	out, err := run(ctx, "", l.tools.posttlsFinger, "-c", "-C", "-l", "secure", "-F", l.caFile,
		"-L", "summary,peercert", "-d", "sha256", "-s", s.MX, "-t", "10", "-T", "10",
		"-o", "smtp_tls_loglevel=1",
		fmt.Sprintf("[%s]:%d", s.IP, l.port), s.MX)
	if err != nil {
		return finger{}, out, err
	}
	f, err := parsePosttlsFinger(out)
	return f, out, err
}

// sha256Hex is the SHA-256 of DER bytes as lowercase hex.
func sha256Hex(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}
