package realservers

// The lab of real servers: certificates made with openssl, private configs for
// Postfix, Exim and NSD in a temporary directory, each daemon started in the
// foreground in its own process group, and stopped (exactly those processes)
// in t.Cleanup.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Addresses and ports of the lab. Every address is in 127.77.0.0/24, which
// nothing else in the project uses.
const (
	dnsAddr  = "127.77.0.53"
	dnsPort  = 5353
	zoneName = "real.test"
	revZone  = "0.77.127.in-addr.arpa"
	// ehloName is the name the scanner and the reference captures send.
	ehloName = "probe.real.test"
	caName   = "mxsurvey realservers test CA"
	// debianHost is the dotless machine name of the "Debian default" Postfix,
	// as on a fresh install whose hostname has no domain.
	debianHost = "debian"
)

// smtpPort is 25 unless MXSURVEY_REALSERVERS_PORT says otherwise (for a
// machine where something listens on *:25).
func smtpPort() int { return envPort("MXSURVEY_REALSERVERS_PORT", 25) }

// envPort is the port an environment variable names, or def.
func envPort(name string, def int) int {
	if p, err := strconv.Atoi(os.Getenv(name)); err == nil && p > 0 && p < 65536 {
		return p
	}
	return def
}

// serverSpec is one SMTP server of the lab and the truth about it, stated from
// the lab's own configuration (never from the scanner's parsers).
type serverSpec struct {
	Key      string // short name used in file names and sub-test names
	Software string // "postfix" or "exim"
	Domain   string // the domain whose MX this server is
	MX       string // MX host name (and SNI)
	IP       string
	PTR      string // "" when the address has no PTR record

	// Expected names read from the server's replies (DESIGN §3 rules).
	BannerHost   string
	EHLOHost     string
	BannerLines  int  // lines of the 220 greeting
	BannerVaries bool // the banner carries a timestamp (Exim's default)

	// The certificate.
	CertCN     string
	CertSAN    []string
	SelfSigned bool
	CASigned   bool // issued by the test CA
	Wildcard   bool
	ChainLen   int    // certificates the server sends
	KeyType    string // "RSA" or "ECDSA"
	KeyBits    int

	// What the analyzer must conclude (DESIGN §4), with the test CA as the
	// only root.
	Trusted       bool
	MatchesMX     bool
	MatchesBanner bool
	WildcardUsed  bool
}

// specs is the lab. Four servers, three kinds of certificate, two MTAs.
func specs() []serverSpec {
	return []serverSpec{
		{
			// A CA-signed certificate for the MX name, on a server whose
			// myhostname (banner, EHLO, PTR) is another name: the seed's case.
			Key: "postfix-ca", Software: "postfix", Domain: "a.real.test",
			MX: "mx1.real.test", IP: "127.77.0.25", PTR: "smtp-out.real.test",
			BannerHost: "smtp-out.real.test", EHLOHost: "smtp-out.real.test", BannerLines: 1,
			CertCN: "mx1.real.test", CertSAN: []string{"mx1.real.test"}, CASigned: true,
			ChainLen: 2, KeyType: "RSA", KeyBits: 2048,
			Trusted: true, MatchesMX: true, MatchesBanner: false,
		},
		{
			// Exim with Debian's compiled-in banner (name, version, time) and
			// a self-signed ECDSA certificate for its own name.
			Key: "exim-selfsigned", Software: "exim", Domain: "b.real.test",
			MX: "mx2.real.test", IP: "127.77.0.26", PTR: "mx2.real.test",
			BannerHost: "mx2.real.test", EHLOHost: "mx2.real.test", BannerLines: 1, BannerVaries: true,
			CertCN: "mx2.real.test", CertSAN: []string{"mx2.real.test"}, SelfSigned: true,
			ChainLen: 1, KeyType: "ECDSA", KeyBits: 256,
			Trusted: false, MatchesMX: true, MatchesBanner: true,
		},
		{
			// Postfix as Debian installs it: smtpd_banner "$myhostname ESMTP
			// $mail_name (Debian/GNU)", a dotless myhostname, the snakeoil
			// certificate of ssl-cert (CN and SAN "localhost"), no PTR.
			Key: "postfix-snakeoil", Software: "postfix", Domain: "c.real.test",
			MX: "mx3.real.test", IP: "127.77.0.27", PTR: "",
			BannerHost: "", EHLOHost: "", BannerLines: 1,
			CertCN: "localhost", CertSAN: []string{"localhost"}, SelfSigned: true,
			ChainLen: 1, KeyType: "RSA", KeyBits: 2048,
			Trusted: false, MatchesMX: false, MatchesBanner: false,
		},
		{
			// The same Exim daemon on a second address: a multi-line greeting
			// naming mx4, an EHLO reply naming the daemon's primary_hostname
			// (mx2), and a CA-signed wildcard certificate.
			Key: "exim-multiline-wildcard", Software: "exim", Domain: "d.real.test",
			MX: "mx4.real.test", IP: "127.77.0.28", PTR: "mx4.real.test",
			BannerHost: "mx4.real.test", EHLOHost: "mx2.real.test", BannerLines: 2,
			CertCN: "*.real.test", CertSAN: []string{"*.real.test"}, CASigned: true, Wildcard: true,
			ChainLen: 2, KeyType: "RSA", KeyBits: 3072,
			Trusted: true, MatchesMX: true, MatchesBanner: true, WildcardUsed: true,
		},
	}
}

// multiMXDomain has two MX records (mx1 pref 10, mx2 pref 20): two MX rows,
// and no extra probe since targets are deduplicated by (ip, mx_host).
const multiMXDomain = "e.real.test"

// eximMultiBanner is the greeting text of the second Exim address, as
// written in the config ("\n" makes Exim send a multi-line 220 reply).
const eximMultiBanner = `mx4.real.test ESMTP Exim\nNo UCE. This is a multi-line greeting.`

// tools are the binaries the suite runs.
type tools struct {
	postfix, exim, nsd, openssl, posttlsFinger string
	// The policies harness: zone signing, nginx, Unbound, and the
	// independent views of DNS, HTTPS and DANE.
	ldnsKeygen, ldnsSignzone, ldnsDane, nginx, unbound, dig, delv, curl, unshare string
}

// findTools looks for the binaries; missing lists what is not there.
func findTools() (tools, []string) {
	var tl tools
	var missing []string
	look := func(dst *string, names ...string) {
		for _, n := range names {
			if filepath.IsAbs(n) {
				if st, err := os.Stat(n); err == nil && !st.IsDir() {
					*dst = n
					return
				}
				continue
			}
			if p, err := exec.LookPath(n); err == nil {
				*dst = p
				return
			}
		}
		missing = append(missing, names[0])
	}
	prefix := os.Getenv("MXSURVEY_REALSERVERS_PREFIX")
	if prefix == "" {
		prefix = "/opt/mxsurvey-realservers"
	}
	look(&tl.postfix, "postfix", "/usr/sbin/postfix")
	look(&tl.exim, filepath.Join(prefix, "exim/usr/sbin/exim4"), "exim4", "exim", "/usr/sbin/exim4")
	look(&tl.nsd, "nsd", "/usr/sbin/nsd")
	look(&tl.openssl, "openssl")
	look(&tl.posttlsFinger, "posttls-finger", "/usr/sbin/posttls-finger")
	look(&tl.ldnsKeygen, "ldns-keygen")
	look(&tl.ldnsSignzone, "ldns-signzone")
	look(&tl.ldnsDane, "ldns-dane")
	look(&tl.nginx, "nginx", "/usr/sbin/nginx")
	look(&tl.unbound, "unbound", "/usr/sbin/unbound")
	look(&tl.dig, "dig")
	look(&tl.delv, "delv")
	look(&tl.curl, "curl")
	look(&tl.unshare, "unshare", "/usr/bin/unshare")
	if _, err := user.Lookup("postfix"); err != nil {
		missing = append(missing, "user postfix")
	}
	if _, err := user.Lookup("Debian-exim"); err != nil {
		missing = append(missing, "user Debian-exim")
	}
	if os.Geteuid() != 0 {
		missing = append(missing, "root (postfix and exim daemons start as root)")
	} else if tl.unshare != "" {
		// posttls-finger resolves through the lab's Unbound only in a mount
		// namespace with its own /etc/resolv.conf (policies_test.go).
		if out, err := exec.Command(tl.unshare, "--mount", "--propagation", "private", "--",
			"/bin/sh", "-c", "mount --bind /dev/null /etc/resolv.conf").CombinedOutput(); err != nil {
			missing = append(missing, fmt.Sprintf("a mount namespace with /etc/resolv.conf bind-mounted (CAP_SYS_ADMIN): %v %s", err, strings.TrimSpace(string(out))))
		}
	}
	return tl, missing
}

// required reports whether the suite must run (CI, or asked for explicitly).
func required() bool {
	return os.Getenv("CI") == "true" || os.Getenv("MXSURVEY_REALSERVERS") == "1"
}

// requireTools skips the test with one line when the servers are not
// installed, or fails it when the suite is required.
func requireTools(t *testing.T) tools {
	t.Helper()
	tl, missing := findTools()
	if len(missing) == 0 {
		return tl
	}
	if required() {
		t.Fatalf("realservers: required (CI=true or MXSURVEY_REALSERVERS=1) but missing %s; run: sudo bash realservers/install.sh", strings.Join(missing, ", "))
	}
	t.Skipf("realservers: %s missing; run: sudo bash realservers/install.sh", strings.Join(missing, ", "))
	return tl
}

// lab is a running set of servers.
type lab struct {
	tools   tools
	dir     string
	port    int
	servers []serverSpec
	caFile  string
	certs   map[string]string // spec key -> leaf PEM file
	procs   []*proc
	// groups are further listeners of the same Postfix and Exim, each
	// configured to one key exchange group; docGroups is docs/schema.md's
	// table of groups they are checked against.
	groups    []groupListener
	docGroups []docGroup
	// The policies harness (dane_test.go, mtasts_test.go): its cases, the
	// DS records of the signed zones (Unbound's trust anchors), and the
	// TLSA records published, by owner name, in presentation form.
	dane    []daneCase
	sts     []stsCase
	anchors []string
	tlsa    map[string][]string
}

// proc is one daemon the lab started, in its own process group.
type proc struct {
	name    string
	cmd     *exec.Cmd
	outFile string // the daemon's stdout and stderr
	// pid is the daemon's own PID: the started process for nsd and exim; for
	// postfix the master, which postfix-script starts and which calls
	// setsid(), read from the pid file in the lab's private queue directory.
	pid  int
	done chan struct{}
}

// startLab makes certificates and configs and starts NSD, Postfix and Exim.
// Everything is stopped in t.Cleanup. ctx bounds every wait.
func startLab(ctx context.Context, t *testing.T, tl tools) *lab {
	t.Helper()
	docGroups, err := readDocGroups()
	if err != nil {
		t.Fatalf("realservers: %v", err)
	}
	// Not t.TempDir(): its 0700 parents keep the postfix and Debian-exim users
	// out of their queue and spool directories.
	dir, err := os.MkdirTemp("", "mxsurvey-realservers-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	l := &lab{tools: tl, dir: dir, port: smtpPort(), servers: specs(), certs: map[string]string{},
		groups: groupListeners(), docGroups: docGroups, dane: daneCases(), sts: stsCases(), tlsa: map[string][]string{}}
	t.Cleanup(func() {
		l.stopAll(t)
		if t.Failed() && os.Getenv("MXSURVEY_REALSERVERS_KEEP") == "1" {
			t.Logf("realservers: kept %s", dir)
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("realservers: removing %s: %v", dir, err)
		}
	})
	for _, ip := range l.smtpAddrs() {
		if err := checkFree(ip, l.port); err != nil {
			t.Fatalf("realservers: %v (set MXSURVEY_REALSERVERS_PORT to use another port)", err)
		}
	}
	for _, a := range []struct {
		ip   string
		port int
	}{{dnsAddr, dnsPort}, {stsIP, httpsPort()}} {
		if err := checkFree(a.ip, a.port); err != nil {
			t.Fatalf("realservers: %v", err)
		}
	}

	l.makeCerts(ctx, t)
	l.makeDANECerts(ctx, t)
	l.makeSTSCerts(ctx, t)
	l.startNSD(ctx, t)
	l.startPostfix(ctx, t)
	l.startExim(ctx, t)
	l.startNginx(ctx, t)
	l.startPolicyResolver(ctx, t)

	for _, ip := range l.smtpAddrs() {
		if err := waitGreeting(ctx, ip, l.port); err != nil {
			t.Fatalf("realservers: %s:%d never greeted: %v\n%s", ip, l.port, err, l.logs())
		}
	}
	if err := waitDNS(ctx, dnsAddr, dnsPort, "mx1."+zoneName); err != nil {
		t.Fatalf("realservers: nsd on %s:%d never answered: %v\n%s", dnsAddr, dnsPort, err, l.logs())
	}
	if err := waitTCP(ctx, stsIP, httpsPort()); err != nil {
		t.Fatalf("realservers: nginx on %s:%d never accepted: %v\n%s", stsIP, httpsPort(), err, l.logs())
	}
	if err := waitDNS(ctx, policyResolverIP, 53, l.dane[0].MX); err != nil {
		t.Fatalf("realservers: unbound on %s:53 never answered: %v\n%s", policyResolverIP, err, l.logs())
	}
	return l
}

// smtpAddrs are the addresses of every SMTP listener of the lab.
func (l *lab) smtpAddrs() []string {
	var out []string
	for _, s := range l.servers {
		out = append(out, s.IP)
	}
	for _, g := range l.groups {
		out = append(out, g.IP)
	}
	return append(out, daneTAIP)
}

// checkFree fails when something already accepts connections on ip:port.
func checkFree(ip string, port int) error {
	c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(port)), 300*time.Millisecond)
	if err == nil {
		c.Close()
		return fmt.Errorf("something already listens on %s:%d", ip, port)
	}
	return nil
}

// run runs a short command (openssl, postfix check), bounded by ctx.
func run(ctx context.Context, stdin string, name string, args ...string) (string, error) {
	return runCmd(ctx, "", stdin, name, args...)
}

// runIn runs a short command in directory dir (ldns-keygen writes its
// files to the current directory).
func runIn(ctx context.Context, dir, name string, args ...string) (string, error) {
	return runCmd(ctx, dir, "", name, args...)
}

func runCmd(ctx context.Context, dir, stdin, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (l *lab) path(parts ...string) string {
	return filepath.Join(append([]string{l.dir}, parts...)...)
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// makeCerts makes, with the openssl command: a CA; a CA-signed leaf for
// mx1.real.test (RSA 2048); a CA-signed wildcard *.real.test (RSA 3072); a
// self-signed ECDSA P-256 certificate for mx2.real.test; and a snakeoil-style
// self-signed certificate as Debian's ssl-cert makes it (RSA 2048, CN and SAN
// DNS "localhost", ten years).
func (l *lab) makeCerts(ctx context.Context, t *testing.T) {
	t.Helper()
	c := l.path("certs")
	if err := os.MkdirAll(c, 0o755); err != nil {
		t.Fatal(err)
	}
	l.caFile = filepath.Join(c, "ca.pem")
	l.openssl(ctx, t, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "30",
		"-keyout", filepath.Join(c, "ca.key"), "-out", l.caFile, "-subj", "/O=mxsurvey/CN="+caName,
		"-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
	l.certs[testCA] = l.caFile

	l.issue(ctx, t, certRequest{key: "postfix-ca", cn: "mx1.real.test", keyspec: "rsa:2048", issuer: testCA})
	l.issue(ctx, t, certRequest{key: "exim-multiline-wildcard", cn: "*.real.test", keyspec: "rsa:3072", issuer: testCA})
	// Exim sends what its tls_certificate file holds: leaf, then the CA.
	l.chainFile(t, "exim-multiline-wildcard-chain", "exim-multiline-wildcard", testCA)
	l.selfSigned(ctx, t, "exim-selfsigned", "mx2.real.test", "30", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")
	l.selfSigned(ctx, t, "postfix-snakeoil", "localhost", "3650", "-newkey", "rsa:2048")

	// Exim (Debian-exim) reads its keys after dropping root: let it.
	for _, key := range []string{"exim-selfsigned", "exim-multiline-wildcard"} {
		if err := chownTo(filepath.Join(c, key+".key"), "Debian-exim"); err != nil {
			t.Fatal(err)
		}
	}
}

// testCA is the name of the test CA in lab.certs.
const testCA = "ca"

// openssl runs the openssl command and fails the test if it fails.
func (l *lab) openssl(ctx context.Context, t *testing.T, args ...string) {
	t.Helper()
	if _, err := run(ctx, "", l.tools.openssl, args...); err != nil {
		t.Fatalf("realservers: making certificates: %v", err)
	}
}

// certRequest is a certificate the lab issues from one of its CAs.
type certRequest struct {
	key     string   // file stem under certs/ and name in lab.certs
	cn      string   // subject CN, and the DNS SAN unless sans says
	sans    []string // DNS SANs, when not just cn
	keyspec string   // a new key, as openssl req -newkey takes it
	issuer  string   // name in lab.certs of the issuing CA (its key beside it)
	ca      bool     // an intermediate CA (CA:TRUE, pathlen 0) instead of a server leaf
	// notBefore and notAfter, when set, are the validity period (signed with
	// `openssl ca`, since OpenSSL 3.0's x509 -req can only count days from
	// now); otherwise 30 days from now.
	notBefore, notAfter time.Time
}

// issue makes a key and a certificate for r, signed by r.issuer.
func (l *lab) issue(ctx context.Context, t *testing.T, r certRequest) {
	t.Helper()
	c := l.path("certs")
	k, csr, crt, ext := filepath.Join(c, r.key+".key"), filepath.Join(c, r.key+".csr"), filepath.Join(c, r.key+".pem"), filepath.Join(c, r.key+".ext")
	sans := r.sans
	if sans == nil {
		sans = []string{r.cn}
	}
	exts := "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n" +
		"extendedKeyUsage=serverAuth\nsubjectAltName=DNS:" + strings.Join(sans, ",DNS:") + "\n"
	if r.ca {
		exts = "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n"
	}
	writeFile(t, ext, exts, 0o644)
	issuerPEM := l.certs[r.issuer]
	issuerKey := strings.TrimSuffix(issuerPEM, ".pem") + ".key"
	l.openssl(ctx, t, "req", "-new", "-newkey", r.keyspec, "-nodes", "-sha256", "-keyout", k, "-out", csr, "-subj", "/CN="+r.cn)
	if r.notBefore.IsZero() {
		l.openssl(ctx, t, "x509", "-req", "-in", csr, "-CA", issuerPEM, "-CAkey", issuerKey, "-CAcreateserial",
			"-sha256", "-days", "30", "-extfile", ext, "-out", crt)
	} else {
		// openssl ca wants a database of what it issued: a fresh one per
		// certificate.
		db := filepath.Join(c, r.key+".db")
		writeFile(t, filepath.Join(db, "index.txt"), "", 0o644)
		writeFile(t, filepath.Join(db, "serial"), fmt.Sprintf("%x\n", time.Now().UnixNano()), 0o644)
		conf := fmt.Sprintf("[ca]\ndefault_ca = dated\n[dated]\ndatabase = %s/index.txt\nnew_certs_dir = %s\n"+
			"serial = %s/serial\ndefault_md = sha256\npolicy = any\nunique_subject = no\n[any]\ncommonName = supplied\n", db, db, db)
		writeFile(t, filepath.Join(db, "ca.cnf"), conf, 0o644)
		const asn1Time = "20060102150405Z"
		l.openssl(ctx, t, "ca", "-batch", "-config", filepath.Join(db, "ca.cnf"), "-notext", "-in", csr, "-out", crt,
			"-cert", issuerPEM, "-keyfile", issuerKey, "-extfile", ext,
			"-startdate", r.notBefore.UTC().Format(asn1Time), "-enddate", r.notAfter.UTC().Format(asn1Time))
	}
	l.certs[r.key] = crt
}

// p256 is the openssl req -newkey argument for an ECDSA P-256 key (a
// parameter file, made once).
func (l *lab) p256(ctx context.Context, t *testing.T) string {
	t.Helper()
	f := l.path("certs", "p256.param")
	if _, err := os.Stat(f); err != nil {
		l.openssl(ctx, t, "ecparam", "-name", "prime256v1", "-out", f)
	}
	return "ec:" + f
}

// selfSigned makes a self-signed certificate for cn (also its DNS SAN).
func (l *lab) selfSigned(ctx context.Context, t *testing.T, key, cn string, days string, keyArgs ...string) {
	t.Helper()
	c := l.path("certs")
	k, crt := filepath.Join(c, key+".key"), filepath.Join(c, key+".pem")
	args := append([]string{"req", "-x509"}, keyArgs...)
	args = append(args, "-nodes", "-sha256", "-days", days, "-keyout", k, "-out", crt, "-subj", "/CN="+cn,
		"-addext", "subjectAltName=DNS:"+cn)
	l.openssl(ctx, t, args...)
	l.certs[key] = crt
}

// chainFile writes the certificates of l.certs[keys...] into one PEM file,
// in that order (what a server sends: leaf first), as l.certs[name].
func (l *lab) chainFile(t *testing.T, name string, keys ...string) {
	t.Helper()
	var b strings.Builder
	for _, k := range keys {
		pem, err := os.ReadFile(l.certs[k])
		if err != nil {
			t.Fatal(err)
		}
		b.Write(pem)
	}
	f := l.path("certs", name+".pem")
	writeFile(t, f, b.String(), 0o644)
	l.certs[name] = f
}

// chownTo gives a file to a system user.
func chownTo(path, name string) error {
	u, err := user.Lookup(name)
	if err != nil {
		return err
	}
	uid, _ := strconv.Atoi(u.Uid) // numeric on Linux; Lookup returned it
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(path, uid, gid)
}

// certDER returns the DER of every certificate in a PEM file, in file order.
func certDER(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			out = append(out, blk.Bytes)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no certificate", path)
	}
	return out, nil
}

// fileFingerprint is the SHA-256 of the first certificate in a PEM file, as
// lowercase hex: the fingerprint known from the lab's own files.
func fileFingerprint(path string) (string, error) {
	ders, err := certDER(path)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(ders[0])
	return hex.EncodeToString(sum[:]), nil
}

// start starts a daemon in its own process group, output to a file (not a
// pipe: a daemon's children would hold it open and Wait would not return).
func (l *lab) start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, outFile: l.path(name + ".out"), done: make(chan struct{})}
	f, err := os.Create(p.outFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close() // the child has its own descriptor
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Dir = l.dir
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("realservers: starting %s: %v", name, err)
	}
	p.pid = p.cmd.Process.Pid
	l.procs = append(l.procs, p)
	go func() {
		_ = p.cmd.Wait() // a daemon killed by the test exits with a signal status
		close(p.done)
	}()
	t.Logf("realservers: started %s: pid %d", name, p.pid)
	return p
}

// adoptPostfixMaster records the PID of the postfix master of this lab's
// instance: the one in this instance's private pid file, and only if that
// process is Postfix's master and leads its own process group.
func (p *proc) adoptPostfixMaster(pidFile string) error {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return fmt.Errorf("%s: bad pid %q", pidFile, b)
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil || filepath.Base(exe) != "master" {
		return fmt.Errorf("pid %d from %s is %q, not postfix's master (%v)", pid, pidFile, exe, err)
	}
	if g, err := syscall.Getpgid(pid); err != nil || g != pid {
		return fmt.Errorf("postfix master %d is not a process group leader (%d, %v)", pid, g, err)
	}
	p.pid = pid
	return nil
}

// alive reports whether pid runs (a zombie, which this machine's init may
// never reap, counts as gone).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

// waitGone waits until pid is gone, up to d.
func waitGone(pid int, d time.Duration) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if !alive(pid) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return !alive(pid)
}

// stopAll stops what the lab started, newest first: SIGTERM to the daemon's
// recorded PID, up to 5 s for it to exit, then SIGKILL to its process group,
// which holds only that daemon and its children (each daemon was started with
// its own group; postfix's master makes its own session and group).
func (l *lab) stopAll(t *testing.T) {
	for i := len(l.procs) - 1; i >= 0; i-- {
		p := l.procs[i]
		if alive(p.pid) {
			_ = syscall.Kill(p.pid, syscall.SIGTERM) // ESRCH if it just exited: fine
			if !waitGone(p.pid, 5*time.Second) {
				t.Logf("realservers: %s (pid %d) ignored SIGTERM; SIGKILL to its process group", p.name, p.pid)
				_ = syscall.Kill(-p.pid, syscall.SIGKILL)
				if !waitGone(p.pid, 5*time.Second) {
					t.Errorf("realservers: %s (pid %d) still running", p.name, p.pid)
				}
			}
		}
		// The started process (for postfix: postfix-script, waiting on master).
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			pg := p.cmd.Process.Pid
			t.Logf("realservers: %s launcher (pid %d) still there; SIGKILL to its process group", p.name, pg)
			_ = syscall.Kill(-pg, syscall.SIGKILL)
			<-p.done
		}
	}
}

// logs returns the daemons' output and log files, for failure messages.
func (l *lab) logs() string {
	var b strings.Builder
	files := []string{}
	for _, p := range l.procs {
		files = append(files, p.outFile)
	}
	files = append(files, l.path("postfix", "maillog"), l.path("exim", "log", "mainlog"),
		l.path("exim", "log", "paniclog"), l.path("exim", "log", "rejectlog"), l.path("nsd", "nsd.log"),
		l.path("nginx", "error.log"), l.path("unbound", "unbound.out"))
	for _, f := range files {
		if b2, err := os.ReadFile(f); err == nil && len(b2) > 0 {
			fmt.Fprintf(&b, "--- %s:\n%s\n", f, tail(string(b2), 3000))
		}
	}
	return b.String()
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// --- NSD

func (l *lab) startNSD(ctx context.Context, t *testing.T) {
	t.Helper()
	d := l.path("nsd")
	var zone strings.Builder
	fmt.Fprintf(&zone, "$ORIGIN %s.\n$TTL 300\n", zoneName)
	fmt.Fprintf(&zone, "@ IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 300\n", zoneName, zoneName)
	fmt.Fprintf(&zone, "@ IN NS ns.%s.\nns IN A %s\n", zoneName, dnsAddr)
	var rev strings.Builder
	fmt.Fprintf(&rev, "$ORIGIN %s.\n$TTL 300\n", revZone)
	fmt.Fprintf(&rev, "@ IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 300\n@ IN NS ns.%s.\n", zoneName, zoneName, zoneName)
	for _, s := range l.servers {
		fmt.Fprintf(&zone, "%s. IN MX 10 %s.\n", s.Domain, s.MX)
		fmt.Fprintf(&zone, "%s. IN A %s\n", s.MX, s.IP)
		if s.PTR != "" {
			last := s.IP[strings.LastIndexByte(s.IP, '.')+1:]
			fmt.Fprintf(&rev, "%s IN PTR %s.\n", last, s.PTR)
		}
	}
	fmt.Fprintf(&zone, "%s. IN MX 10 mx1.%s.\n%s. IN MX 20 mx2.%s.\n", multiMXDomain, zoneName, multiMXDomain, zoneName)
	for _, g := range l.groups {
		fmt.Fprintf(&zone, "%s. IN MX 10 %s.\n%s. IN A %s\n", g.Domain, g.MX, g.MX, g.IP)
	}
	writeFile(t, filepath.Join(d, zoneName+".zone"), zone.String(), 0o644)
	writeFile(t, filepath.Join(d, revZone+".zone"), rev.String(), 0o644)
	// The policies harness's zones, signed where they say.
	var more strings.Builder
	for _, z := range append(l.daneZones(ctx, t), l.stsZoneSpec()) {
		file, ds := l.signZone(ctx, t, d, z)
		if ds != "" {
			l.anchors = append(l.anchors, ds)
		}
		fmt.Fprintf(&more, "zone:\n\tname: %q\n\tzonefile: %q\n", z.name, file)
	}
	conf := fmt.Sprintf(`server:
	ip-address: %s
	port: %d
	do-ip6: no
	username: ""
	chroot: ""
	database: ""
	zonesdir: "%s"
	pidfile: "%s/nsd.pid"
	xfrdfile: "%s/xfrd.state"
	zonelistfile: "%s/zone.list"
	logfile: "%s/nsd.log"
	server-count: 1
	verbosity: 1
	hide-version: no
remote-control:
	control-enable: no
zone:
	name: "%s"
	zonefile: "%s.zone"
zone:
	name: "%s"
	zonefile: "%s.zone"
%s`, dnsAddr, dnsPort, d, d, d, d, d, zoneName, zoneName, revZone, revZone, more.String())
	writeFile(t, filepath.Join(d, "nsd.conf"), conf, 0o644)
	if out, err := run(ctx, "", filepath.Join(filepath.Dir(l.tools.nsd), "nsd-checkconf"), filepath.Join(d, "nsd.conf")); err != nil &&
		!errors.Is(err, exec.ErrNotFound) {
		t.Fatalf("realservers: nsd-checkconf: %v %s", err, out)
	}
	l.start(t, "nsd", l.tools.nsd, "-d", "-c", filepath.Join(d, "nsd.conf"))
}

// --- Postfix

// postfixMasterCF names each listener's address (inet_interfaces cannot name
// 127.77.0.x: "no local interface found"), runs nothing chrooted, and gives
// the second listener the Debian defaults (banner, dotless myhostname,
// snakeoil certificate) with -o.
func (l *lab) startPostfix(ctx context.Context, t *testing.T) {
	t.Helper()
	d := l.path("postfix")
	conf, spool, data := filepath.Join(d, "etc"), filepath.Join(d, "spool"), filepath.Join(d, "data")
	for _, p := range []string{conf, spool, data} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := chownTo(data, "postfix"); err != nil {
		t.Fatal(err)
	}
	ca, snake := l.servers[0], l.servers[2]
	c := l.path("certs")
	// One listener per key exchange group: tls_eecdh_auto_curves is the
	// server's whole list of groups, TLS 1.3 included.
	var groupLines strings.Builder
	for _, g := range l.groupListenersOf("postfix") {
		fmt.Fprintf(&groupLines, "%s:%d inet n - n - - smtpd\n  -o tls_eecdh_auto_curves=%s\n", g.IP, l.port, g.Config)
	}
	main := fmt.Sprintf(`# mxsurvey realservers: private Postfix instance
compatibility_level = 3.6
queue_directory = %s
data_directory = %s
maillog_file = %s
maillog_file_prefixes = %s
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = smtp-out.real.test
mydomain = real.test
myorigin = $myhostname
mydestination =
mynetworks = 127.0.0.0/8
relay_domains =
alias_maps =
alias_database =
local_recipient_maps =
smtpd_banner = $myhostname ESMTP $mail_name
smtpd_peername_lookup = no
smtpd_relay_restrictions = reject
smtpd_recipient_restrictions = reject
smtpd_tls_security_level = may
smtpd_tls_chain_files = %s, %s, %s
smtpd_tls_loglevel = 1
default_transport = error
relay_transport = error
disable_dns_lookups = yes
`, spool, data, filepath.Join(d, "maillog"), d,
		filepath.Join(c, ca.Key+".key"), filepath.Join(c, ca.Key+".pem"), l.caFile)
	master := fmt.Sprintf(`# service type  private unpriv  chroot  wakeup  maxproc command + args
%s:%d inet n - n - - smtpd
%s:%d inet n - n - - smtpd
  -o myhostname=%s
  -o { smtpd_banner = $myhostname ESMTP $mail_name (Debian/GNU) }
  -o { smtpd_tls_chain_files = %s, %s }
%s:%d inet n - n - - smtpd
  -o { smtpd_tls_chain_files = %s, %s }
%s
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`, ca.IP, l.port, snake.IP, l.port, debianHost,
		filepath.Join(c, snake.Key+".key"), filepath.Join(c, snake.Key+".pem"),
		daneTAIP, l.port, filepath.Join(c, daneTAKey+".key"), l.certs[daneTAKey+"-chain"], groupLines.String())
	writeFile(t, filepath.Join(conf, "main.cf"), main, 0o644)
	writeFile(t, filepath.Join(conf, "master.cf"), master, 0o644)
	p := l.start(t, "postfix", l.tools.postfix, "-c", conf, "start-fg")
	// The master writes its pid file once it runs: adopt it, bounded.
	pidFile := filepath.Join(spool, "pid", "master.pid")
	var err error
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if err = p.adoptPostfixMaster(pidFile); err == nil {
			t.Logf("realservers: postfix master: pid %d", p.pid)
			return
		}
		select {
		case <-p.done:
			// postfix prints configuration errors only on a terminal: script(1) gives it one.
			out, _ := run(ctx, "", "script", "-qc", l.tools.postfix+" -c "+conf+" check", "/dev/null")
			t.Fatalf("realservers: postfix exited at start; postfix check says:\n%s\n%s", out, l.logs())
		case <-ctx.Done():
			t.Fatalf("realservers: postfix master: %v", ctx.Err())
		default:
		}
	}
	t.Fatalf("realservers: postfix master never wrote %s: %v\n%s", pidFile, err, l.logs())
}

// --- Exim

// startExim runs one Exim daemon (exim -bdf: daemon, foreground) on two
// addresses: mx2 with Exim's default banner and a self-signed certificate,
// mx4 with a multi-line banner and the CA-signed wildcard certificate.
func (l *lab) startExim(ctx context.Context, t *testing.T) {
	t.Helper()
	d := l.path("exim")
	spool, logdir := filepath.Join(d, "spool"), filepath.Join(d, "log")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{spool, logdir} {
		if err := os.MkdirAll(p, 0o750); err != nil {
			t.Fatal(err)
		}
		if err := chownTo(p, "Debian-exim"); err != nil {
			t.Fatal(err)
		}
	}
	self, multi := l.servers[1], l.servers[3]
	c := l.path("certs")
	// One more address per key exchange group, with a GnuTLS priority
	// string naming that group only; on the other addresses the lookup
	// finds nothing, and an empty tls_require_ciphers is GnuTLS's default.
	interfaces := fmt.Sprintf("%s.%d : %s.%d", self.IP, l.port, multi.IP, l.port)
	var priorities strings.Builder
	for _, g := range l.groupListenersOf("exim") {
		interfaces += fmt.Sprintf(" : %s.%d", g.IP, l.port)
		fmt.Fprintf(&priorities, "%s: %s\n", g.IP, g.Config)
	}
	groupsFile := filepath.Join(d, "tls-groups")
	writeFile(t, groupsFile, priorities.String(), 0o644)
	// Exim's compiled-in default banner, as Debian ships it (exim4.conf.template
	// leaves smtp_banner unset): "$smtp_active_hostname ESMTP Exim $version_number $tod_full".
	conf := fmt.Sprintf(`# mxsurvey realservers: private Exim configuration
exim_path = %s
primary_hostname = %s
spool_directory = %s
log_file_path = %s/%%slog
exim_user = Debian-exim
exim_group = Debian-exim
never_users = root
keep_environment =
local_interfaces = %s
host_lookup =
rfc1413_hosts =
helo_lookup_domains =
tls_advertise_hosts = *
tls_require_ciphers = ${lookup{$received_ip_address}lsearch{%s}}
tls_certificate = ${if eq{$received_ip_address}{%s}{%s}{%s}}
tls_privatekey = ${if eq{$received_ip_address}{%s}{%s}{%s}}
smtp_banner = ${if eq{$received_ip_address}{%s}{%s}{$smtp_active_hostname ESMTP Exim $version_number $tod_full}}
acl_smtp_rcpt = acl_check_rcpt

begin acl
acl_check_rcpt:
  deny message = relay not permitted

begin routers
begin transports
`, l.tools.exim, self.MX, spool, logdir,
		interfaces, groupsFile,
		multi.IP, filepath.Join(c, multi.Key+"-chain.pem"), filepath.Join(c, self.Key+".pem"),
		multi.IP, filepath.Join(c, multi.Key+".key"), filepath.Join(c, self.Key+".key"),
		multi.IP, eximMultiBanner)
	cf := filepath.Join(d, "exim.conf")
	writeFile(t, cf, conf, 0o644)
	if out, err := run(ctx, "", l.tools.exim, "-C", cf, "-bV"); err != nil {
		t.Fatalf("realservers: exim -bV: %v\n%s", err, out)
	}
	l.start(t, "exim", l.tools.exim, "-C", cf, "-bdf")
}

// --- Waits

// waitGreeting dials until the server sends a complete 220 greeting.
func waitGreeting(ctx context.Context, ip string, port int) error {
	var last error
	for {
		c, err := dialCtx(ctx, ip, port)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(3 * time.Second))
			var lines []string
			lines, err = readReply(bufio.NewReader(c))
			c.Close()
			if err == nil && len(lines) > 0 && strings.HasPrefix(lines[0], "220") {
				return nil
			}
			if err == nil {
				err = fmt.Errorf("greeting %q", lines)
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func dialCtx(ctx context.Context, ip string, port int) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var d net.Dialer
	return d.DialContext(dctx, "tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
}

// waitDNS sends a bare DNS A query over UDP until the server answers.
func waitDNS(ctx context.Context, ip string, port int, name string) error {
	q := dnsQuery(0x5a5a, name, 1)
	var last error
	for {
		c, err := net.Dial("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(250 * time.Millisecond))
			if _, err = c.Write(q); err == nil {
				buf := make([]byte, 512)
				var n int
				n, err = c.Read(buf)
				if err == nil && n >= 12 && buf[0] == 0x5a && buf[1] == 0x5a && buf[3]&0x0f == 0 && buf[7] > 0 {
					c.Close()
					return nil
				}
				if err == nil {
					err = fmt.Errorf("reply without answer (%d bytes, rcode %d)", n, buf[3]&0x0f)
				}
			}
			c.Close()
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// dnsQuery builds a minimal DNS query (RFC 1035 §4.1) by hand, so that the
// wait does not depend on the DNS library the scanner uses.
func dnsQuery(id uint16, name string, qtype uint16) []byte {
	b := []byte{byte(id >> 8), byte(id), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
	if name = strings.TrimSuffix(name, "."); name != "" { // "" is the root
		for _, label := range strings.Split(name, ".") {
			b = append(b, byte(len(label)))
			b = append(b, label...)
		}
	}
	return append(b, 0, byte(qtype>>8), byte(qtype), 0, 1)
}
