package policy

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
)

// mapResolver answers from a map keyed "TXT name" or "TLSA port host", and
// records what was asked, in order.
type mapResolver struct {
	mu      sync.Mutex
	answers map[string]resolve.RRset
	asked   []string
}

func (m *mapResolver) answer(key, name string) resolve.RRset {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.asked = append(m.asked, key)
	if a, ok := m.answers[key]; ok {
		a.Name = name
		return a
	}
	return resolve.RRset{Name: name, Status: survey.DNSNXDomain, DNSSEC: survey.DNSSECSecure}
}

func (m *mapResolver) TXT(_ context.Context, name string) resolve.RRset {
	return m.answer("TXT "+name, name)
}

func (m *mapResolver) TLSA(_ context.Context, port int, host string) resolve.RRset {
	return m.answer(fmt.Sprintf("TLSA %d %s", port, host), fmt.Sprintf("_%d._tcp.%s", port, host))
}

func TestRecords(t *testing.T) {
	m := &mapResolver{answers: map[string]resolve.RRset{
		"TXT _mta-sts.example.com": {Status: survey.DNSOK, DNSSEC: survey.DNSSECSecure, Records: []string{"v=STSv1; id=1"}},
		"TXT _smtp._tls.example.com": {Status: survey.DNSServfail, DNSSEC: survey.DNSSECBogus,
			Error: "TXT _smtp._tls.example.com: SERVFAIL"},
	}}
	before := time.Now().UTC().Add(-time.Millisecond)
	got := Records(context.Background(), m, "example.com")
	if got.QueriedAt.Before(before) || got.QueriedAt.Location() != time.UTC {
		t.Errorf("queried_at %v", got.QueriedAt)
	}
	got.QueriedAt = time.Time{}
	want := survey.PolicyRow{Domain: "example.com",
		MTASTSStatus: survey.DNSOK, MTASTSDNSSEC: survey.DNSSECSecure, MTASTSTXT: []string{"v=STSv1; id=1"},
		TLSRPTStatus: survey.DNSServfail, TLSRPTDNSSEC: survey.DNSSECBogus, TLSRPTError: "TXT _smtp._tls.example.com: SERVFAIL"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Records =\n %+v\nwant\n %+v", got, want)
	}
}

func TestWantsFetch(t *testing.T) {
	for _, tt := range []struct {
		txt  []string
		want bool
	}{
		{[]string{"v=STSv1; id=20260101"}, true},
		{[]string{"some other record", "v=STSv1;id=x"}, true},
		{[]string{"v=STSv1"}, true},         // malformed, but it names the version: fetched, the analyzer judges
		{[]string{"v=stsv1; id=1"}, false},  // case-sensitive (RFC 8461 §3.1)
		{[]string{" v=STSv1; id=1"}, false}, // must start the record
		{[]string{"v=spf1 -all", "google-site-verification=x"}, false},
		{nil, false},
	} {
		if got := WantsFetch(&survey.PolicyRow{MTASTSTXT: tt.txt}); got != tt.want {
			t.Errorf("WantsFetch(%q) = %v", tt.txt, got)
		}
	}
}

// RFC 7672 §2.2.2: where an MX host's TLSA records are sought.
func TestTLSABase(t *testing.T) {
	secure := func(records ...string) resolve.RRset {
		return resolve.RRset{Status: survey.DNSOK, DNSSEC: survey.DNSSECSecure, Records: records}
	}
	answers := map[string]resolve.RRset{
		"TLSA 25 mx.example.com":         secure("3 1 1 aa"),
		"TLSA 25 mail.provider.net":      secure("3 1 1 bb"),
		"TLSA 25 mail.insecure.net":      {Status: survey.DNSOK, DNSSEC: survey.DNSSECInsecure, Records: []string{"3 1 1 cc"}},
		"TLSA 25 mail.nodata.net":        {Status: survey.DNSNoRecords, DNSSEC: survey.DNSSECSecure},
		"TLSA 25 mail.broken.net":        {Status: survey.DNSServfail, DNSSEC: survey.DNSSECBogus, Error: "SERVFAIL"},
		"TLSA 25 mx.nothing.example.com": {Status: survey.DNSNoRecords, DNSSEC: survey.DNSSECSecure},
	}
	chain := func(name, status string, cnames ...string) resolve.Host {
		return resolve.Host{Name: name, Status: survey.DNSOK, CNAMEs: cnames, CNAMEsDNSSEC: status}
	}
	tests := []struct {
		name  string
		host  resolve.Host
		asked string // TLSA questions, in order
		row   string // tlsa_name tlsa_status tlsa_records
	}{
		{"no CNAME: the host's name", chain("mx.example.com", survey.DNSSECSecure),
			"mx.example.com", "_25._tcp.mx.example.com ok 3 1 1 aa"},
		{"secure chain: the expanded name first, found there", chain("mx.example.com", survey.DNSSECSecure, "a.example.com", "mail.provider.net"),
			"mail.provider.net", "_25._tcp.mail.provider.net ok 3 1 1 bb"},
		{"insecure chain: the host's name only", chain("mx.example.com", survey.DNSSECInsecure, "mail.provider.net"),
			"mx.example.com", "_25._tcp.mx.example.com ok 3 1 1 aa"},
		{"chain of unknown security (AD not trusted): the host's name only", chain("mx.example.com", survey.DNSSECUnknown, "mail.provider.net"),
			"mx.example.com", "_25._tcp.mx.example.com ok 3 1 1 aa"},
		{"secure chain, expanded name without TLSA (NODATA): the host's name", chain("mx.example.com", survey.DNSSECSecure, "mail.nodata.net"),
			"mail.nodata.net mx.example.com", "_25._tcp.mx.example.com ok 3 1 1 aa"},
		{"secure chain, expanded name NXDOMAIN: the host's name", chain("mx.example.com", survey.DNSSECSecure, "mail.absent.net"),
			"mail.absent.net mx.example.com", "_25._tcp.mx.example.com ok 3 1 1 aa"},
		{"secure chain, insecure records at the expanded name: the host's name", chain("mx.example.com", survey.DNSSECSecure, "mail.insecure.net"),
			"mail.insecure.net mx.example.com", "_25._tcp.mx.example.com ok 3 1 1 aa"},
		{"secure chain, lookup failing at the expanded name: that failure", chain("mx.example.com", survey.DNSSECSecure, "mail.broken.net"),
			"mail.broken.net", "_25._tcp.mail.broken.net servfail"},
		{"no TLSA anywhere: the host's own answer", chain("mx.nothing.example.com", survey.DNSSECSecure, "mail.absent.net"),
			"mail.absent.net mx.nothing.example.com", "_25._tcp.mx.nothing.example.com no_records"},
	}
	for _, tt := range tests {
		m := &mapResolver{answers: answers}
		row := TLSA(context.Background(), m, tt.host)
		var asked []string
		for _, a := range m.asked {
			asked = append(asked, strings.TrimPrefix(a, "TLSA 25 "))
		}
		got := strings.TrimSpace(row.TLSAName + " " + row.TLSAStatus + " " + strings.Join(row.TLSARecords, ","))
		if strings.Join(asked, " ") != tt.asked || got != tt.row || row.MXHost != tt.host.Name || row.QueriedAt.IsZero() {
			t.Errorf("%s:\n asked %q, row %q (%+v)\n want %q, %q", tt.name, asked, got, row, tt.asked, tt.row)
		}
	}
}
