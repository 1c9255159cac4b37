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
	slot0 := w.slotBase + 2*d.Index
	host := func(name string, pref uint16) MXHost {
		h := MXHost{Name: name, Pref: pref, Status: StatusOK}
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
	switch c.MX {
	case MXNull, MXNone:
		return nil
	case MXImplicit:
		return []MXHost{{Name: d.Name, Pref: 0, Slots: []int{slot0}, Status: StatusOK}}
	case MXMany:
		out := make([]MXHost, c.Count)
		for k := range out {
			n := strconv.Itoa(1000 + k + 1)[1:] // mx001, ..., mx999
			out[k] = host("mx"+n+"."+d.Name, uint16(10+k))
		}
		return out
	case MXLiteral:
		// The domain's own, unserved, address: a scanner that probed it would
		// leave a row the truth does not list.
		return []MXHost{{Name: w.SlotAddr(slot0).String(), Pref: 10, Status: StatusError}}
	}
	return []MXHost{host("mx."+d.Name, 10)}
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

// Node is what the lab's zones hold at one name.
type Node struct {
	Exists   bool
	Servfail bool
	Drop     bool // no answer at all: the client times out
	Spoil    Spoil
	CNAME    string
	NullMX   bool
	MX       []MXRecord
	A        []netip.Addr
	AAAA     []netip.Addr
}

// MXRecord is one MX record.
type MXRecord struct {
	Host string
	Pref uint16
}

// Lookup returns the node at a lowercased name without the trailing dot.
func (w *World) Lookup(name string) Node {
	if name == "test" {
		return Node{Exists: true}
	}
	if !strings.HasSuffix(name, ".test") {
		return Node{}
	}
	if i, ok := w.parseDomain(name); ok {
		return w.domainNode(w.Domain(i))
	}
	label, rest, _ := strings.Cut(name, ".")
	if i, ok := w.parseDomain(rest); ok {
		return w.subNode(w.Domain(i), label)
	}
	return w.infraNode(name)
}

// answered is the node of every name of a case domain whose DNS answers
// nothing of its records; ok is false when the records are answered.
func answered(d Domain) (n Node, ok bool) {
	if d.Kind != KindCase {
		return Node{}, false
	}
	switch d.Case.DNS.Answer {
	case AnswerNXDomain:
		return Node{}, true
	case AnswerServfail:
		return Node{Servfail: true}, true
	case AnswerDrop:
		return Node{Drop: true}, true
	}
	return Node{}, false
}

func (w *World) domainNode(d Domain) Node {
	if n, ok := answered(d); ok {
		return n
	}
	n := Node{Exists: true}
	if d.Kind == KindCase {
		c := &d.Case.DNS
		n.Spoil = c.Spoil
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

// subNode is the node of label.<d>: the domain's own MX hosts, and the names
// its case's shape adds.
func (w *World) subNode(d Domain, label string) Node {
	if n, ok := answered(d); ok {
		return n
	}
	var spoil Spoil
	if d.Kind == KindCase {
		c := &d.Case.DNS
		spoil = c.Spoil
		switch {
		case c.Via == ViaCNAME && label == "real":
			return w.withMX(d, Node{Exists: true})
		case c.Via == ViaLoop && label == "loop1":
			return Node{Exists: true, CNAME: "loop2." + d.Name}
		case c.Via == ViaLoop && label == "loop2":
			return Node{Exists: true, CNAME: d.Name}
		}
	}
	name := label + "." + d.Name
	for _, h := range w.MXHosts(d) {
		switch name {
		case h.cname:
			return Node{Exists: true, A: w.addrs(h.Slots), Spoil: spoil}
		case h.Name:
			if h.Status == StatusNXDomain {
				return Node{}
			}
			n := Node{Exists: true, Spoil: spoil}
			if h.cname != "" {
				n.CNAME = h.cname
				return n
			}
			n.A = w.addrs(h.Slots)
			for _, a := range h.Addrs {
				if a.Is4() {
					n.A = append(n.A, a)
				} else {
					n.AAAA = append(n.AAAA, a)
				}
			}
			return n
		}
	}
	return Node{}
}

// infraNode answers for provider and hosting names.
func (w *World) infraNode(name string) Node {
	// provider<N>.test and the names under it.
	zone, sub := name, ""
	if i := strings.LastIndexByte(strings.TrimSuffix(name, ".test"), '.'); i >= 0 {
		zone, sub = name[i+1:], name[:i]
	}
	if p, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(zone, "provider"), ".test")); err == nil &&
		p >= 1 && p <= len(w.providers) && w.providers[p-1].name == zone {
		pr := &w.providers[p-1]
		if sub == "" {
			return Node{Exists: true} // the zone itself, without records
		}
		for _, h := range pr.hosts {
			if h.name == name {
				n := Node{Exists: true, A: w.addrs(h.slots)}
				if h.v6.IsValid() {
					n.AAAA = []netip.Addr{h.v6}
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
				return Node{Exists: true, A: []netip.Addr{w.SlotAddr(pr.first + k - 1)}}
			}
		}
		if pr.style.perDomainMX() {
			label, rest, _ := strings.Cut(sub, ".")
			if (pr.style == StyleTenant && rest == "mail") || (pr.style == StyleGateway && rest == "in") {
				if d, ok := w.tenantDomain(label, p-1); ok {
					return Node{Exists: true, A: w.addrs(w.tenantSlots(d))}
				}
			}
		}
		return Node{}
	}
	label, rest, _ := strings.Cut(name, ".")
	if strings.HasPrefix(label, "s") {
		if h, err := strconv.Atoi(label[1:]); err == nil && h >= 1 && h <= w.nHosting && hostingName(h-1) == label+"."+rest {
			return Node{Exists: true, A: []netip.Addr{w.SlotAddr(w.slotHostng + h - 1)}}
		}
	}
	return Node{}
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
