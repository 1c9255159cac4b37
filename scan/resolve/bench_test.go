package resolve

import (
	"context"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// BenchmarkResolve and BenchmarkBareExchange run against the same
// in-process server so their CPU per query can be compared: ns/op divided
// by queries/op should stay within about 2x of the bare exchange.
func BenchmarkResolve(b *testing.B) {
	srv := newFakeDNS(b, nil, nil, benchSynth)
	for _, bc := range []struct {
		name   string
		prefix string // "c": one shared MX host (cached), "u": a host per domain
	}{
		{"cached", "c"},
		{"uncached", "u"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r, err := New(Config{Servers: []string{srv.addr}, Timeout: time.Second})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				d := r.Resolve(ctx, benchName(bc.prefix, i))
				i++
				if d.Status != survey.DNSOK || len(d.Hosts) != 1 || d.Hosts[0].Status != survey.DNSOK {
					b.Fatalf("%+v", d)
				}
			}
			b.ReportMetric(float64(r.Stats().Queries)/float64(i), "queries/op")
		})
	}
}

func BenchmarkBareExchange(b *testing.B) {
	srv := newFakeDNS(b, nil, nil, benchSynth)
	c := &dns.Client{Net: "udp", Timeout: time.Second}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(benchName("c", i)), dns.TypeMX)
		m.SetEdns0(ednsSize, false)
		i++
		r, _, err := c.Exchange(m, srv.addr)
		if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			b.Fatalf("%v %v", r, err)
		}
	}
	b.ReportMetric(1, "queries/op")
}
