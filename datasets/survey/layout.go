package survey

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
)

// The layout of one scan directory:
//
//	DIR/manifest.json
//	DIR/mx/part-NNNNN.parquet      MXRow
//	DIR/probes/part-NNNNN.parquet  ProbeRow
//	DIR/tlsa/part-NNNNN.parquet    TLSARow   (schema 2, when policies were on)
//	DIR/policies/part-NNNNN.parquet PolicyRow (schema 2, when policies were on)
//
// Readers list parts with PartNumber, so that a part still being written
// (a hidden temporary file) is never read.
const (
	ManifestFile  = "manifest.json"
	MXTable       = "mx"
	ProbesTable   = "probes"
	TLSATable     = "tlsa"
	PoliciesTable = "policies"
)

// ManifestPath is the manifest of the scan in dir.
func ManifestPath(dir string) string { return filepath.Join(dir, ManifestFile) }

// MXDir is the directory of the scan's mx parts.
func MXDir(dir string) string { return filepath.Join(dir, MXTable) }

// ProbesDir is the directory of the scan's probes parts.
func ProbesDir(dir string) string { return filepath.Join(dir, ProbesTable) }

// TLSADir is the directory of the scan's tlsa parts.
func TLSADir(dir string) string { return filepath.Join(dir, TLSATable) }

// PoliciesDir is the directory of the scan's policies parts.
func PoliciesDir(dir string) string { return filepath.Join(dir, PoliciesTable) }

// PartName is the file name of part n of a table.
func PartName(n int) string { return fmt.Sprintf("part-%05d.parquet", n) }

// PartNumber reads the number of a part from its file name (base name), and
// reports false for any other name, the temporary name of an uncommitted
// part included.
func PartNumber(name string) (int, bool) {
	digits, ok := strings.CutPrefix(name, "part-")
	if !ok {
		return 0, false
	}
	digits, ok = strings.CutSuffix(digits, ".parquet")
	if !ok || digits == "" || strings.Trim(digits, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(digits)
	return n, err == nil
}

// TargetKey is the join key of the two tables: a target is one (ip,
// mx_host), probed once however many domains point at it. The address is
// taken in its canonical text form (RFC 5952 for IPv6), so that
// "2001:DB8::1" and "2001:db8::1" are one target whoever wrote the row; text
// that is not an address is kept as it is. mx_host is stored lowercased
// (docs/schema.md) and used as it is.
func TargetKey(ip, mxHost string) string {
	return string(AppendTargetKey(nil, ip, mxHost))
}

// AppendTargetKey appends TargetKey(ip, mxHost) to b, without allocating
// when b has room: for readers that join millions of rows.
func AppendTargetKey(b []byte, ip, mxHost string) []byte {
	if a, err := netip.ParseAddr(ip); err == nil {
		b = a.AppendTo(b)
	} else {
		b = append(b, ip...)
	}
	b = append(b, '|')
	return append(b, mxHost...)
}
