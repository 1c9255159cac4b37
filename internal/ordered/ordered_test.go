package ordered

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// work sleeps a random while so that pieces finish out of order.
func slowSquare(_ context.Context, i int) (int, error) {
	time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
	return i * i, nil
}

func TestRunInOrder(t *testing.T) {
	for _, tc := range []struct{ workers, ahead, n int }{{1, 1, 50}, {4, 4, 200}, {8, 2, 200}, {3, 16, 0}} {
		var got []int
		err := Run(context.Background(), tc.workers, tc.ahead, tc.n, slowSquare, func(i, r int) (bool, error) {
			if i != len(got) {
				t.Fatalf("consumed %d after %d results", i, len(got))
			}
			got = append(got, r)
			return true, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != tc.n {
			t.Fatalf("%+v: %d results", tc, len(got))
		}
		for i, r := range got {
			if r != i*i {
				t.Fatalf("%+v: result %d = %d", tc, i, r)
			}
		}
	}
}

func TestRunStops(t *testing.T) {
	before := runtime.NumGoroutine()
	var started atomic.Int64
	work := func(ctx context.Context, i int) (int, error) {
		started.Add(1)
		return slowSquare(ctx, i)
	}
	// Unbounded: the consumer ends it.
	seen := 0
	err := Run(context.Background(), 4, 8, -1, work, func(i, r int) (bool, error) {
		seen++
		return i < 99, nil
	})
	if err != nil || seen != 100 {
		t.Fatalf("err %v, seen %d", err, seen)
	}
	// The workers ran at most `ahead` pieces (and one per worker in hand) beyond the consumer.
	if n := started.Load(); n > 100+8+4 {
		t.Errorf("%d pieces started for 100 consumed", n)
	}

	boom := errors.New("boom")
	err = Run(context.Background(), 4, 4, 100, func(ctx context.Context, i int) (int, error) {
		if i == 37 {
			return 0, boom
		}
		return slowSquare(ctx, i)
	}, func(i, r int) (bool, error) {
		if i >= 37 {
			t.Errorf("consumed %d after the failed piece", i)
		}
		return true, nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("work error: %v", err)
	}
	err = Run(context.Background(), 2, 2, 100, slowSquare, func(i, r int) (bool, error) {
		if i == 5 {
			return true, boom
		}
		return true, nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("consume error: %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	err = Run(ctx, 2, 2, -1, slowSquare, func(i, r int) (bool, error) {
		if i == 10 {
			cancel()
		}
		return true, nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: %v", err)
	}
	// Every goroutine Run started has returned.
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("%d goroutines left, %d before", n, before)
	}
}
