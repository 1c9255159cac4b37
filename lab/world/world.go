// Package world is the lab's model of a mail internet, without I/O: which
// domains exist, what their zones hold, which server runs on which address,
// how it talks and which certificate it shows. Everything is derived from
// (seed, index) by hashing; only the few hundred providers are
// materialised, so a million-domain world costs kilobytes and the servers
// can answer for any name or address on demand.
//
// A behaviour of the lab is one record of the case table (cases.go): its
// DNS shape, its SMTP script, its TLS limits, its certificate rule and the
// outcome a scan must record. The DNS server (lab/dnsserver), the SMTP
// server (lab/smtpserver), the certificate authority (lab/pki) and the truth
// (lab/truth) all read that record; none of them decides a behaviour of its
// own. The draws that shape the background (provider styles, dialects,
// machine names, ...) are weighted tables drawn by one function, pick.
package world

import (
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Kind is what sort of site a domain is.
type Kind uint8

const (
	KindCase     Kind = iota // a case domain: its own server showing one case
	KindProvider             // hosted by one of the Zipf-weighted providers
	KindHosting              // MX mail.<d> on a shared hosting server
	KindSelf                 // own MX mx.<leader>, possibly shared by a few sibling domains
)

// Label is the kind's name in the truth's cases and lab.json (bg_*).
func (k Kind) Label() string {
	return [...]string{KindCase: "case", KindProvider: "bg_provider", KindHosting: "bg_hosting", KindSelf: "bg_self"}[k]
}

// Hash tags keep the derived properties independent of each other. Their
// values are part of every world: a new tag goes at the end.
const (
	tagWord uint64 = iota + 1
	tagKind
	tagProvider
	tagHosting
	tagLeader
	tagVariant
	tagSelfCase
	tagPTR
	tagLatency
	tagProvHosts
	tagProvAddrs
	tagProvCase
	tagHostingCase
	tagPerm
	tagAddr
	tagV6
	tagKey
	tagGarbage
	tagProvStyle
	tagTenant
	tagSelfStyle
	tagMachine
	tagProvDialect
	tagHostingDialect
	tagSelfDialect
	tagZoneSigned
	tagProvSigned
	tagSelfDANE
	tagSTS
	tagSTSMode
	tagRPT
)

func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func (w *World) hash(tag uint64, i int) uint64 {
	return mix64(w.seed ^ mix64(tag*0x9e3779b97f4a7c15+uint64(i)))
}

func (w *World) unit(tag uint64, i int) float64 {
	return float64(w.hash(tag, i)>>11) / (1 << 53)
}

var words = []string{
	"amber", "birch", "cobalt", "delta", "ember", "fjord", "garnet", "harbor",
	"indigo", "juniper", "kestrel", "lumen", "maple", "nimbus", "onyx", "pepper",
	"quartz", "raven", "saffron", "tundra", "umber", "violet", "willow", "xenon",
	"yarrow", "zephyr", "acorn", "basalt", "cedar", "dune", "falcon", "glacier",
}

// Params are the knobs that shape the world.
type Params struct {
	Domains       int                // number of domains in domains.csv
	Seed          int64              // same seed, same world
	Cases         map[string]float64 // case name -> share of domains; "default" sets the rest, "hostile" the hostile group
	ProviderShare float64            // share of non-case domains hosted by providers
	HostingShare  float64            // share of non-case domains on shared hosting servers
	Providers     int                // number of providers; 0 = n/2000+5, at most 500
	Zipf          float64            // exponent of the providers' market shares
	LatencyMin    time.Duration      // per-reply delay range of the SMTP servers
	LatencyMax    time.Duration
	// TenantPool > 0 makes every provider tenant-like (a per-domain MX name
	// on two addresses of a shared pool) with a pool of this many addresses:
	// with one provider and no cases, the benchmark's proving ground (every
	// domain one MX, TLS 1.3, one certificate per pool).
	TenantPool int
}

func (p *Params) setDefaults() {
	if p.Domains == 0 {
		p.Domains = 1000
	}
	if p.ProviderShare == 0 && p.HostingShare == 0 {
		p.ProviderShare, p.HostingShare = 0.70, 0.15
	}
	if p.Zipf == 0 {
		p.Zipf = 1.0
	}
	if p.Providers == 0 {
		p.Providers = min(p.Domains/2000+5, 500)
	}
}

// provider is materialised because domains point at it by index and its
// hosts own a contiguous block of address slots.
type provider struct {
	name   string // provider3.test
	cas    *Case
	shared bool // all MX hosts share one address set: the certificate is chosen by SNI
	style  StyleID
	hosts  []provHost // none for per-domain MX styles
	pool   []int      // per-domain MX styles: the shared addresses, two per domain
	first  int        // first slot
	nSlots int
}

type provHost struct {
	name  string
	pref  uint16
	slots []int
	v6    netip.Addr // a 2001:db8::/32 address, or the zero Addr
}

// World is the deterministic model behind the DNS server, the SMTP server and
// the truth files.
type World struct {
	p          Params
	seed       uint64
	n          int
	permA      uint64
	permB      uint64
	counts     []int // domains per case, by Case.index
	cum        []int
	caseTotal  int
	providers  []provider
	provCum    []float64
	slotOwner  []int32 // provider index per provider slot
	nHosting   int
	slotHostng int // first hosting slot
	slotBase   int // first per-domain slot: domain i owns slotBase+2i and +1
	nSlots     int
	addrA      uint64
	addrAinv   uint64
	addrB      uint64
}

// addrSpace is 127.1.0.0 - 127.254.255.255: 127.0/16 is left to the host's own
// loopback services (and 127.0.0.53), 127.255/16 to anything else.
const addrSpace = 254 * 65536

// New derives the world; it fails only on impossible parameters.
func New(p Params) (*World, error) {
	p.setDefaults()
	if p.Domains < 1 {
		return nil, fmt.Errorf("lab: -domains must be positive")
	}
	if p.ProviderShare < 0 || p.HostingShare < 0 || p.ProviderShare+p.HostingShare > 1 {
		return nil, fmt.Errorf("lab: provider and hosting shares must be >= 0 and add up to at most 1")
	}
	w := &World{p: p, seed: mix64(uint64(p.Seed) + 0x5eed), n: p.Domains}
	counts, err := caseCounts(w.n, p.Cases)
	if err != nil {
		return nil, err
	}
	w.counts = counts
	w.cum = make([]int, len(cases)+1)
	for c := range cases {
		w.cum[c+1] = w.cum[c] + w.counts[c]
	}
	w.caseTotal = w.cum[len(cases)]

	// Position q = (a*i+b) mod n spreads the case domains over all ranks.
	w.permA = w.hash(tagPerm, 0)%uint64(w.n) | 1
	for gcd(w.permA, uint64(w.n)) != 1 {
		w.permA++
	}
	w.permB = w.hash(tagPerm, 1) % uint64(w.n)

	w.buildProviders()
	w.nHosting = min(w.n/500+3, 3000)
	w.slotHostng = len(w.slotOwner)
	w.slotBase = w.slotHostng + w.nHosting
	w.nSlots = w.slotBase + 2*w.n
	if w.nSlots > addrSpace {
		return nil, fmt.Errorf("lab: %d domains need more addresses than 127.1.0.0-127.254.255.255 holds", w.n)
	}
	// Address slot s lives at k = (s*A + B) mod addrSpace: a bijection, so the
	// SMTP server maps the dialed address back to its slot.
	w.addrA = w.hash(tagAddr, 0) % addrSpace
	for w.addrA%2 == 0 || w.addrA%127 == 0 {
		w.addrA++
	}
	w.addrB = w.hash(tagAddr, 1) % addrSpace
	w.addrAinv = modInverse(w.addrA, addrSpace)
	return w, nil
}

// Seed is the world's derived seed: the certificate authority's keys come
// from it.
func (w *World) Seed() uint64 { return w.seed }

// Params are the parameters the world was made with, defaults filled in.
func (w *World) Params() Params { return w.p }

// Len is the number of domains.
func (w *World) Len() int { return w.n }

// Providers is the number of providers; HostingServers of shared hosting
// servers.
func (w *World) Providers() int      { return len(w.providers) }
func (w *World) HostingServers() int { return w.nHosting }

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func modInverse(a, m uint64) uint64 {
	// Extended Euclid on signed integers; a and m are coprime by construction.
	t, newT := int64(0), int64(1)
	r, newR := int64(m), int64(a)
	for newR != 0 {
		q := r / newR
		t, newT = newT, t-q*newT
		r, newR = newR, r-q*newR
	}
	if t < 0 {
		t += int64(m)
	}
	return uint64(t)
}

func (w *World) buildProviders() {
	P := max(w.p.Providers, 1)
	w.providers = make([]provider, P)
	w.provCum = make([]float64, P)
	total := 0.0
	for p := range P {
		total += 1 / math.Pow(float64(p+1), w.p.Zipf)
		w.provCum[p] = total
	}
	for p := range P {
		w.provCum[p] /= total
	}
	slot := 0
	for p := range P {
		pr := &w.providers[p]
		pr.name = "provider" + strconv.Itoa(p+1) + ".test"
		pr.style = w.providerStyle(p)
		pr.cas = pick(providerCases, w.hash(tagProvCase, p))
		pr.first = slot
		if c := styles[pr.style].cas; c != nil {
			pr.cas = c
		}
		if pr.style.perDomainMX() {
			n := 4
			if p < 3 {
				n = 8
			}
			if w.p.TenantPool > 0 {
				n = w.p.TenantPool
			}
			for range n {
				pr.pool = append(pr.pool, slot)
				w.slotOwner = append(w.slotOwner, int32(p))
				slot++
			}
			pr.nSlots = n
			continue
		}
		if p == 0 && pr.style == StyleNone {
			pr.cas = caseCertMX
		}
		pr.shared = p%4 == 1 || pr.style == StyleInternal
		nHosts := 1 + int(w.hash(tagProvHosts, p)%3)
		nAddrs := 1 + int(w.hash(tagProvAddrs, p)%2)
		if p < 3 {
			nHosts, nAddrs = 3, 4
		}
		samePref := pick(oneIn4, w.hash(tagProvHosts, p))
		for k := range nHosts {
			h := provHost{name: "mx" + strconv.Itoa(k+1) + "." + pr.name, pref: uint16(10 * (k + 1))}
			if samePref {
				h.pref = 10
			}
			if pr.style == StyleSuite {
				// aspmx.l (1), alt1.aspmx.l (5), alt2.aspmx.l (5), ...
				h.name, h.pref = "aspmx.l."+pr.name, 1
				if k > 0 {
					h.name, h.pref = "alt"+strconv.Itoa(k)+".aspmx.l."+pr.name, 5
				}
			}
			if pr.shared && k > 0 {
				h.slots = pr.hosts[0].slots
			} else {
				for range nAddrs {
					h.slots = append(h.slots, slot)
					w.slotOwner = append(w.slotOwner, int32(p))
					slot++
				}
			}
			if pick(oneIn4, w.hash(tagV6, p*16+k)) {
				h.v6 = netip.MustParseAddr(fmt.Sprintf("2001:db8:%x::%x", p+1, k+1))
			}
			pr.hosts = append(pr.hosts, h)
		}
		pr.nSlots = slot - pr.first
	}
}

// tenantMX is a per-domain provider MX name: amber17.test at a tenant-like
// provider is amber17-test.mail.<p>.
func (w *World) tenantMX(d Domain) string {
	pr := &w.providers[d.provider]
	label := strings.TrimSuffix(d.Name, ".test") + "-test"
	if pr.style == StyleGateway {
		return label + ".in." + pr.name
	}
	return label + ".mail." + pr.name
}

// tenantPref is the preference of a per-domain provider MX.
func (w *World) tenantPref(d Domain) uint16 {
	if w.providers[d.provider].style == StyleGateway {
		return 10
	}
	return 0
}

// tenantSlots are the two pool addresses a per-domain provider MX has, in
// the order DNS gives them.
func (w *World) tenantSlots(d Domain) []int {
	pool := w.providers[d.provider].pool
	j := int(w.hash(tagTenant, d.Index) % uint64(len(pool)))
	return []int{pool[j], pool[(j+1)%len(pool)]}
}

// tenantDomain maps a per-domain provider MX name back to its domain.
func (w *World) tenantDomain(label string, p int) (Domain, bool) {
	base, ok := strings.CutSuffix(label, "-test")
	if !ok {
		return Domain{}, false
	}
	i, ok := w.parseDomain(base + ".test")
	if !ok {
		return Domain{}, false
	}
	d := w.Domain(i)
	if d.Kind != KindProvider || d.provider != p {
		return Domain{}, false
	}
	return d, true
}

// SlotAddr is the IPv4 address of a slot.
func (w *World) SlotAddr(s int) netip.Addr {
	k := (uint64(s)*w.addrA + w.addrB) % addrSpace
	return netip.AddrFrom4([4]byte{127, byte(1 + k>>16), byte(k >> 8), byte(k)})
}

// AddrSlot is the inverse of SlotAddr; ok is false for addresses the world
// does not use.
func (w *World) AddrSlot(a netip.Addr) (int, bool) {
	if !a.Is4() && !a.Is4In6() {
		return 0, false
	}
	b := a.Unmap().As4()
	if b[0] != 127 || b[1] == 0 || b[1] == 255 {
		return 0, false
	}
	k := uint64(b[1]-1)<<16 | uint64(b[2])<<8 | uint64(b[3])
	s := (k + addrSpace - w.addrB) % addrSpace * w.addrAinv % addrSpace
	if s >= uint64(w.nSlots) {
		return 0, false
	}
	return int(s), true
}

// Domain is everything derived about one domain index.
type Domain struct {
	Index    int
	Name     string
	Kind     Kind
	Case     *Case // KindCase only
	provider int   // KindProvider
	hosting  int   // KindHosting
	leader   int   // KindSelf: the domain whose MX names and servers it shares
	variant  uint8 // KindSelf leaders: 0 one address, 1 two addresses, 2 a second MX host mx2
}

// Self-hosted leaders' MX layouts.
const (
	variantOne uint8 = iota // mx.<L> on one address
	variantTwo              // mx.<L> on two addresses
	variantMX2              // mx.<L> and mx2.<L> (preference 20), one address each
)

// DomainName is the name of domain i: <word><i+1>.test.
func (w *World) DomainName(i int) string {
	return words[w.hash(tagWord, i)%uint64(len(words))] + strconv.Itoa(i+1) + ".test"
}

func (w *World) kindOf(i int) (Kind, *Case) {
	q := int((w.permA*uint64(i) + w.permB) % uint64(w.n))
	if q < w.caseTotal {
		c := sort.Search(len(cases), func(c int) bool { return w.cum[c+1] > q })
		return KindCase, &cases[c]
	}
	u := w.unit(tagKind, i)
	switch {
	case u < w.p.ProviderShare:
		return KindProvider, nil
	case u < w.p.ProviderShare+w.p.HostingShare:
		return KindHosting, nil
	}
	return KindSelf, nil
}

func (w *World) isLeader(i int) bool { return pick(oneIn3, w.hash(tagLeader, i)) }

// Domain derives domain i.
func (w *World) Domain(i int) Domain {
	d := Domain{Index: i, Name: w.DomainName(i)}
	d.Kind, d.Case = w.kindOf(i)
	switch d.Kind {
	case KindProvider:
		u := w.unit(tagProvider, i)
		d.provider = sort.SearchFloat64s(w.provCum, u)
		d.provider = min(d.provider, len(w.providers)-1)
	case KindHosting:
		d.hosting = int(w.hash(tagHosting, i) % uint64(w.nHosting))
	case KindSelf:
		d.leader = i
		if !w.isLeader(i) {
			// A company with several domains points them all at one MX host:
			// attach to a nearby leader when there is one.
			for j := i - 1; j >= 0 && j > i-8; j-- {
				if k, _ := w.kindOf(j); k == KindSelf && w.isLeader(j) {
					d.leader = j
					break
				}
			}
		}
		d.variant = pick(selfVariants, w.hash(tagVariant, d.leader))
	}
	return d
}

// parseDomain maps "amber17.test" back to its index.
func (w *World) parseDomain(name string) (int, bool) {
	base, ok := strings.CutSuffix(name, ".test")
	if !ok || strings.Contains(base, ".") {
		return 0, false
	}
	j := len(base)
	for j > 0 && base[j-1] >= '0' && base[j-1] <= '9' {
		j--
	}
	if j == 0 || j == len(base) || base[j] == '0' {
		return 0, false
	}
	num, err := strconv.Atoi(base[j:])
	if err != nil || num < 1 || num > w.n {
		return 0, false
	}
	if words[w.hash(tagWord, num-1)%uint64(len(words))] != base[:j] {
		return 0, false
	}
	return num - 1, true
}

func hostingName(h int) string {
	return "s" + strconv.Itoa(h+1) + ".hosting" + strconv.Itoa(h%5+1) + ".test"
}

// Cases is what the truth and lab.json say of a domain: a case domain its
// case's name; a background domain its kind, its server's case and, for the
// kinds that name themselves apart from the MX, its style.
func (w *World) Cases(d Domain) []string {
	switch d.Kind {
	case KindCase:
		return []string{d.Case.Name}
	case KindProvider:
		pr := &w.providers[d.provider]
		return bgCases(d.Kind, pr.cas, pr.style)
	case KindHosting:
		t := pick(hostingTurns, uint64(d.hosting))
		return bgCases(d.Kind, t.cas, t.style)
	case KindSelf:
		st, c := w.selfServer(d.leader)
		return bgCases(d.Kind, c, st)
	}
	return nil
}

// bgCases labels a background domain or target: kind, server case and, for
// the kinds that name themselves apart from the MX, the style.
func bgCases(k Kind, c *Case, st StyleID) []string {
	if st == StyleNone {
		return []string{k.Label(), c.Name}
	}
	return []string{k.Label(), c.Name, styles[st].label}
}
