package resolve

import (
	"context"
	"net"
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
	s.conn, s.waiting = &net.UDPConn{}, map[uint16]chan udpReply{}
	seen := map[uint16]bool{}
	for range 1000 {
		m := new(dns.Msg)
		m.Id = 7 // every query asks for the same ID
		if _, err := s.register("unused", m, make(chan udpReply, 1)); err != nil {
			t.Fatal(err)
		}
		if seen[m.Id] {
			t.Fatalf("ID %d handed out twice", m.Id)
		}
		seen[m.Id] = true
	}
}
