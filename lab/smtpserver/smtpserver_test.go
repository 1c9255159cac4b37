package smtpserver

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/dsa"
	"crypto/ecdsa"
	"crypto/md5"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/lab/internal/labtest"
	"github.com/mxsurvey/mxsurvey/lab/pki"
	"github.com/mxsurvey/mxsurvey/lab/truth"
	"github.com/mxsurvey/mxsurvey/lab/world"
)

// fixture is an SMTP server for the world of labtest on a free port, its
// CA and its truth, shared by the tests of this package and closed by
// TestMain.
type fixture struct {
	SMTPPort int
	world    *world.World
	auth     *pki.Authority
	srv      *Server
}

var (
	shared      *fixture
	sharedTruth *truth.Truth
	sharedErr   error
	sharedOnce  sync.Once
)

func testServer(t *testing.T) (*fixture, *truth.Truth) {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedTruth, sharedErr = newFixture() })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared, sharedTruth
}

func newFixture() (*fixture, *truth.Truth, error) {
	// tcp4 on every address, as the lab listens: [::1] refuses (smtp_refused).
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		return nil, nil, err
	}
	f := &fixture{SMTPPort: ln.Addr().(*net.TCPAddr).Port}
	w, auth, tr, err := labtest.World(f.SMTPPort)
	if err != nil {
		ln.Close()
		return nil, nil, err
	}
	f.world, f.auth, f.srv = w, auth, Serve(w, auth, ln)
	return f, tr, nil
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.srv.Close()
	}
	os.Exit(code)
}

// smtpClient is the test's own minimal client: the lab's tests must not lean
// on the scanner's code either.
type smtpClient struct {
	c net.Conn
	r *bufio.Reader
}

func (s *smtpClient) reply(t *testing.T) (int, []string) {
	t.Helper()
	var lines []string
	for {
		s.c.SetReadDeadline(time.Now().Add(3 * time.Second))
		l, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v (after %q)", err, lines)
		}
		l = strings.TrimRight(l, "\r\n")
		lines = append(lines, l[4:])
		if len(l) < 4 || l[3] == ' ' {
			code, _ := strconv.Atoi(l[:3])
			return code, lines
		}
	}
}

func (s *smtpClient) cmd(t *testing.T, line string) (int, []string) {
	t.Helper()
	fmt.Fprintf(s.c, "%s\r\n", line)
	return s.reply(t)
}

func firstToken(s string) string { f, _, _ := strings.Cut(s, " "); return f }

// scanHost is the host a scan takes from a reply's first line (code
// stripped): its first token, lowercased, when it is a name with a dot or
// localhost (masks and dotless names are none).
func scanHost(line string) string {
	name := strings.ToLower(strings.TrimSuffix(firstToken(strings.TrimRight(line, "\r\n")), "."))
	if strings.Trim(name, "*") == "" {
		return ""
	}
	return world.SayHost(name)
}

// keyOf is the test's own reading of a certificate's key, as the dataset
// names it (cert_key_type, cert_key_bits).
func keyOf(c *x509.Certificate) (string, int32) {
	switch k := c.PublicKey.(type) {
	case *rsa.PublicKey:
		return "RSA", int32(k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA", int32(k.Curve.Params().BitSize)
	case *dsa.PublicKey:
		return "DSA", int32(k.P.BitLen())
	}
	return fmt.Sprintf("%T", c.PublicKey), 0
}

// selfSigned is the test's own reading of cert_self_signed: issuer ==
// subject, and the signature verifies under the certificate's own key. An
// MD5 signature is checked here, since crypto/x509 refuses to.
func selfSigned(c *x509.Certificate) bool {
	if !bytes.Equal(c.RawIssuer, c.RawSubject) {
		return false
	}
	if c.SignatureAlgorithm == x509.MD5WithRSA {
		pub, ok := c.PublicKey.(*rsa.PublicKey)
		sum := md5.Sum(c.RawTBSCertificate)
		return ok && rsa.VerifyPKCS1v15(pub, crypto.MD5, sum[:], c.Signature) == nil
	}
	return c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

// checkTarget runs one conversation against a target and holds every field
// the truth states against what the server sent.
func checkTarget(t *testing.T, l *fixture, h truth.Host, roots *x509.CertPool) {
	addr := net.JoinHostPort(h.IP, strconv.Itoa(l.SMTPPort))
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if h.Outcome == world.OutConnect {
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("%s: want refused, got %v", addr, err)
		}
		if err == nil {
			conn.Close()
		}
		return
	}
	if err != nil {
		t.Fatalf("%s: %v", addr, err)
	}
	defer conn.Close()
	s := &smtpClient{c: conn, r: bufio.NewReader(conn)}
	if h.Outcome == world.OutBanner && h.ErrorClass == world.ErrTimeout {
		conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		var ne net.Error
		if n, err := conn.Read(make([]byte, 10)); n != 0 || !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("%s silent: read %d, %v", h.MXHost, n, err)
		}
		return
	}
	code, lines := s.reply(t)
	if int32(code) != h.BannerCode || scanHost(lines[0]) != h.BannerHost {
		t.Errorf("%s banner %d %q, truth %d %q", h.MXHost, code, lines, h.BannerCode, h.BannerHost)
	}
	if h.Outcome == world.OutBanner {
		if code == 554 {
			if c, _ := s.cmd(t, "EHLO probe.test"); c != 503 {
				t.Errorf("after 554: EHLO got %d", c)
			}
			if c, _ := s.cmd(t, "QUIT"); c != 221 {
				t.Errorf("after 554: QUIT got %d", c)
			}
		}
		return
	}
	code, lines = s.cmd(t, "EHLO probe.test")
	verb := "EHLO"
	if code == 502 {
		verb = "HELO"
		code, lines = s.cmd(t, "HELO probe.test")
	}
	var ext []string
	for _, e := range lines[1:] {
		k, rest, found := strings.Cut(e, " ")
		if found {
			k += " " + rest
		}
		ext = append(ext, strings.ToUpper(k[:len(firstToken(k))])+k[len(firstToken(k)):])
	}
	if verb != h.EHLOVerb || int32(code) != h.EHLOCode || scanHost(lines[0]) != h.EHLOHost || !slices.Equal(ext, h.EHLOExtensions) {
		t.Errorf("%s %s %d %q, truth %s %d %q %q", h.MXHost, verb, code, lines, h.EHLOVerb, h.EHLOCode, h.EHLOHost, h.EHLOExtensions)
	}
	if slices.Contains(ext, "STARTTLS") != h.STARTTLSOffered {
		t.Errorf("%s: starttls offered mismatch", h.MXHost)
	}
	if !h.STARTTLSOffered {
		return
	}
	code, _ = s.cmd(t, "STARTTLS")
	if int32(code) != h.STARTTLSCode {
		t.Errorf("%s STARTTLS %d, truth %d", h.MXHost, code, h.STARTTLSCode)
	}
	if code != 220 {
		return
	}
	tc := tls.Client(conn, &tls.Config{ServerName: h.MXHost, InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("%s handshake: %v", h.MXHost, err)
	}
	st := tc.ConnectionState()
	leaf := st.PeerCertificates[0]
	if tls.VersionName(st.Version) != h.TLSVersion || world.GroupName(st.CurveID) != h.TLSGroup ||
		fmt.Sprintf("%x", sha256.Sum256(leaf.Raw)) != h.CertSHA256 ||
		leaf.Subject.CommonName != h.CertSubjectCN || !slices.Equal(leaf.DNSNames, h.CertSANDNS) ||
		len(st.PeerCertificates) != h.CertChainLen || leaf.Issuer.String() != h.CertIssuer {
		t.Errorf("%s: TLS %s %s cn %q san %q chain %d issuer %q; truth %+v", h.MXHost, tls.VersionName(st.Version), st.CurveID,
			leaf.Subject.CommonName, leaf.DNSNames, len(st.PeerCertificates), leaf.Issuer, h)
	}
	if kt, kb := keyOf(leaf); kt != h.CertKeyType || kb != h.CertKeyBits || selfSigned(leaf) != h.CertSelfSigned {
		t.Errorf("%s %v: key %s %d, self-signed %v; truth %s %d %v", h.MXHost, h.Cases, kt, kb, selfSigned(leaf),
			h.CertKeyType, h.CertKeyBits, h.CertSelfSigned)
	}
	// Independent oracles for the stated facts: crypto/x509's own chain and
	// hostname checks (whose wildcard rules agree with RFC 6125 on the
	// names the lab makes).
	inter := x509.NewCertPool()
	for _, c := range st.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, verr := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
	f := h.Facts
	if (verr == nil) != f.Trusted {
		t.Errorf("%s %v: trusted %v, x509 says %v", h.MXHost, h.Cases, f.Trusted, verr)
	}
	for name, want := range map[string]bool{h.MXHost: f.MatchMX, h.BannerHost: f.MatchBanner, h.EHLOHost: f.MatchEHLO, h.PostTLSEHLOHost: f.MatchPostTLSEHLO, h.PTRHost: f.MatchPTR} {
		ok := leaf.VerifyHostname(name) == nil
		if f.CNOnly {
			ok = name == leaf.Subject.CommonName // Go ignores the CN since 1.15; RFC 6125 uses it without SANs
		}
		if name != "" && ok != want {
			t.Errorf("%s %v: match %s stated %v", h.MXHost, h.Cases, name, want)
		}
	}
	s = &smtpClient{c: tc, r: bufio.NewReader(tc)}
	code, lines = s.cmd(t, "EHLO probe.test")
	if int32(code) != h.PostTLSEHLOCode || scanHost(lines[0]) != h.PostTLSEHLOHost || !slices.Equal(lines[1:], h.PostTLSEHLOExtensions) {
		t.Errorf("%s post-TLS EHLO %d %q, truth %+v", h.MXHost, code, lines, h)
	}
	if c, _ := s.cmd(t, "QUIT"); c != 221 {
		t.Errorf("QUIT %d", c)
	}
}

func TestSMTPCases(t *testing.T) {
	l, tr := testServer(t)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(l.auth.RootPEM())
	// Two targets per case label and dialect, so every background kind in
	// every dialect it occurs in.
	seen := map[string]int{}
	n := 0
	for _, h := range tr.Hosts {
		key := strings.Join(h.Cases, "/") + "/" + h.Dialect
		if seen[key] >= 2 || h.Outcome == world.OutSkipped {
			continue
		}
		seen[key]++
		n++
		if hostileConversation(h) {
			checkHostile(t, l, h)
			continue
		}
		checkTarget(t, l, h, roots)
		checkRawBanner(t, l, h)
	}
	t.Logf("checked %d targets over %d case labels", n, len(seen))
}

func TestListenerDispatch(t *testing.T) {
	l, tr := testServer(t)
	// Two addresses, one socket: each greets with its own name.
	banners := map[string]string{}
	for _, h := range tr.Hosts {
		if h.BannerCode == 220 && strings.HasPrefix(h.IP, "127.") && len(banners) < 5 {
			banners[h.IP] = h.BannerHost
		}
	}
	for ip, want := range banners {
		c, err := net.Dial("tcp", net.JoinHostPort(ip, strconv.Itoa(l.SMTPPort)))
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if got := scanHost(line[4:]); got != want {
			t.Errorf("%s greets %q, truth %q", ip, line, want)
		}
	}
	// An address the world does not use is closed without a greeting.
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(l.SMTPPort)))
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := c.Read(make([]byte, 10)); n != 0 || err == nil {
		t.Errorf("127.0.0.1: read %d %v, want EOF", n, err)
	}
	c.Close()
}
