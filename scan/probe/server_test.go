package probe

import (
	"bufio"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// script is what a test SMTP server does. Replies are raw bytes, CRLFs
// included, so tests control exactly what the prober receives.
type script struct {
	greeting    string // sent on connect
	silent      bool   // send nothing; wait for the client to go
	closeAtOnce bool   // close as soon as the connection is accepted
	tarpit      bool   // send the greeting one byte every 300ms
	ehlo, helo  string // replies to EHLO and HELO before TLS
	starttls    string // reply to STARTTLS
	after220    string // plain text sent with the STARTTLS reply instead of a handshake
	stall       bool   // after the STARTTLS reply, do nothing
	tls         *tls.Config
	postEHLO    string // reply to EHLO over TLS
}

// testServer is a scripted SMTP server on a loopback address. It records the
// command lines it receives (prefixed "tls:" after STARTTLS) and the TLS
// state it negotiated: the server's view is the truth a row is checked
// against.
type testServer struct {
	sc   script
	ln   net.Listener
	addr netip.AddrPort
	done chan struct{} // one value per finished connection

	mu         sync.Mutex
	transcript []string
	state      *tls.ConnectionState
	conns      []net.Conn
}

func newServer(t testing.TB, ip string, sc script) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{sc: sc, ln: ln, addr: ln.Addr().(*net.TCPAddr).AddrPort(), done: make(chan struct{}, 16)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // listener closed by cleanup
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { s.done <- struct{}{} }()
				defer c.Close()
				s.handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		wg.Wait()
	})
	return s
}

// wait blocks until n connections have finished, so the transcript is whole.
func (s *testServer) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			t.Fatal("server connection did not finish")
		}
	}
}

func (s *testServer) log(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.transcript = append(s.transcript, line)
}

func (s *testServer) view() ([]string, *tls.ConnectionState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.transcript...), s.state
}

// drain reads until the client goes and reports it on the returned channel.
func drain(r io.Reader) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, r) // ends when the client closes
		close(ch)
	}()
	return ch
}

func (s *testServer) handle(c net.Conn) {
	sc := s.sc
	switch {
	case sc.closeAtOnce:
		return
	case sc.silent:
		<-drain(c)
		return
	case sc.tarpit:
		gone := drain(c)
		for i := 0; i < len(sc.greeting); i++ {
			select {
			case <-gone:
				return
			case <-time.After(300 * time.Millisecond):
			}
			if _, err := c.Write([]byte{sc.greeting[i]}); err != nil {
				return
			}
		}
		<-gone
		return
	}
	if _, err := io.WriteString(c, sc.greeting); err != nil {
		return
	}
	var (
		w      io.Writer = c
		br               = bufio.NewReader(c)
		prefix           = ""
	)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		s.log(prefix + line)
		verb, _, _ := strings.Cut(line, " ")
		var reply string
		switch strings.ToUpper(verb) {
		case "EHLO":
			reply = sc.ehlo
			if prefix != "" {
				reply = sc.postEHLO
			}
		case "HELO":
			reply = sc.helo
		case "QUIT":
			_, _ = io.WriteString(w, "221 2.0.0 bye\r\n") // the client may be gone
			return
		case "STARTTLS":
			if _, err := io.WriteString(w, sc.starttls+sc.after220); err != nil {
				return
			}
			if !strings.HasPrefix(sc.starttls, "220") {
				continue
			}
			if sc.after220 != "" || sc.stall || sc.tls == nil {
				<-drain(br)
				return
			}
			tc := tls.Server(c, sc.tls)
			if err := tc.Handshake(); err != nil {
				return
			}
			st := tc.ConnectionState()
			s.mu.Lock()
			s.state = &st
			s.mu.Unlock()
			w, br, prefix = tc, bufio.NewReader(tc), "tls:"
			continue
		default:
			reply = "502 5.5.2 unknown command\r\n"
		}
		if _, err := io.WriteString(w, reply); err != nil {
			return
		}
	}
}

// pki holds the certificates of the tests, made once: RSA key generation is
// slow under -race.
type pki struct {
	caDER     []byte
	rsaChain  tls.Certificate // RSA-2048 leaf for mx.example.test, signed by the CA, CA included
	selfEC    tls.Certificate // ECDSA P-384, self-signed, not a CA, SHA-384
	ed        tls.Certificate // Ed25519 leaf signed by the CA, CA included
	garbage   tls.Certificate // a leaf that is not DER at all, CA included
	notBefore time.Time
	notAfter  time.Time
}

var (
	pkiOnce sync.Once
	pkiVal  *pki
	pkiErr  error
)

func testPKI(t testing.TB) *pki {
	t.Helper()
	pkiOnce.Do(func() { pkiVal, pkiErr = makePKI() })
	if pkiErr != nil {
		t.Fatal(pkiErr)
	}
	return pkiVal
}

func makePKI() (*pki, error) {
	p := &pki{
		notBefore: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC),
		notAfter:  time.Date(2034, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mxsurvey test CA", Organization: []string{"mxsurvey"}},
		NotBefore:             p.notBefore,
		NotAfter:              p.notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	p.caDER, err = x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(p.caDER)
	if err != nil {
		return nil, err
	}
	leaf := func(serial int64, cn string, dns []string, ips []string, pub crypto.PublicKey, priv crypto.Signer, parent *x509.Certificate, parentKey crypto.Signer) ([]byte, error) {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    p.notBefore,
			NotAfter:     p.notAfter,
			DNSNames:     dns,
			KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		for _, ip := range ips {
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
		}
		if parent == nil {
			parent, parentKey = tmpl, priv
		}
		return x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	}

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	der, err := leaf(2, "mx.example.test", []string{"mx.example.test", "MX2.Example.TEST."}, []string{"192.0.2.25"}, rsaKey.Public(), rsaKey, ca, caKey)
	if err != nil {
		return nil, err
	}
	p.rsaChain = tls.Certificate{Certificate: [][]byte{der, p.caDER}, PrivateKey: rsaKey}

	ecKey, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err = leaf(3, "localhost", nil, nil, ecKey.Public(), ecKey, nil, nil)
	if err != nil {
		return nil, err
	}
	p.selfEC = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: ecKey}

	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err = leaf(4, "ed.example.test", []string{"ed.example.test"}, nil, edKey.Public(), edKey, ca, caKey)
	if err != nil {
		return nil, err
	}
	p.ed = tls.Certificate{Certificate: [][]byte{der, p.caDER}, PrivateKey: edKey}

	gKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	p.garbage = tls.Certificate{Certificate: [][]byte{[]byte("\x30\x03not a certificate"), p.caDER}, PrivateKey: gKey}
	return p, nil
}

func serverTLS(cert tls.Certificate, minV, maxV uint16) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: minV, MaxVersion: maxV}
}
