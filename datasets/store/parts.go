// Package store reads and writes the files of an mxsurvey dataset: the
// Parquet parts of its tables and its manifest, laid out as package survey
// describes (docs/schema.md).
//
// A part is written under a hidden temporary name and renamed into place only
// once it is complete and synced, and the manifest is replaced the same way,
// so a reader, or a resumed scan, never sees half a file: the visible parts
// are the scan's checkpoint. Every row passes through PartWriter.Write, which
// is therefore where text columns are made valid UTF-8 (survey.ProbeRow's
// MakeValidUTF8), whoever wrote the row.
package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/mxsurvey/mxsurvey/datasets/survey"
)

// PartWriter writes rows of one kind into rotating Parquet parts under dir,
// each visible only once complete.
//
// PartWriter is not safe for concurrent use; the pipeline gives each kind one
// writer goroutine.
type PartWriter[T any] struct {
	dir          string
	maxPartRows  int64
	maxPartBytes int64
	groupRows    int64

	next    int // number of the next part to open
	file    *os.File
	tmpPath string
	w       *parquet.GenericWriter[T]
	rows    int64 // rows in the open part
	opened  time.Time

	committedParts int
	committedRows  int64

	before []Committer // committed before each commit of this writer's part
}

// Committer is a writer whose open part can be committed on demand: a
// PartWriter of any row type.
type Committer interface {
	Commit() error
}

// PartOptions bounds parts and row groups. A row group is held in memory
// until flushed, so GroupRows bounds the writer's memory.
type PartOptions struct {
	MaxPartRows  int64 // rotate after this many rows (default 1,000,000)
	MaxPartBytes int64 // rotate once the estimated size passes this (default 256 MiB)
	GroupRows    int64 // rows per row group (default 10,000)
}

// NewPartWriter prepares dir and continues numbering after the parts already
// there (a resumed scan appends new parts). Leftover temporary files of a
// killed run are removed: their rows were never committed.
func NewPartWriter[T any](dir string, opts PartOptions) (*PartWriter[T], error) {
	if opts.MaxPartRows <= 0 {
		opts.MaxPartRows = 1_000_000
	}
	if opts.MaxPartBytes <= 0 {
		opts.MaxPartBytes = 256 << 20
	}
	if opts.GroupRows <= 0 {
		opts.GroupRows = 10_000
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating part directory: %w", err)
	}
	parts, err := Parts(dir)
	if err != nil {
		return nil, err
	}
	if err := removeTemporaries(dir); err != nil {
		return nil, err
	}
	next := 0
	if len(parts) > 0 {
		n, _ := survey.PartNumber(filepath.Base(parts[len(parts)-1])) // Parts only lists names that parse
		next = n + 1
	}
	return &PartWriter[T]{dir: dir, maxPartRows: opts.MaxPartRows, maxPartBytes: opts.MaxPartBytes,
		groupRows: opts.GroupRows, next: next}, nil
}

// Write appends rows to the open part, all into the same part: callers pass
// the rows that must be committed together (all rows of one domain). Rows
// with a MakeValidUTF8 method (survey's) are made valid UTF-8 in place first:
// Parquet STRING columns require it.
func (p *PartWriter[T]) Write(rows []T) error {
	if len(rows) == 0 {
		return nil
	}
	for i := range rows {
		if v, ok := any(&rows[i]).(interface{ MakeValidUTF8() }); ok {
			v.MakeValidUTF8()
		}
	}
	if p.w != nil && (p.rows >= p.maxPartRows || p.w.Size() >= p.maxPartBytes) {
		if err := p.commit(); err != nil {
			return err
		}
	}
	if p.w == nil {
		if err := p.open(); err != nil {
			return err
		}
	}
	if _, err := p.w.Write(rows); err != nil {
		return fmt.Errorf("writing rows to %s: %w", p.tmpPath, err)
	}
	p.rows += int64(len(rows))
	return nil
}

// Close commits the open part, if any.
func (p *PartWriter[T]) Close() error {
	return p.Commit()
}

// Commit commits the open part now, if there is one.
func (p *PartWriter[T]) Commit() error {
	if p.w == nil {
		return nil
	}
	return p.commit()
}

// CommitBefore makes every commit of p's part, whatever causes it (rotation,
// CommitIfOlder, Close), commit the open parts of deps first. Rows written to
// deps before a row written to p are then committed no later than it, so a
// reader that finds p's row finds theirs: a domain's mx rows are never
// visible without its policies row and its MX hosts' tlsa rows, which is what
// lets a resumed scan take "mx rows committed" for "domain done" (docs/schema.md).
// deps must be used from the goroutine that uses p.
func (p *PartWriter[T]) CommitBefore(deps ...Committer) {
	p.before = append(p.before, deps...)
}

// Abort drops the open part without committing it.
func (p *PartWriter[T]) Abort() {
	if p.file != nil {
		p.file.Close()
		os.Remove(p.tmpPath)
		p.file, p.w = nil, nil
	}
}

// Committed reports parts and rows made visible by this writer.
func (p *PartWriter[T]) Committed() (parts int, rows int64) {
	return p.committedParts, p.committedRows
}

func (p *PartWriter[T]) open() error {
	p.tmpPath = filepath.Join(p.dir, "."+survey.PartName(p.next)+".tmp")
	f, err := os.OpenFile(p.tmpPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("creating part: %w", err)
	}
	p.file = f
	p.w = parquet.NewGenericWriter[T](f,
		parquet.Compression(&parquet.Zstd),
		parquet.MaxRowsPerRowGroup(p.groupRows),
		parquet.CreatedBy(survey.Tool, survey.Version, ""),
	)
	p.w.SetKeyValueMetadata("mxsurvey.schema_version", strconv.Itoa(survey.SchemaVersion))
	p.rows = 0
	p.opened = time.Now()
	return nil
}

// CommitIfOlder commits the open part when it was opened more than age ago.
// Parts are the checkpoint: a scan killed with kill -9 loses only what is
// in its open parts, so committing by age bounds the work lost.
func (p *PartWriter[T]) CommitIfOlder(age time.Duration) error {
	if p.w == nil || time.Since(p.opened) < age {
		return nil
	}
	return p.commit()
}

func (p *PartWriter[T]) commit() error {
	for _, d := range p.before {
		if err := d.Commit(); err != nil {
			return err
		}
	}
	final := filepath.Join(p.dir, survey.PartName(p.next))
	err := p.w.Close()
	if err == nil {
		err = p.file.Sync()
	}
	if cerr := p.file.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(p.tmpPath, final)
	}
	if err != nil {
		os.Remove(p.tmpPath)
		p.file, p.w = nil, nil
		return fmt.Errorf("committing part %s: %w", final, err)
	}
	if d, derr := os.Open(p.dir); derr == nil {
		d.Sync() // best effort: make the rename durable
		d.Close()
	}
	p.committedParts++
	p.committedRows += p.rows
	p.next++
	p.file, p.w = nil, nil
	return nil
}

// Parts lists the committed part files of dir in order.
func Parts(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing parts: %w", err)
	}
	var parts []string
	for _, e := range entries {
		if _, ok := survey.PartNumber(e.Name()); ok {
			parts = append(parts, filepath.Join(dir, e.Name()))
		}
	}
	sort.Slice(parts, func(i, j int) bool {
		a, _ := survey.PartNumber(filepath.Base(parts[i]))
		b, _ := survey.PartNumber(filepath.Base(parts[j]))
		return a < b
	})
	return parts, nil
}

func removeTemporaries(dir string) error {
	tmps, err := filepath.Glob(filepath.Join(dir, ".part-*.parquet.tmp"))
	if err != nil {
		return fmt.Errorf("listing temporary parts: %w", err)
	}
	for _, t := range tmps {
		if err := os.Remove(t); err != nil {
			return fmt.Errorf("removing uncommitted part: %w", err)
		}
	}
	return nil
}

// ReadAll calls fn for every row of every committed part of dir, streaming
// in batches so memory does not grow with the dataset.
func ReadAll[T any](dir string, fn func(*T) error) error {
	parts, err := Parts(dir)
	if err != nil {
		return err
	}
	for _, path := range parts {
		if err := ReadPart(path, fn); err != nil {
			return err
		}
	}
	return nil
}

// ReadPart calls fn for every row of one part file, streaming.
func ReadPart[T any](path string, fn func(*T) error) error {
	return ReadBatches(context.Background(), path, func(rows []T) error {
		for i := range rows {
			if err := fn(&rows[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// readBatch bounds memory per read: probe rows carry certificate chains, so
// a batch of 256 is a few megabytes at most.
const readBatch = 256

// ReadBatches streams one Parquet file in batches, calling fn for each. The
// batch is reused: fn must copy whatever it keeps. A file whose schema does
// not fit T (parquet-go panics on those) is an error, not a crash: one
// foreign file must not end an analysis of a thousand.
func ReadBatches[T any](ctx context.Context, path string, fn func([]T) error) (err error) {
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
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("reading %s: incompatible schema: %v", path, r)
		}
	}()
	r := parquet.NewGenericReader[T](pf)
	defer r.Close()
	buf := make([]T, readBatch)
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
