package probe

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

const ehloName = "probe.mxsurvey.test"

// Replies used by several cases, as real servers send them.
const (
	ehloOK = "250-mx.example.test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-starttls \r\n" +
		"250-ENHANCEDSTATUSCODES\r\n250 8BITMIME\r\n"
	postEHLOOK  = "250-MX.Example.Test\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"
	starttls220 = "220 2.0.0 Ready to start TLS\r\n"
	quit221     = "221 2.0.0 bye\r\n"
)

var (
	ehloOKExts     = []string{"PIPELINING", "SIZE 10240000", "STARTTLS", "ENHANCEDSTATUSCODES", "8BITMIME"}
	postEHLOOKExts = []string{"PIPELINING", "SIZE 10240000", "AUTH PLAIN LOGIN", "8BITMIME"}
	plainOK        = []string{"EHLO " + ehloName, "STARTTLS", "tls:EHLO " + ehloName, "tls:QUIT"}
)

func hexSHA(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}

// tlsOK fills the columns every completed handshake has in common.
func tlsOK(r survey.ProbeRow, greeting string) survey.ProbeRow {
	r.Banner, r.BannerCode = greeting, 220
	r.EHLOVerb, r.EHLOReply, r.EHLOCode, r.EHLOHost, r.EHLOExtensions = "EHLO", ehloOK, 250, "mx.example.test", ehloOKExts
	r.STARTTLSOffered, r.STARTTLSCode, r.STARTTLSReply = true, 220, starttls220
	return r
}

func postOK(r survey.ProbeRow) survey.ProbeRow {
	r.Outcome = survey.OutcomeOK
	r.PostTLSEHLOReply, r.PostTLSEHLOCode, r.PostTLSEHLOHost, r.PostTLSEHLOExtensions = postEHLOOK, 250, "mx.example.test", postEHLOOKExts
	return r
}

type probeCase struct {
	name   string
	ip     string // listen address; default 127.0.0.1
	sc     script
	cfg    func(*Config)
	mx     string
	want   survey.ProbeRow // IP, Port, MXHost, EHLONameSent, StartedAt, DurationMS, Error filled by the runner
	bytes  int64           // exact BytesRead; -1: more than the plaintext (TLS), 0: none
	trans  []string        // commands the server received
	sni    string          // SNI the server saw, for completed handshakes
	maxDur time.Duration   // the probe must end within this; default 3s
	errHas string          // a substring of Error, where the text matters
}

func TestProbe(t *testing.T) {
	p := testPKI(t)
	rsaLeaf, edLeaf, selfLeaf := p.rsaChain.Certificate[0], p.ed.Certificate[0], p.selfEC.Certificate[0]
	garbage := p.garbage.Certificate[0]
	_, garbageErr := x509.ParseCertificate(garbage)

	rsaCert := func(r survey.ProbeRow) survey.ProbeRow {
		r.CertChain = [][]byte{rsaLeaf, p.caDER}
		r.CertSubjectCN = "mx.example.test"
		r.CertSANDNS = []string{"mx.example.test", "mx2.example.test"}
		r.CertSANIP = []string{"192.0.2.25"}
		r.CertIssuer = "CN=mxsurvey test CA,O=mxsurvey"
		r.CertNotBefore, r.CertNotAfter = p.notBefore, p.notAfter
		r.CertSHA256 = hexSHA(rsaLeaf)
		r.CertKeyType, r.CertKeyBits = "RSA", 2048
		return r
	}

	postfix := "220-mx.example.test ESMTP Postfix (Debian/GNU)\r\n220 no UCE\r\n"
	exim := "220 mail.example.org ESMTP Exim 4.96 Mon, 01 Jan 2024 10:00:00 +0000\r\n"
	eximEHLO := "250-mail.example.org Hello probe.mxsurvey.test [127.0.0.1]\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n250 HELP\r\n"
	microsoft := "220 BN8NAM11FT036.mail.protection.outlook.com Microsoft ESMTP MAIL Service ready at Mon, 1 Jan 2024 10:00:00 +0000\r\n"
	cisco := "220 ***************************************\r\n"
	tarpit := "220 slow.example.test ESMTP\r\n"
	huge := "220 " + strings.Repeat("x", 100_000) + "\r\n"
	many := strings.Repeat("220-xxxxxxxxxx\r\n", 30) + "220 end\r\n"

	cases := []probeCase{
		{
			name: "ok RSA chain TLS 1.3 post-quantum group",
			sc:   script{greeting: postfix, ehlo: ehloOK, starttls: starttls220, tls: serverTLS(p.rsaChain, 0, 0), postEHLO: postEHLOOK},
			mx:   "mx.example.test.",
			want: postOK(rsaCert(tlsOK(survey.ProbeRow{
				CertChainLen: 2,
				BannerHost:   "mx.example.test",
				TLSVersion:   "TLS 1.3", TLSGroup: "X25519MLKEM768",
			}, postfix))),
			bytes: -1, trans: plainOK, sni: "mx.example.test",
		},
		{
			name: "ok self-signed ECDSA TLS 1.2 on 127.42.0.7 without SNI",
			ip:   "127.42.0.7",
			sc:   script{greeting: "220 mx.example.test ESMTP\r\n", ehlo: ehloOK, starttls: starttls220, tls: serverTLS(p.selfEC, 0, tls.VersionTLS12), postEHLO: postEHLOOK},
			want: postOK(tlsOK(survey.ProbeRow{
				CertChainLen: 1,
				BannerHost:   "mx.example.test",
				TLSVersion:   "TLS 1.2", TLSGroup: "X25519",
				CertChain: [][]byte{selfLeaf}, CertSubjectCN: "localhost", CertIssuer: "CN=localhost",
				CertNotBefore: p.notBefore, CertNotAfter: p.notAfter, CertSHA256: hexSHA(selfLeaf),
				CertKeyType: "ECDSA", CertKeyBits: 384, CertSelfSigned: true,
			}, "220 mx.example.test ESMTP\r\n")),
			bytes: -1, trans: plainOK, sni: "",
		},
		{
			name: "ok TLS 1.0, MX host an address so no SNI",
			sc:   script{greeting: "220 mx.example.test ESMTP\r\n", ehlo: ehloOK, starttls: starttls220, tls: serverTLS(p.rsaChain, tls.VersionTLS10, tls.VersionTLS10), postEHLO: postEHLOOK},
			mx:   "127.0.0.1",
			want: postOK(rsaCert(tlsOK(survey.ProbeRow{
				CertChainLen: 2,
				BannerHost:   "mx.example.test",
				TLSVersion:   "TLS 1.0", TLSGroup: "X25519",
			}, "220 mx.example.test ESMTP\r\n"))),
			bytes: -1, trans: plainOK, sni: "",
		},
		{
			name: "ok Ed25519, X25519 only, chain capped at one",
			sc:   script{greeting: "220 mx.example.test ESMTP\r\n", ehlo: ehloOK, starttls: starttls220, tls: serverTLS(p.ed, 0, 0), postEHLO: postEHLOOK},
			cfg: func(c *Config) {
				c.CurvePreferences = []tls.CurveID{tls.X25519}
				c.MaxChainCerts = 1
			},
			mx: "ed.example.test",
			want: postOK(tlsOK(survey.ProbeRow{
				CertChainLen: 2,
				BannerHost:   "mx.example.test",
				TLSVersion:   "TLS 1.3", TLSGroup: "X25519",
				CertChain: [][]byte{edLeaf}, CertSubjectCN: "ed.example.test", CertSANDNS: []string{"ed.example.test"},
				CertIssuer: "CN=mxsurvey test CA,O=mxsurvey", CertNotBefore: p.notBefore, CertNotAfter: p.notAfter,
				CertSHA256: hexSHA(edLeaf), CertKeyType: "Ed25519", CertKeyBits: 256,
			}, "220 mx.example.test ESMTP\r\n")),
			bytes: -1, trans: plainOK, sni: "ed.example.test",
		},
		{
			name: "ok TLS 1.2 RSA key exchange when offered: no group",
			sc: script{greeting: "220 mx.example.test ESMTP\r\n", ehlo: ehloOK, starttls: starttls220, postEHLO: postEHLOOK,
				tls: &tls.Config{Certificates: []tls.Certificate{p.rsaChain}, MaxVersion: tls.VersionTLS12,
					CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_CBC_SHA}}},
			cfg: func(c *Config) {
				c.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_RSA_WITH_AES_128_CBC_SHA}
			},
			mx: "mx.example.test",
			want: postOK(rsaCert(tlsOK(survey.ProbeRow{
				CertChainLen: 2,
				BannerHost:   "mx.example.test", TLSVersion: "TLS 1.2",
			}, "220 mx.example.test ESMTP\r\n"))),
			bytes: -1, trans: plainOK, sni: "mx.example.test",
		},
		{
			name: "STARTTLS not offered (Exim)",
			sc:   script{greeting: exim, ehlo: eximEHLO},
			want: survey.ProbeRow{
				Outcome: survey.OutcomeSTARTTLS, ErrorClass: survey.ErrNoSTARTTLS,
				Banner: exim, BannerCode: 220, BannerHost: "mail.example.org",
				EHLOVerb: "EHLO", EHLOReply: eximEHLO, EHLOCode: 250, EHLOHost: "mail.example.org",
				EHLOExtensions: []string{"SIZE 52428800", "8BITMIME", "HELP"},
			},
			bytes: int64(len(exim + eximEHLO + quit221)), trans: []string{"EHLO " + ehloName, "QUIT"},
		},
		{
			name: "STARTTLS refused with 454 (Microsoft banner)",
			sc:   script{greeting: microsoft, ehlo: ehloOK, starttls: "454 4.7.0 TLS not available due to local problem\r\n"},
			want: survey.ProbeRow{
				Outcome: survey.OutcomeSTARTTLS, ErrorClass: survey.ErrRejected,
				Banner: microsoft, BannerCode: 220, BannerHost: "bn8nam11ft036.mail.protection.outlook.com",
				EHLOVerb: "EHLO", EHLOReply: ehloOK, EHLOCode: 250, EHLOHost: "mx.example.test", EHLOExtensions: ehloOKExts,
				STARTTLSOffered: true, STARTTLSCode: 454, STARTTLSReply: "454 4.7.0 TLS not available due to local problem\r\n",
			},
			bytes: int64(len(microsoft + ehloOK + "454 4.7.0 TLS not available due to local problem\r\n" + quit221)),
			trans: []string{"EHLO " + ehloName, "STARTTLS", "QUIT"}, errHas: "454",
		},
		{
			name: "greeting 554",
			sc:   script{greeting: "554 No SMTP service here\r\n"},
			want: survey.ProbeRow{
				Outcome: survey.OutcomeBanner, ErrorClass: survey.ErrRejected,
				Banner: "554 No SMTP service here\r\n", BannerCode: 554,
			},
			bytes: int64(len("554 No SMTP service here\r\n" + quit221)), trans: []string{"QUIT"},
		},
		{
			name: "EHLO refused with 502, HELO accepted (masked banner)",
			sc:   script{greeting: cisco, ehlo: "502 5.5.1 EHLO not implemented\r\n", helo: "250 mail.example.net\r\n"},
			want: survey.ProbeRow{
				EHLORefusal: "502 5.5.1 EHLO not implemented\r\n",
				Outcome:     survey.OutcomeSTARTTLS, ErrorClass: survey.ErrNoSTARTTLS,
				Banner: cisco, BannerCode: 220,
				EHLOVerb: "HELO", EHLOReply: "250 mail.example.net\r\n", EHLOCode: 250, EHLOHost: "mail.example.net",
			},
			bytes: int64(len(cisco + "502 5.5.1 EHLO not implemented\r\n" + "250 mail.example.net\r\n" + quit221)),
			trans: []string{"EHLO " + ehloName, "HELO " + ehloName, "QUIT"},
		},
		{
			name: "EHLO and HELO refused",
			sc:   script{greeting: exim, ehlo: "500 5.5.1 command unrecognized\r\n", helo: "550 5.7.1 go away\r\n"},
			want: survey.ProbeRow{
				EHLORefusal: "500 5.5.1 command unrecognized\r\n",
				Outcome:     survey.OutcomeEHLO, ErrorClass: survey.ErrRejected,
				Banner: exim, BannerCode: 220, BannerHost: "mail.example.org",
				EHLOVerb: "HELO", EHLOReply: "550 5.7.1 go away\r\n", EHLOCode: 550,
			},
			bytes: int64(len(exim + "500 5.5.1 command unrecognized\r\n" + "550 5.7.1 go away\r\n" + quit221)),
			trans: []string{"EHLO " + ehloName, "HELO " + ehloName, "QUIT"},
		},
		{
			name: "EHLO 421 is not a reason for HELO, and its lines are no extensions",
			sc:   script{greeting: exim, ehlo: "421-4.3.2 mx.example.test shutting down\r\n421 STARTTLS later\r\n"},
			want: survey.ProbeRow{
				Outcome: survey.OutcomeEHLO, ErrorClass: survey.ErrRejected,
				Banner: exim, BannerCode: 220, BannerHost: "mail.example.org",
				EHLOVerb: "EHLO", EHLOReply: "421-4.3.2 mx.example.test shutting down\r\n421 STARTTLS later\r\n", EHLOCode: 421,
			},
			bytes: int64(len(exim + "421-4.3.2 mx.example.test shutting down\r\n421 STARTTLS later\r\n" + quit221)),
			trans: []string{"EHLO " + ehloName, "QUIT"},
		},
		{
			name:   "silent server",
			sc:     script{silent: true},
			cfg:    func(c *Config) { c.StepTimeout = 300 * time.Millisecond },
			want:   survey.ProbeRow{Outcome: survey.OutcomeBanner, ErrorClass: survey.ErrTimeout},
			maxDur: 1500 * time.Millisecond,
		},
		{
			name: "immediate close",
			sc:   script{closeAtOnce: true},
			want: survey.ProbeRow{Outcome: survey.OutcomeBanner, ErrorClass: survey.ErrClosed},
		},
		{
			name: "not SMTP (SSH banner)",
			sc:   script{greeting: "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"},
			want: survey.ProbeRow{
				Outcome: survey.OutcomeBanner, ErrorClass: survey.ErrProtocol,
				Banner: "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",
			},
			bytes: int64(len("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")),
		},
		{
			name: "greeting with a code that is no greeting",
			sc:   script{greeting: "354 mx.example.test go ahead\r\n"},
			want: survey.ProbeRow{
				Outcome: survey.OutcomeBanner, ErrorClass: survey.ErrProtocol,
				Banner: "354 mx.example.test go ahead\r\n", BannerCode: 354, BannerHost: "mx.example.test",
			},
			bytes: int64(len("354 mx.example.test go ahead\r\n")),
		},
		{
			name: "huge greeting line",
			sc:   script{greeting: huge},
			want: survey.ProbeRow{
				Outcome: survey.OutcomeBanner, ErrorClass: survey.ErrTooLarge,
				Banner: huge[:2048],
			},
			bytes: -2,
		},
		{
			name: "probe byte cap",
			sc:   script{greeting: many},
			cfg:  func(c *Config) { c.MaxProbeBytes = 100 },
			want: survey.ProbeRow{
				Outcome: survey.OutcomeBanner, ErrorClass: survey.ErrTooLarge,
				Banner: many[:100], BannerCode: 220,
			},
			bytes: 100,
		},
		{
			name: "tarpit greeting ends at the probe deadline",
			sc:   script{greeting: tarpit, tarpit: true},
			cfg: func(c *Config) {
				c.Timeout = time.Second
				c.StepTimeout = 5 * time.Second // bounded by Timeout
			},
			want:   survey.ProbeRow{Outcome: survey.OutcomeBanner, ErrorClass: survey.ErrTimeout},
			bytes:  -3, // a prefix of the greeting, checked below
			maxDur: 1500 * time.Millisecond,
		},
		{
			name: "plain text instead of a TLS handshake",
			sc:   script{greeting: exim, ehlo: ehloOK, starttls: starttls220, after220: "this is not TLS, just text\r\n"},
			want: survey.ProbeRow{
				Outcome: survey.OutcomeTLS, ErrorClass: survey.ErrTLSOther,
				Banner: exim, BannerCode: 220, BannerHost: "mail.example.org",
				EHLOVerb: "EHLO", EHLOReply: ehloOK, EHLOCode: 250, EHLOHost: "mx.example.test", EHLOExtensions: ehloOKExts,
				STARTTLSOffered: true, STARTTLSCode: 220, STARTTLSReply: starttls220,
			},
			bytes: int64(len(exim + ehloOK + starttls220 + "this is not TLS, just text\r\n")),
			trans: []string{"EHLO " + ehloName, "STARTTLS"},
		},
		{
			name: "server stalls after STARTTLS 220",
			sc:   script{greeting: exim, ehlo: ehloOK, starttls: starttls220, stall: true},
			cfg:  func(c *Config) { c.StepTimeout = 400 * time.Millisecond },
			want: survey.ProbeRow{
				Outcome: survey.OutcomeTLS, ErrorClass: survey.ErrTimeout,
				Banner: exim, BannerCode: 220, BannerHost: "mail.example.org",
				EHLOVerb: "EHLO", EHLOReply: ehloOK, EHLOCode: 250, EHLOHost: "mx.example.test", EHLOExtensions: ehloOKExts,
				STARTTLSOffered: true, STARTTLSCode: 220, STARTTLSReply: starttls220,
			},
			bytes: int64(len(exim + ehloOK + starttls220)),
			trans: []string{"EHLO " + ehloName, "STARTTLS"}, maxDur: 1500 * time.Millisecond,
		},
		{
			name: "TLS alert: no cipher suite in common",
			sc: script{greeting: "220 mx.example.test ESMTP\r\n", ehlo: ehloOK, starttls: starttls220,
				tls: &tls.Config{Certificates: []tls.Certificate{p.rsaChain}, MaxVersion: tls.VersionTLS12,
					CipherSuites: []uint16{tls.TLS_RSA_WITH_RC4_128_SHA}}},
			want: tlsOK(survey.ProbeRow{
				Outcome: survey.OutcomeTLS, ErrorClass: survey.ErrTLSAlert, BannerHost: "mx.example.test",
			}, "220 mx.example.test ESMTP\r\n"),
			bytes: -1, trans: []string{"EHLO " + ehloName, "STARTTLS"},
		},
		{
			name: "unparseable leaf over TLS 1.2: chain recovered",
			sc: script{greeting: "220 mx.example.test ESMTP\r\n", ehlo: ehloOK, starttls: starttls220,
				tls: serverTLS(p.garbage, 0, tls.VersionTLS12)},
			want: tlsOK(survey.ProbeRow{
				CertChainLen: 2,
				Outcome:      survey.OutcomeTLS, ErrorClass: survey.ErrCertParse, BannerHost: "mx.example.test",
				CertChain: [][]byte{garbage, p.caDER}, CertSHA256: hexSHA(garbage), CertParseError: garbageErr.Error(),
			}, "220 mx.example.test ESMTP\r\n"),
			bytes: -1, trans: []string{"EHLO " + ehloName, "STARTTLS"},
		},
		{
			name: "unparseable leaf over TLS 1.3: chain lost with the encryption",
			sc: script{greeting: "220 mx.example.test ESMTP\r\n", ehlo: ehloOK, starttls: starttls220,
				tls: serverTLS(p.garbage, tls.VersionTLS13, 0)},
			want: tlsOK(survey.ProbeRow{
				Outcome: survey.OutcomeTLS, ErrorClass: survey.ErrTLSOther, BannerHost: "mx.example.test",
			}, "220 mx.example.test ESMTP\r\n"),
			bytes: -1, trans: []string{"EHLO " + ehloName, "STARTTLS"},
		},
		{
			name: "EHLO after TLS refused",
			sc:   script{greeting: postfix, ehlo: ehloOK, starttls: starttls220, tls: serverTLS(p.rsaChain, 0, 0), postEHLO: "554 5.7.1 not you\r\n"},
			mx:   "mx.example.test",
			want: rsaCert(tlsOK(survey.ProbeRow{
				CertChainLen: 2,
				Outcome:      survey.OutcomePostTLSEHLO, ErrorClass: survey.ErrRejected, BannerHost: "mx.example.test",
				TLSVersion: "TLS 1.3", TLSGroup: "X25519MLKEM768",
				PostTLSEHLOReply: "554 5.7.1 not you\r\n", PostTLSEHLOCode: 554,
			}, postfix)),
			bytes: -1, trans: plainOK, sni: "mx.example.test",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ip := tc.ip
			if ip == "" {
				ip = "127.0.0.1"
			}
			srv := newServer(t, ip, tc.sc)
			cfg := Config{EHLOName: ehloName, Port: int(srv.addr.Port()), Timeout: 3 * time.Second, StepTimeout: 2 * time.Second}
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			pr, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			before := time.Now()
			got := pr.Probe(context.Background(), Target{IP: srv.addr.Addr(), MXHost: tc.mx})
			elapsed := time.Since(before)
			srv.wait(t, 1)
			trans, state := srv.view()

			maxDur := tc.maxDur
			if maxDur == 0 {
				maxDur = 3 * time.Second
			}
			if elapsed > maxDur {
				t.Errorf("probe took %v, want at most %v", elapsed, maxDur)
			}
			want := tc.want
			want.IP, want.Port, want.MXHost, want.EHLONameSent = srv.addr.Addr().String(), int32(srv.addr.Port()), tc.mx, ehloName
			checkTiming(t, &got, before, elapsed)
			checkError(t, &got, tc.errHas)
			if state != nil {
				// The cipher suite depends on the CPU (AES hardware or not):
				// the server's own view is the truth.
				want.TLSCipher = tls.CipherSuiteName(state.CipherSuite)
				g, named := survey.LookupTLSGroup(got.TLSGroup)
				if got.TLSVersion != tls.VersionName(state.Version) || g.ID != state.CurveID || named != (state.CurveID != 0) {
					t.Errorf("row TLS %s/%s, server saw %s/%s", got.TLSVersion, got.TLSGroup, tls.VersionName(state.Version), state.CurveID)
				}
				if state.ServerName != tc.sni {
					t.Errorf("server saw SNI %q, want %q", state.ServerName, tc.sni)
				}
			}
			switch plain := int64(len(got.Banner + got.EHLOReply + got.STARTTLSReply)); tc.bytes {
			case -1:
				if got.BytesRead <= plain {
					t.Errorf("BytesRead = %d, want more than the plaintext %d", got.BytesRead, plain)
				}
			case -2:
				if got.BytesRead < int64(len(got.Banner)) || got.BytesRead > DefaultMaxProbeBytes {
					t.Errorf("BytesRead = %d", got.BytesRead)
				}
			case -3:
				if got.BytesRead != int64(len(got.Banner)) || got.BytesRead == 0 || !strings.HasPrefix(tarpit, got.Banner) {
					t.Errorf("BytesRead = %d, Banner %q: want a prefix of the greeting", got.BytesRead, got.Banner)
				}
				got.Banner = ""
			default:
				if got.BytesRead != tc.bytes {
					t.Errorf("BytesRead = %d, want %d", got.BytesRead, tc.bytes)
				}
			}
			got.BytesRead = 0
			diffRows(t, got, want)
			if !reflect.DeepEqual(trans, tc.trans) {
				t.Errorf("server received %q, want %q", trans, tc.trans)
			}
		})
	}
}

// TestProbeTLSGroups: against a Go TLS server that accepts one group only,
// tls_group names that group in the documented vocabulary
// (docs/schema.md), whether the prober offers Go's default list or that
// group alone, over TLS 1.3 and, for the groups TLS 1.2 has, over TLS 1.2.
// The expected names are written out here, not taken from the vocabulary.
func TestProbeTLSGroups(t *testing.T) {
	p := testPKI(t)
	for _, c := range []struct {
		id    tls.CurveID
		want  string
		tls12 bool
	}{
		{tls.X25519MLKEM768, "X25519MLKEM768", false},
		{tls.SecP256r1MLKEM768, "SecP256r1MLKEM768", false},
		{tls.SecP384r1MLKEM1024, "SecP384r1MLKEM1024", false},
		{tls.X25519, "X25519", true},
		{tls.CurveP256, "P-256", true},
		{tls.CurveP384, "P-384", true},
		{tls.CurveP521, "P-521", true},
	} {
		versions := []uint16{tls.VersionTLS13}
		if c.tls12 {
			versions = append(versions, tls.VersionTLS12)
		}
		for _, v := range versions {
			for _, offer := range [][]tls.CurveID{nil, {c.id}} {
				t.Run(fmt.Sprintf("%s/%s/offer=%v", c.want, tls.VersionName(v), offer), func(t *testing.T) {
					t.Parallel()
					sc := serverTLS(p.rsaChain, v, v)
					sc.CurvePreferences = []tls.CurveID{c.id}
					srv := newServer(t, "127.0.0.1", script{greeting: "220 mx.example.test ESMTP\r\n", ehlo: ehloOK,
						starttls: starttls220, tls: sc, postEHLO: postEHLOOK})
					pr, err := New(Config{EHLOName: ehloName, Port: int(srv.addr.Port()), Timeout: 3 * time.Second,
						StepTimeout: 2 * time.Second, CurvePreferences: offer})
					if err != nil {
						t.Fatal(err)
					}
					got := pr.Probe(context.Background(), Target{IP: srv.addr.Addr(), MXHost: "mx.example.test"})
					srv.wait(t, 1)
					if got.Outcome != survey.OutcomeOK || got.TLSVersion != tls.VersionName(v) || got.TLSGroup != c.want {
						t.Errorf("outcome %s (%s), %s %q; want ok, %s %q", got.Outcome, got.Error, got.TLSVersion, got.TLSGroup, tls.VersionName(v), c.want)
					}
					if _, state := srv.view(); state == nil || state.CurveID != c.id {
						t.Errorf("the server negotiated %v, want %v", state, c.id)
					}
				})
			}
		}
	}
}

func TestProbeRefused(t *testing.T) {
	// A port that was just free on an address nothing else uses.
	ln, err := net.Listen("tcp", "127.77.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	pr, err := New(Config{EHLOName: ehloName, Port: int(ap.Port()), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	got := pr.Probe(context.Background(), Target{IP: ap.Addr(), MXHost: "mx.example.test"})
	checkTiming(t, &got, before, time.Since(before))
	checkError(t, &got, "refused")
	diffRows(t, got, survey.ProbeRow{
		IP: "127.77.0.1", Port: int32(ap.Port()), MXHost: "mx.example.test", EHLONameSent: ehloName,
		Outcome: survey.OutcomeConnect, ErrorClass: survey.ErrRefused,
	})
}

// Cancelling the scan ends a probe at once, whatever it is waiting for, and
// the row says "canceled" rather than "timeout": the server did nothing wrong.
func TestProbeCancel(t *testing.T) {
	for _, tc := range []struct {
		name  string
		sc    script
		stage string
	}{
		{"waiting for the greeting", script{silent: true}, survey.OutcomeBanner},
		{"in the TLS handshake", script{greeting: "220 mx.example.test\r\n", ehlo: ehloOK, starttls: starttls220, stall: true}, survey.OutcomeTLS},
		{"in the middle of a tarpit", script{greeting: "220 slow.example.test\r\n", tarpit: true}, survey.OutcomeBanner},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newServer(t, "127.0.0.1", tc.sc)
			pr, err := New(Config{EHLOName: ehloName, Port: int(srv.addr.Port()), Timeout: 20 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			timer := time.AfterFunc(400*time.Millisecond, cancel)
			defer timer.Stop()
			before := time.Now()
			got := pr.Probe(ctx, Target{IP: srv.addr.Addr(), MXHost: "mx.example.test"})
			if d := time.Since(before); d > 1500*time.Millisecond {
				t.Errorf("cancelled probe took %v", d)
			}
			if got.Outcome != tc.stage || got.ErrorClass != survey.ErrCanceled || !strings.Contains(got.Error, "canceled") {
				t.Errorf("got %s/%s %q, want %s/canceled", got.Outcome, got.ErrorClass, got.Error, tc.stage)
			}
			srv.wait(t, 1)
		})
	}
}

func TestProbeCanceledBeforeStart(t *testing.T) {
	dialed := false
	pr, err := New(Config{EHLOName: ehloName, Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dialed = true
		return nil, ctx.Err()
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got := pr.Probe(ctx, Target{IP: netip.MustParseAddr("192.0.2.1")})
	if dialed || got.Outcome != survey.OutcomeConnect || got.ErrorClass != survey.ErrCanceled || got.Port != 25 {
		t.Errorf("dialed %v, row %+v", dialed, got)
	}
	// A parent deadline is a timeout, not a cancellation.
	ctx, cancel = context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if got := pr.Probe(ctx, Target{IP: netip.MustParseAddr("192.0.2.1")}); got.ErrorClass != survey.ErrTimeout {
		t.Errorf("expired parent: %s", got.ErrorClass)
	}
}

func TestProbeInvalidTarget(t *testing.T) {
	pr, err := New(Config{EHLOName: ehloName})
	if err != nil {
		t.Fatal(err)
	}
	got := pr.Probe(context.Background(), Target{})
	if got.Outcome != survey.OutcomeConnect || got.ErrorClass != survey.ErrOther || got.IP != "invalid IP" {
		t.Errorf("row %+v", got)
	}
}

func TestProbeRecoversPanic(t *testing.T) {
	pr, err := New(Config{EHLOName: ehloName, Dial: func(context.Context, string, string) (net.Conn, error) {
		panic("dialer bug")
	}})
	if err != nil {
		t.Fatal(err)
	}
	got := pr.Probe(context.Background(), Target{IP: netip.MustParseAddr("192.0.2.1")})
	if got.Outcome != survey.OutcomeConnect || got.ErrorClass != survey.ErrInternal || !strings.HasPrefix(got.Error, "panic: dialer bug") {
		t.Errorf("row %s/%s %q", got.Outcome, got.ErrorClass, got.Error)
	}
	if len(got.Error) > maxErrorBytes {
		t.Errorf("error of %d bytes", len(got.Error))
	}
}

// panicOnTLS is a connection whose code fails when the TLS handshake writes
// its first record.
type panicOnTLS struct{ net.Conn }

func (c panicOnTLS) Write(b []byte) (int, error) {
	if len(b) > 0 && b[0] == 0x16 { // a TLS handshake record
		panic("handshake bug")
	}
	return c.Conn.Write(b)
}

// The handshake runs on a worker goroutine: a panic there still ends as
// this probe's row, not the program.
func TestProbeRecoversPanicInHandshake(t *testing.T) {
	p := testPKI(t)
	srv := newServer(t, "127.0.0.1", script{greeting: "220 mx.example.test ESMTP\r\n", ehlo: ehloOK, starttls: starttls220,
		tls: serverTLS(p.ed, 0, 0), postEHLO: postEHLOOK})
	var d net.Dialer
	pr, err := New(Config{EHLOName: ehloName, Port: int(srv.addr.Port()), Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return panicOnTLS{c}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	got := pr.Probe(context.Background(), Target{IP: srv.addr.Addr(), MXHost: "mx.example.test"})
	if got.Outcome != survey.OutcomeTLS || got.ErrorClass != survey.ErrInternal || !strings.HasPrefix(got.Error, "panic: handshake bug") {
		t.Errorf("row %s/%s %q", got.Outcome, got.ErrorClass, got.Error)
	}
	srv.wait(t, 1)
}

func TestNew(t *testing.T) {
	pr, err := New(Config{EHLOName: ehloName})
	if err != nil {
		t.Fatal(err)
	}
	c := pr.cfg
	noDial := c
	noDial.Dial = nil
	if !reflect.DeepEqual(noDial, Config{EHLOName: ehloName}.WithDefaults()) {
		t.Errorf("New's defaults are not WithDefaults'")
	}
	if c.Port != 25 || c.Timeout != 30*time.Second || c.StepTimeout != 10*time.Second || c.MaxProbeBytes != 256<<10 ||
		c.MaxChainCerts != 20 || c.MinTLSVersion != tls.VersionTLS10 || c.MaxTLSVersion != 0 || c.Dial == nil ||
		c.Limits.MaxLineBytes != 2048 || c.Limits.MaxLines != 1000 || c.Limits.MaxBytes != 65536 || c.CurvePreferences != nil {
		t.Errorf("defaults: %+v", c)
	}
	pr, err = New(Config{EHLOName: ehloName, Timeout: time.Second})
	if err != nil || pr.cfg.StepTimeout != time.Second {
		t.Errorf("StepTimeout not bounded by Timeout: %v", err)
	}
	for _, bad := range []Config{
		{},
		{EHLOName: "two words"},
		{EHLOName: "x\r\nMAIL FROM:<>"},
		{EHLOName: strings.Repeat("a", 256)},
		{EHLOName: ehloName, Port: 70000},
		{EHLOName: ehloName, Port: -1},
		{EHLOName: ehloName, Timeout: -1},
		{EHLOName: ehloName, MaxProbeBytes: -1},
		{EHLOName: ehloName, MinTLSVersion: tls.VersionTLS13, MaxTLSVersion: tls.VersionTLS12},
	} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%+v) accepted", bad)
		}
	}
}

// checkTiming checks and clears StartedAt and DurationMS.
func checkTiming(t *testing.T, got *survey.ProbeRow, before time.Time, elapsed time.Duration) {
	t.Helper()
	if got.StartedAt.Location() != time.UTC || got.StartedAt.Before(before.Add(-time.Millisecond)) || got.StartedAt.After(before.Add(elapsed)) {
		t.Errorf("StartedAt %v not within the call (%v + %v)", got.StartedAt, before, elapsed)
	}
	if got.DurationMS < 0 || got.DurationMS > elapsed.Milliseconds()+1 {
		t.Errorf("DurationMS %d, call took %v", got.DurationMS, elapsed)
	}
	got.StartedAt, got.DurationMS = time.Time{}, 0
}

// checkError checks and clears Error: text exactly when there is a class.
func checkError(t *testing.T, got *survey.ProbeRow, has string) {
	t.Helper()
	if (got.Error == "") != (got.ErrorClass == "") || len(got.Error) > maxErrorBytes {
		t.Errorf("Error %q with class %q", got.Error, got.ErrorClass)
	}
	if has != "" && !strings.Contains(got.Error, has) {
		t.Errorf("Error %q does not mention %q", got.Error, has)
	}
	got.Error = ""
}

// diffRows reports each column that differs, by name.
func diffRows(t *testing.T, got, want survey.ProbeRow) {
	t.Helper()
	gv, wv := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := range gv.NumField() {
		g, w := gv.Field(i).Interface(), wv.Field(i).Interface()
		if gt, ok := g.(time.Time); ok {
			if !gt.Equal(w.(time.Time)) {
				t.Errorf("%s = %v, want %v", gv.Type().Field(i).Name, g, w)
			}
			continue
		}
		if !reflect.DeepEqual(g, w) {
			if b, ok := g.([][]byte); ok {
				t.Errorf("%s = %d certs, want %d", gv.Type().Field(i).Name, len(b), len(w.([][]byte)))
				continue
			}
			t.Errorf("%s = %#v, want %#v", gv.Type().Field(i).Name, g, w)
		}
	}
}
