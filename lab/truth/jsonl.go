package truth

import (
	"encoding/json"
	"strconv"
	"time"
)

// Hand-rolled JSON Lines for the truth rows: encoding/json's reflection was a
// fifth of a million-domain truth. The output is byte-identical to
// json.Marshal's (TestTruthJSON); rows with raw server text, and strings
// outside printable ASCII, go through encoding/json.

func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func appendJSONStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

func appendJSONKey(b []byte, first bool, key string) []byte {
	if !first {
		b = append(b, ',')
	}
	b = append(b, '"')
	b = append(b, key...)
	return append(b, '"', ':')
}

func appendJSONTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// AppendDomain appends d as one JSON line.
func AppendDomain(b []byte, d *Domain) []byte {
	b = appendJSONKey(append(b, '{'), true, "domain")
	b = appendJSONString(b, d.Domain)
	b = appendJSONKey(b, false, "rank")
	b = strconv.AppendInt(b, d.Rank, 10)
	b = appendJSONKey(b, false, "dns_status")
	b = appendJSONString(b, d.DNSStatus)
	b = appendJSONKey(b, false, "implicit_mx")
	b = strconv.AppendBool(b, d.ImplicitMX)
	b = appendJSONKey(b, false, "cnames")
	b = appendJSONStrings(b, d.CNAMEs)
	b = appendJSONKey(b, false, "mx")
	if d.MX == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range d.MX {
			m := &d.MX[i]
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONKey(append(b, '{'), true, "host")
			b = appendJSONString(b, m.Host)
			b = appendJSONKey(b, false, "preference")
			b = strconv.AppendInt(b, int64(m.Preference), 10)
			b = appendJSONKey(b, false, "host_status")
			b = appendJSONString(b, m.HostStatus)
			b = appendJSONKey(b, false, "ips")
			b = appendJSONStrings(b, m.IPs)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = appendJSONKey(b, false, "cases")
	b = appendJSONStrings(b, d.Cases)
	return append(b, '}', '\n')
}

// AppendHost appends h as one JSON line.
func AppendHost(b []byte, h *Host) []byte {
	if h.Raw != nil {
		j, err := json.Marshal(h)
		if err != nil {
			panic(err) // a Host always marshals
		}
		return append(append(b, j...), '\n')
	}
	str := func(key, v string) { b = appendJSONKey(b, false, key); b = appendJSONString(b, v) }
	num := func(key string, v int64) { b = appendJSONKey(b, false, key); b = strconv.AppendInt(b, v, 10) }
	boo := func(key string, v bool) { b = appendJSONKey(b, false, key); b = strconv.AppendBool(b, v) }
	strs := func(key string, v []string) { b = appendJSONKey(b, false, key); b = appendJSONStrings(b, v) }
	b = appendJSONKey(append(b, '{'), true, "ip")
	b = appendJSONString(b, h.IP)
	num("port", int64(h.Port))
	str("mx_host", h.MXHost)
	strs("cases", h.Cases)
	num("latency_ms", h.LatencyMS)
	if h.Dialect != "" {
		str("dialect", h.Dialect)
	}
	str("ptr_host", h.PTRHost)
	str("ptr_status", h.PTRStatus)
	str("outcome", h.Outcome)
	str("error_class", h.ErrorClass)
	num("banner_code", int64(h.BannerCode))
	str("banner_host", h.BannerHost)
	str("ehlo_verb", h.EHLOVerb)
	num("ehlo_code", int64(h.EHLOCode))
	str("ehlo_host", h.EHLOHost)
	strs("ehlo_extensions", h.EHLOExtensions)
	boo("starttls_offered", h.STARTTLSOffered)
	num("starttls_code", int64(h.STARTTLSCode))
	str("tls_version", h.TLSVersion)
	str("cert_subject_cn", h.CertSubjectCN)
	strs("cert_san_dns", h.CertSANDNS)
	str("cert_issuer", h.CertIssuer)
	if h.CertNotBefore != nil {
		b = appendJSONTime(appendJSONKey(b, false, "cert_not_before"), *h.CertNotBefore)
	}
	if h.CertNotAfter != nil {
		b = appendJSONTime(appendJSONKey(b, false, "cert_not_after"), *h.CertNotAfter)
	}
	str("cert_sha256", h.CertSHA256)
	num("cert_chain_len", int64(h.CertChainLen))
	str("cert_key_type", h.CertKeyType)
	num("cert_key_bits", int64(h.CertKeyBits))
	boo("cert_self_signed", h.CertSelfSigned)
	num("post_tls_ehlo_code", int64(h.PostTLSEHLOCode))
	str("post_tls_ehlo_host", h.PostTLSEHLOHost)
	strs("post_tls_ehlo_extensions", h.PostTLSEHLOExtensions)
	if f := h.Facts; f != nil {
		b = appendJSONKey(b, false, "facts")
		b = append(b, '{')
		b = appendJSONKey(b, true, "trusted")
		b = strconv.AppendBool(b, f.Trusted)
		boo("expired", f.Expired)
		boo("not_yet_valid", f.NotYetValid)
		boo("self_signed", f.SelfSigned)
		boo("wildcard", f.Wildcard)
		boo("wildcard_used", f.WildcardUsed)
		boo("cn_only", f.CNOnly)
		boo("match_mx", f.MatchMX)
		boo("match_banner", f.MatchBanner)
		boo("match_ehlo", f.MatchEHLO)
		boo("match_post_tls_ehlo", f.MatchPostTLSEHLO)
		boo("match_ptr", f.MatchPTR)
		boo("valid_for_mx", f.ValidForMX)
		b = append(b, '}')
	}
	return append(b, '}', '\n')
}
