package realservers

// MTA-STS (RFC 8461) and TLS-RPT (RFC 8460) in the lab: TXT records in an
// unsigned zone NSD serves, and Debian's nginx serving the policies over
// HTTPS with certificates from the test CA, one server block per
// mta-sts.<domain>, chosen by SNI. Each case states what nginx is told to
// answer; curl and openssl s_client (policies_test.go) check that it does.

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	stsZone = "sts.test" // unsigned
	// stsIP is nginx's address; stsDeadIP has no listener (connection refused).
	stsIP     = "127.77.0.60"
	stsDeadIP = "127.77.0.61"
	// stsPolicyPath is where RFC 8461 §3.3 puts the policy.
	stsPolicyPath = "/.well-known/mta-sts.txt"
	// The policy hosts' certificates (names in lab.certs).
	stsSharedCert    = "sts-shared"
	stsExpiredCert   = "sts-expired"
	stsWrongNameCert = "sts-wrong-name"
)

// httpsPort is 443 unless MXSURVEY_REALSERVERS_HTTPS_PORT says otherwise
// (the scan then needs -mta-sts-port).
func httpsPort() int { return envPort("MXSURVEY_REALSERVERS_HTTPS_PORT", 443) }

// stsCase is one domain of the MTA-STS harness and what its policy host
// is told to answer.
type stsCase struct {
	Key    string
	Domain string
	MX     string     // the domain's MX host: a server of the lab
	STS    [][]string // TXT RRs at _mta-sts.<domain>, each as its character-strings
	TLSRPT [][]string // TXT RRs at _smtp._tls.<domain>
	HostIP string     // the address of mta-sts.<domain>; "" for no A record
	// Cert is the certificate (a name in lab.certs) nginx presents for
	// mta-sts.<domain>; CertValid: it chains to the test CA, is valid now
	// and names mta-sts.<domain> (what curl checks).
	Cert      string
	CertValid bool
	// The answer to GET /.well-known/mta-sts.txt.
	Status      int
	ContentType string // exactly as sent
	Body        []byte
	Location    string
}

// policyHost is the MTA-STS policy host of a domain (RFC 8461 §3.3).
func policyHost(domain string) string { return "mta-sts." + domain }

// policyURL is the policy's URL on the lab's HTTPS port.
func policyURL(domain string) string {
	host := policyHost(domain)
	if p := httpsPort(); p != 443 {
		host = net.JoinHostPort(host, strconv.Itoa(p))
	}
	return "https://" + host + stsPolicyPath
}

// Fetched says whether a sender (and the scanner) fetches the policy: some
// TXT record at _mta-sts starts with "v=STSv1" (RFC 8461 §3.1, case-sensitive).
func (c stsCase) Fetched() bool {
	for _, rr := range c.STS {
		if strings.HasPrefix(strings.Join(rr, ""), "v=STSv1") {
			return true
		}
	}
	return false
}

// policy is an RFC 8461 §3.2 policy with the given line ending.
func policy(eol, mode string, mx ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "version: STSv1%smode: %s%s", eol, mode, eol)
	for _, m := range mx {
		fmt.Fprintf(&b, "mx: %s%s", m, eol)
	}
	fmt.Fprintf(&b, "max_age: 86400%s", eol)
	return []byte(b.String())
}

// bigPolicy is a well-formed policy of more than a mebibyte (one mx line per
// padding host): past the scanner's 64 KiB cap and its 1 MiB read limit.
func bigPolicy() []byte {
	b := policy("\r\n", "enforce", "mx1.real.test")
	for i := 0; len(b) < 1_200_000; i++ {
		b = fmt.Appendf(b, "mx: pad%06d.real.test\r\n", i)
	}
	return b
}

// stsCases is the MTA-STS harness. The MX hosts are the lab's mx1.real.test
// (CA-signed for its name) and mx4.real.test (CA-signed *.real.test).
func stsCases() []stsCase {
	const mx1, mx4 = "mx1.real.test", "mx4.real.test"
	sts := [][]string{{"v=STSv1; id=20260101T000000;"}}
	rpt := [][]string{{"v=TLSRPTv1; rua=mailto:tlsrpt@" + stsZone}}
	crlf := "\r\n"
	d := func(k string) string { return k + "." + stsZone }
	ok := func(c stsCase) stsCase {
		if c.HostIP == "" {
			c.HostIP = stsIP
		}
		if c.Cert == "" {
			c.Cert, c.CertValid = stsSharedCert, true
		}
		if c.Status == 0 {
			c.Status = 200
		}
		if c.ContentType == "" && c.Status == 200 {
			c.ContentType = "text/plain"
		}
		return c
	}
	return []stsCase{
		ok(stsCase{Key: "enforce", Domain: d("enforce"), MX: mx1, STS: sts, TLSRPT: rpt, Body: policy(crlf, "enforce", mx1)}),
		// Both records split into several character-strings (RFC 8461 §3.1:
		// concatenated), LF line ends, a media type with a parameter.
		ok(stsCase{Key: "testing-split", Domain: d("testing-split"), MX: mx4,
			STS:         [][]string{{"v=STSv1; ", "id=split1;"}},
			TLSRPT:      [][]string{{"v=TLSRPTv1;", " rua=https://tlsrpt." + stsZone + "/v1"}},
			ContentType: "text/plain; charset=utf-8", Body: policy("\n", "testing", "*.real.test")}),
		// Mode none needs no mx; two different TLS-RPT records.
		ok(stsCase{Key: "none", Domain: d("none"), MX: mx1, STS: sts,
			TLSRPT: [][]string{{"v=TLSRPTv1; rua=mailto:a@" + stsZone}, {"v=TLSRPTv1; rua=mailto:b@" + stsZone}},
			Body:   policy(crlf, "none")}),
		// Two v=STSv1 records (RFC 8461 §3.1: not exactly one).
		ok(stsCase{Key: "two-records", Domain: d("two-records"), MX: mx1,
			STS: [][]string{{"v=STSv1; id=dup1;"}, {"v=STSv1; id=dup2;"}}, TLSRPT: rpt, Body: policy(crlf, "enforce", mx1)}),
		// A record with an id that is not 1-32 alphanumerics, a TLS-RPT record
		// without rua.
		ok(stsCase{Key: "bad-records", Domain: d("bad-records"), MX: mx1,
			STS: [][]string{{"v=STSv1; id=not_alnum!;"}}, TLSRPT: [][]string{{"v=TLSRPTv1;"}}, Body: policy(crlf, "enforce", mx1)}),
		// The policy names another host than the domain's MX.
		ok(stsCase{Key: "mx-mismatch", Domain: d("mx-mismatch"), MX: mx1, STS: sts, TLSRPT: rpt, Body: policy(crlf, "enforce", "mx9.real.test")}),
		ok(stsCase{Key: "cert-expired", Domain: d("cert-expired"), MX: mx1, STS: sts, TLSRPT: rpt, Body: policy(crlf, "enforce", mx1),
			Cert: stsExpiredCert, CertValid: false}),
		ok(stsCase{Key: "cert-wrong-name", Domain: d("cert-wrong-name"), MX: mx1, STS: sts, TLSRPT: rpt, Body: policy(crlf, "enforce", mx1),
			Cert: stsWrongNameCert, CertValid: false}),
		ok(stsCase{Key: "big", Domain: d("big"), MX: mx1, STS: sts, TLSRPT: rpt, Body: bigPolicy()}),
		ok(stsCase{Key: "redirect", Domain: d("redirect"), MX: mx1, STS: sts, TLSRPT: rpt,
			Status: 301, ContentType: "text/html", Location: policyURL(d("enforce"))}),
		ok(stsCase{Key: "not-utf8", Domain: d("not-utf8"), MX: mx1, STS: sts, TLSRPT: rpt,
			Body: append(policy(crlf, "enforce", mx1), "mx: m\xe9l.real.test\r\n"...)}),
		ok(stsCase{Key: "content-type", Domain: d("content-type"), MX: mx1, STS: sts, TLSRPT: rpt,
			ContentType: "text/html", Body: policy(crlf, "enforce", mx1)}),
		ok(stsCase{Key: "not-found", Domain: d("not-found"), MX: mx1, STS: sts, TLSRPT: rpt, Status: 404, ContentType: "text/html"}),
		// The policy host's address refuses connections; the policy host has
		// no address at all.
		{Key: "refused", Domain: d("refused"), MX: mx1, STS: sts, TLSRPT: rpt, HostIP: stsDeadIP},
		{Key: "no-host", Domain: d("no-host"), MX: mx1, STS: sts, TLSRPT: rpt},
		// No MTA-STS record; a TXT record that is not STSv1: no fetch.
		{Key: "no-record", Domain: d("no-record"), MX: mx1, TLSRPT: rpt},
		{Key: "other-version", Domain: d("other-version"), MX: mx1, STS: [][]string{{"v=STSv2; id=1;"}}},
	}
}

// makeSTSCerts issues the policy hosts' certificates from the test CA (ECDSA
// P-256): one for the names of every host that serves a valid certificate,
// as a hoster's shared certificate; one that expired a month ago; one for
// another name.
func (l *lab) makeSTSCerts(ctx context.Context, t *testing.T) {
	t.Helper()
	p256 := l.p256(ctx, t)
	var shared []string
	for _, c := range l.sts {
		if c.Cert == stsSharedCert {
			shared = append(shared, policyHost(c.Domain))
		}
	}
	l.issue(ctx, t, certRequest{key: stsSharedCert, cn: shared[0], sans: shared, keyspec: p256, issuer: testCA})
	now := time.Now()
	l.issue(ctx, t, certRequest{key: stsExpiredCert, cn: policyHost("cert-expired." + stsZone), keyspec: p256, issuer: testCA,
		notBefore: now.AddDate(0, -3, 0), notAfter: now.AddDate(0, -1, 0)})
	l.issue(ctx, t, certRequest{key: stsWrongNameCert, cn: policyHost("elsewhere." + stsZone), keyspec: p256, issuer: testCA})
}

// stsZoneSpec is the unsigned zone of the MTA-STS domains.
func (l *lab) stsZoneSpec() zoneSpec {
	z := zoneSpec{name: stsZone, records: zoneHeader(stsZone)}
	for _, c := range l.sts {
		z.records = append(z.records, fmt.Sprintf("%s. 300 IN MX 10 %s.", c.Domain, c.MX))
		for _, rr := range c.STS {
			z.records = append(z.records, fmt.Sprintf("_mta-sts.%s. 300 IN TXT %s", c.Domain, txtData(rr)))
		}
		for _, rr := range c.TLSRPT {
			z.records = append(z.records, fmt.Sprintf("_smtp._tls.%s. 300 IN TXT %s", c.Domain, txtData(rr)))
		}
		if c.HostIP != "" {
			z.records = append(z.records, fmt.Sprintf("%s. 300 IN A %s", policyHost(c.Domain), c.HostIP))
		}
	}
	return z
}

// txtData is a TXT RR's data in presentation form: each string quoted,
// quotes and backslashes escaped (RFC 1035 §5.1).
func txtData(strs []string) string {
	q := make([]string, len(strs))
	for i, s := range strs {
		q[i] = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
	}
	return strings.Join(q, " ")
}

// startNginx serves every case that has a policy host on stsIP, one server
// block per host name (SNI), with nginx from Debian in the foreground.
func (l *lab) startNginx(ctx context.Context, t *testing.T) {
	t.Helper()
	d := l.path("nginx")
	listen := net.JoinHostPort(stsIP, strconv.Itoa(httpsPort()))
	var servers strings.Builder
	for i, c := range l.sts {
		if c.HostIP != stsIP {
			continue
		}
		key := strings.TrimSuffix(l.certs[c.Cert], ".pem") + ".key"
		var loc string
		switch c.Status {
		case 200:
			f := filepath.Join(d, "www", c.Domain+".txt")
			writeFile(t, f, string(c.Body), 0o644)
			loc = fmt.Sprintf("types { }\n\t\tdefault_type %q;\n\t\talias %s;", c.ContentType, f)
		case 301, 302, 307, 308:
			loc = fmt.Sprintf("return %d %s;", c.Status, c.Location)
		default:
			loc = fmt.Sprintf("return %d;", c.Status)
		}
		def := ""
		if i == 0 {
			def = " default_server" // a client without SNI gets the first host
		}
		fmt.Fprintf(&servers, `	server {
		listen %s ssl%s;
		server_name %s;
		ssl_certificate %s;
		ssl_certificate_key %s;
		location = %s {
		%s
		}
		location / { return 404; }
	}
`, listen, def, policyHost(c.Domain), l.certs[c.Cert], key, stsPolicyPath, loc)
	}
	conf := fmt.Sprintf(`# mxsurvey realservers: nginx serving MTA-STS policies
daemon off;
master_process on;
worker_processes 1;
pid %s/nginx.pid;
error_log %s/error.log info;
events { worker_connections 64; }
http {
	access_log %s/access.log;
	client_body_temp_path %s/tmp/body;
	proxy_temp_path %s/tmp/proxy;
	fastcgi_temp_path %s/tmp/fastcgi;
	uwsgi_temp_path %s/tmp/uwsgi;
	scgi_temp_path %s/tmp/scgi;
	server_tokens off;
	ssl_protocols TLSv1.2 TLSv1.3;
%s}
`, d, d, d, d, d, d, d, d, servers.String())
	cf := filepath.Join(d, "nginx.conf")
	writeFile(t, cf, conf, 0o644)
	if err := os.MkdirAll(filepath.Join(d, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := run(ctx, "", l.tools.nginx, "-t", "-p", d, "-e", filepath.Join(d, "error.log"), "-c", cf); err != nil {
		t.Fatalf("realservers: nginx -t: %v\n%s", err, out)
	}
	l.start(t, "nginx", l.tools.nginx, "-p", d, "-e", filepath.Join(d, "error.log"), "-c", cf)
}

// waitTCP dials until ip:port accepts a connection.
func waitTCP(ctx context.Context, ip string, port int) error {
	for {
		c, err := dialCtx(ctx, ip, port)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
