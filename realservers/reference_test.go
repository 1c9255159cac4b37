package realservers

import (
	"context"
	"crypto/tls"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// budget bounds the whole suite: lab start, reference captures, scan, checks.
const budget = 150 * time.Second

// evidence is what is known about one server without the scanner.
type evidence struct {
	Raw        rawCapture
	SClient    sClient
	SClientOut string // s_client's whole output, for failure messages
	SClientFP  string // openssl x509 -fingerprint -sha256 of s_client's leaf
	FileFP     string // SHA-256 of the leaf as the test wrote it
	ChainFP    []string
	Finger     finger
}

// TestRealServers starts the lab, gathers the reference evidence and checks
// it against the lab's configuration (sub-test "reference"), then scans the
// lab with mxsurvey and checks the rows against that evidence ("scan", in
// realservers_test.go), then analyzes the scan ("analyze").
func TestRealServers(t *testing.T) {
	tl := requireTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	start := time.Now()
	l := startLab(ctx, t, tl)
	t.Logf("realservers: lab up in %v in %s", time.Since(start).Round(time.Millisecond), l.dir)

	ev := map[string]*evidence{}
	for _, s := range l.servers {
		e, err := l.gather(ctx, s)
		if err != nil {
			t.Fatalf("realservers: evidence for %s: %v\n%s", s.Key, err, l.logs())
		}
		ev[s.Key] = e
	}
	t.Run("reference", func(t *testing.T) {
		for _, s := range l.servers {
			t.Run(s.Key, func(t *testing.T) { checkReference(t, s, ev[s.Key], l.docGroups) })
		}
	})
	if t.Failed() {
		t.Logf("%s", l.logs())
		return
	}
	t.Run("scan", func(t *testing.T) { testScan(ctx, t, l, ev) })
	t.Run("groups", func(t *testing.T) { testGroups(ctx, t, l) })
	t.Run("policies", func(t *testing.T) { testPolicies(ctx, t, l) })
	t.Logf("realservers: done in %v", time.Since(start).Round(time.Millisecond))
}

// gather collects the raw capture, openssl s_client's and posttls-finger's
// views of one server.
func (l *lab) gather(ctx context.Context, s serverSpec) (*evidence, error) {
	e := &evidence{}
	var err error
	if e.Raw, err = capture(ctx, s.IP, l.port, s.MX); err != nil {
		return nil, fmt.Errorf("raw capture: %w", err)
	}
	var out string
	if e.SClient, e.SClientOut, err = l.runSClient(ctx, s.IP, s.MX); err != nil {
		return nil, fmt.Errorf("openssl s_client: %w\n%s", err, e.SClientOut)
	}
	for _, p := range e.SClient.Chain {
		fp, err := l.opensslFingerprint(ctx, p)
		if err != nil {
			return nil, err
		}
		e.ChainFP = append(e.ChainFP, fp)
	}
	e.SClientFP = e.ChainFP[0]
	if e.FileFP, err = fileFingerprint(l.certs[s.Key]); err != nil {
		return nil, err
	}
	if e.Finger, out, err = l.runFinger(ctx, s); err != nil {
		return nil, fmt.Errorf("posttls-finger: %w\n%s", err, out)
	}
	return e, nil
}

// expectedGreeting is the greeting each server is configured to send, line by
// line, with Exim's timestamp masked.
func expectedGreeting(s serverSpec) []string {
	switch s.Key {
	case "postfix-ca":
		return []string{"220 smtp-out.real.test ESMTP Postfix"}
	case "postfix-snakeoil":
		return []string{"220 " + debianHost + " ESMTP Postfix (Debian/GNU)"}
	case "exim-selfsigned":
		return []string{"220 mx2.real.test ESMTP Exim 4.96 <tod_full>"}
	case "exim-multiline-wildcard":
		return strings.Split("220-"+strings.Replace(eximMultiBanner, `\n`, "\n220 ", 1), "\n")
	}
	return nil
}

// checkReference checks the independent evidence against the lab's own
// configuration: if this fails, the lab (or a tool) is wrong, not the scanner.
func checkReference(t *testing.T, s serverSpec, e *evidence, docGroups []docGroup) {
	g := e.Raw.Greeting
	masked := make([]string, len(g))
	for i, l := range g {
		masked[i] = maskExim(l)
	}
	if want := expectedGreeting(s); !slices.Equal(masked, want) {
		t.Errorf("greeting %q, want %q", g, want)
	}
	if len(g) != s.BannerLines {
		t.Errorf("greeting has %d lines, want %d", len(g), s.BannerLines)
	}
	if h := replyHost(g); h != s.BannerHost {
		t.Errorf("greeting host %q, want %q", h, s.BannerHost)
	}
	if !strings.HasPrefix(e.Raw.EHLO[0], "250") {
		t.Errorf("EHLO reply %q", e.Raw.EHLO)
	}
	if h := replyHost(e.Raw.EHLO); h != s.EHLOHost {
		t.Errorf("EHLO host %q (%q), want %q", h, e.Raw.EHLO[0], s.EHLOHost)
	}
	exts := extensions(e.Raw.EHLO)
	for _, kw := range []string{"STARTTLS", "PIPELINING", "SIZE", "8BITMIME"} {
		if !hasKeyword(exts, kw) {
			t.Errorf("EHLO does not advertise %s: %q", kw, e.Raw.EHLO)
		}
	}
	if len(e.Raw.STARTTLS) != 1 || !strings.HasPrefix(e.Raw.STARTTLS[0], "220") {
		t.Errorf("STARTTLS reply %q", e.Raw.STARTTLS)
	}

	sc := e.SClient
	if sc.Protocol != "TLSv1.3" {
		t.Errorf("s_client protocol %q, want TLSv1.3", sc.Protocol)
	}
	// The servers' defaults prefer X25519; openssl's line for it is the
	// one docs/schema.md states.
	x25519, _ := docGroupByID(docGroups, tls.X25519)
	if sc.KeyLine != x25519.KeyLine {
		t.Errorf("s_client printed %q, want docs/schema.md's line for X25519, %q", sc.KeyLine, x25519.KeyLine)
	}
	if len(sc.Chain) != s.ChainLen {
		t.Errorf("server sent %d certificates, want %d", len(sc.Chain), s.ChainLen)
	}
	if e.SClientFP != e.FileFP {
		t.Errorf("s_client leaf fingerprint %s, the lab's file %s", e.SClientFP, e.FileFP)
	}
	// s_client prints the last error its verify callback saw; the name
	// check comes after the chain's.
	wantVerify := 0 // ok: chain to the test CA, MX name matched
	switch {
	case !s.MatchesMX:
		wantVerify = 62 // X509_V_ERR_HOSTNAME_MISMATCH
	case s.SelfSigned:
		wantVerify = 18 // X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT
	}
	if sc.VerifyCode != wantVerify {
		t.Errorf("s_client verify %d (%s), want %d", sc.VerifyCode, sc.VerifyText, wantVerify)
	}
	if g, _ := docGroupByKeyLine(docGroups, sc.KeyLine); normTLSVersion(e.Raw.TLSVersion) != normTLSVersion(sc.Protocol) || e.Raw.TLSGroup != g.ID {
		t.Errorf("Go client negotiated %s group %d, openssl %s %q (group %d in docs/schema.md)", e.Raw.TLSVersion, e.Raw.TLSGroup, sc.Protocol, sc.KeyLine, g.ID)
	}
	post := e.Raw.PostTLS
	if !strings.HasPrefix(post[0], "250") {
		t.Errorf("EHLO over TLS: %q", post)
	}
	if h := replyHost(post); h != s.EHLOHost {
		t.Errorf("post-TLS EHLO host %q, want %q", h, s.EHLOHost)
	}
	if hasKeyword(extensions(post), "STARTTLS") {
		t.Errorf("STARTTLS advertised again after TLS: %q", post)
	}

	f := e.Finger
	wantTrust := "Untrusted"
	if s.Trusted && s.MatchesMX {
		wantTrust = "Verified"
	} else if s.Trusted {
		wantTrust = "Trusted"
	}
	if f.Trust != wantTrust {
		t.Errorf("posttls-finger: %s, want %s", f.Trust, wantTrust)
	}
	if f.Protocol != sc.Protocol {
		t.Errorf("posttls-finger protocol %q, s_client %q", f.Protocol, sc.Protocol)
	}
	if f.Fingerprint != e.FileFP {
		t.Errorf("posttls-finger fingerprint %q, the lab's file %s", f.Fingerprint, e.FileFP)
	}
	if f.KeyExchange != "X25519" { // Postfix's spelling (OpenSSL's short name)
		t.Errorf("posttls-finger key exchange %q", f.KeyExchange)
	}
	if f.SubjectCN != s.CertCN {
		t.Errorf("posttls-finger subject CN %q, want %q", f.SubjectCN, s.CertCN)
	}
	if len(f.Chain) != s.ChainLen {
		t.Errorf("posttls-finger printed %d certificates, want %d", len(f.Chain), s.ChainLen)
	}
	t.Logf("greeting %q; EHLO %q; STARTTLS %q; post-TLS EHLO %q; openssl: %s %s %s, verify %d (%s); Go: %s %s %s; posttls-finger: %s %s %s %s",
		g, e.Raw.EHLO, e.Raw.STARTTLS, post, sc.Protocol, sc.Cipher, sc.KeyLine, sc.VerifyCode, sc.VerifyText,
		e.Raw.TLSVersion, e.Raw.TLSCipher, e.Raw.TLSGroup, f.Trust, f.Protocol, f.Cipher, f.KeyExchange)
}
