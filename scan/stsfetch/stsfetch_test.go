package stsfetch

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/scan/guard"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
)

const policy = "version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 86400\r\n"

// testCert makes a CA and a leaf for names, so the chain recorded has two
// certificates in a known order.
func testCert(t *testing.T, names ...string) (tls.Certificate, [][]byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	chain := [][]byte{leafDER, caDER}
	return tls.Certificate{Certificate: chain, PrivateKey: key}, chain
}

// server accepts on 127.0.0.1 and hands each connection to serve; it counts
// connections and remembers the SNI of TLS ones.
type server struct {
	ln       net.Listener
	port     int
	accepted atomic.Int64
	mu       sync.Mutex
	sni      []string
	requests []*http.Request
}

func startServer(t *testing.T, serve func(s *server, c net.Conn)) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: ln, port: ln.Addr().(*net.TCPAddr).Port}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second)) // a test server must end too
				serve(s, c)
			})
		}
	})
	return s
}

// tlsServe wraps serve in a TLS handshake with cert.
func tlsServe(cert tls.Certificate, serve func(s *server, c *tls.Conn)) func(*server, net.Conn) {
	return func(s *server, raw net.Conn) {
		c := tls.Server(raw, &tls.Config{Certificates: []tls.Certificate{cert},
			GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
				s.mu.Lock()
				s.sni = append(s.sni, h.ServerName)
				s.mu.Unlock()
				return nil, nil
			}})
		if err := c.Handshake(); err != nil {
			return
		}
		serve(s, c)
	}
}

// httpServe reads one request and writes resp as raw bytes.
func httpServe(resp func(req *http.Request) []byte) func(*server, *tls.Conn) {
	return func(s *server, c *tls.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		s.mu.Lock()
		s.requests = append(s.requests, req)
		s.mu.Unlock()
		c.Write(resp(req))
	}
}

func response(status string, headers string, body []byte) []byte {
	return append([]byte(fmt.Sprintf("HTTP/1.1 %s\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n", status, headers, len(body))), body...)
}

// hosts is a map resolver: mta-sts.<domain> -> its lookup.
type hosts map[string]resolve.Host

func (h hosts) LookupHost(_ context.Context, name string) resolve.Host {
	if v, ok := h[name]; ok {
		v.Name = name
		return v
	}
	return resolve.Host{Name: name, Status: survey.DNSNXDomain, Error: "A " + name + ": NXDOMAIN"}
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func at(addrs ...string) resolve.Host {
	h := resolve.Host{Status: survey.DNSOK}
	for _, a := range addrs {
		h.Addrs = append(h.Addrs, netip.MustParseAddr(a))
	}
	return h
}

func fetcher(t *testing.T, port int, r Resolver, tweak func(*Config)) *Fetcher {
	t.Helper()
	cfg := Config{Port: port, Timeout: 5 * time.Second, StepTimeout: time.Second, UserAgent: "mxsurvey-test (scanner.test)",
		Guard: guard.New(loopback, nil)}
	if tweak != nil {
		tweak(&cfg)
	}
	f, err := New(cfg, r)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFetch(t *testing.T) {
	cert, chain := testCert(t, "mta-sts.example.test")
	tests := []struct {
		name  string
		serve func(*server, net.Conn)
		check func(t *testing.T, s *server, row *survey.PolicyRow)
		class string
		errIs string // in sts_error
		took  time.Duration
	}{
		{name: "valid policy", serve: tlsServe(cert, httpServe(func(*http.Request) []byte {
			return response("200 OK", "Content-Type: text/plain; charset=utf-8\r\n", []byte(policy))
		})), check: func(t *testing.T, s *server, row *survey.PolicyRow) {
			if row.STSHTTPStatus != 200 || row.STSContentType != "text/plain; charset=utf-8" || string(row.STSBody) != policy ||
				row.STSBodyLen != int64(len(policy)) || row.STSBodyTruncated || row.STSLocation != "" {
				t.Errorf("row = %+v", row)
			}
			if len(row.STSCertChain) != 2 || !bytes.Equal(row.STSCertChain[0], chain[0]) || !bytes.Equal(row.STSCertChain[1], chain[1]) {
				t.Errorf("chain not recorded as sent: %d certificates", len(row.STSCertChain))
			}
			if row.STSTLSVersion != "TLS 1.3" {
				t.Errorf("tls version %q", row.STSTLSVersion)
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			req := s.requests[0]
			if s.sni[0] != "mta-sts.example.test" || req.Host != fmt.Sprintf("mta-sts.example.test:%d", s.port) || req.URL.Path != WellKnownPath ||
				req.Method != "GET" || req.Proto != "HTTP/1.1" || req.UserAgent() != "mxsurvey-test (scanner.test)" || req.Header.Get("Accept-Encoding") != "" {
				t.Errorf("request: sni %q host %q path %q %s %s ua %q ae %q", s.sni[0], req.Host, req.URL.Path, req.Method, req.Proto,
					req.UserAgent(), req.Header.Get("Accept-Encoding"))
			}
		}},
		{name: "redirect recorded, not followed", serve: tlsServe(cert, httpServe(func(*http.Request) []byte {
			return response("301 Moved Permanently", "Location: https://elsewhere.test/policy.txt\r\nContent-Type: text/html\r\n", []byte("moved"))
		})), check: func(t *testing.T, s *server, row *survey.PolicyRow) {
			if row.STSHTTPStatus != 301 || row.STSLocation != "https://elsewhere.test/policy.txt" || string(row.STSBody) != "moved" {
				t.Errorf("row = %+v", row)
			}
			if n := s.accepted.Load(); n != 1 {
				t.Errorf("%d connections: the redirect was followed", n)
			}
		}},
		{name: "1 MB policy: complete, kept capped", serve: tlsServe(cert, httpServe(func(*http.Request) []byte {
			return response("200 OK", "Content-Type: text/plain\r\n", bytes.Repeat([]byte("mx: a.example.test\n"), 1_000_000/19+1)[:1_000_000])
		})), check: func(t *testing.T, _ *server, row *survey.PolicyRow) {
			if row.STSBodyLen != 1_000_000 || len(row.STSBody) != MaxBodyKept || !row.STSBodyTruncated || row.STSHTTPStatus != 200 {
				t.Errorf("len %d kept %d truncated %v", row.STSBodyLen, len(row.STSBody), row.STSBodyTruncated)
			}
		}},
		{name: "2 MiB policy: reading stops at 1 MiB", serve: tlsServe(cert, httpServe(func(*http.Request) []byte {
			return response("200 OK", "Content-Type: text/plain\r\n", bytes.Repeat([]byte{'x'}, 2<<20))
		})), class: survey.ErrTooLarge, check: func(t *testing.T, _ *server, row *survey.PolicyRow) {
			if row.STSBodyLen != MaxBodyRead || len(row.STSBody) != MaxBodyKept || !row.STSBodyTruncated || row.STSHTTPStatus != 200 {
				t.Errorf("len %d kept %d truncated %v", row.STSBodyLen, len(row.STSBody), row.STSBodyTruncated)
			}
		}},
		{name: "endless headers", serve: tlsServe(cert, func(_ *server, c *tls.Conn) {
			http.ReadRequest(bufio.NewReader(c))
			c.Write([]byte("HTTP/1.1 200 OK\r\n"))
			for range 10_000 {
				if _, err := c.Write([]byte("X-Filler: " + strings.Repeat("y", 100) + "\r\n")); err != nil {
					return
				}
			}
		}), class: survey.ErrTooLarge},
		{name: "non-UTF-8 policy kept as bytes", serve: tlsServe(cert, httpServe(func(*http.Request) []byte {
			return response("200 OK", "Content-Type: text/plain; charset=latin1\r\n", []byte("version: STSv1\r\nmode: caf\xe9\xff\x00\r\n"))
		})), check: func(t *testing.T, _ *server, row *survey.PolicyRow) {
			if string(row.STSBody) != "version: STSv1\r\nmode: caf\xe9\xff\x00\r\n" {
				t.Errorf("body %q", row.STSBody)
			}
		}},
		{name: "silent before TLS", serve: func(_ *server, c net.Conn) { io.Copy(io.Discard, c) },
			class: survey.ErrTimeout, took: 3 * time.Second},
		{name: "silent after TLS", serve: tlsServe(cert, func(_ *server, c *tls.Conn) { io.Copy(io.Discard, c) }),
			class: survey.ErrTimeout, took: 3 * time.Second, check: func(t *testing.T, _ *server, row *survey.PolicyRow) {
				if len(row.STSCertChain) != 2 || row.STSHTTPStatus != 0 {
					t.Errorf("chain %d, status %d", len(row.STSCertChain), row.STSHTTPStatus)
				}
			}},
		{name: "reset", serve: func(_ *server, c net.Conn) {
			c.Read(make([]byte, 1))
			c.(*net.TCPConn).SetLinger(0) // close with RST
		}, class: survey.ErrReset},
		{name: "closed without a response", serve: tlsServe(cert, func(_ *server, c *tls.Conn) {
			http.ReadRequest(bufio.NewReader(c))
		}), class: survey.ErrClosed},
		{name: "TLS alert", serve: func(s *server, raw net.Conn) {
			c := tls.Server(raw, &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
				return nil, errors.New("no certificate for this name")
			}})
			c.Handshake()
		}, class: survey.ErrTLSAlert},
		{name: "not TLS", serve: func(_ *server, c net.Conn) { c.Write([]byte("220 mx.example.test ESMTP\r\n")) }, class: survey.ErrTLSOther},
		{name: "not HTTP", serve: tlsServe(cert, func(_ *server, c *tls.Conn) {
			http.ReadRequest(bufio.NewReader(c))
			c.Write([]byte("220 mx.example.test ESMTP\r\n"))
			io.Copy(io.Discard, c)
		}), class: survey.ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, tt.serve)
			f := fetcher(t, s.port, hosts{"mta-sts.example.test": at("127.0.0.1")}, nil)
			var row survey.PolicyRow
			t0 := time.Now()
			f.Fetch(context.Background(), "example.test", &row)
			took := time.Since(t0)
			t.Logf("class %q: %s", row.STSErrorClass, row.STSError)
			if row.STSErrorClass != tt.class || !row.STSFetched || row.STSIP != "127.0.0.1" ||
				row.STSURL != fmt.Sprintf("https://mta-sts.example.test:%d/.well-known/mta-sts.txt", s.port) {
				t.Errorf("class %q (%s), fetched %v, ip %q, url %q; want class %q", row.STSErrorClass, row.STSError, row.STSFetched, row.STSIP, row.STSURL, tt.class)
			}
			if tt.took == 0 {
				tt.took = 2 * time.Second
			}
			if took > tt.took || row.STSDurationMS > took.Milliseconds()+1 || row.STSStartedAt.Before(t0.Add(-time.Millisecond)) {
				t.Errorf("took %v (duration_ms %d), want at most %v", took, row.STSDurationMS, tt.took)
			}
			if tt.check != nil {
				tt.check(t, s, &row)
			}
		})
	}
}

// The address lookup decides before any connection: no address, a failed
// lookup, only addresses that must not be contacted.
func TestFetchAddress(t *testing.T) {
	s := startServer(t, func(*server, net.Conn) {})
	r := hosts{
		"mta-sts.noaddr.test":   {Status: survey.DNSNoAddr, Error: "no A or AAAA records"},
		"mta-sts.servfail.test": {Status: survey.DNSServfail, Error: "A mta-sts.servfail.test: SERVFAIL"},
		"mta-sts.blocked.test":  at("10.0.0.1", "169.254.169.254"),
		"mta-sts.v6only.test":   at("2001:db8::1"),
		"mta-sts.mixed.test":    at("2001:db8::1", "10.0.0.1"),
	}
	for _, tt := range []struct {
		domain, class, ip string
	}{
		{"nx.test", survey.ErrNoAddress, ""},
		{"noaddr.test", survey.ErrNoAddress, ""},
		{"servfail.test", survey.ErrDNS, ""},
		{"blocked.test", survey.ErrBlocked, "10.0.0.1"},
		{"v6only.test", survey.ErrIPv6Disabled, "2001:db8::1"},
		{"mixed.test", survey.ErrBlocked, "10.0.0.1"},
	} {
		var row survey.PolicyRow
		fetcher(t, s.port, r, nil).Fetch(context.Background(), tt.domain, &row)
		if row.STSErrorClass != tt.class || row.STSIP != tt.ip || row.STSError == "" || !row.STSFetched {
			t.Errorf("%s: class %q ip %q (%s), want %q %q", tt.domain, row.STSErrorClass, row.STSIP, row.STSError, tt.class, tt.ip)
		}
	}
	// Loopback itself is special-purpose: without -allow it is not contacted.
	var row survey.PolicyRow
	fetcher(t, s.port, hosts{"mta-sts.example.test": at("127.0.0.1")}, func(c *Config) { c.Guard = guard.New(nil, nil) }).
		Fetch(context.Background(), "example.test", &row)
	if row.STSErrorClass != survey.ErrBlocked {
		t.Errorf("loopback without allow: %q", row.STSErrorClass)
	}
	if n := s.accepted.Load(); n != 0 {
		t.Errorf("%d connections to a server that must not be contacted", n)
	}
}

// An interrupted scan ends a fetch at once, as canceled; the port shows in
// the URL only when it is not 443.
func TestFetchCanceledAndURL(t *testing.T) {
	s := startServer(t, func(_ *server, c net.Conn) { io.Copy(io.Discard, c) })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	var row survey.PolicyRow
	t0 := time.Now()
	fetcher(t, s.port, hosts{"mta-sts.example.test": at("127.0.0.1")}, func(c *Config) { c.StepTimeout = 5 * time.Second }).
		Fetch(ctx, "example.test", &row)
	if row.STSErrorClass != survey.ErrCanceled || time.Since(t0) > 2*time.Second {
		t.Errorf("canceled fetch: class %q after %v", row.STSErrorClass, time.Since(t0))
	}
	if got := URL("example.com", 443); got != "https://mta-sts.example.com/.well-known/mta-sts.txt" {
		t.Errorf("URL = %q", got)
	}
}
