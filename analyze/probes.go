package analyze

import (
	"context"
	"errors"

	"github.com/mxsurvey/mxsurvey/analyze/certs"
	"github.com/mxsurvey/mxsurvey/analyze/match"
	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

func (a *analyzer) readProbes(ctx context.Context) error {
	p := newProgress(a.opts.Progress, "probes")
	for _, dir := range a.opts.Dirs {
		paths, err := store.Parts(survey.ProbesDir(dir))
		if err != nil {
			return err
		}
		if len(paths) == 0 {
			a.log.Warn("no probe parts", "dir", dir)
		}
		for _, path := range paths {
			err := store.ReadBatches(ctx, path, func(rows []survey.ProbeRow) error {
				for i := range rows {
					if err := a.probe(&rows[i]); err != nil {
						return err
					}
				}
				p.add(len(rows))
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	p.done()
	return nil
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
}

func (a *analyzer) probe(r *survey.ProbeRow) error {
	// Scans written before the tls_group vocabulary hold Go's spelling
	// (CurveP256): every figure and export uses docs/schema.md's (P-256).
	r.TLSGroup = survey.CanonicalTLSGroup(r.TLSGroup)
	var h hostResult
	c := &a.hosts
	c[hTotal]++
	a.top["outcomes"][orNone(r.Outcome)]++
	if r.ErrorClass != "" {
		a.top["error_classes"][r.ErrorClass]++
	}
	h.provider = registeredDomain(r.MXHost)
	if r.Outcome == survey.OutcomeSkipped {
		c[hSkipped]++
	} else {
		h.probed = true
		c[hProbed]++
		if r.Outcome != survey.OutcomeConnect {
			h.connected = true
			c[hConnected]++
		}
		if r.BannerHost != "" {
			c[hBannerHostPresent]++
			if r.BannerHost == r.MXHost {
				c[hBannerIsMX]++
			}
		}
		if h.software = serverSoftware(r.Banner, r.EHLOReply, r.PostTLSEHLOReply); h.software != "" {
			c[hGreeted]++
			a.top["server_software"][h.software]++
		}
	}
	if r.STARTTLSOffered {
		c[hSTARTTLSOffered]++
	}
	if r.TLSVersion != "" {
		c[hTLSOK]++
		a.top["tls_versions"][r.TLSVersion]++
		if r.TLSGroup != "" {
			a.top["tls_groups"][r.TLSGroup]++
		}
		a.evalCert(r, &h)
	}
	if len(r.CertChain) > 0 && len(r.CertChain[0]) > 0 {
		h.certSHA = survey.CertSHA256(r.CertChain[0])
	} else {
		h.certSHA = r.CertSHA256
	}
	a.noteTarget(r, &h)
	if a.out != nil {
		return a.out.host(r, &h)
	}
	return nil
}

func (a *analyzer) evalCert(r *survey.ProbeRow, h *hostResult) {
	c := &a.hosts
	at := r.StartedAt
	if at.IsZero() {
		at = a.fallback
	}
	res, err := a.verifier.Check(r.CertChain, at)
	switch {
	case errors.Is(err, certs.ErrNoChain):
		c[hCertMissing]++
		return
	case err != nil:
		c[hCertUnparseable]++
		return
	}
	h.withCert, h.cert = true, res
	l := res.Leaf
	c[hWithCert]++
	a.top["issuers"][l.IssuerLabel]++
	a.top["key_types"][l.KeyLabel()]++
	count := func(k int, b bool) {
		if b {
			c[k]++
		}
	}
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

// noteTarget keeps the one byte per target that the domain pass needs. When
// shards repeat a target, a probed row wins over a skipped one and otherwise
// the first row stays, so that no combination of rows looks better than any
// single probe did.
func (a *analyzer) noteTarget(r *survey.ProbeRow, h *hostResult) {
	var f uint8
	if h.probed {
		f |= tProbed
		if r.STARTTLSOffered {
			f |= tSTARTTLS
		}
		if h.validForMX {
			f |= tValidForMX
		}
	}
	key := survey.TargetKey(r.IP, r.MXHost)
	if old, seen := a.targets[key]; seen {
		a.dupes++
		if old&tProbed != 0 || f&tProbed == 0 {
			return
		}
	}
	a.targets[key] = f
}
