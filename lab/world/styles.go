package world

import "strconv"

// StyleID is how a background server names itself and what its certificate
// says, beyond its case: the ways real mail servers greet with one name
// while the certificate carries another (README "Background kinds").
type StyleID uint8

const (
	StyleNone        StyleID = iota // case domains and the classic background servers
	StyleSuite                      // provider: MX aspmx.l/altN.aspmx.l.<p>, banner mx.<p>, certificate for the banner and every MX name (Google-like)
	StyleTenant                     // provider: per-domain MX <d-dashed>.mail.<p> on 2 of a shared pool, *.mail.<p> by SNI, banner per server <code>.mail.<p> (Microsoft 365-like)
	StyleGateway                    // provider: per-domain MX <d-dashed>.in.<p> on 2 of a shared pool, *.in.<p>, banner per server mta<k>.int.<p> (filtering gateway)
	StyleInternal                   // provider: shared MX names, certificate for the MX name by SNI, banner per server mta<k>.int.<p>
	StyleAutoSSL                    // hosting: certificate for mail.<d> by SNI (AutoSSL), banner the server's name
	StyleMachine                    // self-hosted: banner the machine's name (FQDN, dotless, localhost), CA certificate for the MX name
	StyleMachineCert                // self-hosted: banner and CA certificate for the machine's FQDN, MX mx.<d>
	StyleDefaultCert                // self-hosted: banner the machine's name, self-signed default certificate for it (FQDN or dotless)
	numStyles
)

// style is the record of a style: its label, the case its servers show and
// the certificate rule that replaces the case's (nil: the case's own).
type style struct {
	label string
	cas   *Case
	cert  *CertRule
}

var styles = [numStyles]style{
	StyleSuite:       {"provider_suite", caseCertBoth, &CertRule{Names: CertListed}},
	StyleTenant:      {"provider_tenant", caseCertWildcard, nil},
	StyleGateway:     {"provider_gateway", caseCertWildcard, nil},
	StyleInternal:    {"provider_internal", caseCertMX, nil},
	StyleAutoSSL:     {"hosting_autossl", caseCertMX, &CertRule{Names: CertAutoSSL}},
	StyleMachine:     {"self_machine_banner", caseCertMX, nil},
	StyleMachineCert: {"self_machine_cert", caseCertBannerOnly, nil},
	// make-ssl-cert's snakeoil: self-signed for the machine's name.
	StyleDefaultCert: {"self_default_cert", caseSelfSigned, &CertRule{Names: CertBanner, Issuer: IssuerSelf}},
}

// perDomainMX says whether a provider style gives each domain its own MX name.
func (st StyleID) perDomainMX() bool { return st == StyleTenant || st == StyleGateway }

// providerStyle: the six largest are suite-like, tenant-like, a filtering
// gateway, internal-banner, classic, classic; the others are drawn.
func (w *World) providerStyle(p int) StyleID {
	if w.p.TenantPool > 0 {
		return StyleTenant
	}
	if p < len(topStyles) {
		return topStyles[p]
	}
	return pick(providerStyles, w.hash(tagProvStyle, p))
}

var (
	topStyles      = [...]StyleID{StyleSuite, StyleTenant, StyleGateway, StyleInternal, StyleNone, StyleNone}
	providerStyles = []weighted[StyleID]{{10, StyleNone}, {5, StyleInternal}, {3, StyleTenant}, {2, StyleGateway}}
	// providerCases are the cases of the classic providers.
	providerCases = []weighted[*Case]{{4, caseCertMX}, {2, caseCertWildcard}, {1, caseCertBoth},
		{1, caseCertBannerOnly}, {1, caseTLS12Only}, {1, caseCertRSA}}
)

// hostingTurn is what a shared hosting server shows.
type hostingTurn struct {
	style StyleID
	cas   *Case
}

// hostingTurns: hosting servers take turns (by index, not by hash): AutoSSL
// (certificate for mail.<d> by SNI), a certificate for the server's own
// name, AutoSSL, Debian snakeoil.
var hostingTurns = []weighted[hostingTurn]{
	{1, hostingTurn{StyleAutoSSL, caseCertMX}},
	{2, hostingTurn{StyleNone, caseCertBannerOnly}},
	{1, hostingTurn{StyleAutoSSL, caseCertMX}},
	{1, hostingTurn{StyleNone, caseSnakeoil}},
}

var (
	// selfStyles: 40% classic (banner = MX name), 30% machine-name banner
	// with a CA certificate for the MX name, 12% certificate for the
	// machine's name, 18% a self-signed default certificate for it.
	selfStyles = []weighted[StyleID]{{20, StyleNone}, {15, StyleMachine}, {6, StyleMachineCert}, {9, StyleDefaultCert}}
	// selfClassicCases: what a classic self-hosted server shows.
	selfClassicCases = []weighted[*Case]{{2, caseSelfSigned}, {1, caseCertExpired}, {17, caseCertMX}}
)

// selfServer is the style and case of a self-hosted leader's servers.
func (w *World) selfServer(leader int) (StyleID, *Case) {
	st := pick(selfStyles, w.hash(tagSelfStyle, leader))
	if c := styles[st].cas; c != nil {
		return st, c
	}
	return st, pick(selfClassicCases, w.hash(tagSelfCase, leader))
}

// dotlessNames are machine names without a domain, as a default install
// greets ("220 mail ESMTP Postfix (Debian/GNU)"): a scan's banner_host is empty.
var dotlessNames = []string{"mail", "srv01", "debian", "ubuntu", "mailserver", "vps"}

// machineNameKind is what sort of name a self-hosted machine calls itself.
type machineNameKind uint8

const (
	machineFQDN machineNameKind = iota
	machineDotless
	machineLocalhost
	machineLocalhostLocaldomain
)

var (
	// machineBannerNames: the names of StyleMachine servers.
	machineBannerNames = []weighted[machineNameKind]{{3, machineFQDN}, {2, machineDotless}, {2, machineLocalhost}, {1, machineLocalhostLocaldomain}}
	// defaultCertNames: the names of StyleDefaultCert servers.
	defaultCertNames = []weighted[machineNameKind]{{1, machineDotless}, {1, machineFQDN}}
)

// machineName is the name a self-hosted machine on a slot calls itself:
// its hoster's FQDN, a dotless name, localhost or localhost.localdomain.
func (w *World) machineName(slot int, st StyleID) string {
	u := w.hash(tagMachine, slot)
	kind := machineFQDN
	switch st {
	case StyleMachine:
		kind = pick(machineBannerNames, u)
	case StyleDefaultCert:
		kind = pick(defaultCertNames, u)
	}
	switch kind {
	case machineDotless:
		return dotlessNames[u>>16%uint64(len(dotlessNames))]
	case machineLocalhost:
		return "localhost"
	case machineLocalhostLocaldomain:
		return "localhost.localdomain"
	}
	return "vps" + strconv.Itoa(slot) + ".hoster" + strconv.Itoa(int(u>>8%7)+1) + ".test"
}

// ptrKind is what the PTR of an address names.
type ptrKind uint8

const (
	ptrBanner ptrKind = iota // the server's banner when it is a name under .test, else ptrISP
	ptrISP                   // a generic ip-127-x-y-z.isp.test
	ptrNone                  // no PTR at all
)

var ptrKinds = []weighted[ptrKind]{{11, ptrBanner}, {6, ptrISP}, {3, ptrNone}}
