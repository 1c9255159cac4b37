package resolve

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// behaviour makes the fake server misbehave for one name ("name.") or one
// question ("name. TYPE").
type behaviour struct {
	rcode    int           // reply with this RCODE and no records
	drop     bool          // never reply
	dropUDP  bool          // never reply over UDP (a firewall dropping UDP)
	truncUDP bool          // over UDP, reply with TC set and no records
	wrongQ   bool          // reply to a different question name
	wrongID  bool          // reply with another message ID
	noFollow bool          // stop the answer at the first CNAME, as some resolvers do
	delay    time.Duration // wait before replying
	// DNSSEC, as a validating resolver answers (keyed by name only):
	secure bool // the name validates: AD=1 when every name of the answer's chain is secure and the query has DO
	bogus  bool // the name does not validate: SERVFAIL, unless the query has CD
}

// fakeDNS is an in-process recursive resolver on 127.0.0.1 (UDP and TCP on
// one port) answering from a map of records, like a resolver that has the
// whole chain in cache: CNAMEs are chased within the answer.
type fakeDNS struct {
	addr string

	mu      sync.Mutex
	zone    map[string][]dns.RR // canonical owner name -> records
	special map[string]behaviour
	counts  map[string]int // "name. TYPE" and "tcp name. TYPE" -> queries seen
	peers   map[string]int // client address -> queries seen from it
	synth   func(name string, qtype uint16) []dns.RR
}

func newFakeDNS(t testing.TB, records []string, special map[string]behaviour, synth func(string, uint16) []dns.RR) *fakeDNS {
	t.Helper()
	f := &fakeDNS{zone: map[string][]dns.RR{}, special: special, counts: map[string]int{}, peers: map[string]int{}, synth: synth}
	if f.special == nil {
		f.special = map[string]behaviour{}
	}
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatalf("record %q: %v", s, err)
		}
		owner := dns.CanonicalName(rr.Header().Name)
		f.zone[owner] = append(f.zone[owner], rr)
	}
	var pc net.PacketConn
	var ln net.Listener
	for i := 0; i < 20 && ln == nil; i++ {
		p, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", p.LocalAddr().String())
		if err != nil {
			p.Close() // the port is taken for TCP: try another
			continue
		}
		pc, ln = p, l
		// Hundreds of queries at once must not overflow the default buffer:
		// a dropped one would cost a test its timeout.
		_ = p.(*net.UDPConn).SetReadBuffer(4 << 20)
	}
	if ln == nil {
		t.Fatal("no port free for both UDP and TCP")
	}
	f.addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: f}, {Listener: ln, Handler: f}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		// Shutdown makes ActivateAndServe return nil; any other failure
		// shows up as the test's queries timing out.
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return f
}

func (f *fakeDNS) count(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[key]
}

func (f *fakeDNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		return
	}
	q := req.Question[0]
	name := dns.CanonicalName(q.Name)
	key := name + " " + dns.TypeToString[q.Qtype]
	tcp := w.LocalAddr().Network() == "tcp"

	f.mu.Lock()
	f.counts[key]++
	f.peers[w.RemoteAddr().String()]++
	if tcp {
		f.counts["tcp "+key]++
	}
	if req.CheckingDisabled {
		f.counts["cd "+key]++
	}
	if o := req.IsEdns0(); o != nil && o.Do() {
		f.counts["do "+key]++
	}
	b, ok := f.special[key]
	if !ok {
		b = f.special[name]
	}
	f.mu.Unlock()

	if b.delay > 0 {
		time.Sleep(b.delay)
	}
	if b.drop || (b.dropUDP && !tcp) {
		return
	}
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	switch {
	case b.rcode != 0:
		m.Rcode = b.rcode
	case b.truncUDP && !tcp:
		m.Truncated = true
	case f.isBogus(name) && !req.CheckingDisabled:
		m.Rcode = dns.RcodeServerFailure
	default:
		m.Answer, m.Rcode = f.answer(name, q.Qtype, b.noFollow)
		if o := req.IsEdns0(); o != nil && o.Do() && !req.CheckingDisabled {
			m.AuthenticatedData = f.chainSecure(name, m.Answer)
		}
	}
	if b.wrongQ {
		m.Question[0].Name = "wrong." + name
	}
	if b.wrongID {
		m.Id ^= 0x5a5a
	}
	if !tcp {
		size := dns.MinMsgSize
		if o := req.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		m.Truncate(size)
	} else {
		m.Truncate(dns.MaxMsgSize) // as a server must: a TCP message is at most 64 KiB (RFC 1035 §4.2.2)
	}
	_ = w.WriteMsg(m) // a failed write is the client's timeout to report
}

func (f *fakeDNS) isBogus(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.special[name].bogus
}

// chainSecure reports whether name and every CNAME target of the answer
// validate, as a validating resolver decides AD for a chain.
func (f *fakeDNS) chainSecure(name string, answer []dns.RR) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.special[name].secure {
		return false
	}
	for _, rr := range answer {
		if c, ok := rr.(*dns.CNAME); ok && !f.special[dns.CanonicalName(c.Target)].secure {
			return false
		}
	}
	return true
}

// answer chases CNAMEs like a recursive resolver: NXDOMAIN when the name
// (or the chain's target) has no records at all.
func (f *fakeDNS) answer(name string, qtype uint16, noFollow bool) ([]dns.RR, int) {
	var out []dns.RR
	cur := name
	for hop := 0; hop < 16; hop++ {
		rrs := f.zone[cur]
		if f.synth != nil && len(rrs) == 0 {
			rrs = f.synth(cur, qtype)
		}
		if len(rrs) == 0 {
			return out, dns.RcodeNameError
		}
		var next string
		found := false
		for _, rr := range rrs {
			if rr.Header().Rrtype == qtype {
				out = append(out, rr)
				found = true
			} else if c, ok := rr.(*dns.CNAME); ok {
				out = append(out, rr)
				next = c.Target
			}
		}
		if found || next == "" || noFollow {
			break
		}
		cur = dns.CanonicalName(next)
	}
	return out, dns.RcodeSuccess
}

// benchSynth answers the benchmark's names without a table: "cN.bench.test"
// shares one MX host, "uN.bench.test" has its own.
func benchSynth(name string, qtype uint16) []dns.RR {
	if !strings.HasSuffix(name, ".bench.test.") {
		return nil
	}
	hdr := dns.RR_Header{Name: name, Rrtype: qtype, Class: dns.ClassINET, Ttl: 300}
	switch {
	case strings.HasPrefix(name, "mx"):
		if qtype == dns.TypeA {
			return []dns.RR{&dns.A{Hdr: hdr, A: net.IPv4(192, 0, 2, 25)}}
		}
		hdr.Rrtype = dns.TypeTXT
		return []dns.RR{&dns.TXT{Hdr: hdr, Txt: []string{"no aaaa"}}}
	case qtype == dns.TypeMX && strings.HasPrefix(name, "c"):
		return []dns.RR{&dns.MX{Hdr: hdr, Preference: 10, Mx: "mx.shared.bench.test."}}
	case qtype == dns.TypeMX && strings.HasPrefix(name, "u"):
		return []dns.RR{&dns.MX{Hdr: hdr, Preference: 10, Mx: "mx-" + name}}
	}
	return nil
}

func benchName(prefix string, i int) string {
	return fmt.Sprintf("%s%d.bench.test", prefix, i)
}
