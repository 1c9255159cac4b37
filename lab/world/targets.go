package world

import "net/netip"

// Target is one (address, MX name) a scan probes.
type Target struct {
	IP     netip.Addr
	MX     string
	Host   MXHost  // the MX host of that name
	Server *Server // nil when nothing of the lab serves the address
	Case   *Case   // without a server: the case that put the address there
}

// OwnedTargets are the targets whose truth rows domain d writes: targets
// shared by several domains are written once, by their owner (a classic
// provider's by ProviderTargets, a self-hosted group's by its leader).
func (w *World) OwnedTargets(d Domain) []Target {
	return w.targets(w.OwnedMXHosts(d), d.Case)
}

// Targets are all targets of domain d's MX hosts, whoever owns their rows.
func (w *World) Targets(d Domain) []Target {
	if w.Status(d) != StatusOK {
		return nil
	}
	unserved := d.Case
	if d.Kind == KindProvider {
		unserved = caseDocV6
	}
	return w.targets(w.MXHosts(d), unserved)
}

// OwnedMXHosts are the MX hosts whose truth rows (their targets', their
// TLSA row) domain d writes, by the rule of OwnedTargets: none when the
// domain's resolution ends without MX hosts.
func (w *World) OwnedMXHosts(d Domain) []MXHost {
	switch {
	case d.Kind == KindProvider && !w.providers[d.provider].style.perDomainMX(),
		d.Kind == KindSelf && d.leader != d.Index,
		w.Status(d) != StatusOK:
		return nil
	}
	return w.MXHosts(d)
}

// ProviderTargets are every classic provider's (address, MX host) pairs,
// IPv6 documentation addresses included.
func (w *World) ProviderTargets() []Target {
	return w.targets(w.ProviderMXHosts(), caseDocV6)
}

// ProviderMXHosts are every classic provider's MX hosts, which no domain
// owns.
func (w *World) ProviderMXHosts() []MXHost {
	var out []MXHost
	for p := range w.providers {
		for _, h := range w.providers[p].hosts {
			mx, _ := w.providerHost(p, h.name, "") // found: h is the provider's
			out = append(out, mx)
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
				out = append(out, Target{IP: srv.IP, MX: h.Name, Host: h, Server: srv})
			}
		}
		for _, a := range h.Addrs {
			out = append(out, Target{IP: a, MX: h.Name, Host: h, Case: unserved})
		}
	}
	return out
}
