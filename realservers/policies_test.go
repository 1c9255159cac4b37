package realservers

// The policies harness checked with tools that have nothing to do with
// mxsurvey: dig through Unbound and delv (BIND's own validator, asking NSD
// directly) for the DNSSEC status of every lookup a DANE sender makes;
// curl and openssl s_client for every MTA-STS policy host; posttls-finger
// at the dane level, through Unbound, for a DANE sender's verdict on every
// MX host.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// startPolicyResolver starts Unbound on policyResolverIP:53 validating
// the harness's zones: the root's trust anchor as Debian ships it, the
// test zones declared insecure below it (nothing above them is signed),
// and the signed zones' own KSKs as trust anchors, which override that.
func (l *lab) startPolicyResolver(ctx context.Context, t *testing.T) {
	t.Helper()
	nsd := net.JoinHostPort(dnsAddr, strconv.Itoa(dnsPort))
	c := unboundConfig{
		addr:        net.JoinHostPort(policyResolverIP, "53"),
		anchors:     append([]string{rootKSK2017DS}, l.anchors...),
		insecure:    []string{"test.", "127.in-addr.arpa."},
		transparent: []string{"test.", "127.in-addr.arpa."},
	}
	for _, z := range []string{zoneName, revZone, signedZone, bogusZone, insecureZone, stsZone} {
		c.stubs = append(c.stubs, unboundStub{z + ".", nsd})
	}
	startUnbound(ctx, t, l.tools.unbound, l.dir, c)

	// delv's trust anchors: each signed zone's DS as a BIND trust-anchors
	// statement.
	for _, a := range l.anchors {
		f := strings.Fields(a) // name class DS tag alg digesttype digest
		if len(f) != 7 || f[2] != "DS" {
			t.Fatalf("realservers: trust anchor %q is not a DS record", a)
		}
		writeFile(t, l.anchorFile(strings.TrimSuffix(f[0], ".")),
			fmt.Sprintf("trust-anchors {\n\t%s static-ds %s %s %s %q;\n};\n", f[0], f[3], f[4], f[5], f[6]), 0o644)
	}
	// posttls-finger's resolv.conf: Unbound, and trust-ad (glibc passes
	// the AD bit on only then).
	writeFile(t, l.path("resolv.conf"), "nameserver "+policyResolverIP+"\noptions trust-ad attempts:1 timeout:3\n", 0o644)
}

// dig asks Unbound with DO set (and CD when cd).
func (l *lab) dig(ctx context.Context, name, qtype string, cd bool) (digResult, string, error) {
	args := []string{"@" + policyResolverIP, "-p", "53", "+dnssec", "+time=3", "+tries=1", name, qtype}
	if cd {
		args = append(args, "+cd")
	}
	out, err := run(ctx, "", l.tools.dig, args...)
	if err != nil {
		return digResult{}, out, err
	}
	r, err := parseDig(out)
	return r, out, err
}

// delv validates with BIND's validator against NSD directly, the zone's
// KSK as the only trust anchor.
func (l *lab) delv(ctx context.Context, zone, name, qtype string) (string, error) {
	return run(ctx, "", l.tools.delv, "@"+dnsAddr, "-p", strconv.Itoa(dnsPort), "-a", l.anchorFile(zone), "+root="+zone, name, qtype)
}

// anchorFile is the file of a signed zone's trust anchor for delv.
func (l *lab) anchorFile(zone string) string { return l.path("delv-" + zone + ".conf") }

// fingerDANE runs posttls-finger at the dane level for dest ("[host]" or
// a domain), resolving through Unbound: posttls-finger uses the system's
// stub resolver, so it runs in a mount namespace of its own where
// /etc/resolv.conf is the lab's (nameserver Unbound, trust-ad: glibc
// passes the AD bit on only then). No CA file: "Verified" can only come
// from DANE.
func (l *lab) fingerDANE(ctx context.Context, dest string) (fingerDANE, string, error) {
	rc := l.path("resolv.conf") // written by startPolicyResolver
	// dnssec_probe off: Postfix asks ". NS" once to warn when validation
	// seems unavailable, and Unbound, cut off from the root, never answers it.
	out, err := run(ctx, "", l.tools.unshare, "--mount", "--propagation", "private", "--", "/bin/sh", "-c",
		`mount --bind "$0" /etc/resolv.conf && exec "$@"`, rc,
		l.tools.posttlsFinger, "-c", "-l", "dane", "-L", "summary,certmatch", "-t", "10", "-T", "10",
		"-o", "dnssec_probe=", fmt.Sprintf("%s:%d", dest, l.port))
	if err != nil {
		return fingerDANE{}, out, err
	}
	f, err := parseFingerDANE(out)
	return f, out, err
}

// curl fetches a case's policy URL from nginx with the test CA as the only
// root (or, insecure, without verification), resolving the policy host to
// the address dig gave.
func (l *lab) curl(ctx context.Context, c stsCase, ip string, insecure bool) (curlResult, string, error) {
	dir := l.path("curl", c.Key)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return curlResult{}, "", err
	}
	body, headers := filepath.Join(dir, "body"), filepath.Join(dir, "headers")
	_ = os.Remove(body) // a failed fetch must not leave the last one's
	_ = os.Remove(headers)
	args := []string{"-sS", "--max-time", "10", "--resolve", fmt.Sprintf("%s:%d:%s", policyHost(c.Domain), httpsPort(), ip),
		"-o", body, "-D", headers, "-w", curlWriteOut}
	if insecure {
		args = append(args, "-k")
	} else {
		args = append(args, "--cacert", l.caFile)
	}
	out, err := run(ctx, "", l.tools.curl, append(args, policyURL(c.Domain))...)
	exit := 0
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		exit = ee.ExitCode()
	} else if err != nil {
		return curlResult{}, out, err
	}
	h, _ := os.ReadFile(headers) // absent when no response came
	r, perr := parseCurl(out, h)
	r.Exit = exit
	r.Body, _ = os.ReadFile(body)
	return r, out, perr
}

// testPolicies checks the harness with the independent tools: if this
// fails, the harness (or a tool) is wrong, not mxsurvey.
func testPolicies(ctx context.Context, t *testing.T, l *lab) {
	ev := newPolicyEvidence()
	// The cases run in parallel: each is a few short commands.
	t.Run("dnssec", func(t *testing.T) {
		for _, c := range l.dane {
			t.Run(c.Key, func(t *testing.T) { t.Parallel(); checkDANEZones(ctx, t, l, c) })
		}
	})
	t.Run("mta-sts", func(t *testing.T) {
		for _, c := range l.sts {
			t.Run(c.Key, func(t *testing.T) { t.Parallel(); checkSTSHost(ctx, t, l, c, ev) })
		}
	})
	t.Run("dane", func(t *testing.T) {
		for _, c := range l.dane {
			t.Run(c.Key, func(t *testing.T) { t.Parallel(); checkFinger(ctx, t, l, c, ev) })
		}
	})
	if t.Failed() {
		return // the reference is wrong: comparing the scan with it says nothing
	}
	t.Run("scan", func(t *testing.T) { testPolicyScan(ctx, t, l, ev) })
}

// checkDANEZones asks Unbound (dig) and BIND's validator (delv, against
// NSD directly) the three lookups a DANE sender makes for a case: the
// domain's MX, the MX host's A, the TLSA RRset; each must carry the DNSSEC
// status the case states, and the records the harness published.
func checkDANEZones(ctx context.Context, t *testing.T, l *lab, c daneCase) {
	type lookup struct {
		name, qtype  string
		dnssec       string
		status       string   // dig's rcode
		want         []string // records of qtype expected
		brokenReason string   // delv's reason for a bogus answer
	}
	tlsaRcode := map[string]string{"ok": "NOERROR", "nxdomain": "NXDOMAIN", "servfail": "SERVFAIL"}[c.TLSAStatus]
	lookups := []lookup{
		{name: c.Domain, qtype: "MX", dnssec: c.MXDNSSEC, status: "NOERROR", want: []string{"10 " + c.MX + "."}},
		{name: c.MX, qtype: "A", dnssec: c.AddrDNSSEC, status: "NOERROR", want: []string{c.IP}},
		{name: tlsaOwner(c.tlsaBase()), qtype: "TLSA", dnssec: c.TLSADNSSEC, status: tlsaRcode, want: l.tlsa[tlsaOwner(c.tlsaBase())]},
	}
	switch c.Break {
	case breakMXSigExpired:
		lookups[0].status, lookups[0].brokenReason = "SERVFAIL", "RRSIG has expired"
	case breakTLSASig:
		lookups[2].brokenReason = "RRSIG failed to verify"
	}
	for _, q := range lookups {
		r, out, err := l.dig(ctx, q.name, q.qtype, false)
		if err != nil {
			t.Errorf("dig %s %s: %v", q.name, q.qtype, err)
			continue
		}
		got := r.Records(q.qtype)
		if q.qtype == "TLSA" {
			got = mapStrings(got, digTLSA)
		}
		if q.dnssec == "bogus" {
			// SERVFAIL without CD; the records with CD (RFC 4035 §3.2.2).
			if r.Status != "SERVFAIL" || r.AD() || len(got) != 0 {
				t.Errorf("dig %s %s: %s ad=%v %q, want SERVFAIL without records (bogus)\n%s", q.name, q.qtype, r.Status, r.AD(), got, out)
			}
			if r, out, err = l.dig(ctx, q.name, q.qtype, true); err != nil {
				t.Errorf("dig +cd %s %s: %v", q.name, q.qtype, err)
				continue
			}
			got = r.Records(q.qtype)
			if q.qtype == "TLSA" {
				got = mapStrings(got, digTLSA)
			}
			if r.Status != "NOERROR" || r.AD() {
				t.Errorf("dig +cd %s %s: %s ad=%v, want NOERROR without AD\n%s", q.name, q.qtype, r.Status, r.AD(), out)
			}
		} else if r.Status != q.status || r.AD() != (q.dnssec == "secure") {
			t.Errorf("dig %s %s: %s ad=%v, want %s ad=%v (%s)\n%s", q.name, q.qtype, r.Status, r.AD(), q.status, q.dnssec == "secure", q.dnssec, out)
		}
		if !sameSet(got, q.want) {
			t.Errorf("dig %s %s: records %q, want %q\n%s", q.name, q.qtype, got, q.want, out)
		}
		if c.CNAME != "" && q.qtype == "A" && !slices.Contains(r.Records("CNAME"), c.CNAME+".") {
			t.Errorf("dig %s A: no CNAME to %s\n%s", q.name, c.CNAME, out)
		}

		// BIND's validator, from the zone's own key, against NSD: the
		// signatures themselves are right (or broken as intended).
		z := zoneOf(q.name)
		if z == insecureZone {
			continue
		}
		out, err = l.delv(ctx, z, q.name, q.qtype)
		d, perr := parseDelv(out)
		switch {
		case perr != nil:
			t.Errorf("delv %s %s: %v (%v)", q.name, q.qtype, perr, err)
		case q.dnssec == "secure" && !d.Validated:
			t.Errorf("delv %s %s: not validated (%s), want secure\n%s", q.name, q.qtype, d.Failure, out)
		case q.dnssec == "secure" && d.Negative != (q.status == "NXDOMAIN"):
			t.Errorf("delv %s %s: negative %v, want %v\n%s", q.name, q.qtype, d.Negative, q.status == "NXDOMAIN", out)
		case q.dnssec == "bogus" && (d.Validated || d.Failure != q.brokenReason):
			t.Errorf("delv %s %s: validated %v failure %q, want %q\n%s", q.name, q.qtype, d.Validated, d.Failure, q.brokenReason, out)
		}
	}
}

// checkSTSHost checks a case's TXT records and A record through Unbound
// (dig), and what nginx serves with curl (the test CA as the only root)
// and openssl s_client (the chain as sent, its verification).
func checkSTSHost(ctx context.Context, t *testing.T, l *lab, c stsCase, ev *policyEvidence) {
	for _, q := range []struct {
		name string
		want [][]string
	}{{"_mta-sts." + c.Domain, c.STS}, {"_smtp._tls." + c.Domain, c.TLSRPT}} {
		r, out, err := l.dig(ctx, q.name, "TXT", false)
		if err != nil {
			t.Fatalf("dig %s TXT: %v", q.name, err)
		}
		want := mapStrings(q.want, txtData)
		wantStatus := "NOERROR"
		if len(want) == 0 {
			wantStatus = "NXDOMAIN"
		}
		if r.Status != wantStatus || r.AD() || !sameSet(r.Records("TXT"), want) {
			t.Errorf("dig %s TXT: %s ad=%v %q, want %s %q (unsigned)\n%s", q.name, r.Status, r.AD(), r.Records("TXT"), wantStatus, want, out)
		}
	}
	r, out, err := l.dig(ctx, policyHost(c.Domain), "A", false)
	if err != nil {
		t.Fatalf("dig %s A: %v", policyHost(c.Domain), err)
	}
	if got := r.Records("A"); c.HostIP == "" && r.Status != "NXDOMAIN" || c.HostIP != "" && !slices.Equal(got, []string{c.HostIP}) {
		t.Fatalf("dig %s A: %s %q, want %q\n%s", policyHost(c.Domain), r.Status, got, c.HostIP, out)
	}
	if c.HostIP == "" {
		return
	}

	cr, out, err := l.curl(ctx, c, c.HostIP, false)
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	switch {
	case c.HostIP == stsDeadIP:
		if cr.Exit != 7 { // CURLE_COULDNT_CONNECT
			t.Errorf("curl to the dead address: exit %d (%s), want 7", cr.Exit, cr.Error)
		}
		return
	case c.CertValid && cr.Exit != 0:
		t.Fatalf("curl: exit %d (%s), want a verified fetch", cr.Exit, cr.Error)
	case !c.CertValid:
		if cr.Exit != 60 { // CURLE_PEER_FAILED_VERIFICATION
			t.Errorf("curl: exit %d (%s), want 60: the certificate must not verify", cr.Exit, cr.Error)
		}
		if cr, out, err = l.curl(ctx, c, c.HostIP, true); err != nil || cr.Exit != 0 {
			t.Fatalf("curl -k: exit %d (%s) %v\n%s", cr.Exit, cr.Error, err, out)
		}
	}
	if cr.Status != c.Status || cr.ContentType != c.ContentType || cr.Location != c.Location {
		t.Errorf("curl: status %d content-type %q location %q, want %d %q %q", cr.Status, cr.ContentType, cr.Location, c.Status, c.ContentType, c.Location)
	}
	if c.Status == 200 && !bytes.Equal(cr.Body, c.Body) {
		t.Errorf("curl: body of %d bytes differs from the %d bytes configured", len(cr.Body), len(c.Body))
	}
	ev.set(func(e *policyEvidence) { e.curl[c.Key] = cr })

	// The chain as nginx sends it: the leaf only, the file's.
	sc, out, err := l.runSClientHTTPS(ctx, c)
	if err != nil {
		t.Fatalf("openssl s_client: %v\n%s", err, out)
	}
	var chain []string
	for _, pem := range sc.Chain {
		fp, err := l.opensslFingerprint(ctx, pem)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, fp)
	}
	fp := chain[0]
	fileFP, err := fileFingerprint(l.certs[c.Cert])
	if err != nil {
		t.Fatal(err)
	}
	wantVerify := 0
	switch c.Key {
	case "cert-expired":
		wantVerify = 10 // X509_V_ERR_CERT_HAS_EXPIRED
	case "cert-wrong-name":
		wantVerify = 62 // X509_V_ERR_HOSTNAME_MISMATCH
	}
	if len(sc.Chain) != 1 || fp != fileFP || sc.VerifyCode != wantVerify {
		t.Errorf("s_client: %d certificates, leaf %s (file %s), verify %d (%s), want 1, the file's, %d", len(sc.Chain), fp, fileFP, sc.VerifyCode, sc.VerifyText, wantVerify)
	}
	ev.set(func(e *policyEvidence) { e.chain[c.Key], e.tlsVer[c.Key] = chain, sc.Protocol })
}

// runSClientHTTPS connects to a policy host with SNI, the test CA as the
// only root and the host name checked.
func (l *lab) runSClientHTTPS(ctx context.Context, c stsCase) (sClient, string, error) {
	host := policyHost(c.Domain)
	out, err := run(ctx, "", l.tools.openssl, "s_client", "-connect", net.JoinHostPort(c.HostIP, strconv.Itoa(httpsPort())),
		"-servername", host, "-showcerts", "-CAfile", l.caFile, "-verify_hostname", host)
	if err != nil {
		return sClient{}, out, err
	}
	sc, err := parseSClient(out)
	return sc, out, err
}

// checkFinger runs posttls-finger at the dane level on the case's MX host
// ("[host]": no MX lookup) and on its domain (the MX lookup included, as a
// sender makes it), and holds its verdicts to the case's truth.
func checkFinger(ctx context.Context, t *testing.T, l *lab, c daneCase, ev *policyEvidence) {
	host, out, err := l.fingerDANE(ctx, "["+c.MX+"]")
	if err != nil {
		t.Fatalf("posttls-finger [%s]: %v\n%s", c.MX, err, out)
	}
	checkFingerVerdict(t, l, c, host, out)
	ev.set(func(e *policyEvidence) { e.finger[c.Key] = host })
	t.Logf("posttls-finger [%s]: %+v", c.MX, host)

	dom, out, err := l.fingerDANE(ctx, c.Domain)
	if err != nil {
		t.Fatalf("posttls-finger %s: %v\n%s", c.Domain, err, out)
	}
	if c.MXDNSSEC == "bogus" {
		// A sender that cannot get the MX RRset does not deliver at all.
		if dom.Trust != "" || !strings.HasPrefix(dom.Failure, "Destination address lookup failed") {
			t.Errorf("posttls-finger %s: %+v, want the MX lookup to fail\n%s", c.Domain, dom, out)
		}
		return
	}
	checkFingerVerdict(t, l, c, dom, out)
}

// checkFingerVerdict holds one posttls-finger verdict to the case's truth.
func checkFingerVerdict(t *testing.T, l *lab, c daneCase, f fingerDANE, out string) {
	t.Helper()
	published := l.tlsa[tlsaOwner(c.tlsaBase())]
	switch {
	case c.TLSADNSSEC == "bogus":
		if !f.TLSALookupError || f.Trust != "" {
			t.Errorf("posttls-finger: %+v, want a TLSA lookup error and no session (bogus TLSA)\n%s", f, out)
		}
	case c.Usable && c.Valid:
		if !f.DANEVerified() || len(f.Matched) != 1 || !slices.Contains(published, f.Matched[0]) {
			t.Errorf("posttls-finger: %+v, want Verified by one of %q\n%s", f, published, out)
		}
	case c.Usable:
		if f.Trust != "Untrusted" || len(f.Matched) != 0 || f.VerifyError == "" {
			t.Errorf("posttls-finger: %+v, want Untrusted with a verification error (TLSA %q match nothing valid)\n%s", f, published, out)
		}
	default:
		// No usable TLSA record (none, insecure, or usages not for SMTP):
		// posttls-finger falls back to the secure level, and without a CA
		// file nothing is Verified.
		if f.Trust != "Untrusted" || len(f.Matched) != 0 {
			t.Errorf("posttls-finger: %+v, want Untrusted without DANE\n%s", f, out)
		}
		var unusable []string
		for _, r := range published {
			if r[0] != '2' && r[0] != '3' {
				unusable = append(unusable, r)
			}
		}
		if c.TLSADNSSEC == "secure" && !sameSet(f.Unsupported, unusable) {
			t.Errorf("posttls-finger refused %q, want %q (the usages not for SMTP)\n%s", f.Unsupported, unusable, out)
		}
	}
}

// sameSet compares two lists of strings as sets with multiplicity.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
