package domains

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// Count quickly counts the entries of a (possibly gzip) file for a progress
// estimate, without normalising anything. It is approximate: for lists and
// CSV it counts non-blank lines not starting with '#', less a header line
// that Reader would skip (the same test, isHeader); for zone files it counts changes of NS owner on lines with an explicit
// owner, skipping the SOA owner. It returns 0 for stdin ("-"), which cannot
// be read twice.
func Count(path string, format Format) (int64, error) {
	format, err := ParseFormat(string(format))
	if err != nil {
		return 0, err
	}
	if path == "-" {
		return 0, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("datasets: %w", err)
	}
	defer f.Close() // read-only: a close error cannot lose data
	br, gz, err := decompress(f, path)
	if err != nil {
		return 0, err
	}
	if gz != nil {
		defer gz.Close()
	}
	var n int64
	if format == FormatZone {
		n, err = countZone(br)
	} else {
		n, err = countLines(br, format)
	}
	if err != nil {
		return n, fmt.Errorf("datasets: counting %s: %w", path, err)
	}
	return n, nil
}

// eachLine calls fn with the start of every line (at most one buffer, the
// rest of a longer line is skipped).
func eachLine(br *bufio.Reader, fn func(line []byte)) error {
	cont := false // in the middle of a long line
	for {
		chunk, err := br.ReadSlice('\n')
		if !cont && len(chunk) > 0 {
			fn(chunk)
		}
		cont = errors.Is(err, bufio.ErrBufferFull)
		switch {
		case err == nil || cont:
		case err == io.EOF:
			return nil
		default:
			return err
		}
	}
}

func countLines(br *bufio.Reader, format Format) (int64, error) {
	var n int64
	first := true
	err := eachLine(br, func(line []byte) {
		line = bytes.TrimLeft(line, "\ufeff \t\r\n\v\f")
		if len(line) == 0 || line[0] == '#' {
			return
		}
		if first { // only the first record can be a header
			first = false
			if rec := bytes.TrimSpace(line); len(rec) <= MaxLineLen && isHeader(string(rec), format) {
				return
			}
		}
		n++
	})
	return n, err
}

func countZone(br *bufio.Reader) (int64, error) {
	var (
		n          int64
		apex, prev []byte
	)
	err := eachLine(br, func(line []byte) {
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' || line[0] == ';' || line[0] == '$' {
			return // continuation (same owner), comment or directive
		}
		owner, rest := nextField(line)
		typ := recordType(rest)
		switch {
		case bytes.EqualFold(typ, []byte("soa")):
			if apex == nil {
				apex = bytes.Clone(owner)
			}
		case bytes.EqualFold(typ, []byte("ns")):
			if !bytes.EqualFold(owner, apex) && !bytes.EqualFold(owner, prev) {
				prev = append(prev[:0], owner...)
				n++
			}
		}
	})
	return n, err
}

// recordType returns the type field of the rest of a record line after the
// owner: the first field that is neither a TTL nor a class.
func recordType(rest []byte) []byte {
	for range 3 {
		var f []byte
		f, rest = nextField(rest)
		if len(f) == 0 || f[0] >= '0' && f[0] <= '9' {
			if len(f) == 0 {
				return nil
			}
			continue // TTL
		}
		switch string(bytes.ToUpper(f)) {
		case "IN", "CH", "HS", "CS":
			continue
		}
		return f
	}
	return nil
}

func nextField(b []byte) (field, rest []byte) {
	b = bytes.TrimLeft(b, " \t")
	i := bytes.IndexAny(b, " \t\r\n")
	if i < 0 {
		return b, nil
	}
	return b[:i], b[i:]
}
