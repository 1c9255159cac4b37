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
