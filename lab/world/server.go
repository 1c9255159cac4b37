package world

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Server is what one address slot runs: its case, the names it uses, how it
// talks and which certificate it shows for which SNI.
type Server struct {
	Slot     int
	IP       netip.Addr
	Kind     Kind
	Case     *Case
	Style    StyleID
	Dialect  Dialect // how it talks (dialect.go); case servers keep the lab's
	Zone     string  // the domain whose wildcard would cover the site's names
	Names    []string
	Banner   string // the name the greeting says
	EHLO     string // the name the EHLO reply says
	PostEHLO string // the same after TLS
	PTR      string // "" when the address has no PTR
	Latency  time.Duration
	// Shared says the server's certificates serve many targets: worth
	// caching.
	Shared bool
	// Wild are the site's names the lab put one label under Zone (what a
	// *.<zone> certificate covers, besides the target's MX name).
	Wild []string

	// greetTail are the lines after the first of a multi-line greeting (Exim).
	greetTail []string
	san       []string // StyleSuite: the names of its certificate
	hosting   int      // KindHosting: the server's index
	w         *World
}

// ServerAt describes the server on a slot; ok is false for slots where
// nothing runs.
func (w *World) ServerAt(slot int) (*Server, bool) {
	if slot < 0 || slot >= w.nSlots {
		return nil, false
	}
	s := &Server{Slot: slot, IP: w.SlotAddr(slot), w: w}
	// own is the server's own name, which the greeting says when its style or
	// case wants it to, and the EHLO reply when its case does.
	var own string
	var eximSecond string // the Exim daemon's primary_hostname, on its second address
	switch {
	case slot < w.slotHostng:
		p := int(w.slotOwner[slot])
		pr := &w.providers[p]
		s.Kind, s.Case, s.Zone, s.Shared, s.Style = KindProvider, pr.cas, pr.name, true, pr.style
		s.Dialect = w.providerDialect(p)
		k := slot - pr.first + 1
		for _, h := range pr.hosts {
			for _, hs := range h.slots {
				if hs == slot {
					s.Names = append(s.Names, h.name)
				}
			}
		}
		switch pr.style {
		case StyleSuite:
			own = "mx." + pr.name
			s.san = []string{own}
			for _, h := range pr.hosts {
				s.san = append(s.san, h.name)
			}
		case StyleTenant:
			s.Zone = "mail." + pr.name
			own = tenantServerName(k) + "." + s.Zone
			s.Wild = []string{own}
		case StyleGateway:
			s.Zone = "in." + pr.name
			own = "mta" + strconv.Itoa(k) + ".int." + pr.name
		case StyleInternal:
			own = "mta" + strconv.Itoa(k) + ".int." + pr.name
		default:
			own = "smtp" + strconv.Itoa(k) + "." + pr.name
		}
	case slot < w.slotBase:
		h := slot - w.slotHostng
		t := pick(hostingTurns, uint64(h))
		s.Kind, s.Case, s.Shared, s.Style, s.hosting = KindHosting, t.cas, true, t.style, h
		s.Dialect = w.hostingDialect(h)
		if s.Dialect == DialectExim && w.hostingCPanel(h) {
			s.greetTail = cpanelGreeting
		}
		own = hostingName(h)
		s.Zone = own[strings.IndexByte(own, '.')+1:]
		s.Names = []string{own}
	default:
		i := (slot - w.slotBase) / 2
		k := (slot - w.slotBase) % 2
		d := w.Domain(i)
		switch d.Kind {
		case KindSelf:
			if d.leader != i || (k == 1 && d.variant == variantOne) {
				return nil, false
			}
			s.Kind, s.Zone = KindSelf, d.Name
			s.Style, s.Case = w.selfServer(i)
			name := "mx." + d.Name
			if k == 1 && d.variant == variantMX2 {
				name = "mx2." + d.Name
			}
			s.Names = []string{name}
			own = w.machineName(slot, s.Style)
			s.Dialect = w.selfDialect(i)
			if s.Dialect == DialectExim && s.Style == StyleNone && k == 1 && d.variant == variantMX2 {
				// One Exim daemon on both addresses (realservers/ 127.77.0.28):
				// smtp_banner names mx2 in two lines on the second address,
				// EHLO names the primary_hostname mx.
				s.greetTail = noUCEGreeting
				eximSecond = "mx." + d.Name
			}
		case KindCase:
			if k != 0 || w.Status(d) != StatusOK {
				return nil, false
			}
			// The names of the MX hosts on the domain's own address; none: no
			// server (the host has no address, or one the lab does not serve).
			for _, h := range w.MXHosts(d) {
				if len(h.Slots) > 0 {
					s.Names = append(s.Names, h.Name)
				}
			}
			if len(s.Names) == 0 {
				return nil, false
			}
			s.Kind, s.Case, s.Zone = KindCase, d.Case, d.Name
			own = "smtp." + d.Name
		default:
			return nil, false
		}
	}
	c := &s.Case.SMTP
	if s.Style != StyleNone || c.Banner == NameOwn {
		s.Banner = own
	} else {
		s.Banner = s.Names[0]
	}
	if s.Kind == KindCase || (s.Kind == KindProvider && s.Style == StyleNone) {
		s.Wild = append([]string{s.Banner}, s.Names...)
	}
	s.EHLO, s.PostEHLO = s.Banner, s.Banner
	if eximSecond != "" {
		s.EHLO, s.PostEHLO = eximSecond, eximSecond
	}
	if c.EHLOName == NameOwn {
		s.EHLO = own
	}
	if c.PostName == NameOwn {
		s.PostEHLO = own
	}
	if c.EHLOName == NameOwn || c.PostName == NameOwn {
		s.Wild = append(s.Wild, own)
	}
	switch pick(ptrKinds, w.hash(tagPTR, slot)) {
	case ptrBanner:
		// A PTR names a host of some zone, never localhost or a dotless name.
		if strings.HasSuffix(s.Banner, ".test") {
			s.PTR = s.Banner
			break
		}
		fallthrough
	case ptrISP:
		b := s.IP.As4()
		s.PTR = "ip-127-" + strconv.Itoa(int(b[1])) + "-" + strconv.Itoa(int(b[2])) + "-" + strconv.Itoa(int(b[3])) + ".isp.test"
	}
	if w.p.LatencyMax > 0 {
		span := uint64(w.p.LatencyMax - w.p.LatencyMin)
		s.Latency = w.p.LatencyMin
		if span > 0 {
			s.Latency += time.Duration(w.hash(tagLatency, slot) % (span + 1))
		}
	}
	return s, true
}

// certName is the name a server's certificate is made for, given the SNI the
// client sent: the SNI when the server serves that MX name, else its first
// (the banner for servers of per-domain MX names, which serve none by name).
func (s *Server) certName(sni string) string {
	for _, n := range s.Names {
		if n == sni {
			return n
		}
	}
	if len(s.Names) == 0 {
		return s.Banner
	}
	return s.Names[0]
}

// autoSSLDomain is the domain whose mail.<d> an SNI names, when that domain
// is hosted on this (AutoSSL) hosting server.
func (s *Server) autoSSLDomain(sni string) (string, bool) {
	d, ok := strings.CutPrefix(sni, "mail.")
	if !ok || s.Kind != KindHosting {
		return "", false
	}
	i, ok := s.w.parseDomain(d)
	if !ok {
		return "", false
	}
	dd := s.w.Domain(i)
	return d, dd.Kind == KindHosting && dd.hosting == s.hosting
}

// tenantServerName is the internal name of a tenant-like provider's k-th
// server, after Microsoft 365's bn8nam11ft036.
func tenantServerName(k int) string {
	regions := [...]string{"bn8", "am6", "db5", "sn1"}
	return regions[k%4] + "nam" + strconv.Itoa(11+k/4) + "ft" + strconv.Itoa(100 + k)[1:]
}

// CasesOf labels a target's server as the truth's cases do: a case server
// by its case, a background server by kind, case and style.
func (s *Server) CasesOf() []string {
	if s.Kind == KindCase {
		return []string{s.Case.Name}
	}
	return bgCases(s.Kind, s.Case, s.Style)
}
