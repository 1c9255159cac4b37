package world

import "net/netip"

// Target is one (address, MX name) a scan probes.
type Target struct {
	IP     netip.Addr
	MX     string
	Server *Server // nil when nothing of the lab serves the address
	Case   *Case   // without a server: the case that put the address there
}

// OwnedTargets are the targets whose truth rows domain d writes: targets
// shared by several domains are written once, by their owner (a classic
// provider's by ProviderTargets, a self-hosted group's by its leader).
func (w *World) OwnedTargets(d Domain) []Target {
	switch {
	case d.Kind == KindProvider && !w.providers[d.provider].style.perDomainMX(),
		d.Kind == KindSelf && d.leader != d.Index,
		w.Status(d) != StatusOK:
		return nil
	}
	return w.targets(w.MXHosts(d), d.Case)
}

// ProviderTargets are every classic provider's (address, MX host) pairs,
// IPv6 documentation addresses included.
func (w *World) ProviderTargets() []Target {
	var out []Target
	for p := range w.providers {
		for _, h := range w.providers[p].hosts {
			mx := MXHost{Name: h.name, Slots: h.slots}
			if h.v6.IsValid() {
				mx.Addrs = []netip.Addr{h.v6}
			}
			out = append(out, w.targets([]MXHost{mx}, caseDocV6)...)
		}
	}
	return out
}

// targets are the (address, name) pairs of hosts: served slots with their
// server, other addresses with the case that put them there.
func (w *World) targets(hosts []MXHost, unserved *Case) []Target {
	var out []Target
	servers := map[int]*Server{} // hosts on one address (dns_many_mx) share its server
	for _, h := range hosts {
		for _, s := range h.Slots {
			srv, seen := servers[s]
			if !seen {
				srv, _ = w.ServerAt(s)
				servers[s] = srv
			}
			if srv != nil {
				out = append(out, Target{IP: srv.IP, MX: h.Name, Server: srv})
			}
		}
		for _, a := range h.Addrs {
			out = append(out, Target{IP: a, MX: h.Name, Case: unserved})
		}
	}
	return out
}
