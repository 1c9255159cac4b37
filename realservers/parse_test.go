package realservers

// Unit tests of the suite's own parsers (no servers needed), on output
// trimmed from real runs of OpenSSL 3.0, posttls-finger 3.7, Postfix and Exim.

import (
	"bufio"
	"slices"
	"strings"
	"testing"
)

// sClientOut is `openssl s_client -starttls smtp -showcerts` against the
// Postfix of the lab, base64 bodies shortened. The "250 CHUNKING" at the end is
// s_client printing the last line of the pre-TLS EHLO reply it did not consume.
const sClientOut = `depth=1 O = mxsurvey, CN = mxsurvey realservers test CA
verify return:1
depth=0 CN = mx1.real.test
verify return:1
CONNECTED(00000003)
---
Certificate chain
 0 s:CN = mx1.real.test
   i:O = mxsurvey, CN = mxsurvey realservers test CA
   a:PKEY: rsaEncryption, 2048 (bit); sigalg: RSA-SHA256
-----BEGIN CERTIFICATE-----
AAAA
-----END CERTIFICATE-----
 1 s:O = mxsurvey, CN = mxsurvey realservers test CA
   i:O = mxsurvey, CN = mxsurvey realservers test CA
-----BEGIN CERTIFICATE-----
BBBB
-----END CERTIFICATE-----
---
Server certificate
subject=CN = mx1.real.test
issuer=O = mxsurvey, CN = mxsurvey realservers test CA
---
No client certificate CA names sent
Peer signing digest: SHA256
Peer signature type: RSA-PSS
Server Temp Key: X25519, 253 bits
---
SSL handshake has read 2556 bytes and written 431 bytes
Verification: OK
Verified peername: mx1.real.test
---
New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384
Server public key is 2048 bit
Secure Renegotiation IS NOT supported
Verify return code: 0 (ok)
---
250 CHUNKING
DONE
`

func TestParseSClient(t *testing.T) {
	s, err := parseSClient(sClientOut)
	if err != nil {
		t.Fatal(err)
	}
	if s.Protocol != "TLSv1.3" || s.Cipher != "TLS_AES_256_GCM_SHA384" || s.KeyLine != "Server Temp Key: X25519, 253 bits" {
		t.Errorf("got %q %q %q", s.Protocol, s.Cipher, s.KeyLine)
	}
	for out, want := range map[string]string{
		"Server Temp Key: ECDH, prime256v1, 256 bits  \n": "Server Temp Key: ECDH, prime256v1, 256 bits",
		"Negotiated TLS1.3 group: X25519MLKEM768\n":       "Negotiated TLS1.3 group: X25519MLKEM768",
		"Peer signature type: RSA-PSS\n":                  "",
	} {
		if got := reKeyLine.FindStringSubmatch(out); (got == nil && want != "") || (got != nil && got[1] != want) {
			t.Errorf("key line of %q: %q, want %q", out, got, want)
		}
	}
	if s.VerifyCode != 0 || s.VerifyText != "ok" {
		t.Errorf("verify %d %q", s.VerifyCode, s.VerifyText)
	}
	if len(s.Chain) != 2 || !strings.Contains(s.Chain[0], "AAAA") || !strings.Contains(s.Chain[1], "BBBB") {
		t.Errorf("chain %q", s.Chain)
	}
	self := strings.Replace(sClientOut, "Verify return code: 0 (ok)", "Verify return code: 18 (self-signed certificate)", 1)
	if s, _ := parseSClient(self); s.VerifyCode != 18 || s.VerifyText != "self-signed certificate" {
		t.Errorf("verify %d %q", s.VerifyCode, s.VerifyText)
	}
	// A failed handshake: no "New, ..." line.
	if _, err := parseSClient("CONNECTED(00000003)\n140:error:0A000410:SSL routines::sslv3 alert handshake failure\n"); err == nil {
		t.Error("no error for a failed handshake")
	}
}

func TestParseFingerprint(t *testing.T) {
	for _, in := range []string{
		"sha256 Fingerprint=76:A7:D6:F6:01:ED\n", // OpenSSL 3
		"SHA256 Fingerprint=76:A7:D6:F6:01:ED\n", // OpenSSL 1.1
	} {
		got, err := parseFingerprint(in)
		if err != nil || got != "76a7d6f601ed" {
			t.Errorf("%q: %q %v", in, got, err)
		}
	}
	if _, err := parseFingerprint("unable to load certificate\n"); err == nil {
		t.Error("no error without a fingerprint")
	}
}

// fingerOut is posttls-finger -c -C -l secure -L summary,peercert -d sha256.
const fingerOut = `posttls-finger: 127.77.0.28[127.77.0.28]:25: matched peername: *.real.test
posttls-finger: 127.77.0.28[127.77.0.28]:25: subject_CN=*.real.test, issuer_CN=mxsurvey realservers test CA, fingerprint=76:A7:D6:F6:01:ED, pkey_fingerprint=26:25:77:36:C8:FF
posttls-finger: Verified TLS connection established to 127.77.0.28[127.77.0.28]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (3072 bits) server-digest SHA256
---
Certificate chain
 0 subject: /CN=*.real.test
    issuer: /O=mxsurvey/CN=mxsurvey realservers test CA
   cert digest=76:A7:D6:F6:01:ED
-----BEGIN CERTIFICATE-----
AAAA
-----END CERTIFICATE-----
 1 subject: /O=mxsurvey/CN=mxsurvey realservers test CA
-----BEGIN CERTIFICATE-----
BBBB
-----END CERTIFICATE-----
`

func TestParsePosttlsFinger(t *testing.T) {
	f, err := parsePosttlsFinger(fingerOut)
	if err != nil {
		t.Fatal(err)
	}
	want := finger{Trust: "Verified", Protocol: "TLSv1.3", Cipher: "TLS_AES_256_GCM_SHA384", KeyExchange: "X25519",
		SubjectCN: "*.real.test", IssuerCN: "mxsurvey realservers test CA", Fingerprint: "76a7d6f601ed", PKeyFP: "26257736c8ff"}
	chain := f.Chain
	f.Chain = nil
	if !equalFinger(f, want) {
		t.Errorf("got %+v\nwant %+v", f, want)
	}
	if len(chain) != 2 {
		t.Errorf("chain %q", chain)
	}
	untrusted := "posttls-finger: Untrusted TLS connection established to 127.77.0.26[127.77.0.26]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature ECDSA (P-256) server-digest SHA256\n"
	if f, err := parsePosttlsFinger(untrusted); err != nil || f.Trust != "Untrusted" || f.KeyExchange != "X25519" {
		t.Errorf("%+v %v", f, err)
	}
	if _, err := parsePosttlsFinger("posttls-finger: Connection refused\n"); err == nil {
		t.Error("no error without a connection line")
	}
}

func equalFinger(a, b finger) bool {
	return a.Trust == b.Trust && a.Protocol == b.Protocol && a.Cipher == b.Cipher && a.KeyExchange == b.KeyExchange &&
		a.SubjectCN == b.SubjectCN && a.IssuerCN == b.IssuerCN && a.Fingerprint == b.Fingerprint && a.PKeyFP == b.PKeyFP
}

func TestReadReply(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
		err  bool
	}{
		{"220 smtp-out.real.test ESMTP Postfix\r\n", []string{"220 smtp-out.real.test ESMTP Postfix"}, false},
		{"220-mx4.real.test ESMTP Exim\r\n220 No UCE.\r\nEHLO", []string{"220-mx4.real.test ESMTP Exim", "220 No UCE."}, false},
		{"250 bare LF\n", []string{"250 bare LF"}, false},
		{"250-a\r\n", []string{"250-a"}, true},                   // EOF inside a reply
		{strings.Repeat("250-x\r\n", 200), nil, true},            // too many lines
		{"250 " + strings.Repeat("x", 3000) + "\r\n", nil, true}, // line too long
	} {
		got, err := readReply(bufio.NewReader(strings.NewReader(c.in)))
		if (err != nil) != c.err || (c.want != nil && !slices.Equal(got, c.want)) {
			t.Errorf("%.40q: %q %v", c.in, got, err)
		}
	}
}

func TestReplyHostAndExtensions(t *testing.T) {
	for in, want := range map[string]string{
		"220 smtp-out.real.test ESMTP Postfix":                "smtp-out.real.test",
		"220 debian ESMTP Postfix (Debian/GNU)":               "", // dotless
		"250-mx2.real.test Hello probe.real.test [127.0.0.1]": "mx2.real.test",
		"250-Localhost":             "localhost",
		"220 [192.0.2.1] ESMTP":     "[192.0.2.1]",
		"220 MX.Example.COM. ready": "mx.example.com",
		"220 ESMTP ready":           "",
		"220":                       "",
	} {
		if got := replyHost([]string{in}); got != want {
			t.Errorf("replyHost(%q) = %q, want %q", in, got, want)
		}
	}
	ehlo := []string{"250-mx2.real.test Hello x [127.0.0.1]", "250-SIZE 52428800", "250-8bitmime", "250-PIPECONNECT", "250 starttls"}
	if got, want := extensions(ehlo), []string{"SIZE 52428800", "8BITMIME", "PIPECONNECT", "STARTTLS"}; !slices.Equal(got, want) {
		t.Errorf("extensions %q, want %q", got, want)
	}
	if !hasKeyword(extensions(ehlo), "StartTLS") || hasKeyword(extensions(ehlo), "SMTPUTF8") {
		t.Error("hasKeyword")
	}
}

func TestNormalisers(t *testing.T) {
	for in, want := range map[string]string{"TLSv1.3": "tls1.3", "TLS 1.3": "tls1.3", "TLS13": "tls1.3", "TLSv1.2": "tls1.2", "tls1.2": "tls1.2"} {
		if got := normTLSVersion(in); got != want {
			t.Errorf("normTLSVersion(%q) = %q, want %q", in, got, want)
		}
	}
	if got := normFingerprint("76:A7:d6 "); got != "76a7d6" {
		t.Errorf("normFingerprint: %q", got)
	}
	if got := maskExim("220 mx2.real.test ESMTP Exim 4.96 Tue, 24 Nov 2026 04:41:29 +0000"); got != "220 mx2.real.test ESMTP Exim 4.96 <tod_full>" {
		t.Errorf("maskExim: %q", got)
	}
	if got := expectedGreeting(specs()[3]); !slices.Equal(got, []string{"220-mx4.real.test ESMTP Exim", "220 No UCE. This is a multi-line greeting."}) {
		t.Errorf("expectedGreeting(mx4) = %q", got)
	}
}

func TestDNSQuery(t *testing.T) {
	q := dnsQuery(0x1234, "mx1.real.test.", 1)
	want := "\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03mx1\x04real\x04test\x00\x00\x01\x00\x01"
	if string(q) != want {
		t.Errorf("dnsQuery = %q", q)
	}
	if q := dnsQuery(0x1234, ".", 2); string(q) != "\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x01" {
		t.Errorf("dnsQuery(., NS) = %q", q)
	}
}

// digOut is dig through the lab's Unbound, for a secure TLSA RRset
// (signature shortened).
const digOut = `
; <<>> DiG 9.18.47-1~deb12u1-Debian <<>> @127.77.0.54 -p 53 +dnssec +time=3 +tries=1 _25._tcp.mx.ee311.dane.test TLSA
; (1 server found)
;; global options: +cmd
;; Got answer:
;; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 4460
;; flags: qr rd ra ad; QUERY: 1, ANSWER: 2, AUTHORITY: 0, ADDITIONAL: 1

;; OPT PSEUDOSECTION:
; EDNS: version: 0, flags: do; udp: 1232
;; QUESTION SECTION:
;_25._tcp.mx.ee311.dane.test.	IN	TLSA

;; ANSWER SECTION:
_25._tcp.mx.ee311.dane.test. 300 IN	TLSA	3 1 1 9C37CC0646CE1BFD803560D0B1D5FC3A2717603A11D75F90F517DCC5 DF75DAE8
_25._tcp.mx.ee311.dane.test. 300 IN	RRSIG	TLSA 13 6 300 20270103214611 20261206214611 6367 dane.test. t8V7Afim NTctc7Y6

;; Query time: 4 msec
;; SERVER: 127.77.0.54#53(127.77.0.54) (UDP)
;; WHEN: Sun Dec 06 21:46:32 UTC 2026
;; MSG SIZE  rcvd: 200
`

func TestParseDig(t *testing.T) {
	r, err := parseDig(digOut)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != "NOERROR" || !r.AD() || len(r.Answer) != 2 {
		t.Errorf("%+v", r)
	}
	if got := mapStrings(r.Records("TLSA"), digTLSA); !slices.Equal(got, []string{"3 1 1 9c37cc0646ce1bfd803560d0b1d5fc3a2717603a11d75f90f517dcc5df75dae8"}) {
		t.Errorf("TLSA %q", got)
	}
	servfail := strings.Replace(strings.Replace(digOut, "NOERROR", "SERVFAIL", 1), "qr rd ra ad;", "qr rd ra;", 1)
	servfail = servfail[:strings.Index(servfail, ";; ANSWER SECTION:")]
	if r, err := parseDig(servfail); err != nil || r.Status != "SERVFAIL" || r.AD() || len(r.Answer) != 0 {
		t.Errorf("SERVFAIL: %+v %v", r, err)
	}
	txt := ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1\n;; flags: qr rd ra;\n;; ANSWER SECTION:\n" +
		"_mta-sts.testing-split.sts.test. 300 IN TXT \"v=STSv1;  \" \"id=split1;\"\n\n"
	if r, err := parseDig(txt); err != nil || !slices.Equal(r.Records("TXT"), []string{txtData([]string{"v=STSv1;  ", "id=split1;"})}) {
		t.Errorf("TXT: %+v %v", r, err)
	}
	if _, err := parseDig(";; connection timed out; no servers could be reached\n"); err == nil {
		t.Error("no error without a header")
	}
}

func TestParseDelv(t *testing.T) {
	for _, c := range []struct {
		out  string
		want delvResult
	}{
		{"; fully validated\nee311.dane.test.\t300\tIN\tMX\t10 mx.ee311.dane.test.\n", delvResult{Validated: true}},
		{";; resolution failed: ncache nxdomain\n; negative response, fully validated\n; _25._tcp.mx.notlsa.dane.test. 300 IN\t\\-ANY\t;-$NXDOMAIN\n",
			delvResult{Validated: true, Negative: true}},
		{";; validating expired.bogus.test/MX: no valid signature found\n;; RRSIG has expired resolving 'expired.bogus.test/MX/IN': 127.77.0.53#5353\n;; resolution failed: RRSIG has expired\n",
			delvResult{Failure: "RRSIG has expired"}},
		{"; unsigned answer\nmx.insecure.test.\t300\tIN\tA\t127.77.0.26\n", delvResult{Unsigned: true}},
	} {
		if got, err := parseDelv(c.out); err != nil || got != c.want {
			t.Errorf("%.50q: %+v %v, want %+v", c.out, got, err, c.want)
		}
	}
	if _, err := parseDelv(";; no response\n"); err == nil {
		t.Error("no error without a verdict")
	}
}

func TestParseFingerDANE(t *testing.T) {
	verified := `posttls-finger: mx.ta201.dane.test[127.77.0.29]:25: matched peername: mx.ta201.dane.test
posttls-finger: mx.ta201.dane.test[127.77.0.29]:25: Matched DANE TA certificate at depth 1: 2 0 1 0F1E03CB8E32D4B6355DD297C2F87D9D10D0FD3537601CD22CD858074498D4F8
posttls-finger: mx.ta201.dane.test[127.77.0.29]:25: subject_CN=mx.ta201.dane.test, issuer_CN=mxsurvey realservers DANE intermediate, fingerprint=71:B0, pkey_fingerprint=E3:57
posttls-finger: Verified TLS connection established to mx.ta201.dane.test[127.77.0.29]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature ECDSA (prime256v1) server-digest SHA256
`
	stale := `posttls-finger: server certificate verification failed for mx.stale.dane.test[127.77.0.26]:25: num=65:no matching DANE TLSA records
posttls-finger: Untrusted TLS connection established to mx.stale.dane.test[127.77.0.26]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature ECDSA (prime256v1) server-digest SHA256
`
	pkix := `posttls-finger: warning: _25._tcp.mx.pkix.dane.test unsupported TLSA certificate usage: 1 1 1 A6374D53B2418FCDFB3A77F5BD23CCDA7A8A1CB766A10B8E45EB9A6EACCD88D0
posttls-finger: server certificate verification failed for mx.pkix.dane.test[127.77.0.25]:25: num=62:hostname mismatch
posttls-finger: Untrusted TLS connection established to mx.pkix.dane.test[127.77.0.25]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits) server-digest SHA256
`
	bogus := `posttls-finger: warning: DANE TLSA lookup problem: Host or domain name not found. Name service error for name=_25._tcp.mx.tlsa.bogus.test type=TLSA: Host not found, try again
posttls-finger: Failed to establish session to [mx.tlsa.bogus.test]:25 via mx.tlsa.bogus.test: TLSA lookup error for mx.tlsa.bogus.test:25
`
	mxFail := "posttls-finger: Destination address lookup failed: Host or domain name not found. Name service error for name=expired.bogus.test type=MX: Host not found, try again\n"
	for _, c := range []struct {
		name, out string
		check     func(fingerDANE) bool
	}{
		{"verified", verified, func(f fingerDANE) bool {
			return f.DANEVerified() && slices.Equal(f.MatchedKind, []string{"TA"}) &&
				slices.Equal(f.Matched, []string{"2 0 1 0f1e03cb8e32d4b6355dd297c2f87d9d10d0fd3537601cd22cd858074498d4f8"})
		}},
		{"stale", stale, func(f fingerDANE) bool {
			return f.Trust == "Untrusted" && !f.DANEVerified() && f.VerifyError == "num=65:no matching DANE TLSA records"
		}},
		{"pkix", pkix, func(f fingerDANE) bool {
			return f.Trust == "Untrusted" && len(f.Matched) == 0 &&
				slices.Equal(f.Unsupported, []string{"1 1 1 a6374d53b2418fcdfb3a77f5bd23ccda7a8a1cb766a10b8e45eb9a6eaccd88d0"})
		}},
		{"bogus", bogus, func(f fingerDANE) bool {
			return f.Trust == "" && f.TLSALookupError && strings.HasPrefix(f.Failure, "Failed to establish session")
		}},
		{"mx lookup", mxFail, func(f fingerDANE) bool {
			return f.Trust == "" && !f.TLSALookupError && strings.HasPrefix(f.Failure, "Destination address lookup failed")
		}},
	} {
		f, err := parseFingerDANE(c.out)
		if err != nil || !c.check(f) {
			t.Errorf("%s: %+v %v", c.name, f, err)
		}
	}
	if _, err := parseFingerDANE("posttls-finger: warning: something\n"); err == nil {
		t.Error("no error without a session or a failure")
	}
}

func TestParseCurl(t *testing.T) {
	headers := "HTTP/1.1 301 Moved Permanently\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: 162\r\n" +
		"Location: https://mta-sts.enforce.sts.test/.well-known/mta-sts.txt\r\n\r\n"
	r, err := parseCurl("\ncurl-w: 301\n", []byte(headers))
	if err != nil || r.Status != 301 || r.ContentType != "text/html" || r.Location != "https://mta-sts.enforce.sts.test/.well-known/mta-sts.txt" || r.Error != "" {
		t.Errorf("%+v %v", r, err)
	}
	r, err = parseCurl("curl: (60) SSL certificate problem: certificate has expired\nMore details here: https://curl.se/docs/sslcerts.html\n\ncurl-w: 000\n", nil)
	if err != nil || r.Status != 0 || !strings.HasPrefix(r.Error, "curl: (60) SSL certificate problem") {
		t.Errorf("%+v %v", r, err)
	}
	if _, err := parseCurl("curl: (6) Could not resolve host\n", nil); err == nil {
		t.Error("no error without the write-out line")
	}
}
