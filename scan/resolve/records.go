package resolve

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/miekg/dns"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// What a TXT or TLSA lookup keeps. A DNS message is at most 64 KiB (RFC 1035
// §4.2.2), so a lookup never holds more than one such message, however many
// records it claims; a dataset row holds far less: MTA-STS and TLS-RPT
// records are short (RFC 8461 §3.1, RFC 8460 §3), and no sane TLSA RRset has
// dozens of records.
const (
	MaxRecords  = 64   // records kept per RRset, in answer order
	MaxTXTBytes = 2048 // bytes kept per TXT record, its strings concatenated
)

// RRset is the outcome of a lookup of one record type at one name, as the
// tlsa and policies tables record it (docs/schema.md).
type RRset struct {
	Name string // the name asked, lowercased, without the trailing dot; empty when not asked
	// Status is survey.DNSOK with records, survey.DNSNoRecords for an
	// answer without records of the type (NODATA, also at the end of a
	// CNAME chain), or the failure (nxdomain, servfail, timeout, refused,
	// error).
	Status string
	DNSSEC string // survey.DNSSEC*
	// Error is the raw reason of a failure, or a note of what was dropped.
	Error   string
	CNAMEs  []string // followed from Name, in order
	Records []string // at most MaxRecords
}

// TXT looks up the TXT records at name. Each record is its
// character-strings concatenated without separator (RFC 8461 §3.1, RFC 7208
// §3.3), as the bytes received, capped at MaxTXTBytes; records come in
// answer order, duplicates kept.
func (r *Resolver) TXT(ctx context.Context, name string) RRset {
	return r.rrset(ctx, name, dns.TypeTXT, func(rr dns.RR) (string, bool, bool) {
		t, ok := rr.(*dns.TXT)
		if !ok {
			return "", false, false
		}
		return txtData(t)
	})
}

// TLSA looks up the TLSA records of the TCP service on port at host, at
// _<port>._tcp.<host> (RFC 6698 §3). Each record is in presentation form,
// "usage selector mtype hexdata" with decimal numbers and lower-case hex
// (RFC 6698 §2.2), as received: records a sender could not use are kept. A
// host that is not a name (an address literal, an invalid name) is not
// asked: Status error, Name empty.
func (r *Resolver) TLSA(ctx context.Context, port int, host string) RRset {
	if h, ok := normalize(host); !ok || isAddrLiteral(h) || !isHostName(h) {
		return RRset{Status: survey.DNSError, Error: "host is not a name that has TLSA records"}
	}
	name := fmt.Sprintf("_%d._tcp.%s", port, host)
	return r.rrset(ctx, name, dns.TypeTLSA, func(rr dns.RR) (string, bool, bool) {
		t, ok := rr.(*dns.TLSA)
		if !ok {
			return "", false, false
		}
		return fmt.Sprintf("%d %d %d %s", t.Usage, t.Selector, t.MatchingType, strings.ToLower(t.Certificate)), false, true
	})
}

// isHostName reports whether a canonical name is made of the letters,
// digits, hyphens and underscores that host names use: miekg/dns accepts
// any byte in a label, which a host name to prefix with _25._tcp has none
// of.
func isHostName(fqdn string) bool {
	for i := 0; i < len(fqdn); i++ {
		c := fqdn[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// rrset looks up (name, qtype) and turns each record into text; text
// reports whether it cut the record and whether the record is of the type.
func (r *Resolver) rrset(ctx context.Context, name string, qtype uint16, text func(dns.RR) (s string, cut, ok bool)) RRset {
	fqdn, ok := normalize(name)
	if !ok {
		return RRset{Status: survey.DNSError, Error: "invalid name"}
	}
	res, sec := r.lookupSec(ctx, fqdn, qtype)
	set := RRset{Name: display(fqdn), Status: res.status, DNSSEC: sec, CNAMEs: res.cnames, Error: res.reason}
	if res.status != survey.DNSOK {
		return set
	}
	var notes []string
	for i, rr := range res.rrs {
		if len(set.Records) == MaxRecords {
			notes = append(notes, fmt.Sprintf("%d %s records, only the first %d kept", len(res.rrs), dns.TypeToString[qtype], MaxRecords))
			break
		}
		s, cut, ok := text(rr)
		if !ok {
			continue
		}
		if cut {
			notes = append(notes, fmt.Sprintf("record %d cut to %d bytes", i+1, MaxTXTBytes))
		}
		set.Records = append(set.Records, s)
	}
	set.Error = strings.Join(notes, "; ")
	if len(set.Records) == 0 {
		set.Status = survey.DNSNoRecords
	}
	return set
}

// txtData returns a TXT record's character-strings concatenated, as the
// bytes received, capped at MaxTXTBytes. miekg/dns hands the strings over
// escaped for presentation (\DDD, \", \\); its RFC 3597 form is the RDATA as
// sent, which joinStrings reads.
func txtData(t *dns.TXT) (s string, cut, ok bool) {
	var raw dns.RFC3597
	if err := raw.ToRFC3597(t); err != nil {
		return "", false, false // cannot happen for a record miekg/dns unpacked
	}
	rdata, err := hex.DecodeString(raw.Rdata)
	if err != nil {
		return "", false, false // as above
	}
	s, cut, ok = joinStrings(rdata, MaxTXTBytes)
	return s, cut, ok
}

// joinStrings concatenates the <character-string>s of TXT RDATA (RFC 1035
// §3.3.14: each one length byte and that many bytes), keeping at most max
// bytes. ok is false when the RDATA is not a sequence of character-strings.
func joinStrings(rdata []byte, max int) (s string, cut, ok bool) {
	var b strings.Builder
	for len(rdata) > 0 {
		n := int(rdata[0])
		if 1+n > len(rdata) {
			return "", false, false
		}
		part := rdata[1 : 1+n]
		rdata = rdata[1+n:]
		if room := max - b.Len(); len(part) > room {
			part, cut = part[:room], true
		}
		b.Write(part)
	}
	return b.String(), cut, true
}

// LookupHost resolves the addresses of a host name as those of an MX host
// are resolved (A and AAAA at once, CNAMEs followed, the same statuses),
// but past the host cache: for names a scan asks once, such as
// mta-sts.<domain>, which would only push shared MX hosts out of it.
func (r *Resolver) LookupHost(ctx context.Context, name string) Host {
	h := Host{Name: strings.ToLower(strings.TrimSuffix(name, "."))}
	r.fillHost(ctx, &h, false)
	return h
}
