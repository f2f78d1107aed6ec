package courier

import (
	"context"
	"sync"
	"time"
)

// pool keeps the connection limits and the idle sessions kept for reuse.
// A slot is taken before a connection is dialled and given back when it is
// closed, so the limits count connections being opened, in use and idle.
// When the total is reached and another destination has an idle session,
// that one is closed to make room, so that idle connections never starve a
// destination that has work.
type pool struct {
	maxTotal, maxPerDest int
	idleTimeout          time.Duration

	mu     sync.Mutex
	total  int
	dests  map[string]*destination
	wake   chan struct{} // closed and replaced whenever a slot or session frees up
	closed bool
}

type destination struct {
	open int
	idle []*session // most recently used last
}

func newPool(maxTotal, maxPerDest int, idleTimeout time.Duration) *pool {
	return &pool{maxTotal: maxTotal, maxPerDest: maxPerDest, idleTimeout: idleTimeout,
		dests: map[string]*destination{}, wake: make(chan struct{})}
}

func (p *pool) dest(key string) *destination {
	d := p.dests[key]
	if d == nil {
		d = &destination{}
		p.dests[key] = d
	}
	return d
}

// acquire returns an idle session for key, or nil with a slot reserved for
// a new connection that the caller must dial (and give back with release
// or unreserve). It waits while the limits are reached.
func (p *pool) acquire(ctx context.Context, key string) (*session, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, errClosed
		}
		d := p.dest(key)
		if n := len(d.idle); n > 0 {
			s := d.idle[n-1]
			d.idle = d.idle[:n-1]
			p.mu.Unlock()
			// Whoever takes a session out of the idle list under the lock
			// owns it; a timer that fires now finds nothing to expire.
			s.idle.Stop()
			return s, nil
		}
		var victim *session
		if d.open < p.maxPerDest && p.total >= p.maxTotal {
			victim = p.evictLocked(key)
		}
		if d.open < p.maxPerDest && p.total < p.maxTotal {
			d.open++
			p.total++
			p.mu.Unlock()
			if victim != nil {
				// Another destination's server must not hold this one's
				// delivery for the reply to QUIT.
				go victim.quit()
			}
			return nil, nil
		}
		wake := p.wake
		p.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// evictLocked takes the oldest idle session of another destination out of
// the pool and frees its slot; the caller closes it.
func (p *pool) evictLocked(except string) *session {
	var victim *session
	var from *destination
	for key, d := range p.dests {
		if key == except || len(d.idle) == 0 {
			continue
		}
		if victim == nil || d.idle[0].opened.Before(victim.opened) {
			victim, from = d.idle[0], d
		}
	}
	if victim == nil {
		return nil
	}
	victim.idle.Stop()
	from.idle = from.idle[1:]
	from.open--
	p.total--
	return victim
}

// unreserve gives back a slot that acquire reserved but that no session
// came of.
func (p *pool) unreserve(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.freeLocked(key)
}

func (p *pool) freeLocked(key string) {
	d := p.dest(key)
	d.open--
	p.total--
	if d.open == 0 && len(d.idle) == 0 {
		delete(p.dests, key)
	}
	close(p.wake)
	p.wake = make(chan struct{})
}

// release takes a session back after a transaction: kept for reuse when
// reusable, closed otherwise.
func (p *pool) release(s *session, reusable bool, maxReuse time.Duration) {
	p.mu.Lock()
	if !reusable || p.closed || time.Since(s.opened) >= maxReuse {
		p.freeLocked(s.key)
		p.mu.Unlock()
		if reusable {
			// The outcome is known; the reply to QUIT decides nothing, so
			// the delivery does not wait for it (a relay-first client is
			// waiting for the delivery).
			go s.quit()
		} else {
			_ = s.conn.Close()
		}
		return
	}
	d := p.dest(s.key)
	// One timer per session, re-armed at each release rather than made
	// anew: whoever takes the session from the idle list stops it, and a
	// firing that loses that race finds nothing to expire.
	if s.idle == nil {
		s.idle = time.AfterFunc(p.idleTimeout, func() { p.expire(s) })
	} else {
		s.idle.Reset(p.idleTimeout)
	}
	d.idle = append(d.idle, s)
	close(p.wake)
	p.wake = make(chan struct{})
	p.mu.Unlock()
}

// expire closes a session that stayed idle for the idle timeout.
func (p *pool) expire(s *session) {
	p.mu.Lock()
	d := p.dests[s.key]
	found := false
	if d != nil {
		for i, is := range d.idle {
			if is == s {
				d.idle = append(d.idle[:i], d.idle[i+1:]...)
				found = true
				break
			}
		}
	}
	if found {
		p.freeLocked(s.key)
	}
	p.mu.Unlock()
	if found {
		s.quit()
	}
}

// close ends every idle session and refuses new work.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	var idle []*session
	for key, d := range p.dests {
		for _, s := range d.idle {
			s.idle.Stop()
			idle = append(idle, s)
			d.open--
			p.total--
		}
		d.idle = nil
		if d.open <= 0 {
			delete(p.dests, key)
		}
	}
	close(p.wake)
	p.wake = make(chan struct{})
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range idle {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.quit()
		}()
	}
	wg.Wait()
}

// dropIdle closes every idle session of key: one of them was found closed
// by the server, and the others most likely were too.
func (p *pool) dropIdle(key string) {
	p.mu.Lock()
	d := p.dests[key]
	if d == nil {
		p.mu.Unlock()
		return
	}
	idle := d.idle
	d.idle = nil
	for _, s := range idle {
		s.idle.Stop()
		p.freeLocked(key)
	}
	p.mu.Unlock()
	for _, s := range idle {
		_ = s.conn.Close()
	}
}
