// Package dnsserver is the lab's authoritative DNS server (miekg/dns messages; UDP
// and TCP on one address): it answers for test. (RFC 2606) and the reverse
// zones of the lab's addresses from the world's zones (world.World.Lookup,
// world.World.PTR), and applies the DNS shapes of the case table that are
// about the answer rather than its records: no answer at all, SERVFAIL, a
// wrong message ID, a wrong question. It is authoritative (AA) and refuses
// everything outside its zones; RD is ignored. Over UDP an answer larger
// than 512 bytes (or the client's EDNS0 size) is truncated with TC (RFC
// 1035 4.2.1, RFC 6891 7); over TCP one larger than a DNS message can be
// (64 KiB, RFC 1035 4.2.2) keeps the records that fit.
//
// It answers as a validating resolver in front of it would (RFC 4035
// 3.2): the AD bit on an answer or denial all of whose data is secure
// (world.Sec), when the query has DO or AD (RFC 6840 5.7); SERVFAIL for
// bogus data, unless the query has CD, which gets the data without AD. It
// sends no RRSIG: a stub that reads AD (as mxsurvey does) needs none.
//
// Over UDP it reads and answers up to 32 queries per system call
// (recvmmsg, sendmmsg): the lab shares its cores with the scanner it
// serves, and the CPU it spends per query counts against the scan.
package dnsserver

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"

	"github.com/mxsurvey/mxsurvey/lab/pki"
	"github.com/mxsurvey/mxsurvey/lab/world"
)

// Server is a running DNS server.
type Server struct {
	Addr string // the bound address, UDP and TCP
	udp  *net.UDPConn
	tcp  *dns.Server
	wg   sync.WaitGroup // the UDP readers
}

// Start binds addr over UDP and TCP (port 0: one free port for both) and
// serves the world's zones until Close; auth makes the data of TLSA
// records.
func Start(addr string, w *world.World, auth *pki.Authority) (*Server, error) {
	var uc *net.UDPConn
	var tl net.Listener
	var err error
	// With port 0 the TCP listener must take the port UDP got; that port can
	// be taken over TCP already, so try a few.
	for try := 0; try < 10; try++ {
		var pc net.PacketConn
		pc, err = net.ListenPacket("udp", addr)
		if err != nil {
			return nil, fmt.Errorf("lab: dns: %w", err)
		}
		uc = pc.(*net.UDPConn)
		tl, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
		if _, port, _ := net.SplitHostPort(addr); port != "0" {
			return nil, fmt.Errorf("lab: dns: %w", err)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("lab: dns: %w", err)
	}
	// A resolver serving a survey runs with a large receive buffer (unbound's
	// so-rcvbuf): at Linux's default 208 KiB a few hundred queries arriving
	// together overflow it, and each lost one costs its client a timeout.
	_ = uc.SetReadBuffer(4 << 20) // capped at net.core.rmem_max; the default still serves
	h := &handler{w: w, auth: auth}
	s := &Server{
		Addr: uc.LocalAddr().String(),
		udp:  uc,
		tcp:  &dns.Server{Listener: tl, Handler: h, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second},
	}
	started := make(chan struct{})
	s.tcp.NotifyStartedFunc = func() { close(started) }
	go func() {
		_ = s.tcp.ActivateAndServe() // returns after Shutdown; a failure shows up as started never closing
	}()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		uc.Close()
		tl.Close()
		return nil, errors.New("lab: dns server did not start")
	}
	for range runtime.GOMAXPROCS(0) {
		s.wg.Go(func() { serveUDP(uc, h) })
	}
	return s, nil
}

// Close stops both servers.
func (s *Server) Close() error {
	err := s.udp.Close()
	s.wg.Wait()
	return errors.Join(err, s.tcp.Shutdown())
}

// udpBatch is how many datagrams serveUDP takes from the socket in one
// recvmmsg and answers in one sendmmsg. Under a survey's load hundreds of
// queries wait in the socket; a read and a write per query were half of
// the lab's DNS CPU, and the lab shares the cores with the scanner.
const udpBatch = 32

// serveUDP answers datagrams until the socket closes. A few of these
// readers share the socket, each answering the batch it read before reading
// the next: miekg/dns's server starts a goroutine per datagram, whose stack
// growth and out-of-band address handling were a third of the lab's DNS
// CPU, and the lab serves several queries per domain of a survey. A
// datagram that is not a query message is dropped, as a server that cannot
// parse it has nothing to answer.
func serveUDP(c *net.UDPConn, h *handler) {
	pc := ipv4.NewPacketConn(c) // the batch calls work on IPv6 sockets too: no control messages are used
	in := make([]ipv4.Message, udpBatch)
	out := make([]ipv4.Message, 0, udpBatch)
	bufs := make([][]byte, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, dns.MaxMsgSize)}
		bufs[i] = make([]byte, dns.MaxMsgSize)
	}
	for {
		n, err := pc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // a transient error (an ICMP error queued on the socket): read on
		}
		out = out[:0]
		for _, q := range in[:n] {
			if b := h.answerUDP(q.Buffers[0][:q.N], bufs[len(out)]); b != nil {
				out = append(out, ipv4.Message{Buffers: [][]byte{b}, Addr: q.Addr})
			}
		}
		for i := 0; i < len(out); {
			sent, err := pc.WriteBatch(out[i:], 0)
			if err != nil {
				sent = 1 // the first one failed: the client's loss; nothing to retry
			}
			i += sent
		}
	}
}

// answerUDP packs the reply to the query in b into out, or returns nil when
// there is nothing to send.
func (h *handler) answerUDP(b, out []byte) []byte {
	req := new(dns.Msg)
	if req.Unpack(b) != nil || req.Response {
		return nil
	}
	m := h.answer(req, true)
	if m == nil {
		return nil
	}
	p, err := m.PackBuffer(out)
	if err != nil {
		return nil
	}
	return p
}

// handler serves the lab's zones authoritatively: test. and the reverse
// zones of its addresses.
type handler struct {
	w    *world.World
	auth *pki.Authority
}

const ttl = 300

func soa(zone string) dns.RR {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns:      "ns.test.",
		Mbox:    "hostmaster.test.",
		Serial:  1,
		Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 60,
	}
}

func hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: dns.Fqdn(name), Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
}

// ServeDNS answers over TCP (miekg/dns's server); UDP has serveUDP.
func (h *handler) ServeDNS(rw dns.ResponseWriter, req *dns.Msg) {
	if m := h.answer(req, false); m != nil {
		_ = rw.WriteMsg(m) // a failed write is the client's loss; nothing to retry
	}
}

// answer makes the reply to req, or returns nil when the query must be
// dropped (the dns_timeout case). Over UDP the reply is cut to the
// client's EDNS0 size.
func (h *handler) answer(req *dns.Msg, udp bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = false
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		m.SetRcode(req, dns.RcodeNotImplemented)
		return m
	}
	q := req.Question[0]
	name := strings.ToLower(strings.TrimSuffix(q.Name, "."))
	opt := req.IsEdns0()
	wantAD := req.AuthenticatedData || (opt != nil && opt.Do())
	sp, sec := world.SpoilNone, world.SecInsecure
	switch {
	case name == "test" || strings.HasSuffix(name, ".test"):
		var answer bool
		if answer, sp, sec = h.answerTest(m, name, q.Qtype, req.CheckingDisabled); !answer {
			return nil // dropped on purpose: the dns_timeout case
		}
	case strings.HasSuffix(name, ".in-addr.arpa") || name == "in-addr.arpa":
		h.answerPTR(m, name, q.Qtype, "in-addr.arpa.")
	case strings.HasSuffix(name, ".ip6.arpa") || name == "ip6.arpa":
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{soa("ip6.arpa.")}
	default:
		m.Authoritative = false
		m.Rcode = dns.RcodeRefused
	}
	m.AuthenticatedData = wantAD && sec == world.SecSecure && m.Rcode != dns.RcodeServerFailure
	if opt != nil {
		m.SetEdns0(max(opt.UDPSize(), dns.MinMsgSize), opt.Do())
	}
	if udp {
		size := dns.MinMsgSize
		if opt != nil {
			size = max(int(opt.UDPSize()), dns.MinMsgSize)
		}
		m.Truncate(size)
	} else if m.Len() > dns.MaxMsgSize {
		m.Truncate(dns.MaxMsgSize) // 10,000 TXT records: what fits
	}
	switch sp {
	case world.SpoilID:
		m.Id ^= 0x5a5a
	case world.SpoilQuestion:
		m.Question[0].Name = "mismatch." + dns.Fqdn(name)
	}
	return m
}

// answerTest fills m for a name under test.; answer is false when the query
// must be dropped, sp says how to spoil the reply, sec how a validating
// resolver judges the answer: its CNAMEs and its records, or its denial.
// Bogus data is a SERVFAIL unless cd.
func (h *handler) answerTest(m *dns.Msg, name string, qtype uint16, cd bool) (answer bool, sp world.Spoil, sec world.Sec) {
	n := h.w.Lookup(name)
	sp, sec = n.Spoil, n.Sec
	seen := []string{name}
	for hops := 0; ; hops++ {
		switch {
		case n.Drop:
			return false, sp, sec
		case n.Servfail:
			return true, sp, servfail(m)
		case !n.Exists:
			if sec == world.SecBogus && !cd {
				return true, sp, servfail(m)
			}
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{soa("test.")}
			return true, sp, sec
		}
		if n.CNAME == "" || qtype == dns.TypeCNAME || hops > 8 {
			break
		}
		m.Answer = append(m.Answer, &dns.CNAME{Hdr: hdr(name, dns.TypeCNAME), Target: dns.Fqdn(n.CNAME)})
		if slices.Contains(seen, n.CNAME) {
			// A loop (dns_cname_loop): every CNAME of it once, as an
			// authoritative server answers, then stop.
			return true, sp, sec
		}
		name = n.CNAME
		seen = append(seen, name)
		n = h.w.Lookup(name)
		sec = sec.Then(n.Sec)
	}
	if sec == world.SecBogus && !cd {
		return true, sp, servfail(m)
	}
	switch qtype {
	case dns.TypeCNAME:
		if n.CNAME != "" {
			m.Answer = append(m.Answer, &dns.CNAME{Hdr: hdr(name, dns.TypeCNAME), Target: dns.Fqdn(n.CNAME)})
		}
	case dns.TypeMX:
		if n.NullMX {
			m.Answer = append(m.Answer, &dns.MX{Hdr: hdr(name, dns.TypeMX), Preference: 0, Mx: "."})
		}
		for _, r := range n.MX {
			m.Answer = append(m.Answer, &dns.MX{Hdr: hdr(name, dns.TypeMX), Preference: r.Pref, Mx: dns.Fqdn(r.Host)})
		}
	case dns.TypeA:
		for _, a := range n.A {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(name, dns.TypeA), A: net.IP(a.AsSlice())})
		}
	case dns.TypeAAAA:
		for _, a := range n.AAAA {
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr(name, dns.TypeAAAA), AAAA: net.IP(a.AsSlice())})
		}
	case dns.TypeTXT:
		// No message holds more than 64 KiB: the records beyond are never
		// sent, and are not made (10,000 of them cost a loaded machine
		// seconds).
		room := dns.MaxMsgSize
		for _, t := range n.TXT {
			size := 12 // a compressed owner name, type, class, TTL, length
			for _, str := range t {
				size += 1 + len(str)
			}
			if room -= size; room < 0 {
				m.Truncated = true
				break
			}
			m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr(name, dns.TypeTXT), Txt: t})
		}
	case dns.TypeTLSA:
		recs, err := h.auth.TLSA(n.TLSA)
		if err != nil {
			return true, sp, servfail(m) // a record the lab cannot make: a bug, shown as a failure
		}
		for _, r := range recs {
			m.Answer = append(m.Answer, &dns.TLSA{Hdr: hdr(name, dns.TypeTLSA), Usage: r.Usage, Selector: r.Selector,
				MatchingType: r.MType, Certificate: hex.EncodeToString(r.Data)})
		}
	case dns.TypeSOA:
		if name == "test" {
			m.Answer = append(m.Answer, soa("test."))
		}
	}
	if len(m.Answer) == 0 {
		m.Ns = []dns.RR{soa("test.")}
	}
	return true, sp, sec
}

// servfail makes m a SERVFAIL: a resolver's answer for data it could not
// get or validate.
func servfail(m *dns.Msg) world.Sec {
	m.Rcode = dns.RcodeServerFailure
	m.Authoritative = false
	m.Answer, m.Ns = nil, nil
	return world.SecInsecure
}

func (h *handler) answerPTR(m *dns.Msg, name string, qtype uint16, zone string) {
	labels := strings.Split(strings.TrimSuffix(name, ".in-addr.arpa"), ".")
	ptr := ""
	if len(labels) == 4 {
		var b [4]byte
		ok := true
		for k, l := range labels {
			v, err := strconv.ParseUint(l, 10, 8)
			if err != nil || (len(l) > 1 && l[0] == '0') {
				ok = false
				break
			}
			b[3-k] = byte(v)
		}
		if ok {
			ptr = h.w.PTR(netip.AddrFrom4(b))
		}
	}
	if ptr == "" {
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{soa(zone)}
		return
	}
	if qtype == dns.TypePTR {
		m.Answer = append(m.Answer, &dns.PTR{Hdr: hdr(name, dns.TypePTR), Ptr: dns.Fqdn(ptr)})
	} else {
		m.Ns = []dns.RR{soa(zone)}
	}
}
