package world

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// node is what the lab's zones hold at one name: the DNS server answers from
// it, and the truth states what a resolver must make of it.
type node struct {
	exists   bool
	servfail bool
	drop     bool // no answer at all: the client times out
	spoil    spoil
	cname    string
	nullMX   bool
	mx       []mxRec
	a        []netip.Addr
	aaaa     []netip.Addr
}

// spoil is what is wrong with every answer for a name: the dns_wrong_id and
// dns_wrong_question cases. The records are the right ones, so a resolver
// that accepted the answer would go on to probe (and show in a scan).
type spoil uint8

const (
	spoilNone     spoil = iota
	spoilID             // the reply's message ID differs from the query's
	spoilQuestion       // the reply's question names another name
)

type mxRec struct {
	host string
	pref uint16
}

var (
	addrPrivate   = netip.MustParseAddr("10.0.0.1")
	addrLinkLocal = netip.MustParseAddr("169.254.169.254")
	addrLoop6     = netip.IPv6Loopback()
)

func (w *World) docV6(i int) netip.Addr {
	return netip.MustParseAddr("2001:db8:ffff::" + strconv.FormatUint(uint64(i+1)&0xffff, 16))
}

// lookup returns the node at a lowercased name without the trailing dot.
func (w *World) lookup(name string) node {
	if name == "test" {
		return node{exists: true}
	}
	if !strings.HasSuffix(name, ".test") {
		return node{}
	}
	if i, ok := w.parseDomain(name); ok {
		return w.domainNode(w.domain(i))
	}
	label, rest, _ := strings.Cut(name, ".")
	if i, ok := w.parseDomain(rest); ok {
		return w.subNode(w.domain(i), label)
	}
	return w.infraNode(name)
}

func (w *World) domainNode(d domain) node {
	n := node{exists: true}
	switch d.kind {
	case kindProvider:
		if w.providers[d.provider].style.perDomainMX() {
			n.mx = []mxRec{{w.tenantMX(d), w.tenantPref(d)}}
			break
		}
		for _, h := range w.providers[d.provider].hosts {
			n.mx = append(n.mx, mxRec{h.name, h.pref})
		}
	case kindHosting:
		n.mx = []mxRec{{"mail." + d.name, 10}}
	case kindSelf:
		leader := w.domainName(d.leader)
		n.mx = []mxRec{{"mx." + leader, 10}}
		if d.variant == 2 {
			n.mx = append(n.mx, mxRec{"mx2." + leader, 20})
		}
	case kindCase:
		switch d.cas {
		case cDNSNullMX:
			n.nullMX = true
		case cDNSImplicitMX:
			n.a = []netip.Addr{w.slotAddr(w.slotBase + 2*d.idx)}
		case cDNSNoMX:
		case cDNSNXDomain:
			return node{}
		case cDNSServfail:
			return node{servfail: true}
		case cDNSTimeout:
			return node{drop: true}
		case cDNSDomainCNAME:
			n.cname = "real." + d.name
		case cDNSManyMX, cDNSMXHundreds:
			for k := range mxCount(d.cas) {
				n.mx = append(n.mx, mxRec{manyMXName(k, d.name), uint16(10 + k)})
			}
		case cDNSCNAMELoop:
			n.cname = "loop1." + d.name
		case cDNSMXIPLiteral:
			n.mx = []mxRec{{w.ipLiteralMX(d), 10}}
		default:
			n.mx = []mxRec{{"mx." + d.name, 10}}
		}
		n.spoil = caseSpoil(d.cas)
	}
	return n
}

func caseSpoil(c caseID) spoil {
	switch c {
	case cDNSWrongID:
		return spoilID
	case cDNSWrongQuestion:
		return spoilQuestion
	}
	return spoilNone
}

// ipLiteralMX is the MX target of dns_mx_ip_literal: the domain's own
// (unserved) address written as a name, so a scanner that probed it would
// leave a row the truth does not list.
func (w *World) ipLiteralMX(d domain) string {
	return w.slotAddr(w.slotBase + 2*d.idx).String()
}

func (w *World) subNode(d domain, label string) node {
	slot0 := w.slotBase + 2*d.idx
	switch d.kind {
	case kindHosting:
		if label == "mail" {
			return node{exists: true, a: []netip.Addr{w.slotAddr(w.slotHostng + d.hosting)}}
		}
	case kindSelf:
		if d.leader != d.idx {
			break
		}
		switch {
		case label == "mx" && d.variant == 1:
			return node{exists: true, a: []netip.Addr{w.slotAddr(slot0), w.slotAddr(slot0 + 1)}}
		case label == "mx":
			return node{exists: true, a: []netip.Addr{w.slotAddr(slot0)}}
		case label == "mx2" && d.variant == 2:
			return node{exists: true, a: []netip.Addr{w.slotAddr(slot0 + 1)}}
		}
	case kindCase:
		switch d.cas {
		case cDNSNXDomain:
			return node{}
		case cDNSServfail:
			return node{servfail: true}
		case cDNSTimeout:
			return node{drop: true}
		case cDNSDomainCNAME:
			if label == "real" {
				return node{exists: true, mx: []mxRec{{"mx." + d.name, 10}}}
			}
		case cDNSMXCNAME:
			switch label {
			case "mx":
				return node{exists: true, cname: "host." + d.name}
			case "host":
				return node{exists: true, a: []netip.Addr{w.slotAddr(slot0)}}
			}
		case cDNSManyMX, cDNSMXHundreds:
			if k, ok := strings.CutPrefix(label, "mx"); ok && len(k) == 3 {
				if n, err := strconv.Atoi(k); err == nil && n >= 1 && n <= mxCount(d.cas) {
					return node{exists: true, a: []netip.Addr{w.slotAddr(slot0)}}
				}
			}
		case cDNSCNAMELoop:
			switch label {
			case "loop1":
				return node{exists: true, cname: "loop2." + d.name}
			case "loop2":
				return node{exists: true, cname: d.name}
			}
		}
		if label != "mx" {
			break
		}
		switch d.cas {
		case cDNSWrongID, cDNSWrongQuestion:
			return node{exists: true, a: []netip.Addr{w.slotAddr(slot0)}, spoil: caseSpoil(d.cas)}
		case cDNSMXNoAddress:
			return node{exists: true}
		case cDNSMXNXDomain, cDNSImplicitMX, cDNSNullMX, cDNSNoMX, cDNSManyMX, cDNSMXHundreds,
			cDNSCNAMELoop, cDNSMXIPLiteral:
			return node{}
		case cDNSMXPrivate:
			return node{exists: true, a: []netip.Addr{addrPrivate}}
		case cDNSMXLinkLocal:
			return node{exists: true, a: []netip.Addr{addrLinkLocal}}
		case cDNSMXDocIPv6:
			return node{exists: true, aaaa: []netip.Addr{w.docV6(d.idx)}}
		case cSMTPRefused:
			return node{exists: true, aaaa: []netip.Addr{addrLoop6}}
		}
		return node{exists: true, a: []netip.Addr{w.slotAddr(slot0)}}
	}
	return node{}
}

// infraNode answers for provider and hosting names.
func (w *World) infraNode(name string) node {
	// provider<N>.test and the names under it.
	zone, sub := name, ""
	if i := strings.LastIndexByte(strings.TrimSuffix(name, ".test"), '.'); i >= 0 {
		zone, sub = name[i+1:], name[:i]
	}
	if p, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(zone, "provider"), ".test")); err == nil &&
		p >= 1 && p <= len(w.providers) && w.providers[p-1].name == zone {
		pr := &w.providers[p-1]
		if sub == "" {
			return node{exists: true} // the zone itself, without records
		}
		for _, h := range pr.hosts {
			if h.name == name {
				n := node{exists: true}
				for _, s := range h.slots {
					n.a = append(n.a, w.slotAddr(s))
				}
				if h.v6 != "" {
					n.aaaa = []netip.Addr{netip.MustParseAddr(h.v6)}
				}
				return n
			}
		}
		// Per-server names: smtp<k> (classic), mta<k>.int (internal, gateway).
		for _, pre := range []string{"smtp", "mta"} {
			j, ok := strings.CutPrefix(sub, pre)
			if !ok {
				continue
			}
			if pre == "mta" {
				if j, ok = strings.CutSuffix(j, ".int"); !ok {
					continue
				}
			}
			if k, err := strconv.Atoi(j); err == nil && k >= 1 && k <= pr.nSlots {
				return node{exists: true, a: []netip.Addr{w.slotAddr(pr.first + k - 1)}}
			}
		}
		if pr.style.perDomainMX() {
			label, rest, _ := strings.Cut(sub, ".")
			if (pr.style == styleTenant && rest == "mail") || (pr.style == styleGateway && rest == "in") {
				if d, ok := w.tenantDomain(label, p-1); ok {
					sl := w.tenantSlots(d)
					return node{exists: true, a: []netip.Addr{w.slotAddr(sl[0]), w.slotAddr(sl[1])}}
				}
			}
		}
		return node{}
	}
	label, rest, _ := strings.Cut(name, ".")
	if strings.HasPrefix(label, "s") {
		if h, err := strconv.Atoi(label[1:]); err == nil && h >= 1 && h <= w.nHosting && hostingName(h-1) == label+"."+rest {
			return node{exists: true, a: []netip.Addr{w.slotAddr(w.slotHostng + h - 1)}}
		}
	}
	return node{}
}

// ptrFor is the PTR name of an address, "" when there is none.
func (w *World) ptrFor(a netip.Addr) string {
	slot, ok := w.addrSlot(a)
	if !ok {
		return ""
	}
	s, ok := w.serverAt(slot)
	if !ok {
		return ""
	}
	return s.ptr
}

// dnsHandler serves the lab's zones authoritatively: test. and the reverse
// zones of its addresses.
type dnsHandler struct {
	w *World
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

func (h *dnsHandler) ServeDNS(rw dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = false
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		m.SetRcode(req, dns.RcodeNotImplemented)
		_ = rw.WriteMsg(m) // a failed write is the client's loss; nothing to retry
		return
	}
	q := req.Question[0]
	name := strings.ToLower(strings.TrimSuffix(q.Name, "."))
	sp := spoilNone
	switch {
	case name == "test" || strings.HasSuffix(name, ".test"):
		var answer bool
		if answer, sp = h.answerTest(m, name, q.Qtype); !answer {
			return // dropped on purpose: the dns_timeout case
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
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(max(opt.UDPSize(), dns.MinMsgSize), false)
	}
	if _, isUDP := rw.RemoteAddr().(*net.UDPAddr); isUDP {
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = max(int(opt.UDPSize()), dns.MinMsgSize)
		}
		m.Truncate(size)
	}
	switch sp {
	case spoilID:
		m.Id ^= 0x5a5a
	case spoilQuestion:
		m.Question[0].Name = "mismatch." + dns.Fqdn(name)
	}
	_ = rw.WriteMsg(m) // see above
}

// answerTest fills m for a name under test.; answer is false when the query
// must be dropped, sp says how to spoil the reply.
func (h *dnsHandler) answerTest(m *dns.Msg, name string, qtype uint16) (answer bool, sp spoil) {
	n := h.w.lookup(name)
	sp = n.spoil
	seen := []string{name}
	for hops := 0; ; hops++ {
		switch {
		case n.drop:
			return false, sp
		case n.servfail:
			m.Rcode = dns.RcodeServerFailure
			m.Authoritative = false
			return true, sp
		case !n.exists:
			m.Rcode = dns.RcodeNameError
			m.Ns = []dns.RR{soa("test.")}
			return true, sp
		}
		if n.cname == "" || qtype == dns.TypeCNAME || hops > 8 {
			break
		}
		m.Answer = append(m.Answer, &dns.CNAME{Hdr: hdr(name, dns.TypeCNAME), Target: dns.Fqdn(n.cname)})
		if slices.Contains(seen, n.cname) {
			// A loop (dns_cname_loop): every CNAME of it once, as an
			// authoritative server answers, then stop.
			return true, sp
		}
		name = n.cname
		seen = append(seen, name)
		n = h.w.lookup(name)
	}
	switch qtype {
	case dns.TypeCNAME:
		if n.cname != "" {
			m.Answer = append(m.Answer, &dns.CNAME{Hdr: hdr(name, dns.TypeCNAME), Target: dns.Fqdn(n.cname)})
		}
	case dns.TypeMX:
		if n.nullMX {
			m.Answer = append(m.Answer, &dns.MX{Hdr: hdr(name, dns.TypeMX), Preference: 0, Mx: "."})
		}
		for _, r := range n.mx {
			m.Answer = append(m.Answer, &dns.MX{Hdr: hdr(name, dns.TypeMX), Preference: r.pref, Mx: dns.Fqdn(r.host)})
		}
	case dns.TypeA:
		for _, a := range n.a {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(name, dns.TypeA), A: net.IP(a.AsSlice())})
		}
	case dns.TypeAAAA:
		for _, a := range n.aaaa {
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr(name, dns.TypeAAAA), AAAA: net.IP(a.AsSlice())})
		}
	case dns.TypeSOA:
		if name == "test" {
			m.Answer = append(m.Answer, soa("test."))
		}
	}
	if len(m.Answer) == 0 {
		m.Ns = []dns.RR{soa("test.")}
	}
	return true, sp
}

func (h *dnsHandler) answerPTR(m *dns.Msg, name string, qtype uint16, zone string) {
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
			ptr = h.w.ptrFor(netip.AddrFrom4(b))
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
