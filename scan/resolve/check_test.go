package resolve

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// udpAndTCP binds a UDP socket and a TCP listener on one loopback port.
func udpAndTCP(t *testing.T) (net.PacketConn, net.Listener) {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close() // the port is taken for TCP: try another
			continue
		}
		t.Cleanup(func() { pc.Close(); ln.Close() })
		return pc, ln
	}
	t.Fatal("no port free for both UDP and TCP")
	return nil, nil
}

// serveTCP runs handle on every connection accepted by ln.
func serveTCP(ln net.Listener, handle func(net.Conn)) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
}

// freeUDPPort is a loopback UDP address nothing is bound to.
func freeUDPPort(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

func TestCheck(t *testing.T) {
	const (
		timeout     = 150 * time.Millisecond // per send; 3 sends (Retries 2)
		fastTimeout = 5 * time.Second
	)
	live := newFakeDNS(t, []string{"localhost. A 127.0.0.1"}, nil, nil)
	type result struct {
		ok   bool
		want []string // substrings of the error
		// fast: the verdict comes at once, not after waiting out a
		// silence that an ICMP error or a reply already explained. Such
		// cases run with a long timeout (fastTimeout), so a loaded machine
		// cannot pass for a slow check.
		fast bool
	}
	cases := []struct {
		name    string
		server  func(t *testing.T) string
		want    result
		retries int // Config.Retries: DefaultRetries (2) is 3 sends
	}{
		{"answers localhost", func(*testing.T) string { return live.addr }, result{ok: true, fast: true}, DefaultRetries},
		{"never answers . NS (cut off from the root)", func(t *testing.T) string {
			return newFakeDNS(t, []string{"localhost. A 127.0.0.1"}, map[string]behaviour{".": {drop: true}}, nil).addr
		}, result{ok: true, fast: true}, DefaultRetries},
		{"NXDOMAIN for localhost", func(t *testing.T) string { return newFakeDNS(t, nil, nil, nil).addr }, result{ok: true, fast: true}, DefaultRetries},
		{"SERVFAIL", func(t *testing.T) string {
			return newFakeDNS(t, nil, map[string]behaviour{"localhost.": {rcode: dns.RcodeServerFailure}}, nil).addr
		}, result{ok: true, fast: true}, DefaultRetries},
		{"REFUSED", func(t *testing.T) string {
			return newFakeDNS(t, nil, map[string]behaviour{"localhost.": {rcode: dns.RcodeRefused}}, nil).addr
		}, result{ok: true, fast: true}, DefaultRetries},
		// Two sends, 300ms: the reply to the second would come at 375ms,
		// so only the late reply to the first can pass the check.
		{"slow answer, after the first send's timeout", func(t *testing.T) string {
			return newFakeDNS(t, nil, map[string]behaviour{"localhost.": {delay: timeout + timeout/2}}, nil).addr
		}, result{ok: true}, 0},
		{"UDP port unreachable", freeUDPPort, result{want: []string{"does not answer", "nothing listens on its UDP port"}, fast: true}, DefaultRetries},
		{"UDP silent, TCP refused", func(t *testing.T) string {
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { pc.Close() })
			return pc.LocalAddr().String()
		}, result{want: []string{"does not answer", "UDP silent for 450ms", "TCP: dial tcp", "refused"}}, DefaultRetries},
		{"UDP dropped, TCP answers", func(t *testing.T) string {
			return newFakeDNS(t, nil, map[string]behaviour{"localhost.": {dropUDP: true}}, nil).addr
		}, result{want: []string{"answers over TCP but not over UDP"}}, DefaultRetries},
		{"silent on UDP and TCP: accepted", func(t *testing.T) string {
			return newFakeDNS(t, nil, map[string]behaviour{"localhost.": {drop: true}}, nil).addr
		}, result{ok: true}, DefaultRetries},
		{"UDP silent, SMTP on TCP", func(t *testing.T) string {
			pc, ln := udpAndTCP(t)
			serveTCP(ln, func(c net.Conn) {
				c.Write([]byte("220 mx.example.test ESMTP\r\n"))
				time.Sleep(2 * timeout) // an SMTP server waits for a command
			})
			return pc.LocalAddr().String()
		}, result{want: []string{"not a DNS reply"}}, DefaultRetries},
		{"UDP silent, TCP closes at once", func(t *testing.T) string {
			pc, ln := udpAndTCP(t)
			serveTCP(ln, func(net.Conn) {})
			return pc.LocalAddr().String()
		}, result{want: []string{"closed the connection without a reply"}}, DefaultRetries},
		{"UDP replies that are not DNS", func(t *testing.T) string {
			pc, _ := udpAndTCP(t)
			go func() {
				buf := make([]byte, 512)
				for {
					_, from, err := pc.ReadFrom(buf)
					if err != nil {
						return
					}
					pc.WriteTo([]byte("hello"), from)
				}
			}()
			return pc.LocalAddr().String()
		}, result{want: []string{"does not speak DNS over UDP"}, fast: true}, DefaultRetries},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			server := c.server(t)
			to := timeout
			if c.want.fast {
				to = fastTimeout
			}
			r, err := New(Config{Servers: []string{server}, Timeout: to, Retries: c.retries})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			err = r.Check(context.Background())
			took := time.Since(start)
			if c.want.ok != (err == nil) {
				t.Fatalf("Check = %v, want ok %v", err, c.want.ok)
			}
			if err != nil {
				for _, w := range append(c.want.want, server, "-resolver") {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
			}
			if c.want.fast && took >= fastTimeout/2 {
				t.Errorf("verdict after %v, want it long before one timeout (%v)", took, fastTimeout)
			}
		})
	}
}

// TestCheckEveryServer: the second of two servers is dead, and the error
// names it.
func TestCheckEveryServer(t *testing.T) {
	live := newFakeDNS(t, nil, nil, nil)
	dead := freeUDPPort(t)
	r, err := New(Config{Servers: []string{live.addr, dead}, Timeout: 200 * time.Millisecond, Retries: 0})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Check(context.Background()); err == nil || !strings.Contains(err.Error(), dead) {
		t.Fatalf("Check = %v, want an error naming %s", err, dead)
	}
	if n := live.count("localhost. A"); n != 1 {
		t.Errorf("the live server was asked %d times, want once", n)
	}
}

// TestCheckCanceled: an interrupt ends a check waiting on a silent server.
func TestCheckCanceled(t *testing.T) {
	silent := newFakeDNS(t, nil, map[string]behaviour{"localhost.": {drop: true}}, nil)
	r, err := New(Config{Servers: []string{silent.addr}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = r.Check(ctx)
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("Check = %v after %v, want an interrupted check at once", err, time.Since(start))
	}
}
