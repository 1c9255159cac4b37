package analyze

import (
	"context"
	"fmt"

	"github.com/mxsurvey/mxsurvey/datasets/store"
	"github.com/mxsurvey/mxsurvey/datasets/survey"
	"github.com/mxsurvey/mxsurvey/internal/ordered"
)

// runPass reads one table of every scan directory, row group by row group:
// work runs on a.workers goroutines, each row group on one, and fold gets
// their results on the calling goroutine in the order of a sequential read
// (directories as given, parts in order, row groups in file order) and
// returns the rows it read. Whatever fold builds is therefore what a
// sequential analysis builds, whatever the scheduling. name is the table's
// (survey.ProbesTable, ...), table its directory within a scan directory
// (survey.ProbesDir, ...).
//
// At most 2 x workers row groups are decoded ahead of the fold, which
// bounds memory by the row group size the writer chose.
func runPass[R any](ctx context.Context, a *analyzer, name string, table func(dir string) string,
	work func(ctx context.Context, g store.RowGroup) (R, error), fold func(g store.RowGroup, r R) (int, error)) error {
	var groups []store.RowGroup
	for _, dir := range a.opts.Dirs {
		t, err := store.ListTable(table(dir))
		if err != nil {
			return err
		}
		defer t.Close()
		if len(t.Groups) == 0 {
			a.log.Warn("no "+name+" parts", "dir", dir)
		}
		groups = append(groups, t.Groups...)
	}
	p := newProgress(a.opts.Progress, name)
	err := ordered.Run(ctx, a.workers, 2*a.workers, len(groups), func(ctx context.Context, i int) (R, error) {
		r, err := work(ctx, groups[i])
		if err != nil {
			err = fmt.Errorf("analyzing %s row group %d: %w", groups[i].Path, groups[i].Index, err)
		}
		return r, err
	}, func(i int, r R) (bool, error) {
		n, err := fold(groups[i], r)
		p.add(n)
		return true, err
	})
	if err != nil {
		return err
	}
	p.done()
	return nil
}

// Rows counts the probe and mx rows of the scan directories from their
// Parquet footers, without reading a row: what the command sizes the
// analyzer's heap floor by.
func Rows(dirs []string) (int64, error) {
	var n int64
	for _, dir := range dirs {
		for _, table := range []func(string) string{survey.ProbesDir, survey.MXDir} {
			t, err := store.ListTable(table(dir))
			if err != nil {
				return 0, err
			}
			for _, g := range t.Groups {
				n += g.Rows
			}
			t.Close() // read-only: a close error cannot lose data
		}
	}
	return n, nil
}
