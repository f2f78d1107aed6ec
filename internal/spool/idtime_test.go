package spool

import (
	"testing"
	"time"
)

// TestIDTime: an id made now tells the time it was made, to the
// microsecond; what is not an id tells nothing.
func TestIDTime(t *testing.T) {
	before := time.Now().Truncate(time.Microsecond)
	id := NewID()
	after := time.Now()
	got, ok := IDTime(id)
	if !ok || got.Before(before) || got.After(after) {
		t.Errorf("IDTime(%s) = %v %v, want between %v and %v", id, got, ok, before, after)
	}
	for _, bad := range []string{"", "x", "01K1J6E46T8T279BFF8W", "01k1j6e46t8t279bff8", "01k1j6e46i8t279bff8w"} {
		if _, ok := IDTime(bad); ok {
			t.Errorf("IDTime(%q) ok", bad)
		}
	}
}
