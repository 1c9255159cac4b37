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
