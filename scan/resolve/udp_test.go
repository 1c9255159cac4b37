package resolve

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// Many lookups in flight share a few sockets, and each gets its own answer.
func TestUDPSharedSockets(t *testing.T) {
	srv := newFakeDNS(t, nil, nil, benchSynth)
	r, err := New(Config{Servers: []string{srv.addr}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var wg sync.WaitGroup
	for i := range 300 {
		wg.Go(func() {
			name := benchName("u", i)
			d := r.Resolve(context.Background(), name)
			if d.Status != survey.DNSOK || len(d.Hosts) != 1 || d.Hosts[0].Name != "mx-"+name {
				t.Errorf("%s: %+v", name, d)
			}
		})
	}
	wg.Wait()
	t.Logf("%+v", r.Stats())
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.peers) > udpSockets {
		t.Errorf("queries came from %d client sockets, want at most %d", len(srv.peers), udpSockets)
	}
}

// A reply carrying another ID is not the reply: the query times out, as the
// lab's dns_wrong_id truth says.
func TestUDPWrongIDTimesOut(t *testing.T) {
	srv := newFakeDNS(t, []string{"wrongid.test. MX 10 mx.wrongid.test."}, map[string]behaviour{"wrongid.test.": {wrongID: true}}, nil)
	r, err := New(Config{Servers: []string{srv.addr}, Timeout: 150 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if d := r.Resolve(context.Background(), "wrongid.test"); d.Status != survey.DNSTimeout {
		t.Errorf("Status = %q (%s), want timeout", d.Status, d.Error)
	}
	if s := r.Stats(); s.Timeouts != 1 {
		t.Errorf("stats = %+v, want 1 timeout", s)
	}
}

// Nothing listening at the server's address: the ICMP error fails the
// queries at once instead of after their timeout.
func TestUDPRefused(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	r, err := New(Config{Servers: []string{addr}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	start := time.Now()
	d := r.Resolve(context.Background(), "any.test")
	if d.Status != survey.DNSError || time.Since(start) > 2*time.Second {
		t.Errorf("Status = %q (%s) after %v, want error at once", d.Status, d.Error, time.Since(start))
	}
}

// Close ends lookups in flight.
func TestUDPClose(t *testing.T) {
	srv := newFakeDNS(t, nil, map[string]behaviour{"drop.test.": {drop: true}}, nil)
	r, err := New(Config{Servers: []string{srv.addr}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan Domain)
	go func() { done <- r.Resolve(context.Background(), "drop.test") }()
	for srv.count("drop.test. MX") == 0 {
		time.Sleep(5 * time.Millisecond)
	}
	r.Close()
	select {
	case d := <-done:
		if d.Status != survey.DNSError {
			t.Errorf("Status = %q (%s), want error", d.Status, d.Error)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Resolve still waiting after Close")
	}
}

// IDs are unique among the queries in flight on one socket.
func TestUDPIDsUnique(t *testing.T) {
	var s udpSocket
	s.conn, s.waiting = &net.UDPConn{}, map[uint16]*udpWaiter{}
	seen := map[uint16]bool{}
	for i := range 1000 {
		m := new(dns.Msg)
		m.SetQuestion("any.test.", dns.TypeMX)
		m.Id = 7 // every query asks for the same ID
		buf, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		send, err := s.register("unused", time.Minute, m, buf, &udpWaiter{ch: make(chan udpReply, 1)})
		if err != nil {
			t.Fatal(err)
		}
		if send != (i == 0) {
			t.Errorf("query %d: send = %v, want true only for the first, which sends those queued behind it", i, send)
		}
		if got := binary.BigEndian.Uint16(buf); got != m.Id {
			t.Fatalf("packed ID %d, message ID %d", got, m.Id)
		}
		if seen[m.Id] {
			t.Fatalf("ID %d handed out twice", m.Id)
		}
		seen[m.Id] = true
	}
	if len(s.queue) != 1000 || len(s.deadlines) != 1000 {
		t.Errorf("%d queries queued, %d deadlines, want 1000", len(s.queue), len(s.deadlines))
	}
	s.expiry.Stop()
}

func packed(t testing.TB, m *dns.Msg) []byte {
	t.Helper()
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The reader's view of a datagram: not a reply, a reply, or a reply that
// fails its query.
func TestParseReply(t *testing.T) {
	reply := new(dns.Msg)
	reply.SetQuestion("a.test.", dns.TypeMX)
	reply.Id, reply.Response = 0x1234, true
	reply.Answer = []dns.RR{&dns.MX{Hdr: dns.RR_Header{Name: "a.test.", Rrtype: dns.TypeMX, Class: dns.ClassINET, Ttl: 60}, Preference: 10, Mx: "mx.a.test."}}
	good := packed(t, reply)
	for _, tc := range []struct {
		name    string
		b       []byte
		ok      bool
		id      uint16
		wantErr bool
	}{
		{"empty", nil, false, 0, false},
		{"shorter than a header", good[:11], false, 0, false},
		{"reply", good, true, 0x1234, false},
		{"cut in its answer", good[:len(good)-3], true, 0x1234, true},
		{"header and garbage", append([]byte{0xab, 0xcd, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0}, "garbage"...), true, 0xabcd, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, rep, ok := parseReply(tc.b, "127.0.0.1:53")
			if ok != tc.ok || id != tc.id {
				t.Fatalf("id %#x ok %v, want %#x %v", id, ok, tc.id, tc.ok)
			}
			if !ok {
				return
			}
			if tc.wantErr {
				if rep.err == nil || rep.m != nil || !strings.Contains(rep.err.Error(), "unpacking reply from 127.0.0.1:53") {
					t.Errorf("reply %+v, want an unpacking error", rep)
				}
				return
			}
			if rep.err != nil || rep.m == nil || len(rep.m.Answer) != 1 {
				t.Errorf("reply %+v, want the message with its MX", rep)
			}
		})
	}
}

// Whatever the server sends, parseReply returns a message or an error for
// the ID the datagram carries, and never panics.
func FuzzParseReply(f *testing.F) {
	m := new(dns.Msg)
	m.SetQuestion("a.test.", dns.TypeTXT)
	m.Response = true
	m.Answer = []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: "a.test.", Rrtype: dns.TypeTXT, Class: dns.ClassINET}, Txt: []string{"v=STSv1; id=1"}}}
	f.Add(packed(f, m))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, rep, ok := parseReply(b, "server")
		if ok != (len(b) >= 12) {
			t.Fatalf("ok = %v for %d bytes", ok, len(b))
		}
		if !ok {
			return
		}
		if (rep.m == nil) == (rep.err == nil) {
			t.Fatalf("reply %+v: want a message or an error", rep)
		}
		if id != binary.BigEndian.Uint16(b) {
			t.Fatalf("id %#x, the datagram says %#x", id, binary.BigEndian.Uint16(b))
		}
	})
}

// plainDNS starts a server on a plain UDP socket at addr (skipping the
// test when the address is not available here) that calls reply for each
// query; send writes a datagram to the query's client. It returns the
// server's address.
func plainDNS(t *testing.T, addr string, reply func(q *dns.Msg, send func([]byte))) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Skipf("no %s here: %v", addr, err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:n]) != nil || len(q.Question) != 1 {
				continue
			}
			reply(q, func(b []byte) { _, _ = pc.WriteTo(b, from) })
		}
	}()
	return pc.LocalAddr().String()
}

// A server that answers each query with what the case says, over a plain
// socket: what reaches the query waiting on the shared socket.
func TestUDPBadReplies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		replies func(q *dns.Msg) [][]byte // datagrams sent back, in order
		want    string                    // "" for the reply, else a substring of the error
	}{
		{"reply", func(q *dns.Msg) [][]byte {
			return [][]byte{packed(t, new(dns.Msg).SetReply(q))}
		}, ""},
		{"runt then nothing", func(q *dns.Msg) [][]byte {
			return [][]byte{{byte(q.Id >> 8), byte(q.Id)}}
		}, "i/o timeout"},
		{"another ID, then the reply", func(q *dns.Msg) [][]byte {
			other := new(dns.Msg).SetReply(q)
			other.Id++
			return [][]byte{packed(t, other), packed(t, new(dns.Msg).SetReply(q))}
		}, ""},
		{"its ID and garbage", func(q *dns.Msg) [][]byte {
			return [][]byte{append([]byte{byte(q.Id >> 8), byte(q.Id), 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0}, "garbage"...)}
		}, "unpacking reply"},
	} {
		for _, addr := range []string{"127.0.0.1:0", "[::1]:0"} {
			t.Run(tc.name+" "+addr, func(t *testing.T) {
				srv := plainDNS(t, addr, func(q *dns.Msg, send func([]byte)) {
					for _, b := range tc.replies(q) {
						send(b)
					}
				})
				u := newUDPServer(srv, 300*time.Millisecond)
				defer u.close()
				q := new(dns.Msg).SetQuestion("a.test.", dns.TypeA)
				resp, err := u.exchange(context.Background(), q)
				switch {
				case tc.want == "" && (err != nil || resp.Id != q.Id):
					t.Errorf("reply %v, %v; want the reply", resp, err)
				case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
					t.Errorf("reply %v, %v; want an error with %q", resp, err, tc.want)
				}
			})
		}
	}
}

// The deadlines of a socket's queries: a query left unanswered ends at its
// timeout, not before and not much after; the deadline of a query answered
// already never ends a later query (a pooled waiter reused on the socket).
func TestUDPDeadlines(t *testing.T) {
	const timeout = 300 * time.Millisecond
	srv := plainDNS(t, "127.0.0.1:0", func(q *dns.Msg, send func([]byte)) {
		b := packed(t, new(dns.Msg).SetReply(q))
		switch {
		case strings.HasPrefix(q.Question[0].Name, "drop"):
		case strings.HasPrefix(q.Question[0].Name, "slow"):
			time.AfterFunc(timeout*7/10, func() { send(b) })
		default:
			send(b)
		}
	})
	u := newUDPServer(srv, timeout)
	defer u.close()
	ask := func(name string) (time.Duration, error) {
		start := time.Now()
		_, err := u.exchange(context.Background(), new(dns.Msg).SetQuestion(name, dns.TypeA))
		return time.Since(start), err
	}
	for range 2 * udpSockets {
		if _, err := ask("fast.test."); err != nil {
			t.Fatalf("fast query: %v", err)
		}
	}
	time.Sleep(timeout / 2) // the fast queries' deadlines pass while the slow ones wait
	var wg sync.WaitGroup
	for range 2 * udpSockets {
		wg.Go(func() {
			if took, err := ask("slow.test."); err != nil {
				t.Errorf("slow query, answered within its timeout: %v after %v", err, took)
			}
		})
		wg.Go(func() {
			took, err := ask("drop.test.")
			if !errors.Is(err, os.ErrDeadlineExceeded) || took < timeout || took > 2*timeout {
				t.Errorf("unanswered query: %v after %v, want a timeout after %v", err, took, timeout)
			}
		})
	}
	wg.Wait()
}
