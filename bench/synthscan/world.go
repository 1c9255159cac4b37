package synthscan

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/scan/smtpreply"
)

// The world is derived, not stored: everything about domain i is a pure
// function of (seed, i), drawn from hashes with a tag per property, so any
// domain can be generated on any worker in any order. Only the providers
// and hosting servers, a few thousand, are materialised with their shared
// certificates.

// Hash tags: one per drawn property, so properties are independent.
const (
	tWord uint64 = iota + 1
	tTLD
	tStatus
	tKind
	tSibling
	tLayout
	tV6
	tName
	tDialect
	tBanner
	tCert
	tKey
	tValid
	tFail
	tTLS
	tGroup
	tPTR
	tPool
	tMid
	tHosting
	tDuration
	tRotate
	tIssuer
	tShard
)

func (w *world) draw(tag uint64, i int) uint64 {
	p := rand.NewPCG(w.seed, tag<<44^uint64(i))
	return p.Uint64()
}

// unit is a draw in [0, 1).
func (w *world) unit(tag uint64, i int) float64 {
	return float64(w.draw(tag, i)>>11) / (1 << 53)
}

// pick returns the index of the first cumulative share above u.
func pick(u float64, shares ...float64) int {
	for i, s := range shares {
		if u < s {
			return i
		}
		u -= s
	}
	return len(shares)
}

var words = []string{
	"amber", "birch", "cobalt", "delta", "ember", "fjord", "garnet", "harbor",
	"indigo", "juniper", "kestrel", "lumen", "maple", "nimbus", "onyx", "pepper",
	"quartz", "raven", "saffron", "tundra", "umber", "violet", "willow", "xenon",
	"yarrow", "zephyr", "acorn", "basalt", "cedar", "dune", "falcon", "glacier",
}

// Registered-domain suffixes with rough shares of a top list; two-label
// public suffixes make the provider grouping do real work.
var tlds = []struct {
	name  string
	share float64
}{
	{"com", 0.48}, {"net", 0.07}, {"org", 0.07}, {"de", 0.07}, {"co.uk", 0.04}, {"ru", 0.03},
	{"fr", 0.03}, {"nl", 0.03}, {"it", 0.02}, {"com.br", 0.02}, {"io", 0.02}, {"com.au", 0.02},
	{"jp", 0.02}, {"pl", 0.02}, {"es", 0.01}, {"ch", 0.01}, {"se", 0.01}, {"co.jp", 0.01},
	{"info", 0.01}, {"edu", 0.01},
}

// Domain DNS outcomes (shares of all domains); the rest resolve.
var statusShares = []struct {
	status string
	share  float64
	err    string
}{
	{survey.DNSNXDomain, 0.050, "NXDOMAIN"},
	{survey.DNSServfail, 0.020, "SERVFAIL"},
	{survey.DNSTimeout, 0.015, "no reply after 3 attempts"},
	{survey.DNSError, 0.005, "CNAME loop"},
	{survey.DNSNoMX, 0.040, ""},
	{survey.DNSNullMX, 0.010, ""},
}

// kind is who runs a resolving domain's mail.
type kind uint8

const (
	kSuite    kind = iota // one Google-like provider: shared MX names, shared certificates
	kTenant               // Microsoft 365-like: a per-domain MX name on a shared pool, one wildcard certificate
	kGateway              // filtering gateways: two per-domain MX names, one wildcard certificate each
	kMid                  // hundreds of smaller providers (Zipf): shared MX names
	kHosting              // shared hosting: mail.<d> on the server, AutoSSL per-domain certificates or the server's
	kImplicit             // no MX: the domain's own address (RFC 5321 §5.1)
	kSelf                 // self-hosted: mx.<company> on its own address, its own certificate
)

// Shares of the resolving domains.
var kindShares = []float64{kSuite: 0.26, kTenant: 0.18, kGateway: 0.05, kMid: 0.13, kHosting: 0.17, kImplicit: 0.01}

// Address plan: providers and hosting in 198.18.0.0/15 (RFC 2544,
// benchmarking), self-hosted servers in 240.0.0.0/4 (reserved), IPv6 in
// 2001:db8::/32 (documentation). None of it is ever contacted.
func v4(base uint32, slot int) string {
	a := base + uint32(slot)
	return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}).String()
}

const (
	netProviders = 198<<24 | 18<<16
	netSelf      = 240 << 24
)

// v6 is an address of network net (one per kind of operator) in 2001:db8::/32.
func v6(net byte, slot int) string {
	var b [16]byte
	b[0], b[1], b[2], b[3], b[4] = 0x20, 0x01, 0x0d, 0xb8, net
	b[8], b[9], b[10], b[11] = byte(slot>>24), byte(slot>>16), byte(slot>>8), byte(slot)
	b[15] = 0x25
	return netip.AddrFrom16(b).String()
}

// dialect is the server software: how it greets and answers EHLO.
type dialect uint8

const (
	dPostfix dialect = iota
	dExim
	dMicrosoft
	dSendmail
	dOpenSMTPD
	dQmail
	dHaraka
	dMasked
	dGeneric
	dSuite
)

// Software shares of self-hosted servers.
var selfDialects = []float64{dPostfix: 0.45, dExim: 0.27, dMicrosoft: 0.07, dSendmail: 0.03, dOpenSMTPD: 0.02,
	dQmail: 0.02, dHaraka: 0.01, dMasked: 0.03}

// server is what answers at a target.
type server struct {
	dialect  dialect
	greet    string // the name in the greeting and EHLO ("" for a masked greeting)
	fail     failure
	tls      uint8 // 0: TLS 1.3, 1: 1.2, 2: 1.0
	group    string
	cert     *issued
	ptr      string // "" with ptrNX
	ptrNX    bool
	duration int64
}

type failure uint8

const (
	fNone failure = iota
	fConnectTimeout
	fRefused
	fBannerTimeout
	fRejected
	fNoSTARTTLS
	fTLSAlert
)

const (
	scannerIP   = "192.0.2.10"
	ehloName    = "survey.example.org"
	stepTimeout = 10_000 // ms
)

// probeRow is the row a scanner writes for a target answered by s at at.
// Replies are generated as the server would send them and parsed with the
// scanner's own parser, so banner_host, ehlo_host and the extensions mean
// what they mean in a real scan.
func probeRow(ip, mx string, s *server, at time.Time) survey.ProbeRow {
	r := survey.ProbeRow{IP: ip, Port: 25, MXHost: mx, StartedAt: at, EHLONameSent: ehloName, DurationMS: s.duration}
	if s.ptrNX {
		r.PTRStatus = survey.DNSNXDomain
	} else {
		r.PTRHost, r.PTRStatus = s.ptr, survey.DNSOK
	}
	addr := ip + ":25"
	switch s.fail {
	case fConnectTimeout:
		r.Outcome, r.ErrorClass, r.DurationMS = survey.OutcomeConnect, survey.ErrTimeout, stepTimeout
		r.Error = "connect: dial tcp " + addr + ": i/o timeout"
		return r
	case fRefused:
		r.Outcome, r.ErrorClass = survey.OutcomeConnect, survey.ErrRefused
		r.Error = "connect: dial tcp " + addr + ": connect: connection refused"
		return r
	case fBannerTimeout:
		r.Outcome, r.ErrorClass, r.DurationMS = survey.OutcomeBanner, survey.ErrTimeout, stepTimeout
		r.Error = "greeting: read tcp " + scannerIP + ":40312->" + addr + ": i/o timeout"
		return r
	}
	text := greeting(s, at)
	if s.fail == fRejected {
		text = "554 5.7.1 " + s.greet + " ESMTP not accepting messages from [" + scannerIP + "]\r\n"
	}
	banner := parse(text)
	r.Outcome = survey.OutcomeBanner
	r.Banner, r.BannerCode, r.BannerHost = banner.Raw, int32(banner.Code), smtpreply.HostOf(banner)
	r.BytesRead = int64(len(banner.Raw))
	if s.fail == fRejected {
		r.ErrorClass, r.Error = survey.ErrRejected, "greeting: 554 reply"
		return r
	}
	ehlo := parse(ehloReply(s, false))
	r.Outcome, r.EHLOVerb = survey.OutcomeEHLO, "EHLO"
	r.EHLOReply, r.EHLOCode, r.EHLOHost = ehlo.Raw, int32(ehlo.Code), smtpreply.HostOf(ehlo)
	r.EHLOExtensions = smtpreply.Extensions(ehlo)
	r.STARTTLSOffered = smtpreply.HasExtension(ehlo, "STARTTLS")
	r.BytesRead += int64(len(ehlo.Raw))
	r.Outcome = survey.OutcomeSTARTTLS
	if !r.STARTTLSOffered {
		r.ErrorClass, r.Error = survey.ErrNoSTARTTLS, "probe: STARTTLS not offered"
		return r
	}
	r.STARTTLSCode, r.STARTTLSReply = 220, "220 2.0.0 Ready to start TLS\r\n"
	r.Outcome = survey.OutcomeTLS
	if s.fail == fTLSAlert {
		r.ErrorClass, r.Error = survey.ErrTLSAlert, "TLS handshake: remote error: tls: handshake failure"
		return r
	}
	r.TLSVersion = [...]string{"TLS 1.3", "TLS 1.2", "TLS 1.0"}[s.tls]
	r.TLSCipher = [...]string{"TLS_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"}[s.tls]
	if s.cert.desc.KeyType == survey.KeyECDSA && s.tls > 0 {
		r.TLSCipher = strings.Replace(r.TLSCipher, "_RSA_", "_ECDSA_", 1)
	}
	r.TLSGroup = s.group
	r.CertChain, r.CertChainLen = s.cert.chain, int32(len(s.cert.chain))
	r.SetCert(s.cert.desc, "")
	for _, c := range s.cert.chain {
		r.BytesRead += int64(len(c))
	}
	post := parse(ehloReply(s, true))
	r.PostTLSEHLOReply, r.PostTLSEHLOCode, r.PostTLSEHLOHost = post.Raw, int32(post.Code), smtpreply.HostOf(post)
	r.PostTLSEHLOExtensions = smtpreply.Extensions(post)
	r.BytesRead += int64(len(post.Raw))
	r.Outcome = survey.OutcomeOK
	return r
}

func parse(raw string) smtpreply.Reply {
	r, _ := smtpreply.Read(bufio.NewReader(strings.NewReader(raw)), smtpreply.DefaultLimits()) // whole replies: no error
	return r
}

func greeting(s *server, at time.Time) string {
	date := at.UTC().Format("Mon, 02 Jan 2006 15:04:05 -0700")
	switch s.dialect {
	case dPostfix:
		return "220 " + s.greet + " ESMTP Postfix (Debian/GNU)\r\n"
	case dExim:
		return "220 " + s.greet + " ESMTP Exim 4.96 " + date + "\r\n"
	case dMicrosoft:
		return "220 " + strings.ToUpper(s.greet) + " Microsoft ESMTP MAIL Service ready at " + date + "\r\n"
	case dSendmail:
		return "220 " + s.greet + " ESMTP Sendmail 8.17.1.9/8.17.1.9; " + date + "\r\n"
	case dOpenSMTPD:
		return "220 " + s.greet + " ESMTP OpenSMTPD\r\n"
	case dQmail:
		return "220 " + s.greet + " ESMTP netqmail\r\n"
	case dHaraka:
		return "220 " + s.greet + " ESMTP Haraka/3.0.3 ready\r\n"
	case dMasked:
		return "220 ****************************************2***0*0*0*0**\r\n"
	case dSuite:
		return "220 " + s.greet + " ESMTP " + strconv.FormatInt(at.UnixMilli()%1e9, 36) + "si.1 - gsmtp\r\n"
	}
	return "220 " + s.greet + " ESMTP ready\r\n"
}

func ehloReply(s *server, postTLS bool) string {
	var first string
	var ext []string
	switch s.dialect {
	case dExim:
		first = s.greet + " Hello " + ehloName + " [" + scannerIP + "]"
		ext = []string{"SIZE 52428800", "8BITMIME", "PIPELINING", "PIPECONNECT", "CHUNKING", "STARTTLS", "SMTPUTF8", "HELP"}
	case dMicrosoft:
		first = strings.ToUpper(s.greet) + " Hello [" + scannerIP + "]"
		ext = []string{"SIZE 157286400", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "STARTTLS", "8BITMIME", "BINARYMIME", "CHUNKING", "SMTPUTF8"}
	case dSuite:
		first = s.greet + " at your service, [" + scannerIP + "]"
		ext = []string{"SIZE 157286400", "8BITMIME", "STARTTLS", "ENHANCEDSTATUSCODES", "PIPELINING", "CHUNKING", "SMTPUTF8"}
	case dMasked:
		// Cisco's SMTP fixup masks the commands it does not know,
		// STARTTLS among them: such servers never offer it.
		first = s.greet
		ext = []string{"PIPELINING", "SIZE 20480000", "XXXXXXXA", "8BITMIME"}
	default:
		first = s.greet
		ext = []string{"PIPELINING", "SIZE 10240000", "VRFY", "ETRN", "STARTTLS", "ENHANCEDSTATUSCODES", "8BITMIME", "DSN", "SMTPUTF8", "CHUNKING"}
	}
	if s.greet == "" {
		first = "Hello"
	}
	lines := []string{first}
	for _, e := range ext {
		if e != "STARTTLS" || !postTLS && s.fail != fNoSTARTTLS {
			lines = append(lines, e)
		}
	}
	var b strings.Builder
	for i, l := range lines {
		sep := "-"
		if i == len(lines)-1 {
			sep = " "
		}
		b.WriteString("250" + sep + l + "\r\n")
	}
	return b.String()
}

// world holds what is materialised: the PKI, the providers, the hosting
// servers, and the scan's clock.
type world struct {
	seed      uint64
	pki       *pki
	start     time.Time
	suite     suiteProvider
	tenants   []perDomainProvider
	gateways  []perDomainProvider
	mids      []midProvider
	midCum    []float64
	hostings  []hostingServer
	shared    []sharedTarget // every target of the shared-name providers
	sharedIdx map[string]int // TargetKey -> index in shared
}

// sharedTarget is a target that many domains reference; its probe row is
// written once per shard, at its first reference.
type sharedTarget struct {
	ip, mx string
	srv    *server
}

type suiteProvider struct {
	name  string
	hosts []suiteHost
}

type suiteHost struct {
	name string
	pref int32
	v4s  []int // shared indexes
	v6s  []int
}

type perDomainProvider struct {
	zone  string // the per-domain names live under it
	names []string
	share float64
	pool  []string // addresses
	srvs  []*server
}

type midProvider struct {
	name  string
	hosts []midHost
}

type midHost struct {
	name   string
	pref   int32
	shared []int // indexes in world.shared
}

type hostingServer struct {
	name     string
	ip, ip6  string
	dialect  dialect
	autoSSL  bool
	own      *issued // the server's certificate: for hostnames it has no certificate for
	le       bool    // AutoSSL from the Let's Encrypt-like CA (else the DV CA)
	failures float64
}

// interval is the time between two domains' probes: 25 domains a second,
// about 14 hours for a million rows, so that the scan spans two UTC days as
// long scans do.
const interval = 40 * time.Millisecond

var scanStart = time.Date(2026, 3, 1, 18, 0, 0, 0, time.UTC)

func newWorld(seed uint64, probeRows int64) (*world, error) {
	p, err := newPKI(seed)
	if err != nil {
		return nil, err
	}
	w := &world{seed: seed, pki: p, start: scanStart, sharedIdx: map[string]int{}}
	if err := w.buildSuite(); err != nil {
		return nil, err
	}
	if err := w.buildPerDomain(); err != nil {
		return nil, err
	}
	if err := w.buildMids(); err != nil {
		return nil, err
	}
	// One hosting server per ~400 probe rows of the scan: about a hundred
	// customer domains each.
	if err := w.buildHostings(max(3, int(probeRows/400))); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *world) addShared(ip, mx string, s *server) int {
	w.shared = append(w.shared, sharedTarget{ip: ip, mx: mx, srv: s})
	w.sharedIdx[survey.TargetKey(ip, mx)] = len(w.shared) - 1
	return len(w.shared) - 1
}

// providerServer is a provider's well-run server: always answers, TLS 1.3.
func providerServer(d dialect, greet string, cert *issued, ptr string, dur int64) *server {
	return &server{dialect: d, greet: greet, group: survey.TLSGroupName(tls.X25519MLKEM768), cert: cert, ptr: ptr, duration: dur}
}

// validFor is the validity of a certificate of days days, issued up to half
// its lifetime before the scan, as renewals spread over time.
func (w *world) validFor(id string, days int) (time.Time, time.Time) {
	d := w.pki.digest("valid|" + id)
	hours := binary.BigEndian.Uint64(d[:8]) % uint64(days/2*24)
	nb := w.start.Add(-time.Duration(hours) * time.Hour)
	return nb, nb.Add(time.Duration(days) * 24 * time.Hour)
}

func (w *world) buildSuite() error {
	p := "suitemail.example"
	w.suite.name = p
	var certs [2]*issued
	for k := range certs {
		nb, na := w.validFor(fmt.Sprintf("suite-%d", k), 84)
		sans := []string{"mx." + p, "aspmx.l." + p, "alt1.aspmx.l." + p, "alt2.aspmx.l." + p, "alt3.aspmx.l." + p, "alt4.aspmx.l." + p, "*.aspmx.l." + p}
		c, err := w.pki.issue(leafSpec{id: fmt.Sprintf("suite-%d", k), cn: "mx." + p, sans: sans, issuer: w.pki.providers, key: keyP256, notBefore: nb, notAfter: na})
		if err != nil {
			return err
		}
		certs[k] = c
	}
	for j, h := range []struct {
		name string
		pref int32
	}{{"aspmx.l", 1}, {"alt1.aspmx.l", 5}, {"alt2.aspmx.l", 5}, {"alt3.aspmx.l", 10}, {"alt4.aspmx.l", 10}} {
		sh := suiteHost{name: h.name + "." + p, pref: h.pref}
		for k := range 8 {
			slot := j*16 + k
			srv := providerServer(dSuite, "mx."+p, certs[k%2], fmt.Sprintf("mail-ed1-f%d.%s", slot, p), 180)
			sh.v4s = append(sh.v4s, w.addShared(v4(netProviders, slot), sh.name, srv))
			sh.v6s = append(sh.v6s, w.addShared(v6(1, slot), sh.name, nil))
		}
		w.suite.hosts = append(w.suite.hosts, sh)
	}
	return nil
}

// The per-domain providers: their shares of kTenant and kGateway domains.
func (w *world) buildPerDomain() error {
	mk := func(zone string, names []string, share float64, d dialect, pool, firstSlot int, key keyKind) (perDomainProvider, error) {
		pp := perDomainProvider{zone: zone, names: names, share: share}
		var certs [2]*issued
		for k := range certs {
			id := fmt.Sprintf("%s-%d", zone, k)
			nb, na := w.validFor(id, 365)
			c, err := w.pki.issue(leafSpec{id: id, cn: "*." + zone, sans: []string{"*." + zone, zone}, issuer: w.pki.providers, key: key, notBefore: nb, notAfter: na})
			if err != nil {
				return pp, err
			}
			certs[k] = c
		}
		for k := range pool {
			ip := v4(netProviders, firstSlot+k)
			greet := fmt.Sprintf("%s%02d%s.%s", strings.ToLower(zone[:2]), k, "pepf0002", zone)
			if d != dMicrosoft {
				greet = fmt.Sprintf("mx%02d.%s", k, zone)
			}
			pp.pool = append(pp.pool, ip)
			pp.srvs = append(pp.srvs, providerServer(d, greet, certs[k%7/6], "mail-"+strings.ReplaceAll(ip, ".", "-")+"."+zone, 350))
		}
		return pp, nil
	}
	t1, err := mk("mail.protection.tenantmail.example", []string{""}, 0.85, dMicrosoft, 32, 200, keyRSA2048)
	if err != nil {
		return err
	}
	t2, err := mk("mx.cloudmail.example", []string{""}, 0.15, dPostfix, 16, 240, keyP256)
	if err != nil {
		return err
	}
	w.tenants = []perDomainProvider{t1, t2}
	for g, share := range []float64{0.5, 0.3, 0.2} {
		gw, err := mk(fmt.Sprintf("gslb.filter%d.example", g+1), []string{"mx0a", "mx0b"}, share, dGeneric, 16, 300+g*16, keyRSA2048)
		if err != nil {
			return err
		}
		w.gateways = append(w.gateways, gw)
	}
	return nil
}

// midProviders are the smaller providers; their market shares follow Zipf.
const midProviders = 400

func (w *world) buildMids() error {
	total := 0.0
	slot := 1000
	for p := range midProviders {
		total += 1 / float64(p+1)
		w.midCum = append(w.midCum, total)
		name := fmt.Sprintf("%smail%d.example", words[p%len(words)], p+1)
		mp := midProvider{name: name}
		nHosts := 1 + int(w.draw(tMid, p)%3)
		style := w.unit(tCert, p) // one certificate for all names, one per name, or a wildcard
		issuer := []*ca{w.pki.le[p%2], w.pki.dv, w.pki.providers}[pick(w.unit(tIssuer, p), 0.5, 0.3)]
		d := []dialect{dPostfix, dExim, dMicrosoft, dHaraka, dGeneric}[pick(w.unit(tDialect, p), 0.5, 0.2, 0.05, 0.05)]
		internal := w.unit(tBanner, p) < 0.4
		var names []string
		for j := range nHosts {
			names = append(names, fmt.Sprintf("mx%d.%s", j+1, name))
		}
		var all *issued
		var err error
		id := "mid-" + name
		nb, na := w.validFor(id, 90)
		switch {
		case style < 0.6:
			all, err = w.pki.issue(leafSpec{id: id, cn: names[0], sans: names, issuer: issuer, key: keyRSA2048, notBefore: nb, notAfter: na})
		case style >= 0.9:
			all, err = w.pki.issue(leafSpec{id: id, cn: "*." + name, sans: []string{"*." + name, name}, issuer: issuer, key: keyP256, notBefore: nb, notAfter: na})
		}
		if err != nil {
			return err
		}
		for j, hn := range names {
			cert := all
			if cert == nil {
				if cert, err = w.pki.issue(leafSpec{id: id + hn, cn: hn, sans: []string{hn}, issuer: issuer, key: keyP256, notBefore: nb, notAfter: na}); err != nil {
					return err
				}
			}
			mh := midHost{name: hn, pref: int32(10 * (j + 1))}
			nAddr := 1 + int(w.draw(tLayout, p*8+j)%4)
			for range nAddr {
				ip := v4(netProviders, slot)
				greet := hn
				if internal {
					greet = fmt.Sprintf("out%d.%s", slot%97, name)
				}
				mh.shared = append(mh.shared, w.addShared(ip, hn, providerServer(d, greet, cert, greet, 600)))
				if w.unit(tV6, slot) < 0.25 {
					mh.shared = append(mh.shared, w.addShared(v6(2, slot), hn, nil))
				}
				slot++
			}
			mp.hosts = append(mp.hosts, mh)
		}
		w.mids = append(w.mids, mp)
	}
	return nil
}

func (w *world) buildHostings(n int) error {
	for s := range n {
		g := s / 50
		h := hostingServer{
			name:     fmt.Sprintf("s%d.hosting%d.example", s, g),
			ip:       v4(netProviders, 20000+s),
			dialect:  []dialect{dExim, dPostfix}[pick(w.unit(tDialect, 1<<20+s), 0.6)],
			autoSSL:  w.unit(tCert, 1<<20+s) < 0.62,
			le:       w.unit(tIssuer, 1<<20+s) < 0.5,
			failures: 0.01,
		}
		if w.unit(tV6, 1<<20+s) < 0.3 {
			h.ip6 = v6(3, s)
		}
		id := "hosting-" + h.name
		nb, na := w.validFor(id, 90)
		c, err := w.pki.issue(leafSpec{id: id, cn: h.name, sans: []string{h.name}, issuer: w.pki.le[s%2], key: keyRSA2048, notBefore: nb, notAfter: na})
		if err != nil {
			return err
		}
		h.own = c
		w.hostings = append(w.hostings, h)
	}
	return nil
}

func (w *world) domainName(i int) string {
	u := w.unit(tTLD, i)
	tld := tlds[0].name
	for _, t := range tlds {
		if u < t.share {
			tld = t.name
			break
		}
		u -= t.share
	}
	return words[w.draw(tWord, i)%uint64(len(words))] + strconv.Itoa(i+1) + "." + tld
}

func (w *world) status(i int) (string, string) {
	u := w.unit(tStatus, i)
	for _, s := range statusShares {
		if u < s.share {
			return s.status, s.err
		}
		u -= s.share
	}
	return survey.DNSOK, ""
}

func (w *world) kind(i int) kind {
	return kind(pick(w.unit(tKind, i), kindShares...))
}

// leader is the first domain of i's company: a self-hosted domain
// continues the company of the domain before it, itself self-hosted, with
// probability 0.3, so companies are short runs of domains sharing MX hosts
// and a certificate.
func (w *world) leader(i int) int {
	l := i
	for l > 0 && w.unit(tSibling, l) < 0.3 {
		if st, _ := w.status(l - 1); st != survey.DNSOK || w.kind(l-1) != kSelf {
			break
		}
		l--
	}
	return l
}

func (w *world) at(i int, j int) time.Time {
	return w.start.Add(time.Duration(i)*interval + time.Duration(j)*7*time.Millisecond)
}

// entry is one probe row in a domain's output: a row made for a target of
// this domain only, or a reference to a shared target.
type entry struct {
	row    *survey.ProbeRow
	shared int
}

// domainOut is everything one domain contributes, in the order a scan
// writes it.
type domainOut struct {
	index  int
	mx     []survey.MXRow
	probes []entry
	leaves int // certificates first issued for this domain
}

func (w *world) domain(i int) (domainOut, error) {
	out := domainOut{index: i}
	name := w.domainName(i)
	base := survey.MXRow{Domain: name, Rank: int64(i + 1), Input: name, ResolvedAt: w.at(i, 0)}
	st, errText := w.status(i)
	base.DNSStatus, base.DNSError = st, errText
	if st != survey.DNSOK {
		out.mx = append(out.mx, base)
		return out, nil
	}
	addMX := func(host string, pref int32, ip string) {
		r := base
		r.MXHost, r.MXPreference, r.MXHostStatus, r.IP = host, pref, survey.DNSOK, ip
		r.IPVersion = 4
		if strings.Contains(ip, ":") {
			r.IPVersion = 6
		}
		out.mx = append(out.mx, r)
	}
	own := func(ip, mx string, s *server) {
		var row survey.ProbeRow
		if s == nil {
			row = skipped(ip, mx, w.at(i, len(out.probes)))
		} else {
			row = probeRow(ip, mx, s, w.at(i, len(out.probes)))
		}
		out.probes = append(out.probes, entry{row: &row, shared: -1})
	}
	ref := func(k int) { out.probes = append(out.probes, entry{shared: k}) }
	switch w.kind(i) {
	case kSuite:
		for j, h := range w.suite.hosts {
			a := w.draw(tPool, i*8+j)
			k4, k6 := h.v4s[a%uint64(len(h.v4s))], h.v6s[(a>>8)%uint64(len(h.v6s))]
			addMX(h.name, h.pref, w.shared[k4].ip)
			addMX(h.name, h.pref, w.shared[k6].ip)
			ref(k4)
			ref(k6)
		}
	case kTenant, kGateway:
		ps := w.tenants
		if w.kind(i) == kGateway {
			ps = w.gateways
		}
		u := w.unit(tMid, i)
		p := &ps[len(ps)-1]
		for k := range ps {
			if u < ps[k].share {
				p = &ps[k]
				break
			}
			u -= ps[k].share
		}
		dashed := strings.ReplaceAll(name, ".", "-")
		for j, n := range p.names {
			mx := dashed + "." + p.zone
			if n != "" {
				mx = fmt.Sprintf("%s-%08x.%s", n, w.draw(tName, i)&0xffffffff, p.zone)
			}
			addrs := 2
			if n != "" {
				addrs = 1
			}
			// distinct addresses of the pool
			first, step := w.draw(tPool, i*8+j), 1+w.draw(tPool, i*8+j+4)%uint64(len(p.pool)-1)
			for k := range addrs {
				a := int((first + uint64(k)*step) % uint64(len(p.pool)))
				addMX(mx, int32(10*j), p.pool[a])
				own(p.pool[a], mx, p.srvs[a])
			}
		}
	case kMid:
		// Zipf over the providers
		u := w.unit(tMid, i) * w.midCum[len(w.midCum)-1]
		p := 0
		for p < len(w.midCum)-1 && u >= w.midCum[p] {
			p++
		}
		for _, h := range w.mids[p].hosts {
			for _, k := range h.shared {
				addMX(h.name, h.pref, w.shared[k].ip)
				ref(k)
			}
		}
	case kHosting:
		hs := &w.hostings[w.draw(tHosting, i)%uint64(len(w.hostings))]
		mx := "mail." + name
		srv := &server{dialect: hs.dialect, greet: hs.name, group: survey.TLSGroupName(tls.X25519), cert: hs.own, ptr: hs.name, duration: 900}
		if hs.autoSSL {
			id := "autossl-" + name
			nb, na := w.validFor(id, 90)
			issuer := w.pki.dv
			if hs.le {
				issuer = w.pki.le[i%2]
			}
			c, err := w.pki.issue(leafSpec{id: id, cn: mx, sans: []string{mx, name}, issuer: issuer, key: keyRSA2048, notBefore: nb, notAfter: na})
			if err != nil {
				return out, err
			}
			srv.cert = c
			out.leaves++
		}
		if w.unit(tFail, i) < hs.failures {
			srv.fail = fConnectTimeout
		}
		addMX(mx, 0, hs.ip)
		own(hs.ip, mx, srv)
		if hs.ip6 != "" {
			addMX(mx, 0, hs.ip6)
			own(hs.ip6, mx, nil)
		}
	case kImplicit:
		base.ImplicitMX = true
		slot := 2 * i
		srv, err := w.selfServer(i, name, name)
		if err != nil {
			return out, err
		}
		addMX(name, 0, v4(netSelf, slot))
		own(v4(netSelf, slot), name, srv)
		if srv.cert != nil {
			out.leaves++
		}
	case kSelf:
		l := w.leader(i)
		lname := w.domainName(l)
		hosts, ips := w.selfLayout(l, lname)
		for j, h := range hosts {
			for _, ip := range ips[j] {
				addMX(h.name, h.pref, ip)
			}
		}
		if l != i {
			break // the company's targets were probed with its first domain
		}
		srv, err := w.selfServer(l, lname, hosts[0].name)
		if err != nil {
			return out, err
		}
		if srv.cert != nil {
			out.leaves++
		}
		for j, h := range hosts {
			for _, ip := range ips[j] {
				if strings.Contains(ip, ":") {
					own(ip, h.name, nil)
				} else {
					own(ip, h.name, srv)
				}
			}
		}
	}
	return out, nil
}

func skipped(ip, mx string, at time.Time) survey.ProbeRow {
	return survey.ProbeRow{IP: ip, Port: 25, MXHost: mx, StartedAt: at, Outcome: survey.OutcomeSkipped,
		ErrorClass: survey.ErrIPv6Disabled, Error: "IPv6 address recorded, not probed (no -ipv6)"}
}

type mxHost struct {
	name string
	pref int32
}

// selfLayout is a company's MX hosts and their addresses: one host with
// one or two addresses, or two hosts; a fifth of the hosts have an IPv6
// address too.
func (w *world) selfLayout(l int, lname string) ([]mxHost, [][]string) {
	label := []string{"mx", "mail", "smtp", "mx1"}[w.draw(tName, l)%4]
	u := w.unit(tLayout, l)
	slot := 2 * l
	var hosts []mxHost
	var ips [][]string
	switch {
	case u < 0.6:
		hosts = []mxHost{{label + "." + lname, 10}}
		ips = [][]string{{v4(netSelf, slot)}}
	case u < 0.75:
		hosts = []mxHost{{label + "." + lname, 10}}
		ips = [][]string{{v4(netSelf, slot), v4(netSelf, slot+1)}}
	default:
		hosts = []mxHost{{"mx1." + lname, 10}, {"mx2." + lname, 20}}
		ips = [][]string{{v4(netSelf, slot)}, {v4(netSelf, slot+1)}}
	}
	for j := range hosts {
		if w.unit(tV6, l*2+j) < 0.2 {
			ips[j] = append(ips[j], v6(4, slot+j))
		}
	}
	return hosts, ips
}

// selfServer is a self-hosted company's server: its software, the name it
// greets with, what can go wrong, and its certificate.
func (w *world) selfServer(l int, lname, mx string) (*server, error) {
	s := &server{duration: 400 + int64(w.draw(tDuration, l)%2400)}
	s.dialect = dialect(pick(w.unit(tDialect, l), selfDialects...))
	machine := mx
	switch pick(w.unit(tBanner, l), 0.5, 0.2, 0.1, 0.08) {
	case 1:
		machine = fmt.Sprintf("vps%d.cloudhost%d.example", w.draw(tBanner, l)%100000, l%37)
	case 2:
		machine = []string{"mail", "srv01", "mx", "exchange"}[l%4]
	case 3:
		machine = []string{"localhost", "localhost.localdomain"}[l%2]
	case 4:
		machine = lname
	}
	s.greet = machine
	if s.dialect == dMasked {
		s.greet = ""
	}
	switch pick(w.unit(tPTR, l), 0.4, 0.3, 0.2) {
	case 0:
		s.ptr = fmt.Sprintf("host-%d.dyn.isp%d.example", l, l%23)
	case 1:
		s.ptr = machine
		if !strings.Contains(machine, ".") {
			s.ptr = mx
		}
	case 2:
		s.ptr = mx
	default:
		s.ptrNX = true
	}
	// connect timeout, refused, silent, 554 greeting, no STARTTLS, TLS alert
	if f := pick(w.unit(tFail, l), 0.07, 0.03, 0.01, 0.01, 0.05, 0.02); f < 6 {
		s.fail = failure(f + 1)
	}
	if s.dialect == dMasked && s.fail == fNone {
		s.fail = fNoSTARTTLS // the greeting's mask hides STARTTLS (ehloReply)
	}
	s.tls = uint8(pick(w.unit(tTLS, l), 0.78, 0.2))
	switch s.tls {
	case 0:
		s.group = survey.TLSGroupName([]tls.CurveID{tls.X25519MLKEM768, tls.X25519, tls.CurveP256}[pick(w.unit(tGroup, l), 0.3, 0.65)])
	default:
		s.group = survey.TLSGroupName([]tls.CurveID{tls.X25519, tls.CurveP256}[pick(w.unit(tGroup, l), 0.8)])
	}
	if s.fail != fNone {
		return s, nil // no handshake: no certificate is made
	}
	id := "self-" + lname
	spec := leafSpec{id: id, cn: mx, sans: []string{mx, lname}}
	key := []keyKind{keyP256, keyRSA2048}[pick(w.unit(tKey, l), 0.55)]
	valid := w.unit(tValid, l)
	spec.notBefore, spec.notAfter = w.validFor(id, 90)
	if valid < 0.06 {
		// renewal stopped: expired one to 400 days ago
		spec.notAfter = w.start.Add(-time.Duration(1+w.draw(tValid, l)%400) * 24 * time.Hour)
		spec.notBefore = spec.notAfter.Add(-90 * 24 * time.Hour)
	}
	switch pick(w.unit(tCert, l), 0.58, 0.08, 0.05, 0.03, 0.18) {
	case 0: // Let's Encrypt-like
		spec.issuer, spec.key = w.pki.le[l%2], key
		if w.unit(tRotate, l) < 0.05 {
			spec.sans = []string{"*." + lname, lname}
		}
	case 1: // commercial DV, root sent along by a third
		spec.issuer, spec.key = w.pki.dv, keyRSA2048
		spec.withRoot = w.unit(tRotate, l) < 0.33
		spec.notBefore, spec.notAfter = w.validFor(id, 365)
	case 2: // a private CA no trust store has
		spec.issuer, spec.key = w.pki.corp, keyRSA2048
		spec.notBefore, spec.notAfter = w.validFor(id, 730)
	case 3: // intermediate not sent
		spec.issuer, spec.key, spec.noInter = w.pki.le[l%2], key, true
	case 4: // make-ssl-cert's snakeoil: self-signed for the machine's name
		cn := machine
		if cn == "" {
			cn = mx
		}
		spec.cn, spec.key = cn, keyP256
		spec.sans = []string{cn}
		if w.unit(tRotate, l) < 0.4 {
			spec.sans = nil // older snakeoil: CN only
		}
		if w.unit(tKey, l) < 0.03 {
			spec.key = keyRSA2048 // RSA signing is costly to make: kept rare
		}
		spec.notBefore, spec.notAfter = w.start.Add(-time.Duration(l%3000)*24*time.Hour), w.start.Add(time.Duration(3650-l%3000)*24*time.Hour)
	default: // Let's Encrypt-like, certificate names the domain only (mx mismatch)
		spec.issuer, spec.key = w.pki.le[l%2], key
		spec.sans = []string{lname, "www." + lname}
		spec.cn = lname
	}
	c, err := w.pki.issue(spec)
	if err != nil {
		return nil, err
	}
	s.cert = c
	return s, nil
}
