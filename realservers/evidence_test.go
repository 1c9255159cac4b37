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
	"slices"
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

// --- dig

// digResult is what dig printed about one query.
type digResult struct {
	Status string   // NOERROR, SERVFAIL, NXDOMAIN, ...
	Flags  []string // header flags: qr rd ra ad cd
	Answer []digRR  // the answer section
}

// digRR is one record of an answer section: owner (lowercase, with the
// trailing dot), type, and the data as printed.
type digRR struct {
	Owner, Type, Data string
}

var (
	reDigStatus = regexp.MustCompile(`(?m)^;; ->>HEADER<<- opcode: \w+, status: (\w+), id: \d+$`)
	reDigFlags  = regexp.MustCompile(`(?m)^;; flags:([a-z ]*);`)
	// owner TTL class type data; the data as printed (TXT strings keep
	// their spaces).
	reDigRR = regexp.MustCompile(`^(\S+)\s+\d+\s+\S+\s+(\S+)\s+(.*?)\s*$`)
)

// parseDig reads dig's default output (header, sections as comments).
func parseDig(out string) (digResult, error) {
	var r digResult
	m := reDigStatus.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("dig: no header line in %q", tail(out, 300))
	}
	r.Status = m[1]
	if m := reDigFlags.FindStringSubmatch(out); m != nil {
		r.Flags = strings.Fields(m[1])
	}
	in := false
	for _, line := range strings.Split(out, "\n") {
		switch {
		case line == ";; ANSWER SECTION:":
			in = true
		case !in:
		case strings.TrimSpace(line) == "" || strings.HasPrefix(line, ";"):
			in = false
		default:
			m := reDigRR.FindStringSubmatch(line)
			if m == nil {
				return r, fmt.Errorf("dig: answer line %q", line)
			}
			r.Answer = append(r.Answer, digRR{Owner: strings.ToLower(m[1]), Type: m[2], Data: m[3]})
		}
	}
	return r, nil
}

// AD says whether the answer carried the AD bit.
func (r digResult) AD() bool { return slices.Contains(r.Flags, "ad") }

// Records are the data of the answer's records of one type.
func (r digResult) Records(rrtype string) []string {
	var out []string
	for _, rr := range r.Answer {
		if rr.Type == rrtype {
			out = append(out, rr.Data)
		}
	}
	return out
}

// TLSA is a TLSA record's data as dig prints it ("3 1 1 9C37...
// DF75DAE8": the hex upper case, in groups) in the presentation form the
// harness writes: lower case, one word.
func digTLSA(data string) string {
	f := strings.Fields(data)
	if len(f) < 4 {
		return data
	}
	return strings.ToLower(strings.Join(f[:3], " ") + " " + strings.Join(f[3:], ""))
}

// --- delv

// delvResult is BIND's validator's verdict on one lookup.
type delvResult struct {
	Validated bool   // "; fully validated" or "; negative response, fully validated"
	Negative  bool   // the validated answer is a denial
	Unsigned  bool   // "; unsigned answer"
	Failure   string // ";; resolution failed: <reason>", when not validated
}

var reDelvFailed = regexp.MustCompile(`(?m)^;; resolution failed: (.*)$`)

// parseDelv reads delv's output. A validated denial prints "resolution
// failed: ncache nxdomain" first, then "; negative response, fully
// validated".
func parseDelv(out string) (delvResult, error) {
	var r delvResult
	for _, line := range strings.Split(out, "\n") {
		switch strings.TrimSpace(line) {
		case "; fully validated":
			r.Validated = true
		case "; negative response, fully validated":
			r.Validated, r.Negative = true, true
		case "; unsigned answer":
			r.Unsigned = true
		}
	}
	if m := reDelvFailed.FindStringSubmatch(out); m != nil && !r.Validated {
		r.Failure = m[1]
	}
	if !r.Validated && !r.Unsigned && r.Failure == "" {
		return r, fmt.Errorf("delv: no verdict in %q", tail(out, 300))
	}
	return r, nil
}

// --- posttls-finger at the dane level

// fingerDANE is what posttls-finger -l dane said about one destination.
type fingerDANE struct {
	Trust string // Verified, Trusted, Untrusted, Anonymous; "" when no TLS session was made
	// Matched are the TLSA records it matched ("3 1 1 <hex>", lower case),
	// with the kind of certificate ("EE", "TA") in MatchedKind.
	Matched, MatchedKind []string
	// Unsupported are the TLSA records it refused to use (a usage not for SMTP).
	Unsupported []string
	// VerifyError is its certificate verification failure
	// ("num=65:no matching DANE TLSA records", "num=62:hostname mismatch").
	VerifyError string
	// TLSALookupError: the TLSA lookup failed (SERVFAIL), so no session was
	// attempted, as a DANE sender defers delivery.
	TLSALookupError bool
	// Failure is the line saying why no session was made.
	Failure string
}

var (
	reFingerMatched     = regexp.MustCompile(`(?m)Matched DANE (EE|TA) certificate at depth \d+: (\d+ \d+ \d+ [0-9A-Fa-f]+)\s*$`)
	reFingerUnsupported = regexp.MustCompile(`(?m)warning: \S+ unsupported TLSA [^:]*: (\d+ \d+ \d+ [0-9A-Fa-f]+)\s*$`)
	reFingerVerifyErr   = regexp.MustCompile(`(?m)certificate verification failed for \S+: (.*?)\s*$`)
	reFingerTLSAError   = regexp.MustCompile(`(?m)TLSA lookup error for \S+`)
	reFingerFailure     = regexp.MustCompile(`(?m)^posttls-finger: ((?:Failed to establish session|Destination address lookup failed)[^\n]*?)\s*$`)
)

// parseFingerDANE reads posttls-finger -l dane -L summary,certmatch output.
func parseFingerDANE(out string) (fingerDANE, error) {
	var f fingerDANE
	if m := reFingerConn.FindStringSubmatch(out); m != nil {
		f.Trust = m[1]
	}
	for _, m := range reFingerMatched.FindAllStringSubmatch(out, -1) {
		f.MatchedKind = append(f.MatchedKind, m[1])
		f.Matched = append(f.Matched, strings.ToLower(m[2]))
	}
	for _, m := range reFingerUnsupported.FindAllStringSubmatch(out, -1) {
		f.Unsupported = append(f.Unsupported, strings.ToLower(m[1]))
	}
	if m := reFingerVerifyErr.FindStringSubmatch(out); m != nil {
		f.VerifyError = m[1]
	}
	f.TLSALookupError = reFingerTLSAError.MatchString(out)
	if m := reFingerFailure.FindStringSubmatch(out); m != nil {
		f.Failure = m[1]
	}
	if f.Trust == "" && f.Failure == "" {
		return f, fmt.Errorf("posttls-finger: neither a TLS session nor a failure in %q", tail(out, 300))
	}
	return f, nil
}

// DANEVerified is a DANE sender's verdict: the session was authenticated
// by a TLSA record.
func (f fingerDANE) DANEVerified() bool { return f.Trust == "Verified" && len(f.Matched) > 0 }

// --- curl

// curlResult is what curl got for one URL.
type curlResult struct {
	Exit        int    // curl's exit status: 0, 7 (could not connect), 60 (certificate not verified), ...
	Error       string // its error message (-sS)
	Status      int
	ContentType string // the Content-Type header's value as sent
	Location    string // the Location header's value as sent
	Body        []byte
}

// curlWriteOut is the -w format: one marked line after the transfer.
const curlWriteOut = "\ncurl-w: %{http_code}\n"

var reCurlW = regexp.MustCompile(`(?m)^curl-w: (\d+)$`)

// parseCurl reads curl's combined output (error message, then the -w line)
// and the header block it dumped (-D).
func parseCurl(out string, headers []byte) (curlResult, error) {
	var r curlResult
	m := reCurlW.FindStringSubmatchIndex(out)
	if m == nil {
		return r, fmt.Errorf("curl: no write-out line in %q", tail(out, 300))
	}
	r.Status, _ = strconv.Atoi(out[m[2]:m[3]]) // \d+
	r.Error = strings.TrimSpace(out[:m[0]])
	// The last header block (a 100-continue or proxy block would come first).
	blocks := strings.Split(strings.ReplaceAll(string(headers), "\r\n", "\n"), "\n\n")
	last := ""
	for _, b := range blocks {
		if strings.TrimSpace(b) != "" {
			last = b
		}
	}
	for _, line := range strings.Split(last, "\n")[1:] {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.ToLower(name) {
		case "content-type":
			r.ContentType = strings.TrimSpace(value)
		case "location":
			r.Location = strings.TrimSpace(value)
		}
	}
	return r, nil
}
