package gateway

import (
	"testing"
	"time"
)

func TestSchedulerFlushMakesFutureWorkReadyAndForced(t *testing.T) {
	s := newScheduler()
	s.schedule("a", time.Now().Add(time.Hour))
	s.schedule("b", time.Now().Add(time.Hour))
	if n := s.flush(); n != 2 {
		t.Fatalf("flush scheduled %d, want 2", n)
	}
	got := map[string]bool{}
	for range 2 {
		id, force, ok := s.next()
		if !ok || !force {
			t.Fatalf("next: %q force=%v ok=%v", id, force, ok)
		}
		got[id] = true
		s.done(id, time.Time{})
	}
	if !got["a"] || !got["b"] {
		t.Errorf("got %v", got)
	}
	if s.pending() != 0 {
		t.Errorf("pending %d after done", s.pending())
	}
}

func TestSchedulerOneWorkerPerMessage(t *testing.T) {
	s := newScheduler()
	s.schedule("a", time.Now())
	id, _, _ := s.next()
	s.schedule("a", time.Now()) // asked again while busy
	s.done(id, time.Now().Add(time.Hour))
	id2, _, ok := s.next()
	if !ok || id2 != "a" {
		t.Fatalf("a message asked for while busy must run once more, got %q", id2)
	}
}
