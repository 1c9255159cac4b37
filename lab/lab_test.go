package lab

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mxsurvey/mxsurvey/lab/truth"
	"github.com/mxsurvey/mxsurvey/lab/world"
)

var (
	shared     *Lab
	sharedErr  error
	sharedOnce sync.Once
	sharedDir  string
)

// testLab is one 1000-domain lab shared by the tests of this package; it is
// closed by TestMain.
func testLab(t *testing.T) (*Lab, *Truth) {
	t.Helper()
	sharedOnce.Do(func() {
		sharedDir, sharedErr = os.MkdirTemp("", "labtest")
		if sharedErr != nil {
			return
		}
		shared, sharedErr = Start(context.Background(), Config{
			WorldParams: WorldParams{Domains: 1000, Seed: 7},
			DNSAddr:     "127.0.0.1:0",
			OutDir:      sharedDir,
		})
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	tr, err := ReadTruth(shared.Dir)
	if err != nil {
		t.Fatal(err)
	}
	return shared, tr
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Close()
		os.RemoveAll(sharedDir)
	}
	os.Exit(code)
}

func TestEveryCasePresent(t *testing.T) {
	l, tr := testLab(t)
	for _, name := range world.CaseNames() {
		if l.Info.CaseDomains[name] < 3 {
			t.Errorf("case %s: %d domains at -domains 1000, want >= 3", name, l.Info.CaseDomains[name])
		}
	}
	if len(tr.Domains) != 1000 {
		t.Errorf("%d truth domains", len(tr.Domains))
	}
	seen := map[string]bool{}
	for _, h := range tr.Hosts {
		k := h.IP + " " + h.MXHost
		if seen[k] {
			t.Errorf("target %s twice in truth-hosts", k)
		}
		seen[k] = true
	}
	// Every (ip, mx) the domains resolve to has exactly one truth row.
	for _, d := range tr.Domains {
		for _, m := range d.MX {
			for _, ip := range m.IPs {
				if !seen[ip+" "+m.Host] {
					t.Errorf("%s: target %s %s has no truth row", d.Domain, ip, m.Host)
				}
			}
		}
	}
	t.Logf("%d domains, %d targets, start %.2fs", len(tr.Domains), len(tr.Hosts), l.Info.StartSeconds)
}

// TestServes: Start wires the world to its servers: a case domain's MX
// resolves through the lab's DNS to an address whose SMTP server greets
// with the name the truth states.
func TestServes(t *testing.T) {
	l, tr := testLab(t)
	var d TruthDomain
	for _, d = range tr.Domains {
		if slices.Equal(d.Cases, []string{"cert_mx"}) {
			break
		}
	}
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(d.MX[0].Host), dns.TypeA)
	r, _, err := c.Exchange(m, l.DNSAddr)
	if err != nil || len(r.Answer) != 1 {
		t.Fatalf("A %s: %v %v", d.MX[0].Host, r, err)
	}
	ip := r.Answer[0].(*dns.A).A.String()
	var want TruthHost
	for _, h := range tr.Hosts {
		if h.IP == ip && h.MXHost == d.MX[0].Host {
			want = h
		}
	}
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(l.SMTPPort)), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "220 "+want.BannerHost+" ") {
		t.Errorf("%s at %s greets %q (%v), truth %q", d.Domain, ip, line, err, want.BannerHost)
	}
}

// TestTruthFiles: the truth files, written in chunks on every core, are the
// truth stated in memory, row for row.
func TestTruthFiles(t *testing.T) {
	l, got := testLab(t)
	want, err := truth.NewStater(l.world, l.auth, l.SMTPPort, l.MTASTSPort).All()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Domains, want.Domains) || len(got.Hosts) != len(want.Hosts) {
		t.Fatalf("files: %d domains, %d hosts; in memory %d, %d", len(got.Domains), len(got.Hosts), len(want.Domains), len(want.Hosts))
	}
	for i := range got.Hosts {
		if !reflect.DeepEqual(got.Hosts[i], want.Hosts[i]) {
			t.Fatalf("host row %d:\n%+v\n%+v", i, got.Hosts[i], want.Hosts[i])
		}
	}
}

// TestStart100k measures start-up at 100,000 domains (truth included).
func TestStart100k(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("a measurement: not under -short or -race")
	}
	t0 := time.Now()
	l, err := Start(context.Background(), Config{WorldParams: WorldParams{Domains: benchDomains(), Seed: 1}, DNSAddr: "127.0.0.1:0", OutDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Logf("100,000 domains: started in %v, %d targets, %s", time.Since(t0), l.Info.Targets, vmRSS())
}

func benchDomains() int {
	if n, err := strconv.Atoi(os.Getenv("LAB_DOMAINS")); err == nil {
		return n
	}
	return 100_000
}

// TestTruthBackground: with TruthBackground, Start returns while the truth
// is written; ReadTruth waits for it and reads what a synchronous lab writes.
func TestTruthBackground(t *testing.T) {
	_, want := testLab(t)
	dir := t.TempDir()
	l, err := Start(context.Background(), Config{WorldParams: WorldParams{Domains: 1000, Seed: 7}, DNSAddr: "127.0.0.1:0", OutDir: dir, TruthBackground: true})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got, err := ReadTruth(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Domains) != len(want.Domains) || len(got.Hosts) != len(want.Hosts) || !reflect.DeepEqual(got.TLSA, want.TLSA) {
		t.Fatalf("background truth: %d domains %d hosts %d tlsa, synchronous %d %d %d", len(got.Domains), len(got.Hosts), len(got.TLSA),
			len(want.Domains), len(want.Hosts), len(want.TLSA))
	}
	for i := range got.Domains {
		g, w := got.Domains[i], want.Domains[i]
		g.Policy.STSURL, w.Policy.STSURL = "", "" // the labs' ports differ
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("domain %d differs:\n%+v\n%+v", i, g, w)
		}
	}
	for i := range got.Hosts {
		g, w := got.Hosts[i], want.Hosts[i]
		g.Port, w.Port = 0, 0
		if g.CertKeyType == "RSA" {
			g.CertSHA256, w.CertSHA256 = "", "" // one RSA key per run
		}
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("row %d differs:\n%+v\n%+v", i, g, w)
		}
	}
	if err := l.WaitTruth(context.Background()); err != nil || !l.Info.TruthReady || l.Info.Targets != len(got.Hosts) {
		t.Errorf("WaitTruth: %v, info %+v", err, l.Info)
	}
	// No lab.json: the files are read as they are; -no-truth: an error.
	dir2 := t.TempDir()
	l2, err := Start(context.Background(), Config{WorldParams: WorldParams{Domains: 200, Seed: 7}, DNSAddr: "127.0.0.1:0", OutDir: dir2, NoTruth: true})
	if err != nil {
		t.Fatal(err)
	}
	l2.Close()
	if _, err := ReadTruth(dir2); err == nil {
		t.Error("ReadTruth of a -no-truth lab: no error")
	}
	if m, _ := filepath.Glob(filepath.Join(dir, ".*.tmp")); len(m) > 0 {
		t.Errorf("temporary files left: %v", m)
	}
}

// TestConnLog: one line per SMTP connection, naming the address dialed,
// its accept and close times and the client; what cluster tests count
// politeness by.
func TestConnLog(t *testing.T) {
	var log bytes.Buffer
	l, err := Start(context.Background(), Config{WorldParams: WorldParams{Domains: 300, Seed: 3}, DNSAddr: "127.0.0.1:0",
		OutDir: t.TempDir(), NoTruth: true, ConnLog: &log})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().UnixNano()
	for range 2 {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(l.SMTPPort)))
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		c.Read(make([]byte, 1)) // 127.0.0.1 is no server of the world: closed at once
		c.Close()
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("conn log %q: want 2 lines", log.String())
	}
	for _, line := range lines {
		var addr, client string
		var start, end int64
		if _, err := fmt.Sscanf(line, "%s %d %d %s", &addr, &start, &end, &client); err != nil || addr != "127.0.0.1" || start < before || end < start || client != "127.0.0.1" {
			t.Errorf("line %q: want 127.0.0.1, start after %d, end after start, client 127.0.0.1 (%v)", line, before, err)
		}
	}
}

// TestProvingGround checks the benchmark's world (bench/harness, lab
// -tenant-pool): every domain has one MX name of its own on two addresses of
// one pool of -tenant-pool addresses, the DNS server answers what the truth
// says, and the truth has one target per MX address, each completing with
// TLS 1.3.
func TestProvingGround(t *testing.T) {
	cases, err := ParseCases("default=0,hostile=0")
	if err != nil {
		t.Fatal(err)
	}
	const domains, pool = 2000, 200
	l, err := Start(context.Background(), Config{
		WorldParams: WorldParams{Domains: domains, Seed: 1, Cases: cases, Providers: 1, ProviderShare: 1, TenantPool: pool},
		DNSAddr:     "127.0.0.1:0", OutDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	tr, err := ReadTruth(l.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Domains) != domains {
		t.Fatalf("%d domains in the truth, want %d", len(tr.Domains), domains)
	}
	ips := map[string]bool{}
	names := map[string]string{} // MX name -> its domain
	type target struct{ ip, mx string }
	want := map[target]bool{}
	for _, d := range tr.Domains {
		if d.DNSStatus != world.StatusOK || len(d.MX) != 1 || len(d.MX[0].IPs) != 2 || d.MX[0].IPs[0] == d.MX[0].IPs[1] {
			t.Fatalf("%s: %+v, want one MX with two addresses", d.Domain, d)
		}
		mx := d.MX[0].Host
		if own := strings.ReplaceAll(strings.TrimSuffix(d.Domain, ".test"), ".", "-") + "-test.mail.provider1.test"; mx != own {
			t.Fatalf("%s: MX %s, want its own name %s", d.Domain, mx, own)
		}
		if other, dup := names[mx]; dup {
			t.Fatalf("MX %s serves %s and %s", mx, other, d.Domain)
		}
		names[mx] = d.Domain
		for _, ip := range d.MX[0].IPs {
			ips[ip] = true
			want[target{ip, mx}] = true
		}
	}
	if len(ips) != pool {
		t.Errorf("%d addresses in use, want the pool of %d", len(ips), pool)
	}
	if len(tr.Hosts) != len(want) {
		t.Errorf("%d targets in the truth, want one per MX address: %d", len(tr.Hosts), len(want))
	}
	for _, h := range tr.Hosts {
		if !want[target{h.IP, h.MXHost}] {
			t.Fatalf("target %s %s is no domain's MX address", h.IP, h.MXHost)
		}
		if h.Outcome != "ok" || h.TLSVersion != "TLS 1.3" {
			t.Fatalf("target %s %s: outcome %q, %q; want ok over TLS 1.3", h.IP, h.MXHost, h.Outcome, h.TLSVersion)
		}
	}
	// The server answers as the truth says (a sample: every 100th domain).
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	for i := 0; i < len(tr.Domains); i += 100 {
		d := tr.Domains[i]
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(d.Domain), dns.TypeMX)
		r, _, err := c.Exchange(m, l.DNSAddr)
		if err != nil || len(r.Answer) != 1 {
			t.Fatalf("MX %s: %v %v", d.Domain, r, err)
		}
		if got := strings.TrimSuffix(r.Answer[0].(*dns.MX).Mx, "."); got != d.MX[0].Host {
			t.Errorf("MX %s answered %s, truth %s", d.Domain, got, d.MX[0].Host)
		}
		m.SetQuestion(dns.Fqdn(d.MX[0].Host), dns.TypeA)
		r, _, err = c.Exchange(m, l.DNSAddr)
		if err != nil {
			t.Fatalf("A %s: %v", d.MX[0].Host, err)
		}
		var got []string
		for _, rr := range r.Answer {
			if a, ok := rr.(*dns.A); ok {
				got = append(got, a.A.String())
			}
		}
		slices.Sort(got)
		wantIPs := slices.Sorted(slices.Values(d.MX[0].IPs))
		if !slices.Equal(got, wantIPs) {
			t.Errorf("A %s answered %v, truth %v", d.MX[0].Host, got, wantIPs)
		}
	}
}
