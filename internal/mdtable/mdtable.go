// Package mdtable reads a table out of a Markdown document, so a test can
// hold the code to what the documentation states (docs/schema.md's key
// exchange groups, for one) instead of keeping a second copy of the table.
// It reads GitHub-flavoured pipe tables only, and no I/O happens here.
package mdtable

import (
	"fmt"
	"strings"
)

// Table is a pipe table: the header's cells and the body rows, each cell
// trimmed of space, Markdown otherwise kept (see Unquote, CodeSpans).
type Table struct {
	Header []string
	Rows   [][]string
}

// Column is the index of the header cell equal to name, or -1.
func (t Table) Column(name string) int {
	for i, h := range t.Header {
		if h == name {
			return i
		}
	}
	return -1
}

// Under returns the first pipe table after the heading line whose text
// (without its leading #s) is heading. It fails when the heading is missing,
// when no table follows it before the next heading, or when a row has a
// number of cells other than the header's.
func Under(doc, heading string) (Table, error) {
	lines := strings.Split(strings.ReplaceAll(doc, "\r\n", "\n"), "\n")
	start := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "#") && strings.TrimSpace(strings.TrimLeft(l, "#")) == heading {
			start = i + 1
			break
		}
	}
	if start < 0 {
		return Table{}, fmt.Errorf("no heading %q", heading)
	}
	var t Table
	for i := start; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if strings.HasPrefix(l, "#") {
			break
		}
		if !strings.HasPrefix(l, "|") {
			if t.Header != nil {
				break // the table ended
			}
			continue
		}
		cells := splitRow(l)
		switch {
		case t.Header == nil:
			t.Header = cells
		case isDelimiter(cells):
		case len(cells) != len(t.Header):
			return Table{}, fmt.Errorf("under %q, line %d: %d cells, the header has %d", heading, i+1, len(cells), len(t.Header))
		default:
			t.Rows = append(t.Rows, cells)
		}
	}
	if t.Header == nil {
		return Table{}, fmt.Errorf("no table under %q", heading)
	}
	return t, nil
}

// splitRow splits "| a | `b` |" into its cells. A pipe inside backticks or
// escaped as \| belongs to the cell.
func splitRow(l string) []string {
	l = strings.TrimSuffix(strings.TrimPrefix(l, "|"), "|")
	var cells []string
	var cur strings.Builder
	code := false
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case c == '\\' && i+1 < len(l) && l[i+1] == '|':
			cur.WriteByte('|')
			i++
		case c == '`':
			code = !code
			cur.WriteByte(c)
		case c == '|' && !code:
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(cells, strings.TrimSpace(cur.String()))
}

// Unquote returns a cell that is one code span ("`P-256`") without its
// backticks, and any other cell as it is.
func Unquote(c string) string {
	if len(c) >= 2 && c[0] == '`' && c[len(c)-1] == '`' && strings.Count(c, "`") == 2 {
		return c[1 : len(c)-1]
	}
	return c
}

func isDelimiter(cells []string) bool {
	for _, c := range cells {
		if strings.Trim(c, ":-") != "" || !strings.Contains(c, "-") {
			return false
		}
	}
	return true
}

// CodeSpans returns the text of each `code span` in a cell, in order
// ("`p256`, `prime256v1`" gives p256 and prime256v1); none for plain text.
func CodeSpans(c string) []string {
	var out []string
	for {
		i := strings.IndexByte(c, '`')
		if i < 0 {
			return out
		}
		j := strings.IndexByte(c[i+1:], '`')
		if j < 0 {
			return out
		}
		out = append(out, c[i+1:i+1+j])
		c = c[i+j+2:]
	}
}
