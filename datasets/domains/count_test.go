package domains

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Count is the progress total: for lists and CSV it agrees with the number
// of entries Reader returns, a header line included or not (a lab's
// domains.csv of 1,000 domains has one, and the total said 1,001).
func TestCountAgreesWithReader(t *testing.T) {
	tests := []struct {
		name    string
		format  Format
		content string
		want    int64
	}{
		{"csv header", FormatAuto, "rank,domain\n1,a.test\n2,b.test\n", 2},
		{"csv header, csv format", FormatCSV, "rank,domain\n1,a.test\n2,b.test\n", 2},
		{"no header", FormatAuto, "1,a.test\n2,b.test\n", 2},
		{"header after comments and blank lines", FormatAuto, "# top list\n\n  rank , domain \r\n1,a.test\r\n", 1},
		{"header after a byte order mark", FormatAuto, "\ufeffrank,domain\n1,a.test\n", 1},
		{"quoted header", FormatCSV, "\"rank\",\"domain\"\n1,a.test\n", 1},
		{"header-like second line is an entry", FormatAuto, "1,a.test\nrank,domain\n", 2},
		{"list format reads no header", FormatList, "rank,domain\na.test\n", 2},
		{"one-field first line is a domain", FormatCSV, "domain\na.test\n", 2},
		{"bad rank with a dotted domain is an entry", FormatAuto, "x,a.test\n2,b.test\n", 2},
		{"plain list", FormatAuto, "a.test\nb.test\n# c.test\n\n", 2},
		{"empty", FormatAuto, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "in")
			if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			r, err := NewReader(strings.NewReader(tt.content), tt.format)
			if err != nil {
				t.Fatal(err)
			}
			if read := int64(len(readAll(t, r))); read != tt.want {
				t.Fatalf("Reader returned %d entries, the case wants %d", read, tt.want)
			}
			if n, err := Count(path, tt.format); err != nil || n != tt.want {
				t.Errorf("Count = %d, %v; want %d (Reader's entries)", n, err, tt.want)
			}
		})
	}
}
