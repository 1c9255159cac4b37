package workers

import (
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Go never waits for another task: tasks that need each other to run at
// the same time all finish, and idle workers are reused rather than added.
func TestPool(t *testing.T) {
	h := New(2 * time.Second)
	defer h.Stop()
	const n = 20
	arrived := make(chan struct{}, n)
	release := make(chan struct{})
	done := make(chan struct{}, n)
	for range n {
		h.Go(func() {
			arrived <- struct{}{}
			<-release // every task waits until all have started
			done <- struct{}{}
		})
	}
	for range n {
		select {
		case <-arrived:
		case <-time.After(5 * time.Second):
			t.Fatal("a task did not start while others were busy")
		}
	}
	close(release)
	for range n {
		<-done
	}
	before := runtime.NumGoroutine()
	for range 100 {
		ran := make(chan struct{})
		h.Go(func() { close(ran) })
		<-ran
		time.Sleep(time.Millisecond) // let the helper go idle again
	}
	if after := runtime.NumGoroutine(); after > before+1 {
		t.Errorf("%d goroutines after 100 sequential tasks, %d before: idle workers were not reused", after, before)
	}
	h.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before-n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before-n {
		t.Errorf("%d goroutines after stop, want the %d idle workers gone (%d before)", g, n, before)
	}
}

// Run hands back fn's error, and its panic to the caller's goroutine,
// where the caller's recover sees it.
func TestRun(t *testing.T) {
	p := New(time.Second)
	defer p.Stop()
	want := errors.New("handshake failed")
	if err := p.Run(func() error { return want }); err != want {
		t.Fatalf("Run returned %v, want %v", err, want)
	}
	if err := p.Run(func() error { return nil }); err != nil {
		t.Fatalf("Run returned %v, want nil", err)
	}
	got := func() (v any) {
		defer func() { v = recover() }()
		_ = p.Run(func() error { panic("bad certificate") })
		return nil
	}()
	if s, _ := got.(string); !strings.Contains(s, "bad certificate") || !strings.Contains(s, "goroutine") {
		t.Fatalf("recovered %q, want the panic value and its stack", got)
	}
}
