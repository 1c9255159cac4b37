// Package ordered runs independent pieces of work on several goroutines and
// hands their results to one consumer in the order the pieces were given.
// The consumer sees exactly what a sequential loop would have produced, so
// whatever it folds the results into (counts, a map where the first entry
// wins, an export file) comes out the same, byte for byte, whatever the
// scheduling; only the work itself runs in parallel.
package ordered

import (
	"context"
	"sync"
)

// Run calls work(i) for i = 0, 1, ... n-1 (for ever when n < 0) on workers
// goroutines, and consume(i, result) on the calling goroutine in order of i.
// At most ahead results wait for the consumer beyond the one it is given,
// which bounds the memory held: results are produced no faster than they
// are consumed.
//
// Run stops at the first error from work or consume, when consume returns
// false, or when ctx is done; it returns that error (nil when consume
// stopped it or all n were consumed) once every worker has returned.
func Run[R any](ctx context.Context, workers, ahead, n int, work func(ctx context.Context, i int) (R, error),
	consume func(i int, r R) (bool, error)) error {
	workers = max(workers, 1)
	ahead = max(ahead, workers)
	ctx, cancel := context.WithCancel(ctx)
	type result struct {
		r   R
		err error
	}
	type job struct {
		i    int
		done chan result
	}
	jobs := make(chan job)
	// order holds the pieces handed out and not yet consumed, in order: its
	// capacity is how far the workers may run ahead of the consumer.
	order := make(chan job, ahead)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(jobs)
		defer close(order)
		for i := 0; n < 0 || i < n; i++ {
			j := job{i: i, done: make(chan result, 1)}
			select {
			case order <- j:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- j:
			case <-ctx.Done():
				return
			}
		}
	})
	for range workers {
		wg.Go(func() {
			for j := range jobs {
				r, err := work(ctx, j.i)
				j.done <- result{r, err} // buffered: never blocks
			}
		})
	}
	defer func() {
		cancel() // before waiting: a worker may be blocked handing out work
		wg.Wait()
	}()
	for {
		var j job
		var ok bool
		select {
		case j, ok = <-order:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !ok {
			return nil
		}
		var res result
		select {
		case res = <-j.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if res.err != nil {
			return res.err
		}
		more, err := consume(j.i, res.r)
		if err != nil || !more {
			return err
		}
	}
}
