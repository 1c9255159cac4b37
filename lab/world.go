package lab

import (
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The world is derived, not stored: a domain's kind, provider, case, names and
// addresses are pure functions of (seed, index). Only the few hundred
// providers are materialised, so a million-domain world costs kilobytes and
// the DNS and SMTP servers can answer for any name or address on demand.

type siteKind uint8

const (
	kindCase     siteKind = iota // a case domain: its own server showing one case
	kindProvider                 // hosted by one of the Zipf-weighted providers
	kindHosting                  // MX mail.<d> on a shared hosting server
	kindSelf                     // own MX mx.<leader>, possibly shared by a few sibling domains
)

var kindLabel = [...]string{kindCase: "case", kindProvider: "bg_provider", kindHosting: "bg_hosting", kindSelf: "bg_self"}

// Hash tags keep the derived properties independent of each other.
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
)

// bgStyle is how a background server names itself and what its certificate
// says, beyond the case: the ways real mail servers greet with one name while
// the certificate carries another (README "Background kinds").
type bgStyle uint8

const (
	styleNone        bgStyle = iota // case domains and the classic background servers
	styleSuite                      // provider: MX aspmx.l/altN.aspmx.l.<p>, banner mx.<p>, certificate for the banner and every MX name (Google-like)
	styleTenant                     // provider: per-domain MX <d-dashed>.mail.<p> on 2 of a shared pool, *.mail.<p> by SNI, banner per server <code>.mail.<p> (Microsoft 365-like)
	styleGateway                    // provider: per-domain MX <d-dashed>.in.<p> on 2 of a shared pool, *.in.<p>, banner per server mta<k>.int.<p> (filtering gateway)
	styleInternal                   // provider: shared MX names, certificate for the MX name by SNI, banner per server mta<k>.int.<p>
	styleAutoSSL                    // hosting: certificate for mail.<d> by SNI (AutoSSL), banner the server's name
	styleMachine                    // self-hosted: banner the machine's name (FQDN, dotless, localhost), CA certificate for the MX name
	styleMachineCert                // self-hosted: banner and CA certificate for the machine's FQDN, MX mx.<d>
	styleDefaultCert                // self-hosted: banner the machine's name, self-signed default certificate for it (FQDN or dotless)
	numStyles
)

var styleLabel = [numStyles]string{
	styleSuite: "provider_suite", styleTenant: "provider_tenant", styleGateway: "provider_gateway",
	styleInternal: "provider_internal", styleAutoSSL: "hosting_autossl", styleMachine: "self_machine_banner",
	styleMachineCert: "self_machine_cert", styleDefaultCert: "self_default_cert",
}

// perDomainMX says whether a provider style gives each domain its own MX name.
func (st bgStyle) perDomainMX() bool { return st == styleTenant || st == styleGateway }

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

// WorldParams are the knobs that shape the world; Config embeds them.
type WorldParams struct {
	Domains       int                // number of domains in domains.csv
	Seed          int64              // same seed, same world
	Cases         map[string]float64 // case name -> share of domains; "default" sets the rest
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

func (p *WorldParams) setDefaults() {
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
	cas    caseID
	shared bool // all MX hosts share one address set: the certificate is chosen by SNI
	style  bgStyle
	hosts  []provHost // none for per-domain MX styles
	pool   []int      // per-domain MX styles: the shared addresses, two per domain
	first  int        // first slot
	nSlots int
}

type provHost struct {
	name  string
	pref  uint16
	slots []int
	v6    string // a 2001:db8::/32 address, or ""
}

// World is the deterministic model behind the DNS server, the SMTP server and
// the truth files.
type World struct {
	p          WorldParams
	seed       uint64
	n          int
	permA      uint64
	permB      uint64
	counts     [numCases]int
	cum        [numCases + 1]int
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

// NewWorld derives the world; it fails only on impossible parameters.
func NewWorld(p WorldParams) (*World, error) {
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
	for c := caseID(1); c < numCases; c++ {
		w.cum[c+1] = w.cum[c] + w.counts[c]
	}
	w.caseTotal = w.cum[numCases]

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

var provCaseCycle = []caseID{cCertMX, cCertMX, cCertMX, cCertMX, cCertWildcard, cCertWildcard, cCertBoth, cCertBannerOnly, cTLS12Only, cCertRSA}

// providerStyle: the six largest are suite-like, tenant-like, a filtering
// gateway, internal-banner, classic, classic; the others are drawn (50%
// classic, 25% internal banner, 15% tenant, 10% gateway).
func (w *World) providerStyle(p int) bgStyle {
	if w.p.TenantPool > 0 {
		return styleTenant
	}
	if p < len(topStyles) {
		return topStyles[p]
	}
	switch u := w.hash(tagProvStyle, p) % 20; {
	case u < 10:
		return styleNone
	case u < 15:
		return styleInternal
	case u < 18:
		return styleTenant
	}
	return styleGateway
}

var topStyles = [...]bgStyle{styleSuite, styleTenant, styleGateway, styleInternal, styleNone, styleNone}

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
		pr.cas = provCaseCycle[w.hash(tagProvCase, p)%uint64(len(provCaseCycle))]
		pr.first = slot
		switch pr.style {
		case styleTenant, styleGateway:
			pr.cas = cCertWildcard
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
		case styleSuite:
			pr.cas = cCertBoth
		case styleInternal:
			pr.cas = cCertMX
		}
		if p == 0 && pr.style == styleNone {
			pr.cas = cCertMX
		}
		pr.shared = p%4 == 1 || pr.style == styleInternal
		nHosts := 1 + int(w.hash(tagProvHosts, p)%3)
		nAddrs := 1 + int(w.hash(tagProvAddrs, p)%2)
		if p < 3 {
			nHosts, nAddrs = 3, 4
		}
		samePref := w.hash(tagProvHosts, p)%4 == 0
		for k := range nHosts {
			h := provHost{name: "mx" + strconv.Itoa(k+1) + "." + pr.name, pref: uint16(10 * (k + 1))}
			if samePref {
				h.pref = 10
			}
			if pr.style == styleSuite {
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
			if w.hash(tagV6, p*16+k)%4 == 0 {
				h.v6 = fmt.Sprintf("2001:db8:%x::%x", p+1, k+1)
			}
			pr.hosts = append(pr.hosts, h)
		}
		pr.nSlots = slot - pr.first
	}
}

// tenantMX is a per-domain provider MX name: amber17.test at a tenant-like
// provider is amber17-test.mail.<p>.
func (w *World) tenantMX(d domain) string {
	pr := &w.providers[d.provider]
	label := strings.TrimSuffix(d.name, ".test") + "-test"
	if pr.style == styleGateway {
		return label + ".in." + pr.name
	}
	return label + ".mail." + pr.name
}

// tenantPref is the preference of a per-domain provider MX.
func (w *World) tenantPref(d domain) uint16 {
	if w.providers[d.provider].style == styleGateway {
		return 10
	}
	return 0
}

// tenantSlots are the two pool addresses a per-domain provider MX has, in
// the order DNS gives them.
func (w *World) tenantSlots(d domain) [2]int {
	pool := w.providers[d.provider].pool
	j := int(w.hash(tagTenant, d.idx) % uint64(len(pool)))
	return [2]int{pool[j], pool[(j+1)%len(pool)]}
}

// tenantDomain maps a per-domain provider MX name back to its domain.
func (w *World) tenantDomain(label string, p int) (domain, bool) {
	base, ok := strings.CutSuffix(label, "-test")
	if !ok {
		return domain{}, false
	}
	i, ok := w.parseDomain(base + ".test")
	if !ok {
		return domain{}, false
	}
	d := w.domain(i)
	if d.kind != kindProvider || d.provider != p {
		return domain{}, false
	}
	return d, true
}

// slotAddr is the IPv4 address of a slot.
func (w *World) slotAddr(s int) netip.Addr {
	k := (uint64(s)*w.addrA + w.addrB) % addrSpace
	return netip.AddrFrom4([4]byte{127, byte(1 + k>>16), byte(k >> 8), byte(k)})
}

// addrSlot is the inverse of slotAddr; ok is false for addresses the world
// does not use.
func (w *World) addrSlot(a netip.Addr) (int, bool) {
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

// domain is everything derived about one domain index.
type domain struct {
	idx      int
	name     string
	kind     siteKind
	cas      caseID // kindCase only
	provider int    // kindProvider
	hosting  int    // kindHosting
	leader   int    // kindSelf: the domain whose MX names and servers it shares
	variant  uint8  // kindSelf leaders: 0 one address, 1 two addresses, 2 a second MX host mx2
}

// Len is the number of domains.
func (w *World) Len() int { return w.n }

func (w *World) domainName(i int) string {
	return words[w.hash(tagWord, i)%uint64(len(words))] + strconv.Itoa(i+1) + ".test"
}

func (w *World) kindOf(i int) (siteKind, caseID) {
	q := int((w.permA*uint64(i) + w.permB) % uint64(w.n))
	if q < w.caseTotal {
		c := sort.Search(int(numCases), func(c int) bool { return w.cum[c+1] > q })
		return kindCase, caseID(c)
	}
	u := w.unit(tagKind, i)
	switch {
	case u < w.p.ProviderShare:
		return kindProvider, 0
	case u < w.p.ProviderShare+w.p.HostingShare:
		return kindHosting, 0
	}
	return kindSelf, 0
}

func (w *World) isLeaderFlag(i int) bool { return w.hash(tagLeader, i)%3 == 0 }

func (w *World) domain(i int) domain {
	d := domain{idx: i, name: w.domainName(i)}
	d.kind, d.cas = w.kindOf(i)
	switch d.kind {
	case kindProvider:
		u := w.unit(tagProvider, i)
		d.provider = sort.SearchFloat64s(w.provCum, u)
		d.provider = min(d.provider, len(w.providers)-1)
	case kindHosting:
		d.hosting = int(w.hash(tagHosting, i) % uint64(w.nHosting))
	case kindSelf:
		d.leader = i
		if !w.isLeaderFlag(i) {
			// A company with several domains points them all at one MX host:
			// attach to a nearby leader when there is one.
			for j := i - 1; j >= 0 && j > i-8; j-- {
				if k, _ := w.kindOf(j); k == kindSelf && w.isLeaderFlag(j) {
					d.leader = j
					break
				}
			}
		}
		d.variant = uint8(w.hash(tagVariant, d.leader) % 3)
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

// Hosting servers take turns: AutoSSL (certificate for mail.<d> by SNI),
// certificate for the server's own name, Debian snakeoil.
func (w *World) hostingStyle(h int) bgStyle {
	if h%5 == 0 || h%5 == 3 {
		return styleAutoSSL
	}
	return styleNone
}

func (w *World) hostingCase(h int) caseID {
	switch h % 5 {
	case 0, 3:
		return cCertMX
	case 4:
		return cCertSnakeoil
	}
	return cCertBannerOnly
}

// selfStyle: 40% classic (banner = MX name), 30% machine-name banner with a
// CA certificate for the MX name, 12% certificate for the machine's name,
// 18% a self-signed default certificate for the machine's name.
func (w *World) selfStyle(leader int) bgStyle {
	switch u := w.hash(tagSelfStyle, leader) % 50; {
	case u < 20:
		return styleNone
	case u < 35:
		return styleMachine
	case u < 41:
		return styleMachineCert
	}
	return styleDefaultCert
}

func (w *World) selfCase(leader int) caseID {
	switch w.selfStyle(leader) {
	case styleMachine:
		return cCertMX
	case styleMachineCert:
		return cCertBannerOnly
	case styleDefaultCert:
		return cCertSelfSigned
	}
	switch w.hash(tagSelfCase, leader) % 20 {
	case 0, 1:
		return cCertSelfSigned
	case 2:
		return cCertExpired
	}
	return cCertMX
}

// dotlessNames are machine names without a domain, as a default install
// greets ("220 mail ESMTP Postfix (Debian/GNU)"): a scan's banner_host is empty.
var dotlessNames = []string{"mail", "srv01", "debian", "ubuntu", "mailserver", "vps"}

// machineName is the name a self-hosted machine on a slot calls itself.
// styleMachine draws an FQDN of its hoster, a dotless name, localhost or
// localhost.localdomain; the certificate styles an FQDN (styleMachineCert) or
// an FQDN or a dotless name (styleDefaultCert).
func (w *World) machineName(slot int, st bgStyle) string {
	u := w.hash(tagMachine, slot)
	fqdn := "vps" + strconv.Itoa(slot) + ".hoster" + strconv.Itoa(int(u>>8%7)+1) + ".test"
	dotless := dotlessNames[u>>16%uint64(len(dotlessNames))]
	switch st {
	case styleMachine:
		switch u % 8 {
		case 0, 1, 2:
			return fqdn
		case 3, 4:
			return dotless
		case 5, 6:
			return "localhost"
		}
		return "localhost.localdomain"
	case styleDefaultCert:
		if u%2 == 0 {
			return dotless
		}
	}
	return fqdn
}

// sayHost is what a scan writes as banner_host (or ehlo_host) for a name the
// lab greets with (docs/schema.md): the name, except a dotless one other
// than localhost, which is no host name: "".
func sayHost(name string) string {
	if name != "localhost" && !strings.Contains(name, ".") {
		return ""
	}
	return name
}

// manyMXCount is how many MX records dns_many_mx domains get: enough to
// overflow 512 bytes and a 1232-byte EDNS0 buffer. dns_mx_hundreds domains
// get hundredsMXCount, beyond any scanner's per-domain MX bound.
const (
	manyMXCount     = 100
	hundredsMXCount = 300
)

// mxCount is the number of MX records of a many-MX case, 0 for other cases.
func mxCount(c caseID) int {
	switch c {
	case cDNSManyMX:
		return manyMXCount
	case cDNSMXHundreds:
		return hundredsMXCount
	}
	return 0
}

func manyMXName(k int, d string) string { return fmt.Sprintf("mx%03d.%s", k+1, d) }

// server is what one address slot does: its case, the names it uses and which
// certificate name it serves for which SNI.
type server struct {
	slot     int
	ip       netip.Addr
	kind     siteKind
	cas      caseID
	zone     string   // the domain whose wildcard would cover the site's names
	names    []string // MX names served here; SNI picks among them, names[0] without SNI
	banner   string
	ehlo     string
	postEHLO string
	ptr      string // "" when the address has no PTR
	latency  time.Duration
	shared   bool // certificates reused across many targets: worth caching
	style    bgStyle
	dialect  dialect // how it talks (dialect.go); case servers keep the lab's
	// greetTail are the lines after the first of a multi-line greeting (Exim).
	greetTail []string
	w         *World
	hosting   int      // kindHosting: the server's index
	san       []string // styleSuite: the names of its certificate
	// wild are the site's names the lab put one label under zone (cert_wildcard
	// servers; the target's MX name always is).
	wild []string
}

// serverAt describes the server on a slot; ok is false for slots whose
// domain does not run a server there.
func (w *World) serverAt(slot int) (*server, bool) {
	if slot < 0 || slot >= w.nSlots {
		return nil, false
	}
	s := &server{slot: slot, ip: w.slotAddr(slot)}
	var eximSecond string // the Exim daemon's primary_hostname, on its second address
	switch {
	case slot < w.slotHostng:
		p := int(w.slotOwner[slot])
		pr := &w.providers[p]
		s.kind, s.cas, s.zone, s.shared, s.style = kindProvider, pr.cas, pr.name, true, pr.style
		s.dialect = w.providerDialect(p)
		k := slot - pr.first + 1
		for _, h := range pr.hosts {
			for _, hs := range h.slots {
				if hs == slot {
					s.names = append(s.names, h.name)
				}
			}
		}
		switch pr.style {
		case styleSuite:
			s.banner = "mx." + pr.name
			s.san = []string{s.banner}
			for _, h := range pr.hosts {
				s.san = append(s.san, h.name)
			}
		case styleTenant:
			s.zone = "mail." + pr.name
			s.banner = tenantServerName(k) + "." + s.zone
			s.wild = []string{s.banner}
		case styleGateway:
			s.zone = "in." + pr.name
			s.banner = "mta" + strconv.Itoa(k) + ".int." + pr.name
		case styleInternal:
			s.banner = "mta" + strconv.Itoa(k) + ".int." + pr.name
		default:
			s.banner = s.names[0]
			if s.cas == cCertBannerOnly || s.cas == cCertBoth {
				s.banner = "smtp" + strconv.Itoa(k) + "." + pr.name
			}
			s.wild = append([]string{s.banner}, s.names...)
		}
	case slot < w.slotBase:
		h := slot - w.slotHostng
		s.kind, s.cas, s.shared, s.style, s.hosting = kindHosting, w.hostingCase(h), true, w.hostingStyle(h), h
		s.dialect = w.hostingDialect(h)
		if s.dialect == dialectExim && w.hostingCPanel(h) {
			s.greetTail = cpanelGreeting
		}
		s.banner = hostingName(h)
		s.zone = s.banner[strings.IndexByte(s.banner, '.')+1:]
		s.names = []string{s.banner}
	default:
		i := (slot - w.slotBase) / 2
		k := (slot - w.slotBase) % 2
		d := w.domain(i)
		switch d.kind {
		case kindSelf:
			if d.leader != i || (k == 1 && d.variant == 0) {
				return nil, false
			}
			s.kind, s.cas, s.zone, s.style = kindSelf, w.selfCase(i), d.name, w.selfStyle(i)
			name := "mx." + d.name
			if k == 1 && d.variant == 2 {
				name = "mx2." + d.name
			}
			s.names = []string{name}
			s.banner = name
			if s.style != styleNone {
				s.banner = w.machineName(slot, s.style)
			}
			s.dialect = w.selfDialect(i)
			if s.dialect == dialectExim && s.style == styleNone && k == 1 && d.variant == 2 {
				// One Exim daemon on both addresses (realservers/ 127.77.0.28):
				// smtp_banner names mx2 in two lines on the second address,
				// EHLO names the primary_hostname mx.
				s.greetTail = noUCEGreeting
				eximSecond = "mx." + d.name
			}
		case kindCase:
			if k != 0 || !caseHasServer(d.cas) {
				return nil, false
			}
			s.kind, s.cas, s.zone = kindCase, d.cas, d.name
			switch d.cas {
			case cDNSImplicitMX:
				s.names = []string{d.name}
			case cDNSManyMX, cDNSMXHundreds:
				for m := range mxCount(d.cas) {
					s.names = append(s.names, manyMXName(m, d.name))
				}
			default:
				s.names = []string{"mx." + d.name}
			}
			s.banner = s.names[0]
			if d.cas == cCertBannerOnly || d.cas == cCertBoth {
				s.banner = "smtp." + d.name
			}
			s.wild = append([]string{s.banner}, s.names...)
		default:
			return nil, false
		}
	}
	s.w = w
	s.ehlo, s.postEHLO = s.banner, s.banner
	if eximSecond != "" {
		s.ehlo, s.postEHLO = eximSecond, eximSecond
	}
	switch s.cas {
	case cSMTPEHLODiffers:
		s.ehlo, s.postEHLO = "smtp."+s.zone, "smtp."+s.zone
		s.wild = append(s.wild, s.ehlo)
	case cSMTPPostTLSDiffers:
		s.postEHLO = "smtp." + s.zone
		s.wild = append(s.wild, s.postEHLO)
	}
	switch w.hash(tagPTR, slot) % 20 {
	case 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10:
		// A PTR names a host of some zone, never localhost or a dotless name.
		if strings.HasSuffix(s.banner, ".test") {
			s.ptr = s.banner
			break
		}
		fallthrough
	case 11, 12, 13, 14, 15, 16:
		b := s.ip.As4()
		s.ptr = "ip-127-" + strconv.Itoa(int(b[1])) + "-" + strconv.Itoa(int(b[2])) + "-" + strconv.Itoa(int(b[3])) + ".isp.test"
	}
	if w.p.LatencyMax > 0 {
		span := uint64(w.p.LatencyMax - w.p.LatencyMin)
		s.latency = w.p.LatencyMin
		if span > 0 {
			s.latency += time.Duration(w.hash(tagLatency, slot) % (span + 1))
		}
	}
	return s, true
}

// caseHasServer says whether a case domain runs an SMTP server on its slot.
func caseHasServer(c caseID) bool {
	switch c {
	case cSMTPRefused, cDNSNullMX, cDNSNoMX, cDNSNXDomain, cDNSServfail, cDNSTimeout,
		cDNSMXNoAddress, cDNSMXNXDomain, cDNSMXPrivate, cDNSMXLinkLocal, cDNSMXDocIPv6,
		cDNSCNAMELoop, cDNSMXIPLiteral, cDNSWrongID, cDNSWrongQuestion:
		return false
	}
	return true
}

// certName is the name a server's certificate is made for, given the SNI the
// client sent: the SNI when the server serves that MX name, else its first
// (the banner for servers without shared MX names).
func (s *server) certName(sni string) string {
	for _, n := range s.names {
		if n == sni {
			return n
		}
	}
	if len(s.names) == 0 {
		return s.banner
	}
	return s.names[0]
}

// autoSSLDomain is the domain whose mail.<d> an SNI names, when that domain
// is hosted on this (AutoSSL) hosting server.
func (s *server) autoSSLDomain(sni string) (string, bool) {
	d, ok := strings.CutPrefix(sni, "mail.")
	if !ok || s.kind != kindHosting {
		return "", false
	}
	i, ok := s.w.parseDomain(d)
	if !ok {
		return "", false
	}
	dd := s.w.domain(i)
	return d, dd.kind == kindHosting && dd.hosting == s.hosting
}

// tenantServerName is the internal name of a tenant-like provider's k-th
// server, after Microsoft 365's bn8nam11ft036.
func tenantServerName(k int) string {
	regions := [...]string{"bn8", "am6", "db5", "sn1"}
	return regions[k%4] + "nam" + strconv.Itoa(11+k/4) + "ft" + strconv.Itoa(100 + k)[1:]
}
