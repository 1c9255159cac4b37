package clock

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSleep(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		d       time.Duration
		want    error
		atLeast time.Duration // the sleep took at least this long
		atMost  time.Duration // and returned within this
	}{
		{"elapses", context.Background(), 30 * time.Millisecond, nil, 30 * time.Millisecond, 5 * time.Second},
		{"zero", context.Background(), 0, nil, 0, time.Second},
		{"negative", context.Background(), -time.Second, nil, 0, time.Second},
		{"already canceled", canceled, time.Hour, context.Canceled, 0, time.Second},
		{"canceled and zero", canceled, 0, context.Canceled, 0, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			err := Sleep(tt.ctx, tt.d)
			took := time.Since(start)
			if !errors.Is(err, tt.want) || (err == nil) != (tt.want == nil) {
				t.Errorf("Sleep = %v, want %v", err, tt.want)
			}
			if took < tt.atLeast || took > tt.atMost {
				t.Errorf("Sleep took %v, want between %v and %v", took, tt.atLeast, tt.atMost)
			}
		})
	}
}

// A context that ends during the sleep ends it: an interrupted scan does
// not wait out a back-off.
func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := Sleep(ctx, time.Hour)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Sleep = %v, want %v", err, context.DeadlineExceeded)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Sleep returned after %v, not when its context ended", took)
	}
}
