package pipeline

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fakeDNS answers from a zone given as RR strings, on UDP and TCP of one
// loopback port, and counts questions so tests can see what was (not) asked.
type fakeDNS struct {
	addr    string
	records map[string][]dns.RR // "name type" -> answer
	names   map[string]bool
	mu      sync.Mutex
	asked   map[string]int
	times   []time.Time // arrival of every query
}

func startDNS(t *testing.T, zone []string) *fakeDNS {
	t.Helper()
	f := &fakeDNS{records: map[string][]dns.RR{}, names: map[string]bool{}, asked: map[string]int{}}
	for _, s := range zone {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("bad test RR %q: %v", s, err)
		}
		k := strings.ToLower(rr.Header().Name) + " " + dns.TypeToString[rr.Header().Rrtype]
		f.records[k] = append(f.records[k], rr)
		f.names[strings.ToLower(rr.Header().Name)] = true
	}
	// UDP and TCP on the same port: a free UDP port may be taken for TCP,
	// so try a few.
	var pc net.PacketConn
	var l net.Listener
	for try := 0; l == nil; try++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		f.addr = pc.LocalAddr().String()
		if l, err = net.Listen("tcp", f.addr); err != nil {
			pc.Close()
			if try == 20 {
				t.Fatal(err)
			}
		}
	}
	udp := &dns.Server{PacketConn: pc, Handler: f}
	tcp := &dns.Server{Listener: l, Handler: f}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	return f
}

func (f *fakeDNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	k := name + " " + dns.TypeToString[q.Qtype]
	f.mu.Lock()
	f.asked[k]++
	f.times = append(f.times, time.Now())
	f.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	switch {
	case strings.HasPrefix(name, "servfail."):
		m.Rcode = dns.RcodeServerFailure
	case !f.names[name]:
		m.Rcode = dns.RcodeNameError
	default:
		m.Answer = f.records[k]
		if len(m.Answer) == 0 {
			m.Answer = f.records[name+" CNAME"] // a CNAME answers every type
		}
	}
	w.WriteMsg(m)
}

func (f *fakeDNS) count(name, qtype string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.asked[name+". "+qtype]
}

// smtpServer is a small well-behaved STARTTLS server on one 127.x address.
type smtpServer struct {
	ip       string
	port     int
	banner   string
	cert     tls.Certificate
	delay    time.Duration // before the greeting: lets tests interrupt mid-probe
	groups   []tls.CurveID // the key exchange groups the server accepts; nil: Go's default
	accepted atomic.Int64
}

func startSMTP(t *testing.T, ip string, port int, name string, delay time.Duration) *smtpServer {
	t.Helper()
	return serveSMTP(t, &smtpServer{ip: ip, port: port, delay: delay}, name)
}

// serveSMTP starts s, configured by the caller, on s.ip and s.port (0: any).
func serveSMTP(t *testing.T, s *smtpServer, name string) *smtpServer {
	t.Helper()
	s.banner, s.cert = "220 "+name+" ESMTP test", selfSigned(t, name)
	port := s.port
	l, err := net.Listen("tcp", net.JoinHostPort(s.ip, itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	if port == 0 {
		s.port = l.Addr().(*net.TCPAddr).Port
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			go s.serve(c, name, done)
		}
	}()
	return s
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }

func (s *smtpServer) serve(c net.Conn, name string, done chan struct{}) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	select {
	case <-time.After(s.delay):
	case <-done:
		return
	}
	var conn net.Conn = c
	br := bufio.NewReader(conn)
	w := func(s string) { conn.Write([]byte(s + "\r\n")) }
	w(s.banner)
	tlsOn := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		switch verb {
		case "EHLO":
			if tlsOn {
				w("250-" + name + " after tls\r\n250 SIZE 1000")
			} else {
				w("250-" + name + " hello\r\n250-PIPELINING\r\n250 STARTTLS")
			}
		case "STARTTLS":
			w("220 go ahead")
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{s.cert}, CurvePreferences: s.groups})
			if tc.Handshake() != nil {
				return
			}
			conn, br, tlsOn = tc, bufio.NewReader(tc), true
		case "QUIT":
			w("221 bye")
			return
		default:
			w("502 no")
		}
	}
}

func selfSigned(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
