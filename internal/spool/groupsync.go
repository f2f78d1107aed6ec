package spool

import "sync"

// dirSyncer is what the spool needs of its directory sync: the grouped one
// below, or in the benchmarks a reference that syncs once per caller.
type dirSyncer interface {
	Sync() error
	Rounds() uint64
}

// syncGroup runs one sync function on behalf of many callers. A caller that
// arrives while a sync is running waits for the next one, which then covers
// every caller that arrived in the meantime: N sessions committing at once
// cost about two syncs instead of N. A caller never joins a sync that has
// already started, because the rename it wants made durable may have
// happened after that sync began.
type syncGroup struct {
	fn func() error

	mu      sync.Mutex
	cond    *sync.Cond
	running bool
	next    *syncRound // the round that the next sync will cover
	rounds  uint64     // syncs run, for tests and benchmarks
}

type syncRound struct {
	finished bool
	err      error
}

func newSyncGroup(fn func() error) *syncGroup {
	g := &syncGroup{fn: fn}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// Sync returns once a call of fn that started after Sync was called has
// finished, with that call's error.
func (g *syncGroup) Sync() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.next == nil {
		g.next = &syncRound{}
	}
	r := g.next
	for !r.finished {
		if !g.running && g.next == r {
			// Nobody is syncing and our round has not started: lead it.
			g.running = true
			g.next = nil
			g.mu.Unlock()
			err := g.fn()
			g.mu.Lock()
			r.err, r.finished = err, true
			g.running = false
			g.rounds++
			g.cond.Broadcast()
			break
		}
		g.cond.Wait()
	}
	return r.err
}

// Rounds returns how many syncs have run.
func (g *syncGroup) Rounds() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.rounds
}
