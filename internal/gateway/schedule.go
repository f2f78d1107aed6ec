package gateway

import (
	"context"
	"sync"
	"time"
)

// scheduler is the in-memory index of the spool: for every queued message
// the time it next needs work. The spool stays the single source of truth
// (the index is rebuilt from it at start-up); the scheduler only makes sure
// that each message is worked on by one worker at a time, and when.
type scheduler struct {
	mu    sync.Mutex
	due   map[string]time.Time // waiting messages and when they are due
	busy  map[string]bool      // messages a worker holds now
	again map[string]bool      // busy messages asked for while busy: run once more
	force map[string]bool      // flushed: attempt every pending recipient, due or not
	ready []string             // due now, in arrival order
	cond  *sync.Cond
	stop  bool
	// waiting counts callers of exclusive waiting for a busy message.
	waiting int
}

func newScheduler() *scheduler {
	s := &scheduler{due: map[string]time.Time{}, busy: map[string]bool{}, again: map[string]bool{}, force: map[string]bool{}}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// schedule asks for work on id at time at (now or earlier: at once).
func (s *scheduler) schedule(id string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy[id] {
		if !at.After(time.Now()) {
			s.again[id] = true
		}
		return
	}
	if cur, ok := s.due[id]; ok && !at.Before(cur) {
		return
	}
	if !at.After(time.Now()) {
		delete(s.due, id)
		s.markReady(id)
		return
	}
	s.due[id] = at
}

// markReady puts id on the ready list; s.mu is held.
func (s *scheduler) markReady(id string) {
	for _, r := range s.ready {
		if r == id {
			return
		}
	}
	s.ready = append(s.ready, id)
	s.cond.Signal()
}

// next blocks until a message is ready and returns it, marked busy; ok is
// false once the scheduler is stopped. force says the operator flushed the
// queue: recipients whose retry time has not come are attempted too.
func (s *scheduler) next() (id string, force, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.ready) == 0 && !s.stop {
		s.cond.Wait()
	}
	if s.stop {
		return "", false, false
	}
	id = s.ready[0]
	s.ready = s.ready[1:]
	s.busy[id] = true
	force = s.force[id]
	delete(s.force, id)
	return id, force, true
}

// done releases id after a worker's pass; next is when it needs work again
// (the zero time: never, the message has left the queue).
func (s *scheduler) done(id string, next time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.busy, id)
	if s.waiting > 0 {
		s.cond.Broadcast() // an operator's exclusive call may be waiting for id
	}
	if s.again[id] {
		delete(s.again, id)
		if !next.IsZero() {
			next = time.Now()
		}
	}
	if next.IsZero() {
		delete(s.due, id)
		delete(s.force, id)
		return
	}
	if !next.After(time.Now()) {
		s.markReady(id)
		return
	}
	s.due[id] = next
}

// exclusive runs fn while no worker holds id (an operator's change to a
// queued message must not race a worker's pass over it), then makes id due
// now so that a worker sees the change.
func (s *scheduler) exclusive(id string, fn func()) {
	s.mu.Lock()
	s.waiting++
	for s.busy[id] {
		s.cond.Wait()
	}
	s.waiting--
	s.busy[id] = true
	s.mu.Unlock()
	defer s.done(id, time.Now())
	fn()
}

// forget drops id from the index (deleted by the operator).
func (s *scheduler) forget(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.due, id)
	delete(s.force, id)
	for i, r := range s.ready {
		if r == id {
			s.ready = append(s.ready[:i], s.ready[i+1:]...)
			break
		}
	}
}

// flush makes every waiting message due now (queue flush).
func (s *scheduler) flush() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.due)
	for id := range s.due {
		delete(s.due, id)
		s.force[id] = true
		s.markReady(id)
	}
	for _, id := range s.ready {
		s.force[id] = true
	}
	for id := range s.busy {
		s.again[id] = true
		s.force[id] = true
	}
	return n
}

// pending returns how many messages the scheduler knows of.
func (s *scheduler) pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.due) + len(s.ready) + len(s.busy)
}

// tick moves every message whose time has come to the ready list; it runs
// once a second until ctx ends.
func (s *scheduler) tick(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.mu.Lock()
			for id, at := range s.due {
				if !at.After(now) {
					delete(s.due, id)
					s.markReady(id)
				}
			}
			s.mu.Unlock()
		}
	}
}

// shutdown wakes every waiting worker and makes next return false.
func (s *scheduler) shutdown() {
	s.mu.Lock()
	s.stop = true
	s.cond.Broadcast()
	s.mu.Unlock()
}
