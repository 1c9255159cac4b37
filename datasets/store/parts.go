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
	"sync"
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
// Commit, Close), commit the open parts of deps first. Rows written to deps
// before a row written to p are then committed no later than it, so a reader
// that finds p's row finds theirs: a domain's policies row is never visible
// after its mx rows, and a tlsa row never before the mx rows that reference
// its host (docs/schema.md). deps must be used from the goroutine that uses
// p.
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
		Compression(),
		parquet.MaxRowsPerRowGroup(p.groupRows),
		parquet.CreatedBy(survey.Tool, survey.Version, ""),
	)
	p.w.SetKeyValueMetadata("mxsurvey.schema_version", strconv.Itoa(survey.SchemaVersion))
	p.rows = 0
	p.opened = time.Now()
	return nil
}

// Age is how long the open part has been open (0 when none is). Parts are
// the checkpoint: a scan killed with kill -9 loses only what is in its open
// parts, so committing them by age bounds the work lost; the caller decides,
// as writers that commit in a chain (CommitBefore) commit together.
func (p *PartWriter[T]) Age() time.Duration {
	if p.w == nil {
		return 0
	}
	return time.Since(p.opened)
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
	f, pf, err := openPart(path)
	if err != nil {
		return err
	}
	defer f.Close()
	defer recoverSchema(path, &err)
	r := parquet.NewGenericReader[T](pf)
	defer r.Close()
	return readBatches(ctx, path, r.Read, fn)
}

// RowGroup is one row group of a committed part: the unit of work that
// readers running in parallel share out. The writer bounds its rows
// (PartOptions.GroupRows), so reading one holds a bounded number of rows.
type RowGroup struct {
	Path  string // the part file
	Index int    // the row group's position in the part
	Rows  int64
	First bool // the part's first row group
	Last  bool // the part's last row group

	part *sharedPart // set by ListTable
}

// Table is the row groups of one table of a scan directory (its committed
// parts), in order, for readers that share them out among goroutines:
// reading them one after the other reads the table as ReadAll does. A
// part's footer is read once for all its row groups, when the first is
// read, and the file is closed when the last has been read, so that only
// the parts being read are open. Close closes what a reader that stopped
// early left open.
type Table struct {
	Groups []RowGroup
	parts  []*sharedPart
}

// sharedPart is one part file opened for all of its row groups.
type sharedPart struct {
	path string
	mu   sync.Mutex
	f    *os.File
	pf   *parquet.File
	left int // row groups not read yet
}

// ListTable lists the row groups of dir's committed parts. It reads each
// part's footer, and keeps none open.
func ListTable(dir string) (*Table, error) {
	parts, err := Parts(dir)
	if err != nil {
		return nil, err
	}
	t := &Table{}
	for _, path := range parts {
		f, pf, err := openPart(path)
		if err != nil {
			return nil, err
		}
		rgs := pf.RowGroups()
		sp := &sharedPart{path: path, left: len(rgs)}
		t.parts = append(t.parts, sp)
		for i, rg := range rgs {
			t.Groups = append(t.Groups, RowGroup{Path: path, Index: i, Rows: rg.NumRows(), First: i == 0,
				Last: i == len(rgs)-1, part: sp})
		}
		f.Close()
	}
	return t, nil
}

// Close closes the parts still open.
func (t *Table) Close() error {
	var errs []error
	for _, p := range t.parts {
		p.mu.Lock()
		if p.f != nil {
			errs = append(errs, p.f.Close())
			p.f, p.pf = nil, nil
		}
		p.left = 0
		p.mu.Unlock()
	}
	return errors.Join(errs...)
}

// open returns the part's file, opening it for the first of its row groups.
func (p *sharedPart) open() (*parquet.File, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pf == nil {
		if p.left == 0 {
			return nil, fmt.Errorf("reading %s: part closed", p.path)
		}
		f, pf, err := openPart(p.path)
		if err != nil {
			return nil, err
		}
		p.f, p.pf = f, pf
	}
	return p.pf, nil
}

// done is called once per row group read; the last closes the file.
func (p *sharedPart) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.left--; p.left == 0 && p.f != nil {
		p.f.Close() // read only: nothing to lose
		p.f, p.pf = nil, nil
	}
}

// ReadRowGroup streams one row group of a Table in batches, as ReadBatches
// streams a file; goroutines may read row groups of one Table at the same
// time. T may name only some of the part's columns (by their parquet tags,
// with the same types): the others are not read (project), which is what
// makes a reader that needs a few columns of a wide table fast. A T of
// plain string, bool and integer columns is filled without parquet-go's
// row reconstruction (flat.go).
func ReadRowGroup[T any](ctx context.Context, g RowGroup, fn func([]T) error) error {
	return withRowGroup(g, func(rg parquet.RowGroup) error {
		p := project[T](rg)
		if f, ok := flatFields[T](p); ok {
			rows := p.Rows()
			defer rows.Close()
			return readBatches(ctx, g.Path, flatReader[T](g.Path, rows, f), fn)
		}
		r := parquet.NewGenericRowGroupReader[T](p)
		defer r.Close()
		return readBatches(ctx, g.Path, r.Read, fn)
	})
}

// withRowGroup calls read with row group g, its part open.
func withRowGroup(g RowGroup, read func(parquet.RowGroup) error) (err error) {
	if g.part == nil {
		return fmt.Errorf("reading %s: row group %d not listed by ListTable", g.Path, g.Index)
	}
	pf, err := g.part.open()
	if err != nil {
		return err
	}
	defer g.part.done()
	defer recoverSchema(g.Path, &err)
	rgs := pf.RowGroups()
	if g.Index >= len(rgs) {
		return fmt.Errorf("reading %s: no row group %d", g.Path, g.Index)
	}
	return read(rgs[g.Index])
}

// project returns the columns of rg that T names, as a row group whose
// schema is T's, when every column of T is in rg with the same type and
// repetition; otherwise rg itself, which parquet-go converts row by row.
//
// parquet-go's own conversion (what a reader of a narrower type gets)
// decodes every column of the file and then drops the ones T does not
// name: reading the probes table's 23 analyzed columns of 47 decoded all
// 47. The projection reads only T's columns, and since its schema is T's,
// the reader has nothing left to convert. A column T names that rg lacks
// (an older schema) or types differently takes the converting path, which
// fills in or converts values as before.
func project[T any](rg parquet.RowGroup) parquet.RowGroup {
	schema := parquet.SchemaOf(new(T))
	file := rg.Schema()
	for _, f := range schema.Fields() {
		g, ok := fieldNamed(file, f.Name())
		if !ok || !parquet.EqualNodes(f, g) {
			return rg
		}
	}
	conv, err := parquet.Convert(schema, file)
	if err != nil {
		return rg // the converting path reports it
	}
	return projected{parquet.ConvertRowGroup(rg, conv)}
}

func fieldNamed(n parquet.Node, name string) (parquet.Field, bool) {
	for _, f := range n.Fields() {
		if f.Name() == name {
			return f, true
		}
	}
	return nil, false
}

// projected is a row group converted by parquet.ConvertRowGroup whose
// columns need no conversion: its column chunks are the file's, renumbered
// in T's order, and its rows are read from them alone, where a converted
// row group reads the source's rows, every column, and converts them.
type projected struct {
	parquet.RowGroup
}

func (p projected) Rows() parquet.Rows {
	return parquet.NewRowGroupRowReader(p.RowGroup)
}

// openPart opens a part without its page index and bloom filters, which no
// reader here uses.
func openPart(path string) (*os.File, *parquet.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("opening part: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("opening part: %w", err)
	}
	pf, err := parquet.OpenFile(f, st.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return f, pf, nil
}

// recoverSchema turns parquet-go's panic on a schema that does not fit the
// row type into an error.
func recoverSchema(path string, err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("reading %s: incompatible schema: %v", path, r)
	}
}

// readBatches calls fn with the rows read, a batch at a time, until read
// returns io.EOF.
func readBatches[T any](ctx context.Context, path string, read func([]T) (int, error), fn func([]T) error) error {
	buf := make([]T, readBatch)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		clear(buf)
		n, rerr := read(buf)
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
