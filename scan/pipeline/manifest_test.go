package pipeline

import (
	"crypto/tls"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/scan/probe"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
	"github.com/mxsurvey/mxsurvey/scan/stsfetch"
)

// The manifest's options keep the keys and value forms that existing
// manifests, notebooks and tests know, although they now come from the
// configuration's tags.
func TestManifestOptions(t *testing.T) {
	cfg := Config{Input: "top.csv", Out: "scan", Shard: Shard{K: 2, N: 4}, IPInterval: time.Second,
		Resolve:  resolve.Config{Servers: []string{"127.0.0.1:53"}, Retries: 2, TrustAD: true},
		Policies: true, STS: stsfetch.Config{Port: 8443},
		DNSConcurrency: 50, DNSRate: 2000, PTR: true, Rate: 200, IPv6: true,
		Probe: probe.Config{EHLOName: "scanner.example", CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256}},
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Block: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("198.51.100.7/32")},
	}
	cfg.setDefaults()
	got, err := json.Marshal(options(cfg))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"allow":["127.0.0.0/8"],"blocklist_entries":2,"checkpoint":"30s","concurrency":1000,"dns_concurrency":50,` +
		`"dns_rate":2000,"dns_retries":2,"dns_timeout":"3s","ehlo_name":"scanner.example","format":"auto","input":"top.csv",` +
		`"ip_interval":"1s","ipv6":true,"mta_sts_port":8443,"per_ip_concurrency":1,"policies":true,"port":25,"probe_timeout":"30s",` +
		`"ptr":true,"rate":200,"resolvers":["127.0.0.1:53"],"shard":"2/4","step_timeout":"10s","tls_groups":"X25519,P-256",` +
		`"trust_ad":true}`
	if string(got) != want {
		t.Errorf("options:\n got %s\nwant %s", got, want)
	}

	// Nothing set: the defaults, Go's groups, no lists.
	var zero Config
	zero.setDefaults()
	got, _ = json.Marshal(options(zero))
	want = `{"allow":[],"blocklist_entries":0,"checkpoint":"30s","concurrency":1000,"dns_concurrency":200,"dns_rate":0,` +
		`"dns_retries":0,"dns_timeout":"3s","ehlo_name":"","format":"auto","input":"","ip_interval":"0s","ipv6":false,` +
		`"mta_sts_port":443,"per_ip_concurrency":1,"policies":false,"port":25,"probe_timeout":"30s","ptr":false,"rate":0,` +
		`"resolvers":null,"shard":"","step_timeout":"10s","tls_groups":"go-default","trust_ad":false}`
	if string(got) != want {
		t.Errorf("zero options:\n got %s\nwant %s", got, want)
	}
}
