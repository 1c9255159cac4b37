package mdtable

import (
	"reflect"
	"strings"
	"testing"
)

const doc = "# Title\n\n## Groups\n\nSome text.\n\n" +
	"| codepoint | name | aliases |\n" +
	"|---:|:---|---|\n" +
	"| 23 | `P-256` | `p256`, `prime256v1` |\n" +
	"| 29 | `X25519` | none \\| really |\n" +
	"| 1 | `a|b` | |\n" +
	"\nAfter the table.\n\n## Next\n\n| x |\n|---|\n| 1 |\n"

func TestUnder(t *testing.T) {
	tb, err := Under(doc, "Groups")
	if err != nil {
		t.Fatal(err)
	}
	want := Table{
		Header: []string{"codepoint", "name", "aliases"},
		Rows: [][]string{
			{"23", "`P-256`", "`p256`, `prime256v1`"},
			{"29", "`X25519`", "none | really"},
			{"1", "`a|b`", ""},
		},
	}
	if !reflect.DeepEqual(tb, want) {
		t.Errorf("Under = %#v\nwant %#v", tb, want)
	}
	if tb.Column("name") != 1 || tb.Column("nope") != -1 {
		t.Errorf("Column: %d %d", tb.Column("name"), tb.Column("nope"))
	}
	if got := CodeSpans(tb.Rows[0][2]); !reflect.DeepEqual(got, []string{"p256", "prime256v1"}) {
		t.Errorf("CodeSpans = %q", got)
	}
	for in, want := range map[string]string{"`P-256`": "P-256", "`a` and `b`": "`a` and `b`", "plain": "plain", "`": "`"} {
		if got := Unquote(in); got != want {
			t.Errorf("Unquote(%q) = %q, want %q", in, got, want)
		}
	}
	if got := CodeSpans("plain `open"); got != nil {
		t.Errorf("CodeSpans of plain text = %q", got)
	}
}

func TestUnderErrors(t *testing.T) {
	for name, c := range map[string]struct{ doc, heading, err string }{
		"missing heading":  {doc, "Nope", "no heading"},
		"no table":         {"## A\ntext\n## B\n| x |\n", "A", "no table"},
		"ragged row":       {"## A\n| x | y |\n|---|---|\n| 1 |\n", "A", "1 cells"},
		"heading prefixes": {"## Groups and more\n| x |\n|---|\n", "Groups", "no heading"},
	} {
		if _, err := Under(c.doc, c.heading); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: err = %v, want %q", name, err, c.err)
		}
	}
}
