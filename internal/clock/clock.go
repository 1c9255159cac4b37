// Package clock holds the scanner's one context-aware sleep. It is a leaf:
// resolvers, cluster workers and the lab all wait with it, so it imports
// nothing of the module and never pulls one of them into another.
package clock

import (
	"context"
	"time"
)

// Sleep waits for d or until ctx ends, whichever comes first, and returns
// ctx.Err() in the second case. Back-offs and polling loops use it instead
// of time.Sleep so that an interrupted scan stops at once rather than after
// its longest pause. d <= 0 returns at once (nil, or ctx.Err() if ctx has
// already ended).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
