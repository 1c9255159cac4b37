package analyze

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"time"

	"github.com/parquet-go/parquet-go"
)

// batchRows bounds memory per read: rows carry certificate chains, so a
// batch of 256 is a few megabytes at most.
const batchRows = 256

var partName = regexp.MustCompile(`^part-(\d+)\.parquet$`)

// parts lists the committed parts of dir/sub in part-number order. Hidden
// temporaries of a running or killed scan are not parts and are skipped.
func parts(dir, sub string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(dir, sub))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing %s parts: %w", sub, err)
	}
	type part struct {
		n    int
		path string
	}
	var ps []part
	for _, e := range entries {
		m := partName.FindStringSubmatch(e.Name())
		if m == nil || e.IsDir() {
			continue
		}
		n, err := strconv.Atoi(m[1])
		if err != nil {
			continue // more digits than an int holds: not one of ours
		}
		ps = append(ps, part{n, filepath.Join(dir, sub, e.Name())})
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].n < ps[j].n })
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.path
	}
	return out, nil
}

// readPart streams one Parquet file in batches, calling fn for each batch.
// The batch is reused: fn must copy whatever it keeps.
func readPart[T any](ctx context.Context, path string, fn func([]T) error) (err error) {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening part: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("opening part: %w", err)
	}
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	// parquet-go panics when a file's schema cannot be converted to the row
	// type; one foreign file must fail the analysis with a message, not crash it.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("reading %s: incompatible schema: %v", path, r)
		}
	}()
	r := parquet.NewGenericReader[T](pf)
	defer r.Close()
	buf := make([]T, batchRows)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		clear(buf)
		n, rerr := r.Read(buf)
		if n > 0 {
			if err := fn(buf[:n]); err != nil {
				return err
			}
		}
		if errors.Is(rerr, io.EOF) {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("reading %s: %w", path, rerr)
		}
	}
}

// manifest holds the manifest fields the report shows. It is decoded
// leniently, with its own type, so that fields added to the scanner's
// manifest never break an analysis.
type manifest struct {
	ToolVersion   string     `json:"tool_version"`
	SchemaVersion int        `json:"schema_version"`
	Started       time.Time  `json:"started"`
	Ended         *time.Time `json:"ended"`
	Status        string     `json:"status"`
}

func readManifest(dir string) (*manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", filepath.Join(dir, "manifest.json"), err)
	}
	return &m, nil
}

// progress prints rows read and the rate, at most every interval, so a long
// analysis shows it is alive without flooding a terminal or a log file.
type progress struct {
	w        io.Writer
	what     string
	start    time.Time
	last     time.Time
	rows     int64
	interval time.Duration
}

func newProgress(w io.Writer, what string) *progress {
	now := time.Now()
	return &progress{w: w, what: what, start: now, last: now, interval: 2 * time.Second}
}

func (p *progress) add(n int) {
	p.rows += int64(n)
	if p.w == nil {
		return
	}
	if now := time.Now(); now.Sub(p.last) >= p.interval {
		p.last = now
		p.print(now)
	}
}

func (p *progress) done() {
	if p.w != nil {
		p.print(time.Now())
	}
}

func (p *progress) print(now time.Time) {
	secs := now.Sub(p.start).Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(p.rows) / secs
	}
	fmt.Fprintf(p.w, "analyze: %s: %d rows read (%.0f rows/s)\n", p.what, p.rows, rate)
}
