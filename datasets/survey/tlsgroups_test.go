package survey

import (
	"crypto/tls"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mxsurvey/mxsurvey/internal/mdtable"
)

// The heading and columns of docs/schema.md's table of groups.
const (
	groupsHeading = "`tls_group` vocabulary: key exchange groups"
	colCodepoint  = "codepoint"
	colName       = "`tls_group`"
	colIANA       = "IANA name"
	colGo         = "older scans (Go's `CurveID.String()`)"
	colAliases    = "`-tls-groups` also accepts"
)

// TestDocumentedGroups holds the vocabulary to docs/schema.md's table,
// row for row and column for column (the openssl column is realservers'
// to check), so the document is what users read and what the code does.
func TestDocumentedGroups(t *testing.T) {
	doc, err := os.ReadFile("../../docs/schema.md")
	if err != nil {
		t.Fatal(err)
	}
	tb, err := mdtable.Under(string(doc), groupsHeading)
	if err != nil {
		t.Fatal(err)
	}
	col := func(name string) int {
		t.Helper()
		i := tb.Column(name)
		if i < 0 {
			t.Fatalf("docs/schema.md: the groups table has no column %q: %q", name, tb.Header)
		}
		return i
	}
	cp, name, iana, goName, aliases := col(colCodepoint), col(colName), col(colIANA), col(colGo), col(colAliases)
	var documented []TLSGroup
	for _, r := range tb.Rows {
		id, err := strconv.ParseUint(r[cp], 10, 16)
		if err != nil {
			t.Fatalf("docs/schema.md: codepoint %q: %v", r[cp], err)
		}
		documented = append(documented, TLSGroup{ID: tls.CurveID(id), Name: mdtable.Unquote(r[name]),
			IANA: mdtable.Unquote(r[iana]), GoName: mdtable.Unquote(r[goName]), Aliases: mdtable.CodeSpans(r[aliases])})
	}
	str := func(gs []TLSGroup) string {
		var b strings.Builder
		for _, g := range gs {
			fmt.Fprintf(&b, "%d %s %s %s %q\n", g.ID, g.Name, g.IANA, g.GoName, g.Aliases)
		}
		return b.String()
	}
	if got, want := str(documented), str(TLSGroups()); got != want {
		t.Errorf("docs/schema.md documents\n%s\nthe code has\n%s", got, want)
	}
}

// TestEveryGoGroupIsNamed fails when the Go release in use can negotiate a
// group this vocabulary lacks (Go names every group it implements), or when
// GoName is not what Go prints.
func TestEveryGoGroupIsNamed(t *testing.T) {
	known := map[tls.CurveID]bool{}
	for _, g := range TLSGroups() {
		known[g.ID] = true
		if g.ID.String() != g.GoName {
			t.Errorf("%s: Go prints %q, GoName says %q", g.Name, g.ID.String(), g.GoName)
		}
	}
	for id := range 1 << 16 {
		c := tls.CurveID(id)
		if !strings.HasPrefix(c.String(), "CurveID(") && !known[c] {
			t.Errorf("Go knows group %d (%s); add it to tlsGroups and docs/schema.md", id, c)
		}
	}
}

func TestTLSGroupName(t *testing.T) {
	for _, c := range []struct {
		id   tls.CurveID
		want string
	}{
		{tls.X25519, "X25519"},
		{tls.CurveP256, "P-256"},
		{tls.CurveP384, "P-384"},
		{tls.CurveP521, "P-521"},
		{tls.X25519MLKEM768, "X25519MLKEM768"},
		{tls.SecP256r1MLKEM768, "SecP256r1MLKEM768"},
		{tls.SecP384r1MLKEM1024, "SecP384r1MLKEM1024"},
		{30, "CurveID(30)"}, // x448: not in Go
	} {
		if got := TLSGroupName(c.id); got != c.want {
			t.Errorf("TLSGroupName(%d) = %q, want %q", c.id, got, c.want)
		}
	}
}

func TestLookupTLSGroup(t *testing.T) {
	for in, want := range map[string]tls.CurveID{
		"x25519": tls.X25519, "X25519": tls.X25519, " x25519 ": tls.X25519,
		"p256": tls.CurveP256, "P-256": tls.CurveP256, "p-256": tls.CurveP256, "secp256r1": tls.CurveP256,
		"prime256v1": tls.CurveP256, "CurveP256": tls.CurveP256,
		"p384": tls.CurveP384, "secp384r1": tls.CurveP384, "P-384": tls.CurveP384,
		"p521": tls.CurveP521, "secp521r1": tls.CurveP521, "P-521": tls.CurveP521,
		"x25519mlkem768": tls.X25519MLKEM768, "SecP256r1MLKEM768": tls.SecP256r1MLKEM768,
		"secp384r1mlkem1024": tls.SecP384r1MLKEM1024,
	} {
		g, ok := LookupTLSGroup(in)
		if !ok || g.ID != want {
			t.Errorf("LookupTLSGroup(%q) = %v %v, want %v", in, g.ID, ok, want)
		}
	}
	for _, in := range []string{"", "x448", "ffdhe2048", "p25", "default", "CurveID(29)"} {
		if g, ok := LookupTLSGroup(in); ok {
			t.Errorf("LookupTLSGroup(%q) = %v, want none", in, g)
		}
	}
}

func TestCanonicalTLSGroup(t *testing.T) {
	for in, want := range map[string]string{
		"":                   "",
		"CurveP256":          "P-256",
		"P-256":              "P-256",
		"CurveP384":          "P-384",
		"CurveP521":          "P-521",
		"X25519":             "X25519",
		"X25519MLKEM768":     "X25519MLKEM768",
		"SecP384r1MLKEM1024": "SecP384r1MLKEM1024",
		"CurveID(30)":        "CurveID(30)", // not ours: kept as stored
		"p256":               "p256",        // not a stored spelling: kept
	} {
		if got := CanonicalTLSGroup(in); got != want {
			t.Errorf("CanonicalTLSGroup(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestTLSGroupsIsACopy(t *testing.T) {
	a := TLSGroups()
	a[4].Aliases[0] = "changed"
	a[0].Name = "changed"
	if b := TLSGroups(); b[0].Name == "changed" || slices.Contains(b[4].Aliases, "changed") {
		t.Error("TLSGroups shares its backing array with the caller")
	}
}
