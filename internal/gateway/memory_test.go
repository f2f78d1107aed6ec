package gateway

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestMemoryBudget(t *testing.T) {
	t.Parallel()
	b := newMemoryBudget(100)
	n, ok := b.tryAcquire(60)
	if !ok || n != 60 {
		t.Fatalf("tryAcquire(60) = %d, %v", n, ok)
	}
	if _, ok := b.tryAcquire(50); ok {
		t.Fatal("tryAcquire(50) succeeded with 40 free")
	}
	// A reservation beyond the whole budget is cut to it, so it can run
	// alone instead of never.
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		n, err := b.acquire(context.Background(), 1000)
		if err != nil {
			t.Error(err)
		}
		got.Store(n)
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("acquire returned while 60 of 100 bytes were reserved")
	case <-time.After(50 * time.Millisecond):
	}
	b.release(60)
	<-done
	if got.Load() != 100 || b.inUse() != 100 {
		t.Fatalf("acquire(1000) reserved %d, in use %d; want the whole budget", got.Load(), b.inUse())
	}
	// A waiting acquire ends with its context.
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := b.acquire(ctx, 1)
		errc <- err
	}()
	cancel()
	if err := <-errc; err == nil {
		t.Fatal("acquire did not end with its context")
	}
	b.release(100)
	if b.inUse() != 0 {
		t.Fatalf("in use %d after every release", b.inUse())
	}
}
