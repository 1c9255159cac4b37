package pipeline

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/scan/probe"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
)

func TestParseTLSGroups(t *testing.T) {
	for in, want := range map[string][]tls.CurveID{
		"":                      nil,
		"default":               nil,
		"Default":               nil,
		"x25519,p256":           {tls.X25519, tls.CurveP256},
		"X25519, P-256 ,P-384":  {tls.X25519, tls.CurveP256, tls.CurveP384},
		"secp521r1,prime256v1":  {tls.CurveP521, tls.CurveP256},
		"x25519mlkem768":        {tls.X25519MLKEM768},
		"SecP384r1MLKEM1024":    {tls.SecP384r1MLKEM1024},
		"CurveP256,X25519":      {tls.CurveP256, tls.X25519},
		"p521,p384,p256,x25519": {tls.CurveP521, tls.CurveP384, tls.CurveP256, tls.X25519},
	} {
		got, err := ParseTLSGroups(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("ParseTLSGroups(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"x448", "x25519,", "ffdhe2048", "p256;x25519"} {
		if _, err := ParseTLSGroups(in); err == nil || !strings.Contains(err.Error(), "unknown group") ||
			!strings.Contains(err.Error(), "X25519, P-256, P-384, P-521") {
			t.Errorf("ParseTLSGroups(%q): err = %v", in, err)
		}
	}
}

// TestTLSGroupsInTheDataset scans Go STARTTLS servers that each accept one
// key exchange group: the probe rows name the group and the manifest the
// groups offered, both in docs/schema.md's spelling (written out here).
func TestTLSGroupsInTheDataset(t *testing.T) {
	servers := []struct {
		id   tls.CurveID
		want string
	}{
		{tls.X25519MLKEM768, "X25519MLKEM768"},
		{tls.SecP256r1MLKEM768, "SecP256r1MLKEM768"},
		{tls.SecP384r1MLKEM1024, "SecP384r1MLKEM1024"},
		{tls.X25519, "X25519"},
		{tls.CurveP256, "P-256"},
		{tls.CurveP384, "P-384"},
		{tls.CurveP521, "P-521"},
	}
	var zone []string
	var list strings.Builder
	port := 0
	for i, s := range servers {
		ip := fmt.Sprintf("127.61.3.%d", i+1)
		name := fmt.Sprintf("g%d.test", i+1)
		srv := serveSMTP(t, &smtpServer{ip: ip, port: port, groups: []tls.CurveID{s.id}}, "mx."+name)
		port = srv.port
		zone = append(zone, name+". MX 10 mx."+name+".", "mx."+name+". A "+ip)
		list.WriteString(name + "\n")
	}
	d := startDNS(t, zone)
	in := filepath.Join(t.TempDir(), "domains.txt")
	if err := os.WriteFile(in, []byte(list.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		flag     string // -tls-groups
		manifest string // options.tls_groups
	}{
		{"default", "go-default"},
		{"x25519mlkem768,SecP256r1MLKEM768,secp384r1mlkem1024,x25519,p256,secp384r1,CurveP521",
			"X25519MLKEM768,SecP256r1MLKEM768,SecP384r1MLKEM1024,X25519,P-256,P-384,P-521"},
	} {
		t.Run(c.flag, func(t *testing.T) {
			groups, err := ParseTLSGroups(c.flag)
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "scan")
			res, err := Run(context.Background(), Config{Input: in, Out: out,
				Resolve: resolve.Config{Servers: []string{d.addr}, Timeout: time.Second},
				Probe: probe.Config{Port: port, EHLOName: "scanner.test", Timeout: 5 * time.Second, StepTimeout: 2 * time.Second,
					CurvePreferences: groups},
				Concurrency: 8, DNSConcurrency: 4,
				Allow: []netip.Prefix{netip.MustParsePrefix("127.61.3.0/24")}})
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Manifest.Options["tls_groups"]; got != c.manifest {
				t.Errorf("manifest tls_groups = %v, want %s", got, c.manifest)
			}
			_, probes := readDataset(t, out)
			for i, s := range servers {
				k := fmt.Sprintf("127.61.3.%d|mx.g%d.test", i+1, i+1)
				r, ok := probes[k]
				if !ok {
					t.Errorf("no probe row for %s", k)
					continue
				}
				if r.Outcome != "ok" || r.TLSGroup != s.want {
					t.Errorf("%s: outcome %s (%s), tls_group %q, want ok %q", k, r.Outcome, r.Error, r.TLSGroup, s.want)
				}
			}
		})
	}
}
