package realservers

// Key exchange groups: docs/schema.md's table says, per group, what
// mxsurvey writes in tls_group and what `openssl s_client` prints. The
// suite configures Postfix and Exim to each group OpenSSL here can
// negotiate, and compares both the scan and openssl's output with the
// table's exact strings: the document is what is tested.

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/internal/mdtable"
)

// The table of groups in docs/schema.md and the columns read here.
const (
	schemaDoc        = "../docs/schema.md"
	groupsHeading    = "`tls_group` vocabulary: key exchange groups"
	colCodepoint     = "codepoint"
	colName          = "`tls_group`"
	colIANA          = "IANA name"
	colOpenSSL       = "`openssl s_client` prints (OpenSSL 3.0, Debian 12)"
	opensslLacksMark = "none:" // how the openssl column starts for a group OpenSSL 3.0 lacks
)

// docGroup is one row of the table.
type docGroup struct {
	ID   tls.CurveID
	Name string // what tls_group must hold
	IANA string
	// KeyLine is the line openssl s_client prints for the group; "" when
	// the table says OpenSSL 3.0 does not implement it.
	KeyLine string
}

// readDocGroups reads the table from docs/schema.md.
func readDocGroups() ([]docGroup, error) {
	doc, err := os.ReadFile(schemaDoc)
	if err != nil {
		return nil, err
	}
	tb, err := mdtable.Under(string(doc), groupsHeading)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", schemaDoc, err)
	}
	cols := map[string]int{}
	for _, c := range []string{colCodepoint, colName, colIANA, colOpenSSL} {
		if cols[c] = tb.Column(c); cols[c] < 0 {
			return nil, fmt.Errorf("%s: the groups table has no column %q (header %q)", schemaDoc, c, tb.Header)
		}
	}
	var out []docGroup
	for _, r := range tb.Rows {
		id, err := strconv.ParseUint(r[cols[colCodepoint]], 10, 16)
		if err != nil {
			return nil, fmt.Errorf("%s: codepoint %q: %w", schemaDoc, r[cols[colCodepoint]], err)
		}
		g := docGroup{ID: tls.CurveID(id), Name: mdtable.Unquote(r[cols[colName]]), IANA: mdtable.Unquote(r[cols[colIANA]])}
		switch o := r[cols[colOpenSSL]]; {
		case strings.HasPrefix(o, opensslLacksMark):
		case mdtable.Unquote(o) != o:
			g.KeyLine = mdtable.Unquote(o)
		default:
			return nil, fmt.Errorf("%s: group %d: the openssl column is neither one code span nor %q...: %q", schemaDoc, id, opensslLacksMark, o)
		}
		out = append(out, g)
	}
	return out, nil
}

// docGroupByID and docGroupByKeyLine find a row by exact value.
func docGroupByID(gs []docGroup, id tls.CurveID) (docGroup, bool) {
	for _, g := range gs {
		if g.ID == id {
			return g, true
		}
	}
	return docGroup{}, false
}

func docGroupByKeyLine(gs []docGroup, line string) (docGroup, bool) {
	for _, g := range gs {
		if g.KeyLine != "" && g.KeyLine == line {
			return g, true
		}
	}
	return docGroup{}, false
}

// groupConfig is how each server's configuration names a group: Postfix's
// tls_eecdh_auto_curves takes OpenSSL's group names, Exim (built with
// GnuTLS on Debian) takes a GnuTLS priority string in tls_require_ciphers.
// These are what the servers are told, not spellings of results.
var groupConfig = []struct {
	id      tls.CurveID
	openssl string
	gnutls  string
}{
	{tls.X25519, "X25519", "GROUP-X25519"},
	{tls.CurveP256, "P-256", "GROUP-SECP256R1"},
	{tls.CurveP384, "P-384", "GROUP-SECP384R1"},
	{tls.CurveP521, "P-521", "GROUP-SECP521R1"},
}

// groupListener is one more SMTP address of the lab's Postfix or Exim,
// configured to accept one key exchange group only.
type groupListener struct {
	Software   string // "postfix" or "exim"
	ID         tls.CurveID
	Config     string // the group as the server's configuration names it
	IP, Domain string
	MX         string
}

// groupListeners: Postfix on 127.77.0.101-104, Exim on 127.77.0.111-114,
// one address per group of groupConfig.
func groupListeners() []groupListener {
	var out []groupListener
	for si, sw := range []string{"postfix", "exim"} {
		for i, c := range groupConfig {
			cfg := c.openssl
			if sw == "exim" {
				cfg = "NORMAL:-GROUP-ALL:+" + c.gnutls
			}
			d := fmt.Sprintf("g%d-%s.%s", c.id, sw, zoneName)
			out = append(out, groupListener{Software: sw, ID: c.id, Config: cfg,
				IP: fmt.Sprintf("127.77.0.%d", 101+10*si+i), Domain: d, MX: "mx." + d})
		}
	}
	return out
}

func (l *lab) groupListenersOf(software string) []groupListener {
	var out []groupListener
	for _, g := range l.groups {
		if g.Software == software {
			out = append(out, g)
		}
	}
	return out
}

// testGroups checks, for each group of the table: that a server here was
// made to negotiate it (or that this OpenSSL cannot, as the table says);
// openssl's line for each listener, exactly as the table states it; and a
// scan of the listeners, whose tls_group must be the table's name.
func testGroups(ctx context.Context, t *testing.T, l *lab) {
	for _, g := range l.docGroups {
		if g.KeyLine == "" {
			t.Run("openssl-lacks/"+g.Name, func(t *testing.T) { checkOpenSSLLacks(ctx, t, l, g) })
			continue
		}
		n := 0
		for _, gl := range l.groups {
			if gl.ID == g.ID {
				n++
			}
		}
		if n != 2 {
			t.Errorf("docs/schema.md: openssl prints %q for %s, but %d servers here are configured to it, want 2 (Postfix, Exim)", g.KeyLine, g.Name, n)
		}
	}

	for _, gl := range l.groups {
		t.Run("openssl/"+gl.Software+"/"+gl.Config, func(t *testing.T) {
			want, ok := docGroupByID(l.docGroups, gl.ID)
			if !ok {
				t.Fatalf("docs/schema.md has no row for codepoint %d", gl.ID)
			}
			sc, out, err := l.runSClient(ctx, gl.IP, gl.MX)
			if err != nil {
				t.Fatalf("openssl s_client: %v\n%s", err, out)
			}
			if sc.KeyLine != want.KeyLine {
				t.Errorf("openssl s_client printed %q, docs/schema.md says %q", sc.KeyLine, want.KeyLine)
			}
		})
	}

	// The scan of the listeners.
	var domains []string
	for _, gl := range l.groups {
		domains = append(domains, gl.Domain)
	}
	in := filepath.Join(l.dir, "group-domains.txt")
	writeFile(t, in, strings.Join(domains, "\n")+"\n", 0o644)
	out := filepath.Join(l.dir, "scan-groups")
	args := []string{"-resolver", net.JoinHostPort(dnsAddr, strconv.Itoa(dnsPort)), "-port", strconv.Itoa(l.port),
		"-allow", "127.0.0.0/8", "-ehlo-name", ehloName, "-timeout", "20s", "-step-timeout", "5s",
		"-dns-timeout", "2s", "-o", out, "-quiet", in}
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := mxsurvey(sctx, t, append([]string{"scan"}, args...)...); err != nil {
		t.Fatal(err)
	}
	byIP := map[string]survey.ProbeRow{}
	for _, r := range readParts[survey.ProbeRow](t, survey.ProbesDir(out)) {
		byIP[r.IP] = r
	}
	for _, gl := range l.groups {
		r, ok := byIP[gl.IP]
		want, _ := docGroupByID(l.docGroups, gl.ID)
		switch {
		case !ok:
			t.Errorf("%s %s (%s): no probe row", gl.Software, gl.Config, gl.IP)
		case r.Outcome != survey.OutcomeOK || r.TLSGroup != want.Name:
			t.Errorf("%s %s (%s): outcome %s (%s), tls_group %q; docs/schema.md says %q", gl.Software, gl.Config, gl.IP,
				r.Outcome, r.Error, r.TLSGroup, want.Name)
		}
	}
}

// checkOpenSSLLacks holds the table's "none: OpenSSL 3.0 does not
// implement it" to this machine's openssl: asked to offer only that group,
// it must refuse before connecting. When a newer OpenSSL accepts it, the
// table and this suite need a listener for it.
func checkOpenSSLLacks(ctx context.Context, t *testing.T, l *lab, g docGroup) {
	target := l.servers[0]
	out, err := run(ctx, "", l.tools.openssl, "s_client", "-groups", g.IANA, "-starttls", "smtp",
		"-connect", net.JoinHostPort(target.IP, strconv.Itoa(l.port)), "-servername", target.MX)
	if err == nil || !strings.Contains(out, "SSL_CONF_cmd(-groups") {
		t.Errorf("openssl s_client -groups %s was not refused: this OpenSSL implements %s, which docs/schema.md says "+
			"Debian 12's does not; configure a server here to it and put openssl's line in the table (%v)\n%s", g.IANA, g.Name, err, out)
	}
}
