package gateway

import (
	"context"
	"sync"
)

// memoryBudget is limits.memory: the bytes that messages being processed
// may take at once. Each pass over a message (the policy step that seals or
// opens it) reserves what it may need before it starts, and waits while the
// budget is spent, so that however large or hostile the messages are, the
// gateway's heap stays within the budget plus a fixed overhead instead of
// growing until the kernel kills it (and the message that killed it is
// replayed from the spool at every start).
//
// A reservation larger than the whole budget is cut to the budget: such a
// message runs alone rather than never.
type memoryBudget struct {
	mu    sync.Mutex
	cond  *sync.Cond
	total int64
	used  int64
}

func newMemoryBudget(total int64) *memoryBudget {
	b := &memoryBudget{total: total}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// clamp bounds a reservation by the whole budget.
func (b *memoryBudget) clamp(n int64) int64 {
	return max(0, min(n, b.total))
}

// tryAcquire reserves n bytes if they are free now and returns how many
// were reserved (to give back with release), or false.
func (b *memoryBudget) tryAcquire(n int64) (int64, bool) {
	n = b.clamp(n)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.total {
		return 0, false
	}
	b.used += n
	return n, true
}

// acquire reserves n bytes, waiting until they are free or ctx ends, and
// returns how many were reserved.
func (b *memoryBudget) acquire(ctx context.Context, n int64) (int64, error) {
	n = b.clamp(n)
	stop := context.AfterFunc(ctx, func() {
		b.mu.Lock()
		b.cond.Broadcast()
		b.mu.Unlock()
	})
	defer stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.used+n > b.total {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		b.cond.Wait()
	}
	b.used += n
	return n, nil
}

// release gives back a reservation.
func (b *memoryBudget) release(n int64) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	b.cond.Broadcast()
	b.mu.Unlock()
}

// resize changes the budget (a reload); reservations already made stay.
func (b *memoryBudget) resize(total int64) {
	b.mu.Lock()
	b.total = total
	b.cond.Broadcast()
	b.mu.Unlock()
}

func (b *memoryBudget) size() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.total
}

// inUse reports the bytes reserved now (for the metrics).
func (b *memoryBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// passMemory is what one pass over a message of size bytes may hold at
// once, from the bounds internal/smime documents: the original (read whole,
// since AES-GCM is one-shot), a working copy that sealing encrypts in place
// or the decoded body that opening decrypts in place, the result (a sealed
// copy is 78/57 of its input as base64 lines; an opened message whose line
// ends are normalised may be up to twice its plaintext), and the parser's
// bounded overhead. Four times the message and a mebibyte covers each case
// with room; bench/memory measures the real peaks against it.
func passMemory(size int64) int64 {
	return 4*size + 1<<20
}
