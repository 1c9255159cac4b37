package realservers

// Unbound from Debian as the recursive resolver in front of the lab
// (`mxsurvey lab`, in-process): a validating resolver that cannot reach the
// root, as in an isolated network, which never answers ". NS". A scan
// through it must pass the resolver check and give the dataset and the
// summary a scan against the lab's own DNS gives.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
	mxlab "github.com/mxsurvey/mxsurvey/lab"
	"github.com/mxsurvey/mxsurvey/scan/pipeline"
	"github.com/mxsurvey/mxsurvey/scan/probe"
	"github.com/mxsurvey/mxsurvey/scan/resolve"
)

const (
	// Unbound's listening address (UDP and TCP).
	unboundIP   = "127.77.0.54"
	unboundPort = 5354
	// silentRoot is where Unbound's root hints point: an address that
	// takes every packet and never answers, as a firewall dropping
	// traffic to the root servers does.
	silentRoot = "127.77.0.55"
	// rootKSK2017DS is the DS record of the root zone's KSK-2017 (IANA's
	// root-anchors.xml): with it Unbound validates, as Debian's does.
	rootKSK2017DS = ". DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D"
)

// rewrittenByResolver are the lab's cases where the authoritative server
// misbehaves (drops queries, answers with a wrong ID or question): the
// scanner's own defences classify them (timeout, error) when it asks the
// lab directly, while a recursive resolver in between rejects such answers
// itself and tells the scanner SERVFAIL, as it must.
var rewrittenByResolver = []string{"dns_timeout", "dns_wrong_id", "dns_wrong_question"}

func unboundAddr() string { return net.JoinHostPort(unboundIP, strconv.Itoa(unboundPort)) }

// requireUnbound returns the unbound binary, or skips (fails when the suite
// is required) when it is missing or the test is not root (the silent root
// server listens on port 53).
func requireUnbound(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("unbound")
	if err != nil {
		p = "/usr/sbin/unbound"
		if _, serr := os.Stat(p); serr != nil {
			p = ""
		}
	}
	missing := ""
	switch {
	case p == "":
		missing = "unbound"
	case os.Geteuid() != 0:
		missing = "root (the silent root server listens on port 53)"
	}
	if missing == "" {
		return p
	}
	if required() {
		t.Fatalf("realservers: required (CI=true or MXSURVEY_REALSERVERS=1) but missing %s; run: sudo bash realservers/install.sh", missing)
	}
	t.Skipf("realservers: %s missing; run: sudo bash realservers/install.sh", missing)
	return ""
}

func TestUnboundInFrontOfLab(t *testing.T) {
	unbound := requireUnbound(t)
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	dir := t.TempDir()

	// Every case but the hostile SMTP peers (a tarpit makes two scans of
	// one world differ), and the hostile DNS cases a resolver must rewrite;
	// and not the bogus DNSSEC cases: the lab answers them as a validating
	// resolver would (SERVFAIL), while Unbound in front asks it with CD and,
	// holding no trust anchor for test., passes their data on.
	cases, err := mxlab.ParseCases("hostile=0,dns_timeout=0.0001,dns_wrong_id=0.0001,dns_wrong_question=0.0001," +
		"dnssec_mx_bogus=0,dnssec_addr_bogus=0,dane_tlsa_bogus=0")
	if err != nil {
		t.Fatal(err)
	}
	lb, err := mxlab.Start(ctx, mxlab.Config{WorldParams: mxlab.WorldParams{Domains: 600, Seed: 15, Cases: cases},
		DNSAddr: "127.0.0.1:0", SMTPPort: 0, OutDir: filepath.Join(dir, "lab")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.Close() })
	truth, err := mxlab.ReadTruth(lb.Dir)
	if err != nil {
		t.Fatal(err)
	}

	unboundLog := startUnbound(ctx, t, unbound, dir, labUnbound(lb.DNSAddr))
	defer func() {
		if t.Failed() {
			b, _ := os.ReadFile(unboundLog) // for the failure message only
			t.Logf("unbound's output:\n%s", tail(string(b), 4000))
		}
	}()

	// The situation the resolver check must handle: ". NS" unanswered,
	// "localhost. A" answered from local data.
	if err := waitDNS(ctx, unboundIP, unboundPort, "localhost"); err != nil {
		t.Fatalf("unbound never answered localhost. A: %v", err)
	}
	// ". NS", the question of the check before RFC 6761's localhost, stays
	// unanswered while Unbound tries the silent root (30 s and more here; a
	// check asking it a few times in a row gets a SERVFAIL after about 8 s,
	// or nothing); "localhost. A" is answered at once, and so the check
	// passes in well under a second.
	if reply, err := askUDP(unboundAddr(), ".", 2, 3*time.Second); err == nil {
		t.Errorf("unbound answered . NS within 3s (rcode %d): the test no longer shows a resolver cut off from the root", reply[3]&0x0f)
	}
	r, err := resolve.New(resolve.Config{Servers: []string{unboundAddr()}, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := r.Check(ctx); err != nil || time.Since(t0) > time.Second {
		t.Errorf("resolver check: %v after %v, want it passed within a second", err, time.Since(t0))
	}

	direct := scanLab(ctx, t, lb, lb.DNSAddr, filepath.Join(dir, "direct"))
	via := scanLab(ctx, t, lb, unboundAddr(), filepath.Join(dir, "unbound"))

	// Which domains the resolver must rewrite to SERVFAIL.
	rewritten := map[string]bool{}
	for _, d := range truth.Domains {
		for _, c := range d.Cases {
			for _, r := range rewrittenByResolver {
				if c == r {
					rewritten[d.Domain] = true
				}
			}
		}
	}
	if len(rewritten) < len(rewrittenByResolver) {
		t.Fatalf("the world has %d domains of the cases %v", len(rewritten), rewrittenByResolver)
	}

	t.Run("mx", func(t *testing.T) {
		a, b := readMX(t, direct), readMX(t, via)
		for d := range rewritten {
			switch r := b[d]; {
			case len(r) != 1 || r[0].DNSStatus != survey.DNSServfail || !strings.Contains(r[0].DNSError, "SERVFAIL"):
				t.Errorf("%s: through unbound %+v, want one servfail row", d, r)
			case len(a[d]) != 1 || a[d][0].DNSStatus == survey.DNSServfail || a[d][0].DNSStatus == survey.DNSOK:
				t.Errorf("%s: direct %+v, want the scanner's own verdict (timeout, error)", d, a[d])
			}
			delete(a, d)
			delete(b, d)
		}
		compareRows(t, a, b, differingFields[survey.MXRow])
	})
	t.Run("probes", func(t *testing.T) { compareRows(t, readProbes(t, direct), readProbes(t, via), differingProbeFields) })

	t.Run("summary", func(t *testing.T) {
		sa, sb := analyzeScan(ctx, t, lb, direct), analyzeScan(ctx, t, lb, via)
		if !bytes.Equal(sa, sb) {
			t.Errorf("summary.json differs (scan times and directories aside):\ndirect: %s\nunbound: %s", sa, sb)
		}
	})
}

// serveSilently takes UDP and TCP on addr and never answers.
func serveSilently(t *testing.T, addr string) {
	t.Helper()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("silent root: %v", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		t.Fatalf("silent root: %v", err)
	}
	var held []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		ln.Close()
		<-done
		for _, c := range held {
			c.Close()
		}
	})
}

// unboundConfig is what differs between the suite's Unbound instances:
// where it listens, which zones go to which authoritative server, and how
// it validates.
type unboundConfig struct {
	addr  string        // listening address, "ip:port"
	stubs []unboundStub // zones sent to an authoritative server
	// anchors are trust-anchor RRs (DS or DNSKEY, presentation form): the
	// root's to validate as Debian's Unbound does, a test zone's own KSK.
	anchors []string
	// insecure zones have no chain of trust from an anchor (domain-insecure);
	// an anchor at or below one of them overrides it.
	insecure []string
	// transparent are names Unbound answers locally by default (RFC 6761's
	// test., the loopback reverse zones) that the stubs must answer instead.
	transparent []string
}

// unboundStub sends one zone to one authoritative server.
type unboundStub struct{ zone, addr string }

// labUnbound is the configuration in front of the lab: its zones are
// unsigned and have no DS chain, so they are declared insecure beside the
// root's KSK-2017.
func labUnbound(labDNS string) unboundConfig {
	c := unboundConfig{
		addr:     unboundAddr(),
		anchors:  []string{rootKSK2017DS},
		insecure: []string{"test.", "127.in-addr.arpa.", "ip6.arpa."},
		transparent: []string{"test.", "127.in-addr.arpa.",
			"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa."},
	}
	for _, z := range []string{"test.", "127.in-addr.arpa.", "ip6.arpa."} {
		c.stubs = append(c.stubs, unboundStub{z, labDNS})
	}
	return c
}

// startUnbound writes a configuration and runs unbound in the foreground,
// stopped in t.Cleanup, and returns the file its output goes to. Stub zones
// send the test's zones to their servers; everything else would go to the
// root, whose hints name the silent server this starts on silentRoot:53.
func startUnbound(ctx context.Context, t *testing.T, bin, dir string, c unboundConfig) string {
	t.Helper()
	listen, err := netip.ParseAddrPort(c.addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkFree(listen.Addr().String(), int(listen.Port())); err != nil {
		t.Fatalf("realservers: %v (an unbound left behind by a killed test?)", err)
	}
	serveSilently(t, net.JoinHostPort(silentRoot, "53"))
	ud := filepath.Join(dir, "unbound")
	writeFile(t, filepath.Join(ud, "root.hints"), fmt.Sprintf(".\t3600000\tNS\ta.root-servers.net.\na.root-servers.net.\t3600000\tA\t%s\n", silentRoot), 0o644)
	var zones strings.Builder
	for _, a := range c.anchors {
		fmt.Fprintf(&zones, "\ttrust-anchor: %q\n", a)
	}
	for _, z := range c.insecure {
		fmt.Fprintf(&zones, "\tdomain-insecure: %q\n", z)
	}
	for _, z := range c.transparent {
		fmt.Fprintf(&zones, "\tlocal-zone: %q transparent\n", z)
	}
	var stubs strings.Builder
	for _, s := range c.stubs {
		ap, err := netip.ParseAddrPort(s.addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&stubs, "stub-zone:\n\tname: %q\n\tstub-addr: %s@%d\n", s.zone, ap.Addr(), ap.Port())
	}
	conf := fmt.Sprintf(`# mxsurvey realservers: Unbound, a validating resolver
server:
	interface: %s
	port: %d
	do-ip6: no
	access-control: 127.0.0.0/8 allow
	username: ""
	chroot: ""
	directory: %q
	pidfile: %q
	use-syslog: no
	logfile: ""
	verbosity: 1
	# A second unbound on this address (one a killed test left behind)
	# must make this one fail to start, not share the queries with it.
	so-reuseport: no
	num-threads: 1
	root-hints: %q
	# The test's servers listen on loopback, which Unbound does not query
	# by default.
	do-not-query-localhost: no
	# Trust anchors, zones without a chain of trust, and the names RFC 6761
	# and Unbound's defaults answer locally (test. with NXDOMAIN, the
	# loopback reverse names with localhost) that the stub zones answer
	# instead. localhost. itself keeps its local answer.
%sremote-control:
	control-enable: no
%s`, listen.Addr(), listen.Port(), ud, filepath.Join(ud, "unbound.pid"), filepath.Join(ud, "root.hints"), zones.String(), stubs.String())
	cf := filepath.Join(ud, "unbound.conf")
	writeFile(t, cf, conf, 0o644)
	if out, err := run(ctx, "", filepath.Join(filepath.Dir(bin), "unbound-checkconf"), cf); err != nil && !errors.Is(err, exec.ErrNotFound) {
		t.Fatalf("unbound-checkconf: %v\n%s", err, out)
	}
	procs := &lab{dir: ud}
	t.Cleanup(func() { procs.stopAll(t) })
	return procs.start(t, "unbound", bin, "-d", "-c", cf).outFile
}

// askUDP sends one query and returns the reply with its ID, or an error
// after wait.
func askUDP(addr, name string, qtype uint16, wait time.Duration) ([]byte, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(wait)); err != nil {
		return nil, err
	}
	q := dnsQuery(0x4242, name, qtype)
	if _, err := c.Write(q); err != nil {
		return nil, err
	}
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		if n >= 12 && buf[0] == q[0] && buf[1] == q[1] {
			return buf[:n], nil
		}
	}
}

// scanLab scans the lab's domains through resolver, as e2e does.
func scanLab(ctx context.Context, t *testing.T, lb *mxlab.Lab, resolver, out string) string {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	res, err := pipeline.Run(sctx, pipeline.Config{Input: lb.DomainsPath(), Out: out,
		Resolve:        resolve.Config{Servers: []string{resolver}, Timeout: 2 * time.Second, Retries: 2},
		DNSConcurrency: 50, PTR: true, Concurrency: 200, IPv6: true,
		Probe: probe.Config{Port: lb.SMTPPort, EHLOName: "scanner.mxsurvey.test", Timeout: 8 * time.Second, StepTimeout: 3 * time.Second},
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}})
	if err != nil {
		t.Fatalf("scan through %s: %v", resolver, err)
	}
	if res.Manifest.Status != survey.StatusComplete {
		t.Fatalf("scan through %s: status %s", resolver, res.Manifest.Status)
	}
	return out
}

// readMX and readProbes read a table keyed by its natural key, times
// zeroed (they are the only fields two scans of one world may differ in).
func readMX(t *testing.T, scan string) map[string][]survey.MXRow {
	t.Helper()
	out := map[string][]survey.MXRow{}
	err := store.ReadAll(survey.MXDir(scan), func(r *survey.MXRow) error {
		r.ResolvedAt = time.Time{}
		out[r.Domain] = append(out[r.Domain], *r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, rows := range out {
		sort.Slice(rows, func(i, j int) bool {
			return rows[i].MXHost+"|"+rows[i].IP < rows[j].MXHost+"|"+rows[j].IP
		})
	}
	return out
}

func readProbes(t *testing.T, scan string) map[string][]survey.ProbeRow {
	t.Helper()
	out := map[string][]survey.ProbeRow{}
	err := store.ReadAll(survey.ProbesDir(scan), func(r *survey.ProbeRow) error {
		r.StartedAt, r.DurationMS = time.Time{}, 0
		k := r.IP + "|" + r.MXHost
		out[k] = append(out[k], *r)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// compareRows reports every key whose rows differ, with the fields that
// differ says do.
func compareRows[T any](t *testing.T, a, b map[string][]T, differ func(a, b T) []string) {
	t.Helper()
	bad := 0
	report := func(format string, args ...any) {
		t.Helper()
		if bad++; bad <= 20 {
			t.Errorf(format, args...)
		}
	}
	for k, ra := range a {
		rb, ok := b[k]
		switch {
		case !ok:
			report("%s: only in the direct scan", k)
		case len(ra) != len(rb):
			report("%s: %d rows direct, %d through unbound", k, len(ra), len(rb))
		default:
			for i := range ra {
				if f := differ(ra[i], rb[i]); f != nil {
					report("%s: fields %v differ:\ndirect  %+v\nunbound %+v", k, f, ra[i], rb[i])
				}
			}
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			report("%s: only in the scan through unbound", k)
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d keys differ", bad, len(a))
	}
	t.Logf("%d keys compared", len(a))
}

// differingProbeFields compares two probe rows of one target from two
// scans. Besides the times (zeroed by readProbes), the servers' own clocks
// differ: the lab's Exim and Microsoft dialects print the time in their
// replies (masked here as realservers masks Exim's), which changes the
// bytes read by as much as the text; and the server's ECDSA signature in
// the handshake is DER, whose integers lose a leading zero byte or gain a
// sign byte: 68 to 72 bytes for P-256, so bytes_read may differ by up to 4
// more. Everything else must be equal.
func differingProbeFields(a, b survey.ProbeRow) []string {
	text := func(r *survey.ProbeRow) int { return len(r.Banner) + len(r.EHLOReply) + len(r.PostTLSEHLOReply) }
	slack := int64(text(&b) - text(&a))
	for _, r := range []*survey.ProbeRow{&a, &b} {
		r.Banner, r.EHLOReply, r.PostTLSEHLOReply = maskExim(r.Banner), maskExim(r.EHLOReply), maskExim(r.PostTLSEHLOReply)
	}
	out := differingFields(a, b)
	if d := b.BytesRead - a.BytesRead - slack; d >= -4 && d <= 4 {
		out = slices.DeleteFunc(out, func(f string) bool { return f == "BytesRead" })
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func differingFields[T any](a, b T) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []string
	for i := range va.NumField() {
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			out = append(out, va.Type().Field(i).Name)
		}
	}
	return out
}

// analyzeScan runs mxsurvey analyze and returns summary.json without what
// names the scan rather than its content (start and end times, the
// directory analyzed).
func analyzeScan(ctx context.Context, t *testing.T, lb *mxlab.Lab, scan string) []byte {
	t.Helper()
	out := scan + "-report"
	if err := mxsurvey(ctx, t, "analyze", "-roots", lb.CAPath(), "-quiet", "-o", out, scan); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	scanInfo, ok := s["scan"].(map[string]any)
	if !ok {
		t.Fatalf("summary.json has no scan object: %s", b)
	}
	for _, k := range []string{"started", "ended", "dirs"} {
		if _, ok := scanInfo[k]; !ok {
			t.Fatalf("summary.json's scan object has no %q: %s", k, b)
		}
		delete(scanInfo, k)
	}
	b, err = json.Marshal(s) // map keys sorted
	if err != nil {
		t.Fatal(err)
	}
	return b
}
