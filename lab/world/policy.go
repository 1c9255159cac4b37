package world

import (
	"bytes"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf16"
)

// Transport security policies (issue 13): how a domain's zone is signed
// (DNSSEC), the TLSA records of its MX hosts (DANE, RFC 7672), its MTA-STS
// record and policy (RFC 8461) and its TLS-RPT record (RFC 8460). A case
// states them in its DNSSEC, DANE, STS and RPT parts; the background draws
// them (policyDraws). The DNS server answers from the nodes they make, the
// HTTPS server serves the policies, and the truth states from the same
// parts what a scan records and what a sender honouring them would do.

// Sec is how a validating resolver in front of the lab judges an answer or
// a denial: the lab's DNS answers as such a resolver would (AD=1 for secure
// data when asked with DO or AD; SERVFAIL for bogus data unless CD=1).
type Sec uint8

const (
	SecInsecure Sec = iota // an unsigned zone (no DS in its parent)
	SecSecure              // a signed zone whose signatures validate
	SecBogus               // signed, and the signatures of this RRset do not validate
)

// Status is the dataset's DNSSEC status of an answer judged s.
func (s Sec) Status() string {
	return [...]string{SecInsecure: DNSSECInsecure, SecSecure: DNSSECSecure, SecBogus: DNSSECBogus}[s]
}

// Then is the status of a chain of answers (CNAMEs) ending in o: bogus if
// either is, secure only if both are.
func (s Sec) Then(o Sec) Sec {
	switch {
	case s == SecBogus || o == SecBogus:
		return SecBogus
	case s == SecSecure && o == SecSecure:
		return SecSecure
	}
	return SecInsecure
}

// DNSSEC is how a case domain's zone is signed. test. itself is signed
// (the resolver's trust anchor), so a name that does not exist under it is
// denied securely.
type DNSSEC struct {
	Signed bool  // the zone has a DS in test. and valid signatures
	Bogus  Bogus // one RRset whose signatures do not validate
}

// Bogus names the RRset of a signed zone that does not validate.
type Bogus uint8

const (
	BogusNone Bogus = iota
	BogusMX         // the domain's MX RRset: the domain's lookup is a SERVFAIL
	BogusAddr       // the MX host's A and AAAA RRsets
	BogusTLSA       // the MX host's TLSA RRset
)

// DANE is the TLSA RRset of a case domain's MX host (RFC 7672), at
// _25._tcp.<name>, where name is the one that holds the host's addresses:
// the MX name, or for HostCNAME the CNAME's target host.<d> (RFC 7672
// §2.2.2's expanded name).
type DANE struct {
	TLSA []TLSA
}

// TLSA is one record of a TLSA RRset as the lab states it: its parameters
// and what its data is made of (lab/pki makes the bytes).
type TLSA struct {
	Usage, Selector, MType uint8
	Of                     Assoc
}

// Assoc is what a TLSA record's certificate association data is made of.
type Assoc uint8

const (
	// AssocLeaf: the leaf certificate (selector 0) or its key (selector 1)
	// of the host's servers, one record per distinct one.
	AssocLeaf Assoc = iota
	// AssocPrevKey: the key (or certificate) the host's servers used
	// before a rollover; the record was not updated.
	AssocPrevKey
	// AssocIntermediate: the lab intermediate CA, which the servers send.
	AssocIntermediate
	// AssocShort: as AssocLeaf, one byte short of its matching type's
	// digest: a malformed record.
	AssocShort
)

// Usable says whether a sender may use the record for SMTP (RFC 7672
// §3.1): DANE-TA(2) or DANE-EE(3), selector 0 or 1, matching type 0, 1
// or 2, data as long as the matching type's digest.
func (t TLSA) Usable() bool {
	return (t.Usage == 2 || t.Usage == 3) && t.Selector <= 1 && t.MType <= 2 && t.Of != AssocShort
}

// TLSARR is one record of the lab's DNS: a TLSA of the case and, for the
// records made of a leaf, the leaf (the certificate a client asking with
// SNI = the MX host name gets).
type TLSARR struct {
	TLSA
	Leaf CertSpec
}

// STS is a domain's MTA-STS (RFC 8461): its TXT record at _mta-sts.<d>,
// where mta-sts.<d> leads, what the HTTPS server there does, and the policy
// it serves. The zero value publishes nothing.
type STS struct {
	Record STSRecord
	Host   STSHost
	Serve  STSServe
	Mode   STSMode
	MX     STSMX
	Cert   CertRule // the policy host's certificate; the zero rule: the lab intermediate's for mta-sts.<d>
}

// STSRecord is what the TXT RRset at _mta-sts.<d> holds.
type STSRecord uint8

const (
	STSNone      STSRecord = iota // no record: the name does not exist
	STSValid                      // one record, "v=STSv1; id=lab<n>"
	STSSplit                      // the same in two character-strings, "v=STSv1; " and "id=lab<n>"
	STSDuplicate                  // the valid record twice: not exactly one record
	STSInvalid                    // "v=STSv1; id=lab-<n>!": an id that is not 1-32 letters and digits
	STSMany                       // the valid record followed by 9,999 filler records
)

// STSManyRecords is how many TXT records STSMany publishes: more than any
// DNS message holds (a TCP answer carries what fits in 64 KiB).
const STSManyRecords = 10000

// STSHost is where mta-sts.<d> leads.
type STSHost uint8

const (
	STSHostOwn      STSHost = iota // an A record: the domain's second address, where the lab's HTTPS server answers
	STSHostProvider                // a CNAME to mta-sts.<p>, the provider's policy host (which picks the policy by SNI)
	STSHostNX                      // nothing: the name does not exist
	STSHostRefused                 // AAAA ::1, where nothing listens (the HTTPS listener is tcp4)
	STSHostPrivate                 // A 10.0.0.1 (must be blocked)
)

// STSServe is what the HTTPS server at the policy host does.
type STSServe uint8

const (
	ServePolicy    STSServe = iota // 200, text/plain, the policy
	ServeSilent                    // accepts and never sends a byte
	ServeReset                     // reads the ClientHello, then a TCP reset
	Serve404                       // 404 Not Found
	ServeRedirect                  // 301 to https://www.<d>/.well-known/mta-sts.txt (RFC 8461 §3.3: not followed)
	ServeHTML                      // 200, the policy as text/html
	ServeHuge                      // 200, text/plain, the policy followed by 2 MiB of filler lines
	ServeUTF16                     // 200, text/plain, the policy in UTF-16LE with a byte order mark
	ServeMalformed                 // 200, text/plain, a policy whose mode is "enforced"
	ServeLF                        // 200, text/plain; charset=utf-8, the policy with LF line ends (valid)
)

// HugePolicyLen is the length of the ServeHuge body: past the 1 MiB a
// scan reads.
const HugePolicyLen = 2 << 20

// STSMode is a policy's mode.
type STSMode uint8

const (
	ModeEnforce STSMode = iota
	ModeTesting
	ModeNone
)

func (m STSMode) String() string {
	return [...]string{ModeEnforce: "enforce", ModeTesting: "testing", ModeNone: "none"}[m]
}

// STSMX is what a policy's mx lines say. The lab writes them so that it
// knows which MX hosts they match (RFC 8461 §4.1): every one, or none.
type STSMX uint8

const (
	STSMXHosts    STSMX = iota // each MX host by name
	STSMXWildcard              // wildcards, each covering MX hosts one label below it (*.<d>, *.<p>, ...)
	STSMXOther                 // one name that is no MX host: smtp-old.<d>
)

// Matches says whether the policy's mx lines match the domain's MX hosts.
func (m STSMX) Matches() bool { return m != STSMXOther }

// RPT is a domain's TLS-RPT record at _smtp._tls.<d> (RFC 8460 §3).
type RPT uint8

const (
	RPTNone      RPT = iota // no record: the name does not exist
	RPTMailto               // "v=TLSRPTv1; rua=mailto:tlsrpt@<d>"
	RPTHTTPS                // "v=TLSRPTv1; rua=https://tlsrpt.<d>/v1"
	RPTSplit                // the mailto record in two character-strings, "v=TLSRPTv1;" and "rua=mailto:tlsrpt@<d>"
	RPTInvalid              // "v=TLSRPTv1; rua=ftp://tlsrpt.<d>/": a scheme RFC 8460 does not allow
	RPTDuplicate            // the mailto record twice: not exactly one record
)

// Valid says whether the record is exactly one valid v=TLSRPTv1 record.
func (r RPT) Valid() bool { return r == RPTMailto || r == RPTHTTPS || r == RPTSplit }

// Valid says whether the MTA-STS TXT RRset holds exactly one valid
// v=STSv1 record (records not starting with v=STSv1 are ignored).
func (r STSRecord) Valid() bool { return r == STSValid || r == STSSplit || r == STSMany }

// The background's policies. Shares are of the domains (or leaders,
// providers) of each kind; README "Policies" lists them.
var (
	// Zones signed: of the domains hosted by providers, on shared hosting,
	// self-hosted.
	signedProvDomain = []weighted[bool]{{6, true}, {94, false}}
	signedHosting    = []weighted[bool]{{3, true}, {97, false}}
	signedSelf       = []weighted[bool]{{20, true}, {80, false}}
	// A classic provider signs its zone and publishes TLSA 3 1 1 records
	// for its MX hosts: one in three.
	signedClassic = oneIn3
	// Of the signed self-hosted leaders: 60% publish TLSA 3 1 1 of their
	// key, of those one in ten a stale one (the key rolled over, the
	// record stayed).
	selfDANE = []weighted[uint8]{{36, daneCurrent}, {4, daneStale}, {60, daneNone}}
	// MTA-STS publishers, and of them how the policy host is reached.
	stsProvider = []weighted[bool]{{4, true}, {96, false}}
	stsHosting  = []weighted[bool]{{2, true}, {98, false}}
	stsSelf     = []weighted[STSHost]{{36, STSHostOwn}, {4, STSHostNX}, {960, stsNoHost}}
	stsModes    = []weighted[STSMode]{{10, ModeEnforce}, {8, ModeTesting}, {1, ModeNone}}
	// TLS-RPT: of MTA-STS publishers, of DANE publishers, of the others.
	rptWithSTS  = []weighted[RPT]{{7, RPTMailto}, {1, RPTHTTPS}, {2, RPTNone}}
	rptWithDANE = []weighted[RPT]{{1, RPTMailto}, {1, RPTNone}}
	rptOthers   = []weighted[RPT]{{1, RPTMailto}, {99, RPTNone}}
)

const (
	daneNone uint8 = iota
	daneCurrent
	daneStale
)

// stsNoHost marks "publishes no MTA-STS" in stsSelf.
const stsNoHost = STSHost(255)

// Signed says whether the domain's own zone is signed.
func (w *World) Signed(d Domain) bool {
	switch d.Kind {
	case KindCase:
		return d.Case.DNSSEC.Signed
	case KindProvider:
		return pick(signedProvDomain, w.hash(tagZoneSigned, d.Index))
	case KindHosting:
		return pick(signedHosting, w.hash(tagZoneSigned, d.Index))
	}
	return pick(signedSelf, w.hash(tagZoneSigned, d.Index))
}

// zoneSec is the status of the answers and denials of the domain's zone.
func (w *World) zoneSec(d Domain) Sec {
	if w.Signed(d) {
		return SecSecure
	}
	return SecInsecure
}

// bogus is the RRset of the domain's zone that does not validate.
func bogus(d Domain) Bogus {
	if d.Kind != KindCase {
		return BogusNone
	}
	return d.Case.DNSSEC.Bogus
}

// providerSigned says whether a provider's zone is signed: tenant-like
// providers (as Microsoft 365's mx.microsoft is) and one in three classic
// ones.
func (w *World) providerSigned(p int) bool {
	switch w.providers[p].style {
	case StyleTenant:
		return true
	case StyleNone:
		return pick(signedClassic, w.hash(tagProvSigned, p))
	}
	return false
}

// providerDANE are the TLSA records of a signed provider's MX hosts:
// DANE-TA 2 1 1 of the issuing CA at tenant-like providers (one record for
// every per-domain name), DANE-EE 3 1 1 of each server's key at classic
// ones.
func (w *World) providerDANE(p int) []TLSA {
	if !w.providerSigned(p) {
		return nil
	}
	if w.providers[p].style == StyleTenant {
		return []TLSA{{2, 1, 1, AssocIntermediate}}
	}
	return []TLSA{{3, 1, 1, AssocLeaf}}
}

// daneOf are the TLSA records the MX hosts in domain d's zone publish.
func (w *World) daneOf(d Domain) []TLSA {
	switch d.Kind {
	case KindCase:
		return d.Case.DANE.TLSA
	case KindSelf:
		if d.leader != d.Index || !w.Signed(d) {
			return nil
		}
		switch pick(selfDANE, w.hash(tagSelfDANE, d.Index)) {
		case daneCurrent:
			return []TLSA{{3, 1, 1, AssocLeaf}}
		case daneStale:
			return []TLSA{{3, 1, 1, AssocPrevKey}}
		}
	}
	return nil
}

// STSOf is the domain's MTA-STS: its case's, or the background's draw.
func (w *World) STSOf(d Domain) STS {
	var st STS
	switch d.Kind {
	case KindCase:
		return d.Case.STS
	case KindProvider:
		if !pick(stsProvider, w.hash(tagSTS, d.Index)) {
			return st
		}
		st.Host, st.MX = STSHostProvider, STSMXWildcard
	case KindHosting:
		if !pick(stsHosting, w.hash(tagSTS, d.Index)) {
			return st
		}
	case KindSelf:
		h := pick(stsSelf, w.hash(tagSTS, d.Index))
		if h == stsNoHost {
			return st
		}
		st.Host = h
	}
	st.Record, st.Mode = STSValid, pick(stsModes, w.hash(tagSTSMode, d.Index))
	return st
}

// RPTOf is the domain's TLS-RPT record: its case's, or the background's
// draw.
func (w *World) RPTOf(d Domain) RPT {
	if d.Kind == KindCase {
		return d.Case.RPT
	}
	h := w.hash(tagRPT, d.Index)
	switch {
	case w.STSOf(d).Record != STSNone:
		return pick(rptWithSTS, h)
	case len(w.daneOf(d)) > 0:
		return pick(rptWithDANE, h)
	}
	return pick(rptOthers, h)
}

// stsID is the id of a domain's MTA-STS record (1-32 letters and digits).
func stsID(d Domain) string { return "lab" + strconv.Itoa(d.Index+1) }

// STSTXT are the TXT records at _mta-sts.<d>, each as its
// character-strings, in answer order.
func STSTXT(d Domain, st STS) [][]string {
	valid := []string{"v=STSv1; id=" + stsID(d)}
	switch st.Record {
	case STSValid:
		return [][]string{valid}
	case STSSplit:
		return [][]string{{"v=STSv1; ", "id=" + stsID(d)}}
	case STSDuplicate:
		return [][]string{valid, valid}
	case STSInvalid:
		return [][]string{{"v=STSv1; id=lab-" + strconv.Itoa(d.Index+1) + "!"}}
	case STSMany:
		return append(append(make([][]string, 0, STSManyRecords), valid), manyFillers...)
	}
	return nil
}

// manyFillers are the records STSMany publishes after the valid one,
// shared (read-only) by every lookup of them.
var manyFillers = func() [][]string {
	out := make([][]string, STSManyRecords-1)
	for k := range out {
		out[k] = []string{"lab filler record " + strconv.Itoa(100000 + k + 1)[1:]}
	}
	return out
}()

// RPTTXT are the TXT records at _smtp._tls.<d>, each as its
// character-strings.
func RPTTXT(d Domain, r RPT) [][]string {
	mailto := "rua=mailto:tlsrpt@" + d.Name
	switch r {
	case RPTMailto:
		return [][]string{{"v=TLSRPTv1; " + mailto}}
	case RPTHTTPS:
		return [][]string{{"v=TLSRPTv1; rua=https://tlsrpt." + d.Name + "/v1"}}
	case RPTSplit:
		return [][]string{{"v=TLSRPTv1;", mailto}}
	case RPTInvalid:
		return [][]string{{"v=TLSRPTv1; rua=ftp://tlsrpt." + d.Name + "/"}}
	case RPTDuplicate:
		return [][]string{{"v=TLSRPTv1; " + mailto}, {"v=TLSRPTv1; " + mailto}}
	}
	return nil
}

// stsHostNode is the node of mta-sts.<d>.
func (w *World) stsHostNode(d Domain, st STS) Node {
	if st.Record == STSNone {
		return Node{}
	}
	switch st.Host {
	case STSHostOwn:
		return Node{Exists: true, A: []netip.Addr{w.SlotAddr(w.policySlot(d))}}
	case STSHostProvider:
		return Node{Exists: true, CNAME: "mta-sts." + w.providers[d.provider].name}
	case STSHostRefused:
		return Node{Exists: true, AAAA: []netip.Addr{netip.IPv6Loopback()}}
	case STSHostPrivate:
		return Node{Exists: true, A: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}
	}
	return Node{}
}

// policySlot is the slot of a domain's own policy host: the second of the
// domain's two (the HTTPS listener is apart from the SMTP one, so a
// self-hosted leader's second SMTP address serves both).
func (w *World) policySlot(d Domain) int { return w.slotBase + 2*d.Index + 1 }

// STSAddr is the address a scan fetches the domain's policy from (sts_ip):
// the first address of mta-sts.<d>, its CNAME followed; invalid when it
// has none.
func (w *World) STSAddr(d Domain, st STS) netip.Addr {
	if st.Record == STSNone {
		return netip.Addr{}
	}
	switch st.Host {
	case STSHostOwn:
		return w.SlotAddr(w.policySlot(d))
	case STSHostProvider:
		return w.SlotAddr(w.providers[d.provider].first)
	case STSHostRefused:
		return netip.IPv6Loopback()
	case STSHostPrivate:
		return netip.MustParseAddr("10.0.0.1")
	}
	return netip.Addr{}
}

// PolicyHost is an HTTPS server of the lab's policy hosts: a domain's own
// (on its second address) or a provider's (on its first, serving its
// customers by SNI).
type PolicyHost struct {
	own      bool
	d        Domain
	st       STS
	provider int
}

// PolicyHostAt is the policy host on a slot; ok is false where none runs.
func (w *World) PolicyHostAt(slot int) (PolicyHost, bool) {
	switch {
	case slot < 0 || slot >= w.nSlots:
		return PolicyHost{}, false
	case slot >= w.slotBase:
		if (slot-w.slotBase)%2 != 1 {
			return PolicyHost{}, false
		}
		d := w.Domain((slot - w.slotBase) / 2)
		st := w.STSOf(d)
		if st.Record == STSNone || st.Host != STSHostOwn {
			return PolicyHost{}, false
		}
		return PolicyHost{own: true, d: d, st: st}, true
	case slot < w.slotHostng:
		p := int(w.slotOwner[slot])
		if w.providers[p].first != slot {
			return PolicyHost{}, false
		}
		return PolicyHost{provider: p}, true
	}
	return PolicyHost{}, false
}

// Serve is what the host does before a TLS handshake decides anything: a
// domain's own host its case's; a provider's serves.
func (h PolicyHost) Serve() STSServe {
	if h.own {
		return h.st.Serve
	}
	return ServePolicy
}

// Site is the domain whose policy the host serves to a client that sent
// sni: the own host's domain whatever the SNI, the provider's customer
// named mta-sts.<d> that has its policy there; ok is false for another SNI
// at a provider.
func (w *World) Site(h PolicyHost, sni string) (Domain, STS, bool) {
	if h.own {
		return h.d, h.st, true
	}
	name, ok := strings.CutPrefix(sni, "mta-sts.")
	if !ok {
		return Domain{}, STS{}, false
	}
	i, ok := w.parseDomain(name)
	if !ok {
		return Domain{}, STS{}, false
	}
	d := w.Domain(i)
	st := w.STSOf(d)
	if d.Kind != KindProvider || d.provider != h.provider || st.Record == STSNone || st.Host != STSHostProvider {
		return Domain{}, STS{}, false
	}
	return d, st, true
}

// PolicyCert is the certificate of the domain's policy host: its rule
// applied to mta-sts.<d> ("<zone>" in a fixed name stands for the domain).
func PolicyCert(d Domain, st STS) CertSpec {
	r := st.Cert
	name := "mta-sts." + d.Name
	if r.Names == CertFixed {
		name = strings.ReplaceAll(r.Fixed, zonePlaceholder, d.Name)
	}
	return CertSpec{CN: name, SANs: []string{name}, Issuer: r.Issuer, Key: r.Key, Validity: r.Validity}
}

// PolicyReply is the HTTP response of a policy host, as sent: a status,
// the two headers a scan keeps, and a body of Len bytes, Body followed by
// Filler over and over.
type PolicyReply struct {
	Status      int
	ContentType string
	Location    string
	Body        []byte
	Filler      []byte
	Len         int64
}

// Reply is the response the domain's policy host gives to a GET of
// /.well-known/mta-sts.txt (RFC 8461 §3.2).
func (w *World) Reply(d Domain, st STS) PolicyReply {
	policy := w.policyText(d, st, "\r\n")
	r := PolicyReply{Status: 200, ContentType: "text/plain", Body: []byte(policy)}
	switch st.Serve {
	case Serve404:
		r.Status, r.ContentType, r.Body = 404, "text/plain; charset=utf-8", []byte("404 page not found\n")
	case ServeRedirect:
		r.Status, r.ContentType = 301, "text/html; charset=utf-8"
		r.Location = "https://www." + d.Name + "/.well-known/mta-sts.txt"
		r.Body = []byte("<a href=\"" + r.Location + "\">Moved Permanently</a>.\n")
	case ServeHTML:
		r.ContentType = "text/html"
	case ServeHuge:
		r.Filler, r.Len = hugeFiller, HugePolicyLen
	case ServeUTF16:
		u := utf16.Encode([]rune(policy))
		b := []byte{0xff, 0xfe}
		for _, c := range u {
			b = append(b, byte(c), byte(c>>8))
		}
		r.Body = b
	case ServeMalformed:
		r.Body = bytes.Replace(r.Body, []byte("mode: enforce"), []byte("mode: enforced"), 1)
	case ServeLF:
		r.ContentType, r.Body = "text/plain; charset=utf-8", []byte(w.policyText(d, st, "\n"))
	}
	if r.Len == 0 {
		r.Len = int64(len(r.Body))
	}
	return r
}

// hugeFiller is the ServeHuge body after the policy: 64 lines of an
// extension key (RFC 8461 §3.2: unknown keys are ignored), 64 KiB.
var hugeFiller = []byte(strings.Repeat("x-lab-filler: "+strings.Repeat("0123456789abcdef", 63)+"0\r\n", 64))

// Prefix is the first n bytes of the body (all of it when shorter).
func (r PolicyReply) Prefix(n int) []byte {
	n = int(min(int64(n), r.Len))
	out := append(make([]byte, 0, n), r.Body[:min(len(r.Body), n)]...)
	for len(out) < n {
		out = append(out, r.Filler[:min(len(r.Filler), n-len(out))]...)
	}
	return out
}

// policyText is the policy of a domain: version, mode, its mx lines and
// max_age, with the line end eol.
func (w *World) policyText(d Domain, st STS, eol string) string {
	var b strings.Builder
	b.WriteString("version: STSv1" + eol + "mode: " + st.Mode.String() + eol)
	for _, p := range w.stsPatterns(d, st) {
		b.WriteString("mx: " + p + eol)
	}
	age := "604800"
	if st.Mode != ModeEnforce {
		age = "86400"
	}
	b.WriteString("max_age: " + age + eol)
	return b.String()
}

// stsPatterns are the mx lines of a domain's policy: its MX hosts' names,
// wildcards one label above them, or a name that is none of them.
func (w *World) stsPatterns(d Domain, st STS) []string {
	switch st.MX {
	case STSMXOther:
		return []string{"smtp-old." + d.Name}
	case STSMXWildcard:
		switch d.Kind {
		case KindProvider:
			pr := &w.providers[d.provider]
			switch pr.style {
			case StyleSuite:
				return []string{"aspmx.l." + pr.name, "*.aspmx.l." + pr.name}
			case StyleTenant:
				return []string{"*.mail." + pr.name}
			case StyleGateway:
				return []string{"*.in." + pr.name}
			}
			return []string{"*." + pr.name}
		case KindSelf:
			return []string{"*." + w.DomainName(d.leader)}
		}
		return []string{"*." + d.Name}
	}
	var out []string
	for _, h := range w.MXHosts(d) {
		out = append(out, h.Name)
	}
	return out
}
