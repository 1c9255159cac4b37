package truth

import (
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/mxsurvey/mxsurvey/lab/world"
)

// The truth of the transport security policies (issue 13): the policies row
// of each domain, the tlsa row of each MX host, and what a sender honouring
// DANE or MTA-STS would make of them (the facts behind the analyzer's
// figures). Each is stated from the world's records and what a validating
// resolver in front of the lab reports of them (lookup), never by parsing
// the records, policies or certificates as a scan or an analysis does: the
// lab knows which record is valid, which policy host fails how, and which
// certificate a TLSA record names, because it made them so.

// Policy is the policies row a scan writes for a domain (docs/schema.md,
// schema 2), its columns by their names (an empty one left out: most
// domains of a million publish nothing).
type Policy struct {
	MTASTSStatus string   `json:"mta_sts_status"`
	MTASTSDNSSEC string   `json:"mta_sts_dnssec"`
	MTASTSTXT    []string `json:"mta_sts_txt,omitempty"`
	TLSRPTStatus string   `json:"tlsrpt_status"`
	TLSRPTDNSSEC string   `json:"tlsrpt_dnssec"`
	TLSRPTTXT    []string `json:"tlsrpt_txt,omitempty"`

	STSFetched       bool   `json:"sts_fetched,omitempty"`
	STSURL           string `json:"sts_url,omitempty"`
	STSIP            string `json:"sts_ip,omitempty"`
	STSErrorClass    string `json:"sts_error_class,omitempty"`
	STSHTTPStatus    int32  `json:"sts_http_status,omitempty"`
	STSContentType   string `json:"sts_content_type,omitempty"`
	STSLocation      string `json:"sts_location,omitempty"`
	STSBody          []byte `json:"sts_body,omitempty"`
	STSBodyLen       int64  `json:"sts_body_len,omitempty"`
	STSBodyTruncated bool   `json:"sts_body_truncated,omitempty"`
	STSTLSVersion    string `json:"sts_tls_version,omitempty"`
}

// TLSA is a line of truth-tlsa.jsonl: the tlsa row a scan writes for an
// MX host, its columns by their names.
type TLSA struct {
	MXHost  string   `json:"mx_host"`
	Name    string   `json:"tlsa_name"`
	Status  string   `json:"tlsa_status"`
	DNSSEC  string   `json:"tlsa_dnssec"`
	Records []string `json:"tlsa_records,omitempty"`
	CNAMEs  []string `json:"tlsa_cnames,omitempty"`
}

// DANE are the facts of a target under DANE (RFC 7672), from its MX host's
// TLSA lookup and the certificate the server presents.
type DANE struct {
	TLSAPresent bool `json:"tlsa_present,omitempty"` // the lookup found records (any DNSSEC status)
	TLSASecure  bool `json:"tlsa_secure,omitempty"`  // secure, and a record usable for SMTP (world.TLSA.Usable)
	TLSABogus   bool `json:"tlsa_bogus,omitempty"`   // the lookup was bogus
	DANEValid   bool `json:"dane_valid,omitempty"`   // tlsa_secure and a usable record is satisfied by the chain as sent
	// Failure is the RFC 8460 result type a sender applying DANE to the
	// host reports for this target ("" when it delivers, or does not apply
	// DANE, or never reached TLS): README "Policies".
	Failure string `json:"failure,omitempty"`
}

// DomainFacts are a domain's verdicts under DNSSEC, DANE, MTA-STS and
// TLS-RPT (README "Policies" defines each as the analyzer must).
type DomainFacts struct {
	MXSecure          bool `json:"mx_secure,omitempty"`
	DANEProtected     bool `json:"dane_protected,omitempty"`
	DANEDeliverable   bool `json:"dane_deliverable,omitempty"`
	MTASTSRecord      bool `json:"mta_sts_record,omitempty"`
	MTASTSPolicyOK    bool `json:"mta_sts_policy_ok,omitempty"`
	MTASTSEnforce     bool `json:"mta_sts_enforce,omitempty"`
	MTASTSDeliverable bool `json:"mta_sts_deliverable,omitempty"`
	TLSRPTRecord      bool `json:"tlsrpt_record,omitempty"`
	// AuthPolicy is the policy a sender honours for the domain: "dane"
	// (DANE wins over MTA-STS, RFC 8461 §2), "sts", or "" for none.
	AuthPolicy string `json:"auth_policy,omitempty"`
	// TLSRPTResults are, under AuthPolicy, the result type of each probed
	// MX host's failure (hosts without one are not listed).
	TLSRPTResults []HostResult `json:"tlsrpt_results,omitempty"`
}

// HostResult is the RFC 8460 result type of one MX host.
type HostResult struct {
	MXHost string `json:"mx_host"`
	Result string `json:"result"`
}

// answer is what a resolver in front of the lab reports for a lookup: its
// status, its DNSSEC status, the CNAMEs it followed and the node it ended
// at.
type answer struct {
	status, dnssec string
	cnames         []string
	node           world.Node
}

// lookup states what a validating resolver reports for a lookup of name,
// whose records of the type asked has says are there: the lab's DNS
// answers each node so (lab/dnsserver), and a scan writes that.
func (st *Stater) lookup(name string, has func(*world.Node) bool) answer {
	n := st.w.Lookup(name)
	sp, sec := n.Spoil, n.Sec
	var a answer
	seen := []string{name}
	for n.Exists && n.CNAME != "" && !n.Drop && !n.Servfail {
		if slices.Contains(seen, n.CNAME) {
			return answer{status: world.StatusError, cnames: a.cnames}
		}
		a.cnames = append(a.cnames, n.CNAME)
		seen = append(seen, n.CNAME)
		n = st.w.Lookup(n.CNAME)
		sec = sec.Then(n.Sec)
	}
	switch {
	case n.Drop || sp == world.SpoilID:
		// A reply with another ID is no reply: the client times out.
		return answer{status: world.StatusTimeout}
	case sp == world.SpoilQuestion:
		return answer{status: world.StatusError}
	case n.Servfail:
		return answer{status: world.StatusServfail}
	case sec == world.SecBogus:
		// SERVFAIL, and an answer when asked again with CD.
		return answer{status: world.StatusServfail, dnssec: world.DNSSECBogus}
	}
	a.dnssec, a.node = sec.Status(), n
	switch {
	case !n.Exists:
		a.status = world.StatusNXDomain
	case !has(&n):
		a.status = world.StatusNoRecords
	default:
		a.status = world.StatusOK
	}
	return a
}

func hasTXT(n *world.Node) bool  { return len(n.TXT) > 0 }
func hasTLSA(n *world.Node) bool { return len(n.TLSA) > 0 }
func hasAny(*world.Node) bool    { return true }

// txtRecords are a TXT answer's records as a scan keeps them: each
// record's strings joined, cut at AssumeMaxTXTBytes, the first
// AssumeMaxTXTRecords in answer order.
func txtRecords(txt [][]string) []string {
	var out []string
	for _, t := range txt[:min(len(txt), world.AssumeMaxTXTRecords)] {
		s := strings.Join(t, "")
		out = append(out, s[:min(len(s), world.AssumeMaxTXTBytes)])
	}
	return out
}

// policy states the policies row of domain d.
func (st *Stater) policy(d world.Domain) Policy {
	var p Policy
	sts := st.lookup("_mta-sts."+d.Name, hasTXT)
	p.MTASTSStatus, p.MTASTSDNSSEC = sts.status, sts.dnssec
	if sts.status == world.StatusOK {
		p.MTASTSTXT = txtRecords(sts.node.TXT)
	}
	rpt := st.lookup("_smtp._tls."+d.Name, hasTXT)
	p.TLSRPTStatus, p.TLSRPTDNSSEC = rpt.status, rpt.dnssec
	if rpt.status == world.StatusOK {
		p.TLSRPTTXT = txtRecords(rpt.node.TXT)
	}
	// The contract's trigger (docs/schema.md): a record starting with
	// v=STSv1, case-sensitively.
	if !slices.ContainsFunc(p.MTASTSTXT, func(s string) bool { return strings.HasPrefix(s, "v=STSv1") }) {
		return p
	}
	s := st.w.STSOf(d)
	p.STSFetched = true
	host := "mta-sts." + d.Name
	if st.stsPort != 443 {
		host += ":" + strconv.Itoa(st.stsPort)
	}
	p.STSURL = "https://" + host + "/.well-known/mta-sts.txt"
	if a := st.w.STSAddr(d, s); a.IsValid() {
		p.STSIP = a.String()
	}
	if class := connectFailure(s); class != "" {
		p.STSErrorClass = class
		return p
	}
	p.STSTLSVersion = world.TLSVersion(false)
	r := st.w.Reply(d, s)
	p.STSHTTPStatus, p.STSContentType, p.STSLocation = int32(r.Status), r.ContentType, r.Location
	p.STSBody = r.Prefix(world.AssumeMaxBodyKept)
	p.STSBodyLen = min(r.Len, world.AssumeMaxBodyRead)
	p.STSBodyTruncated = r.Len > world.AssumeMaxBodyKept
	if r.Len > world.AssumeMaxBodyRead {
		p.STSErrorClass = world.ErrTooLarge
	}
	return p
}

// connectFailure is the sts_error_class of a fetch that gets no TLS
// session: no address, an address nothing listens on or that must not be
// contacted, a host that never answers or resets.
func connectFailure(s world.STS) string {
	switch {
	case s.Host == world.STSHostNX:
		return world.ErrNoAddress
	case s.Host == world.STSHostRefused:
		return world.ErrRefused
	case s.Host == world.STSHostPrivate:
		return world.ErrBlocked
	case s.Serve == world.ServeSilent:
		return world.ErrTimeout
	case s.Serve == world.ServeReset:
		return world.ErrReset
	}
	return ""
}

// stsFailure is the RFC 8460 result type of a sender's attempt to get a
// domain's policy, "" when it gets a valid one: a fetch that ends without
// a 200 response is a fetch error, a certificate a sender rejects (not
// from the lab's CA, expired, not for mta-sts.<d>) a WebPKI failure, a
// policy that is not text/plain or does not parse an invalid policy.
func stsFailure(s world.STS) string {
	switch {
	case connectFailure(s) != "":
		return world.ResultSTSFetchError
	case s.Cert.Issuer != world.IssuerLab || s.Cert.Validity != world.ValidNow || s.Cert.Names == world.CertFixed:
		return world.ResultSTSWebPKIInvalid
	}
	switch s.Serve {
	case world.Serve404, world.ServeRedirect, world.ServeHuge:
		return world.ResultSTSFetchError
	case world.ServeHTML, world.ServeUTF16, world.ServeMalformed:
		return world.ResultSTSInvalid
	}
	return ""
}

// mxView is what a resolver finds of an MX host: its address lookup, its
// tlsa row without the records, and the records as the lab made them.
type mxView struct {
	addr answer
	tlsa TLSA
	rrs  []world.TLSARR
}

// views are the mxViews of one domain's MX hosts, each made once.
type views map[string]mxView

func (st *Stater) view(vs views, h world.MXHost) mxView {
	if v, ok := st.provViews[h.Name]; ok {
		return v
	}
	if v, ok := vs[h.Name]; ok {
		return v
	}
	v := st.lookupMX(h)
	vs[h.Name] = v
	return v
}

// lookupMX looks up MX host h as a resolver does. RFC 7672 §2.2.2 as the
// contract builds it (docs/schema.md): after a secure CNAME chain the
// expanded name's TLSA records are asked first, and the host's own name's
// when the expanded one has none, or none that are secure.
func (st *Stater) lookupMX(h world.MXHost) mxView {
	v := mxView{tlsa: TLSA{MXHost: h.Name}}
	if h.Status == world.StatusError {
		// An address, not a name (dns_mx_ip_literal): nothing to ask.
		v.tlsa.Status = world.StatusError
		return v
	}
	v.addr = st.lookup(h.Name, hasAny)
	bases := []string{h.Name}
	if c := v.addr.cnames; len(c) > 0 && v.addr.dnssec == world.DNSSECSecure {
		bases = []string{c[len(c)-1], h.Name}
	}
	for _, b := range bases {
		a := st.lookup("_25._tcp."+b, hasTLSA)
		v.tlsa = TLSA{MXHost: h.Name, Name: "_25._tcp." + b, Status: a.status, DNSSEC: a.dnssec, CNAMEs: a.cnames}
		v.rrs = nil
		if a.status == world.StatusOK {
			v.rrs = a.node.TLSA
		}
		if !(a.status == world.StatusNoRecords || a.status == world.StatusNXDomain ||
			(a.status == world.StatusOK && a.dnssec != world.DNSSECSecure)) {
			break
		}
	}
	return v
}

// tlsaRow is the tlsa row of a viewed MX host, its records made.
func (st *Stater) tlsaRow(v mxView) (TLSA, error) {
	row := v.tlsa
	recs, err := st.auth.TLSA(v.rrs)
	if err != nil {
		return row, err
	}
	for _, r := range recs[:min(len(recs), world.AssumeMaxTXTRecords)] {
		row.Records = append(row.Records, r.String())
	}
	return row, nil
}

// dane states the DANE facts of a target whose probe row is h and whose MX
// host is viewed v. A target whose handshake did not complete has no
// certificate a sender accepts.
func (st *Stater) dane(t world.Target, h *Host, v mxView) DANE {
	row, rrs := v.tlsa, v.rrs
	f := DANE{TLSAPresent: row.Status == world.StatusOK, TLSABogus: row.DNSSEC == world.DNSSECBogus}
	var usable []world.TLSARR
	for _, r := range rrs {
		if r.Usable() {
			usable = append(usable, r)
		}
	}
	f.TLSASecure = f.TLSAPresent && row.DNSSEC == world.DNSSECSecure && len(usable) > 0
	switch {
	case f.TLSABogus:
		f.Failure = world.ResultDNSSECInvalid
		return f
	case f.TLSAPresent && row.DNSSEC == world.DNSSECSecure && len(usable) == 0:
		f.Failure = world.ResultTLSAInvalid
		return f
	case !f.TLSASecure:
		return f
	}
	switch h.Outcome {
	case world.OutSTARTTLS:
		f.Failure = world.ResultSTARTTLSNotSupported
		return f
	case world.OutTLS:
		f.Failure = world.ResultValidationFailure
		return f
	}
	if h.Facts == nil {
		return f // no TLS session: nothing a TLS report speaks of
	}
	sp := t.Server.CertSpec(t.MX)
	// DANE-TA: the lab intermediate is sent and signed the leaf, which
	// must carry the MX host's name and be valid in time (RFC 7672 §3.1.2).
	anchored := sp.Issuer == world.IssuerLab && sp.Broken == world.BrokenNone
	taMatched := false
	for _, r := range usable {
		switch {
		case r.Usage == 3 && st.auth.Names(r, sp):
			f.DANEValid = true
		case r.Usage == 2 && r.Of == world.AssocIntermediate && anchored:
			taMatched = true
			if h.Facts.MatchMX && !h.Facts.Expired && !h.Facts.NotYetValid {
				f.DANEValid = true
			}
		}
	}
	switch {
	case f.DANEValid:
	case taMatched && (h.Facts.Expired || h.Facts.NotYetValid):
		f.Failure = dateResult(h.Facts)
	case taMatched:
		f.Failure = world.ResultHostMismatch
	default:
		f.Failure = world.ResultValidationFailure
	}
	return f
}

// capMX are the MX hosts a scan keeps of a domain: the most preferred,
// ties by name (world.AssumeMaxMX).
func capMX(mx []MX) []MX {
	mx = slices.Clone(mx)
	sort.SliceStable(mx, func(i, j int) bool {
		if mx[i].Preference != mx[j].Preference {
			return mx[i].Preference < mx[j].Preference
		}
		return mx[i].Host < mx[j].Host
	})
	return mx[:min(len(mx), world.AssumeMaxMX)]
}

// targetKey names a target among the rows of a domain.
func targetKey(ip, host string) string { return ip + " " + host }

// domainFacts states the verdicts of domain d, whose truth so far is t,
// from the probe rows of its targets (rows, by targetKey). The rows of the
// targets of every MX host a scan keeps must be there; rows of other
// targets may be.
func (st *Stater) domainFacts(d world.Domain, t *Domain, rows map[string]*Host) DomainFacts {
	f := DomainFacts{MXSecure: t.MXDNSSEC == world.DNSSECSecure}
	s := st.w.STSOf(d)
	f.MTASTSRecord = s.Record.Valid() && t.Policy.MTASTSStatus == world.StatusOK
	f.TLSRPTRecord = st.w.RPTOf(d).Valid() && t.Policy.TLSRPTStatus == world.StatusOK
	stsFail := stsFailure(s)
	f.MTASTSPolicyOK = f.MTASTSRecord && stsFail == ""
	f.MTASTSEnforce = f.MTASTSPolicyOK && s.Mode == world.ModeEnforce

	// The probed MX hosts (a target not skipped), each with its first
	// probed target's row (README "Policies": a host's addresses agree).
	type probed struct {
		name  string
		first *Host
		rows  []*Host
	}
	var hosts []probed
	for _, m := range capMX(t.MX) {
		p := probed{name: m.Host}
		for _, ip := range m.IPs {
			if h := rows[targetKey(ip, m.Host)]; h != nil && h.Outcome != world.OutSkipped {
				if p.first == nil {
					p.first = h
				}
				p.rows = append(p.rows, h)
			}
		}
		if p.first != nil {
			hosts = append(hosts, p)
		}
	}
	asksDANE := false
	f.DANEProtected = f.MXSecure && len(hosts) > 0
	for _, p := range hosts {
		dn := p.first.DANE
		f.DANEProtected = f.DANEProtected && dn.TLSASecure
		// A host asks for DANE with a secure TLSA RRset, usable or not, or
		// one that does not validate.
		asksDANE = asksDANE || dn.TLSASecure || dn.TLSABogus || dn.Failure == world.ResultTLSAInvalid
		for _, h := range p.rows {
			f.DANEDeliverable = f.DANEDeliverable || h.DANE.DANEValid
			if s.MX.Matches() && h.Facts != nil && h.Facts.ValidForMX {
				f.MTASTSDeliverable = true
			}
		}
	}
	f.DANEDeliverable = f.DANEDeliverable && f.DANEProtected
	f.MTASTSDeliverable = f.MTASTSDeliverable && f.MTASTSEnforce

	switch {
	case f.MXSecure && asksDANE:
		f.AuthPolicy = "dane"
		for _, p := range hosts {
			if r := p.first.DANE.Failure; r != "" {
				f.TLSRPTResults = append(f.TLSRPTResults, HostResult{p.name, r})
			}
		}
	case f.MTASTSRecord && !(f.MTASTSPolicyOK && s.Mode == world.ModeNone):
		f.AuthPolicy = "sts"
		for _, p := range hosts {
			if r := stsHostResult(stsFail, s, p.first); r != "" {
				f.TLSRPTResults = append(f.TLSRPTResults, HostResult{p.name, r})
			}
		}
	}
	return f
}

// dateResult is the RFC 8460 result type of a leaf outside its dates, for
// DANE-TA and MTA-STS alike: certificate-expired says "the certificate has
// expired" (§4.3.1), which a certificate valid from 2090 has not; the other
// certificate failures are certificate-not-trusted.
func dateResult(f *Facts) string {
	if f.NotYetValid {
		return world.ResultCertNotTrusted
	}
	return world.ResultCertExpired
}

// stsHostResult is the RFC 8460 result type a sender applying a domain's
// MTA-STS policy reports for an MX host whose (first probed) target's row
// is h: the policy's own failure first, then an MX host the policy does not
// list, then the host's STARTTLS, TLS and certificate, in the order
// crypto/x509 checks a certificate (dates, name, chain).
func stsHostResult(stsFail string, s world.STS, h *Host) string {
	switch {
	case stsFail != "":
		return stsFail
	case !s.MX.Matches():
		return world.ResultValidationFailure
	case h.Outcome == world.OutSTARTTLS:
		return world.ResultSTARTTLSNotSupported
	case h.Outcome == world.OutTLS:
		return world.ResultValidationFailure
	case h.Facts == nil:
		return "" // no TLS session: nothing a TLS report speaks of
	case h.Facts.Expired || h.Facts.NotYetValid:
		return dateResult(h.Facts)
	case !h.Facts.MatchMX:
		return world.ResultHostMismatch
	case !h.Facts.Trusted:
		return world.ResultCertNotTrusted
	}
	return ""
}

// needsFacts says whether a domain's verdicts depend on its targets: it
// could ask for DANE (its MX RRset is secure) or has an MTA-STS record.
// The verdicts of the others are stated without their rows.
func (t *Domain) needsFacts(s world.STS) bool {
	return t.MXDNSSEC == world.DNSSECSecure || s.Record != world.STSNone
}
