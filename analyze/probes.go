package analyze

import (
	"context"
	"crypto/sha256"
	"errors"
	"time"

	"github.com/mxsurvey/mxsurvey/analyze/certs"
	"github.com/mxsurvey/mxsurvey/analyze/match"
	"github.com/mxsurvey/mxsurvey/analyze/tlsrpt"
	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// probeRow is what the analyzer reads of a survey.ProbeRow: the columns
// hosts.csv copies (hostFromProbe) and those the figures use, with the tags
// and types of survey.ProbeRow (TestProjections holds them to it). The other
// columns, among them the raw error texts and the extension lists, are
// never decoded.
type probeRow struct {
	IP               string    `parquet:"ip,dict"`
	Port             int32     `parquet:"port"`
	MXHost           string    `parquet:"mx_host,dict"`
	PTRHost          string    `parquet:"ptr_host"`
	StartedAt        time.Time `parquet:"started_at,timestamp(millisecond)"`
	Outcome          string    `parquet:"outcome,dict"`
	ErrorClass       string    `parquet:"error_class,dict"`
	Banner           string    `parquet:"banner"`
	BannerHost       string    `parquet:"banner_host,dict"`
	EHLOReply        string    `parquet:"ehlo_reply"`
	EHLOHost         string    `parquet:"ehlo_host,dict"`
	STARTTLSOffered  bool      `parquet:"starttls_offered"`
	TLSVersion       string    `parquet:"tls_version,dict"`
	TLSGroup         string    `parquet:"tls_group,dict"`
	CertChain        [][]byte  `parquet:"cert_chain,list"`
	CertSubjectCN    string    `parquet:"cert_subject_cn"`
	CertSANDNS       []string  `parquet:"cert_san_dns,list"`
	CertIssuer       string    `parquet:"cert_issuer"`
	CertSHA256       string    `parquet:"cert_sha256"`
	CertKeyType      string    `parquet:"cert_key_type,dict"`
	CertKeyBits      int32     `parquet:"cert_key_bits"`
	PostTLSEHLOReply string    `parquet:"post_tls_ehlo_reply"`
	PostTLSEHLOHost  string    `parquet:"post_tls_ehlo_host,dict"`
}

// readProbes is the probe pass: row groups are decoded and evaluated on
// every core (evalProbe), and counted in the order a sequential read would
// count them (countProbe), so that the first probed row of a repeated
// target is the same whatever the scheduling.
func (a *analyzer) readProbes(ctx context.Context) error {
	return runPass(ctx, a, survey.ProbesTable, survey.ProbesDir, func(ctx context.Context, g store.RowGroup) (*hostBatch, error) {
		b := &hostBatch{facts: make([]hostFacts, 0, g.Rows)}
		var scratch survey.ProbeRow
		if a.out != nil {
			b.export = a.out.hosts.segment(int(g.Rows))
		}
		err := store.ReadRowGroup(ctx, g, func(rows []probeRow) error {
			for i := range rows {
				f := a.evalProbe(&rows[i])
				b.facts = append(b.facts, f)
				if b.export != nil {
					hostRow(b.export.next(), &rows[i], &f.hostResult, &scratch)
					if err := b.export.record(); err != nil {
						return err
					}
				}
			}
			return nil
		})
		return b, err
	}, func(_ store.RowGroup, b *hostBatch) (int, error) {
		for i := range b.facts {
			a.countProbe(&b.facts[i])
		}
		if b.export != nil {
			a.out.hosts.send(b.export)
		}
		return len(b.facts), nil
	})
}

// hostBatch is what a worker computed for one row group.
type hostBatch struct {
	facts  []hostFacts
	export *segment[HostRow] // nil without outputs
}

// hostResult is everything computed for one probe row.
type hostResult struct {
	probed, connected, withCert bool
	cert                        certs.Result
	certSHA                     string
	matchMX, matchBanner        bool
	matchEHLO, matchPost        bool
	matchPTR, wildcardUsed      bool
	validForMX                  bool
	software, provider          string
	// The MX host's TLSA lookup (nil: no records and not bogus, or not
	// measured) and the DANE sender's verdict on the target.
	tlsa       *tlsaHost
	daneValid  bool
	daneResult tlsrpt.ResultType
}

// hostFacts is a probe row's hostResult with the row's values its counting
// needs.
type hostFacts struct {
	hostResult
	outcome, errorClass  string
	tlsVersion, tlsGroup string
	bannerHost, bannerMX bool
	starttls             bool
	target               targetID
	targetFacts          targetFacts
	certUnparseable      bool
}

// evalProbe computes everything about one probe row that does not depend on
// other rows. It runs on many goroutines at once: it reads the analyzer's
// configuration and its Verifier (safe for concurrent use) and writes
// nothing shared.
func (a *analyzer) evalProbe(r *probeRow) hostFacts {
	// Scans written before the tls_group vocabulary hold Go's spelling
	// (CurveP256): every figure and export uses docs/schema.md's (P-256).
	r.TLSGroup = survey.CanonicalTLSGroup(r.TLSGroup)
	f := hostFacts{outcome: r.Outcome, errorClass: r.ErrorClass, tlsVersion: r.TLSVersion, tlsGroup: r.TLSGroup,
		bannerHost: r.BannerHost != "", bannerMX: r.BannerHost != "" && r.BannerHost == r.MXHost,
		starttls: r.STARTTLSOffered}
	h := &f.hostResult
	h.provider = registeredDomain(r.MXHost)
	if r.Outcome != survey.OutcomeSkipped {
		h.probed = true
		h.connected = r.Outcome != survey.OutcomeConnect
		h.software = serverSoftware(r.Banner, r.EHLOReply, r.PostTLSEHLOReply)
	}
	at := r.StartedAt
	if at.IsZero() {
		at = a.fallback
	}
	if r.TLSVersion != "" {
		f.certUnparseable = a.evalCert(r, h, at)
	}
	switch {
	case h.withCert:
		h.certSHA = h.cert.Leaf.Cert.SHA256 // survey.CertSHA256 of the same DER
	case len(r.CertChain) > 0 && len(r.CertChain[0]) > 0:
		h.certSHA = survey.CertSHA256(r.CertChain[0])
	default:
		h.certSHA = r.CertSHA256
	}
	h.tlsa = a.tlsa[r.MXHost]
	dv := daneTarget(h.tlsa, r.Outcome, r.TLSVersion != "", r.CertChain, at)
	h.daneValid, h.daneResult = dv.valid, dv.result
	tf := &f.targetFacts
	if h.probed {
		tf.flags |= tProbed
		if r.STARTTLSOffered {
			tf.flags |= tSTARTTLS
		}
		if h.validForMX {
			tf.flags |= tValidForMX
		}
		if h.daneValid {
			tf.flags |= tDANEValid
		}
		tf.dane = resultCode(h.daneResult)
		tf.sts = resultCode(stsTarget(r.Outcome, r.TLSVersion != "", h))
	}
	f.target = targetOf(r.IP, r.MXHost)
	return f
}

// evalCert verifies and matches the certificate of a row whose handshake
// completed; it reports whether a recorded leaf did not parse.
func (a *analyzer) evalCert(r *probeRow, h *hostResult, at time.Time) (unparseable bool) {
	res, err := a.verifier.Check(r.CertChain, at)
	switch {
	case errors.Is(err, certs.ErrNoChain):
		return false
	case err != nil:
		return true
	}
	h.withCert, h.cert = true, res
	l := res.Leaf
	anyWild := false
	check := func(host string) bool {
		ok, wild := match.MatchAny(l.Names, host)
		anyWild = anyWild || wild
		return ok
	}
	h.matchMX = check(r.MXHost)
	h.matchBanner = r.BannerHost != "" && check(r.BannerHost)
	h.matchEHLO = r.EHLOHost != "" && check(r.EHLOHost)
	h.matchPost = r.PostTLSEHLOHost != "" && check(r.PostTLSEHLOHost)
	h.matchPTR = r.PTRHost != "" && check(r.PTRHost)
	h.wildcardUsed = anyWild
	h.validForMX = res.Trusted && h.matchMX && !res.Expired && !res.NotYetValid
	return false
}

// countProbe adds one evaluated row to the figures. It runs on one
// goroutine, in row order.
func (a *analyzer) countProbe(f *hostFacts) {
	c := &a.hosts
	h := &f.hostResult
	count := func(k int, b bool) {
		if b {
			c[k]++
		}
	}
	c[hTotal]++
	a.top["outcomes"][orNone(f.outcome)]++
	if f.errorClass != "" {
		a.top["error_classes"][f.errorClass]++
	}
	count(hSkipped, !h.probed)
	count(hProbed, h.probed)
	count(hConnected, h.connected)
	if h.probed {
		count(hBannerHostPresent, f.bannerHost)
		count(hBannerIsMX, f.bannerMX)
	}
	if h.software != "" {
		c[hGreeted]++
		a.top["server_software"][h.software]++
	}
	count(hSTARTTLSOffered, f.starttls)
	if f.tlsVersion != "" {
		c[hTLSOK]++
		a.top["tls_versions"][f.tlsVersion]++
		if f.tlsGroup != "" {
			a.top["tls_groups"][f.tlsGroup]++
		}
		count(hCertMissing, !h.withCert && !f.certUnparseable)
		count(hCertUnparseable, f.certUnparseable)
	}
	if h.withCert {
		res := &h.cert
		l := res.Leaf
		c[hWithCert]++
		a.top["issuers"][l.IssuerLabel]++
		a.top["key_types"][l.KeyLabel()]++
		count(hTrusted, res.Trusted)
		count(hSelfSigned, l.Cert.SelfSigned)
		count(hExpired, res.Expired)
		count(hNotYetValid, res.NotYetValid)
		count(hWildcard, l.Wildcard)
		count(hWildcardUsed, h.wildcardUsed)
		count(hCNOnly, l.CNOnly)
		count(hMatchMX, h.matchMX)
		count(hMatchBanner, h.matchBanner)
		count(hMatchMXOnly, h.matchMX && !h.matchBanner)
		count(hMatchBannerOnly, h.matchBanner && !h.matchMX)
		count(hMatchBoth, h.matchMX && h.matchBanner)
		count(hMatchNeither, !h.matchMX && !h.matchBanner)
		count(hMatchEHLO, h.matchEHLO)
		count(hMatchPostTLSEHLO, h.matchPost)
		count(hMatchPTR, h.matchPTR)
		count(hValidForMX, h.validForMX)
	}
	count(hTLSAPresent, h.tlsa.present())
	count(hTLSASecure, h.tlsa.secure())
	count(hTLSABogus, h.tlsa.bogus())
	count(hDANEValid, h.daneValid)
	a.noteTarget(f.target, f.targetFacts)
}

// targetID identifies a target: the first 128 bits of the SHA-256 of its
// join key (survey.TargetKey). A million targets then cost a map without a
// pointer, which the garbage collector never scans, instead of a million
// strings; two targets sharing an ID would take 2^64 attempts to find.
type targetID [16]byte

func targetOf(ip, mxHost string) targetID {
	var buf [128]byte
	sum := sha256.Sum256(survey.AppendTargetKey(buf[:0], ip, mxHost))
	return targetID(sum[:16])
}

// noteTarget keeps the three bytes per target that the domain pass needs. When
// shards repeat a target, a probed row wins over a skipped one and otherwise
// the first row stays, so that no combination of rows looks better than any
// single probe did.
func (a *analyzer) noteTarget(key targetID, f targetFacts) {
	if old, seen := a.targets[key]; seen {
		a.dupes++
		if old.flags&tProbed != 0 || f.flags&tProbed == 0 {
			return
		}
	}
	a.targets[key] = f
}
