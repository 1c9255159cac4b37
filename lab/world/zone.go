package world

import (
	"net/netip"
	"strconv"
	"strings"
)

// MXHost is one MX host of a domain: what its MX record says, where its name
// leads, and what a resolver must make of it. The DNS server answers from
// it and the truth lists it.
type MXHost struct {
	Name   string
	Pref   uint16
	Slots  []int        // the lab's addresses (A records), where its servers run
	Addrs  []netip.Addr // addresses nothing of the lab serves (A or AAAA by family)
	Status string       // the host_status a resolver reports
	cname  string       // the name is a CNAME to this one, which holds the addresses
}

// MXHosts are a domain's MX hosts in the order of its MX records (an
// implicit MX: the domain itself, preference 0). Whether a resolver gets to
// them at all is the domain's DNS status (Status).
func (w *World) MXHosts(d Domain) []MXHost {
	switch d.Kind {
	case KindProvider:
		pr := &w.providers[d.provider]
		if pr.style.perDomainMX() {
			return []MXHost{{Name: w.tenantMX(d), Pref: w.tenantPref(d), Slots: w.tenantSlots(d), Status: StatusOK}}
		}
		out := make([]MXHost, len(pr.hosts))
		for k, h := range pr.hosts {
			out[k] = MXHost{Name: h.name, Pref: h.pref, Slots: h.slots, Status: StatusOK}
			if h.v6.IsValid() {
				out[k].Addrs = []netip.Addr{h.v6}
			}
		}
		return out
	case KindHosting:
		return []MXHost{{Name: "mail." + d.Name, Pref: 10, Slots: []int{w.slotHostng + d.hosting}, Status: StatusOK}}
	case KindSelf:
		L, ls := w.DomainName(d.leader), w.slotBase+2*d.leader
		switch d.variant {
		case variantTwo:
			return []MXHost{{Name: "mx." + L, Pref: 10, Slots: []int{ls, ls + 1}, Status: StatusOK}}
		case variantMX2:
			return []MXHost{{Name: "mx." + L, Pref: 10, Slots: []int{ls}, Status: StatusOK},
				{Name: "mx2." + L, Pref: 20, Slots: []int{ls + 1}, Status: StatusOK}}
		}
		return []MXHost{{Name: "mx." + L, Pref: 10, Slots: []int{ls}, Status: StatusOK}}
	case KindCase:
		return w.caseMX(d)
	}
	return nil
}

// caseMX are the MX hosts of a case domain's DNS shape.
func (w *World) caseMX(d Domain) []MXHost {
	c := &d.Case.DNS
	switch c.MX {
	case MXNull, MXNone:
		return nil
	case MXImplicit:
		return []MXHost{{Name: d.Name, Pref: 0, Slots: []int{w.slotBase + 2*d.Index}, Status: StatusOK}}
	case MXMany:
		out := make([]MXHost, c.Count)
		for k := range out {
			out[k] = w.caseHost(d, manyName(k)+"."+d.Name, uint16(10+k))
		}
		return out
	case MXLiteral:
		// The domain's own, unserved, address: a scanner that probed it would
		// leave a row the truth does not list.
		return []MXHost{{Name: w.SlotAddr(w.slotBase + 2*d.Index).String(), Pref: 10, Status: StatusError}}
	}
	return []MXHost{w.caseHost(d, "mx."+d.Name, 10)}
}

// manyName is the label of the k-th (from 0) of MXMany's hosts: mx001,
// ..., mx999.
func manyName(k int) string { return "mx" + strconv.Itoa(1000 + k + 1)[1:] }

// caseHost is an MX host of a case domain as its DNS shape makes it.
func (w *World) caseHost(d Domain, name string, pref uint16) MXHost {
	c := &d.Case.DNS
	slot0 := w.slotBase + 2*d.Index
	h := MXHost{Name: name, Pref: pref, Status: StatusOK}
	if d.Case.DNSSEC.Bogus == BogusAddr {
		// A SERVFAIL for the name's addresses: a resolver has none.
		h.Status = StatusServfail
		return h
	}
	switch c.Host {
	case HostServed:
		h.Slots = []int{slot0}
	case HostEmpty:
		h.Status = StatusNoAddress
	case HostNX:
		h.Status = StatusNXDomain
	case HostCNAME:
		h.Slots, h.cname = []int{slot0}, "host."+d.Name
	case HostAddr:
		h.Addrs = []netip.Addr{c.Addr}
	case HostDocV6:
		h.Addrs = []netip.Addr{w.docV6(d.Index)}
	}
	return h
}

// hostsUnder are the MX hosts of d that the name sub.<d> may hold: all of
// them, or, of a case domain with hundreds, the one sub names (a lookup
// that made all of them would make a scan of the domain quadratic).
func (w *World) hostsUnder(d Domain, sub string) []MXHost {
	if d.Kind != KindCase || d.Case.DNS.MX != MXMany {
		return w.MXHosts(d)
	}
	k, err := strconv.Atoi(strings.TrimPrefix(sub, "mx"))
	if err != nil || k < 1 || k > d.Case.DNS.Count || manyName(k-1) != sub {
		return nil
	}
	return []MXHost{w.caseHost(d, sub+"."+d.Name, uint16(10+k-1))}
}

// Status is the dns_status a resolver reports for a domain.
func (w *World) Status(d Domain) string {
	if d.Kind == KindCase && d.Case.DNS.Status != "" {
		return d.Case.DNS.Status
	}
	return StatusOK
}

// CNAMEs are the CNAMEs a resolver follows for the domain's MX query: a loop
// ends when it comes back to the domain.
func (w *World) CNAMEs(d Domain) []string {
	if d.Kind != KindCase {
		return nil
	}
	switch d.Case.DNS.Via {
	case ViaCNAME:
		return []string{"real." + d.Name}
	case ViaLoop:
		return []string{"loop1." + d.Name, "loop2." + d.Name}
	}
	return nil
}

// ImplicitMX says whether the domain's MX host is the domain itself.
func (w *World) ImplicitMX(d Domain) bool {
	return d.Kind == KindCase && d.Case.DNS.MX == MXImplicit
}

func (w *World) docV6(i int) netip.Addr {
	return netip.MustParseAddr("2001:db8:ffff::" + strconv.FormatUint(uint64(i+1)&0xffff, 16))
}

// Node is what the lab's zones hold at one name, and how a validating
// resolver judges its answers and denials (Sec).
type Node struct {
	Exists   bool
	Servfail bool
	Drop     bool // no answer at all: the client times out
	Spoil    Spoil
	Sec      Sec
	CNAME    string
	NullMX   bool
	MX       []MXRecord
	A        []netip.Addr
	AAAA     []netip.Addr
	TXT      [][]string // each record's character-strings
	TLSA     []TLSARR
}

// MXRecord is one MX record.
type MXRecord struct {
	Host string
	Pref uint16
}

// tlsaPrefix is where an MX host's TLSA records are (RFC 7672 §2.2.1):
// port 25, whatever port the lab's SMTP server listens on.
const tlsaPrefix = "_25._tcp."

// Lookup returns the node at a lowercased name without the trailing dot.
func (w *World) Lookup(name string) Node {
	if name == "test" {
		return Node{Exists: true, Sec: SecSecure}
	}
	if !strings.HasSuffix(name, ".test") {
		return Node{}
	}
	if host, ok := strings.CutPrefix(name, tlsaPrefix); ok {
		return w.tlsaNode(host)
	}
	if i, ok := w.parseDomain(name); ok {
		return w.domainNode(w.Domain(i))
	}
	if d, sub, ok := w.under(name); ok {
		return w.subNode(d, sub)
	}
	return w.infraNode(name)
}

// under splits a name below a domain of the world into the domain and the
// labels before it.
func (w *World) under(name string) (Domain, string, bool) {
	base := strings.TrimSuffix(name, ".test")
	j := strings.LastIndexByte(base, '.')
	if j < 0 {
		return Domain{}, "", false
	}
	i, ok := w.parseDomain(base[j+1:] + ".test")
	if !ok {
		return Domain{}, "", false
	}
	return w.Domain(i), base[:j], true
}

// answered is the node of every name of a case domain whose DNS answers
// nothing of its records; ok is false when the records are answered. A
// domain that does not exist is denied by test., which is signed.
func answered(d Domain) (n Node, ok bool) {
	if d.Kind != KindCase {
		return Node{}, false
	}
	switch d.Case.DNS.Answer {
	case AnswerNXDomain:
		return Node{Sec: SecSecure}, true
	case AnswerServfail:
		return Node{Servfail: true}, true
	case AnswerDrop:
		return Node{Drop: true}, true
	}
	return Node{}, false
}

// spoilOf is what is wrong with every answer for a name of the domain.
func spoilOf(d Domain) Spoil {
	if d.Kind != KindCase {
		return SpoilNone
	}
	return d.Case.DNS.Spoil
}

func (w *World) domainNode(d Domain) Node {
	if n, ok := answered(d); ok {
		return n
	}
	n := Node{Exists: true, Spoil: spoilOf(d), Sec: w.zoneSec(d)}
	if bogus(d) == BogusMX {
		n.Sec = SecBogus
	}
	if d.Kind == KindCase {
		c := &d.Case.DNS
		switch {
		case c.Via == ViaCNAME:
			n.CNAME = "real." + d.Name
			return n
		case c.Via == ViaLoop:
			n.CNAME = "loop1." + d.Name
			return n
		case c.MX == MXNull:
			n.NullMX = true
			return n
		case c.MX == MXImplicit:
			n.A = w.addrs(w.MXHosts(d)[0].Slots)
			return n
		}
	}
	return w.withMX(d, n)
}

// withMX adds the domain's MX records to n.
func (w *World) withMX(d Domain, n Node) Node {
	for _, h := range w.MXHosts(d) {
		n.MX = append(n.MX, MXRecord{h.Name, h.Pref})
	}
	return n
}

func (w *World) addrs(slots []int) []netip.Addr {
	out := make([]netip.Addr, len(slots))
	for i, s := range slots {
		out[i] = w.SlotAddr(s)
	}
	return out
}

// subNode is the node of sub.<d>: the domain's own MX hosts, its policy
// names, and the names its case's shape adds. Every name of the domain is
// in its zone and spoiled as the domain is.
func (w *World) subNode(d Domain, sub string) Node {
	if n, ok := answered(d); ok {
		return n
	}
	n, mxHost := w.subRecords(d, sub)
	n.Spoil, n.Sec = spoilOf(d), w.zoneSec(d)
	if mxHost && bogus(d) == BogusAddr {
		n.Sec = SecBogus
	}
	return n
}

// subRecords is what sub.<d> holds; mxHost says it holds an MX host's
// addresses.
func (w *World) subRecords(d Domain, sub string) (n Node, mxHost bool) {
	switch sub {
	case "_mta-sts":
		if txt := STSTXT(d, w.STSOf(d)); txt != nil {
			return Node{Exists: true, TXT: txt}, false
		}
		return Node{}, false
	case "_smtp._tls":
		if txt := RPTTXT(d, w.RPTOf(d)); txt != nil {
			return Node{Exists: true, TXT: txt}, false
		}
		return Node{}, false
	case "mta-sts":
		return w.stsHostNode(d, w.STSOf(d)), false
	}
	if d.Kind == KindCase {
		c := &d.Case.DNS
		switch {
		case c.Via == ViaCNAME && sub == "real":
			return w.withMX(d, Node{Exists: true}), false
		case c.Via == ViaLoop && sub == "loop1":
			return Node{Exists: true, CNAME: "loop2." + d.Name}, false
		case c.Via == ViaLoop && sub == "loop2":
			return Node{Exists: true, CNAME: d.Name}, false
		}
	}
	name := sub + "." + d.Name
	for _, h := range w.hostsUnder(d, sub) {
		switch name {
		case h.cname:
			return Node{Exists: true, A: w.addrs(h.Slots)}, true
		case h.Name:
			if h.Status == StatusNXDomain {
				return Node{}, false
			}
			n := Node{Exists: true}
			if h.cname != "" {
				n.CNAME = h.cname
				return n, false
			}
			n.A = w.addrs(h.Slots)
			for _, a := range h.Addrs {
				if a.Is4() {
					n.A = append(n.A, a)
				} else {
					n.AAAA = append(n.AAAA, a)
				}
			}
			return n, true
		}
	}
	return Node{}, false
}

// infraNode answers for provider and hosting names. A name that is in
// no zone of the lab is denied by test.
func (w *World) infraNode(name string) Node {
	if p, sub, ok := w.providerName(name); ok {
		n := w.providerRecords(p, name, sub)
		n.Sec = w.providerSec(p)
		return n
	}
	label, rest, _ := strings.Cut(name, ".")
	if strings.HasPrefix(rest, "hosting") {
		// The hosting zones are not signed.
		if h, err := strconv.Atoi(label[1:]); strings.HasPrefix(label, "s") && err == nil && h >= 1 && h <= w.nHosting && hostingName(h-1) == name {
			return Node{Exists: true, A: []netip.Addr{w.SlotAddr(w.slotHostng + h - 1)}}
		}
		return Node{}
	}
	return Node{Sec: SecSecure}
}

// providerName splits a name in a provider's zone (provider<N>.test) into
// the provider and the labels before the zone ("" for the zone itself).
func (w *World) providerName(name string) (p int, sub string, ok bool) {
	zone := name
	if i := strings.LastIndexByte(strings.TrimSuffix(name, ".test"), '.'); i >= 0 {
		zone, sub = name[i+1:], name[:i]
	}
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(zone, "provider"), ".test"))
	if err != nil || n < 1 || n > len(w.providers) || w.providers[n-1].name != zone {
		return 0, "", false
	}
	return n - 1, sub, true
}

func (w *World) providerSec(p int) Sec {
	if w.providerSigned(p) {
		return SecSecure
	}
	return SecInsecure
}

// providerHost is provider p's MX host called name (sub.<p>): a shared
// host, or a customer's per-domain name.
func (w *World) providerHost(p int, name, sub string) (MXHost, bool) {
	pr := &w.providers[p]
	for _, h := range pr.hosts {
		if h.name == name {
			mx := MXHost{Name: h.name, Pref: h.pref, Slots: h.slots, Status: StatusOK}
			if h.v6.IsValid() {
				mx.Addrs = []netip.Addr{h.v6}
			}
			return mx, true
		}
	}
	if pr.style.perDomainMX() {
		label, rest, _ := strings.Cut(sub, ".")
		if (pr.style == StyleTenant && rest == "mail") || (pr.style == StyleGateway && rest == "in") {
			if d, ok := w.tenantDomain(label, p); ok {
				return w.MXHosts(d)[0], true
			}
		}
	}
	return MXHost{}, false
}

// providerRecords is what name (sub.<p>) holds in provider p's zone.
func (w *World) providerRecords(p int, name, sub string) Node {
	pr := &w.providers[p]
	if sub == "" {
		return Node{Exists: true} // the zone itself, without records
	}
	if h, ok := w.providerHost(p, name, sub); ok {
		n := Node{Exists: true}
		n.A = w.addrs(h.Slots)
		n.AAAA = h.Addrs
		return n
	}
	if sub == "mta-sts" {
		// The policy host of the customers whose mta-sts.<d> leads here.
		return Node{Exists: true, A: []netip.Addr{w.SlotAddr(pr.first)}}
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
			return Node{Exists: true, A: []netip.Addr{w.SlotAddr(pr.first + k - 1)}}
		}
	}
	return Node{}
}

// tlsaNode is the node of _25._tcp.<host>: the TLSA records of the MX host
// whose addresses host holds, in the zone of host.
func (w *World) tlsaNode(host string) Node {
	d, sub, found := Domain{}, "", false
	if i, ok := w.parseDomain(host); ok {
		d, found = w.Domain(i), true
	} else if dd, s, ok := w.under(host); ok {
		d, sub, found = dd, s, true
	}
	if found {
		if n, ok := answered(d); ok {
			return n
		}
		n := Node{Spoil: spoilOf(d), Sec: w.zoneSec(d)}
		if h, ok := holder(w.hostsUnder(d, sub), host); ok {
			n = w.withTLSA(n, h, w.daneOf(d))
		}
		if n.Exists && bogus(d) == BogusTLSA {
			n.Sec = SecBogus
		}
		return n
	}
	if p, sub, ok := w.providerName(host); ok {
		n := Node{Sec: w.providerSec(p)}
		if h, ok := w.providerHost(p, host, sub); ok {
			n = w.withTLSA(n, h, w.providerDANE(p))
		}
		return n
	}
	return w.infraNode(tlsaPrefix + host)
}

// holder is the MX host among hosts whose addresses name holds: the one
// named so, or the one that is a CNAME to it.
func holder(hosts []MXHost, name string) (MXHost, bool) {
	for _, h := range hosts {
		if h.cname == name || (h.cname == "" && h.Name == name && h.Status != StatusNXDomain) {
			return h, true
		}
	}
	return MXHost{}, false
}

// withTLSA adds the TLSA RRset of MX host h to n: the records of recs, a
// record made of a leaf once for each distinct leaf the host's servers
// present to a client asking for h's name.
func (w *World) withTLSA(n Node, h MXHost, recs []TLSA) Node {
	var leaves []CertSpec
	if len(recs) > 0 {
		leaves = w.Leaves(h)
	}
	for _, t := range recs {
		if t.Of == AssocIntermediate {
			n.TLSA = append(n.TLSA, TLSARR{TLSA: t})
			continue
		}
		for _, l := range leaves {
			n.TLSA = append(n.TLSA, TLSARR{TLSA: t, Leaf: l})
		}
	}
	n.Exists = len(n.TLSA) > 0
	return n
}

// Leaves are the distinct certificates the servers of MX host h present to
// a client that sends h's name as SNI, in the order of its addresses.
func (w *World) Leaves(h MXHost) []CertSpec {
	var out []CertSpec
	seen := map[string]bool{}
	for _, slot := range h.Slots {
		srv, ok := w.ServerAt(slot)
		if !ok {
			continue
		}
		sp := srv.CertSpec(h.Name)
		if id := sp.ID(); !seen[id] {
			seen[id] = true
			out = append(out, sp)
		}
	}
	return out
}

// PTR is the PTR name of an address, "" when there is none.
func (w *World) PTR(a netip.Addr) string {
	slot, ok := w.AddrSlot(a)
	if !ok {
		return ""
	}
	s, ok := w.ServerAt(slot)
	if !ok {
		return ""
	}
	return s.PTR
}
