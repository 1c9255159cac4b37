package probe

import (
	"context"
	"crypto/tls"
	"testing"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// BenchmarkProbe is one whole conversation (greeting, EHLO, STARTTLS, TLS
// 1.3 with X25519, EHLO, QUIT) against an in-process server: ns/op includes
// the server's side, allocs/op and B/op are the prober's and the server's
// together, and move only when one of them changes.
func BenchmarkProbe(b *testing.B) {
	p := testPKI(b)
	srv := newServer(b, "127.0.0.1", script{greeting: "220 mx.example.test ESMTP\r\n", ehlo: ehloOK, starttls: starttls220,
		tls: serverTLS(p.ed, 0, 0), postEHLO: postEHLOOK})
	pr, err := New(Config{EHLOName: ehloName, Port: int(srv.addr.Port()), CurvePreferences: []tls.CurveID{tls.X25519}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		row := pr.Probe(context.Background(), Target{IP: srv.addr.Addr(), MXHost: "mx.example.test"})
		if row.Outcome != survey.OutcomeOK {
			b.Fatalf("%s %s", row.ErrorClass, row.Error)
		}
		<-srv.done
		srv.mu.Lock()
		srv.transcript, srv.conns = srv.transcript[:0], srv.conns[:0]
		srv.mu.Unlock()
	}
}
