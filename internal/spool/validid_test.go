package spool

import "testing"

func TestValidID(t *testing.T) {
	t.Parallel()
	if id := NewID(); !ValidID(id) {
		t.Errorf("ValidID(%q) = false for a new id", id)
	}
	for _, bad := range []string{"", "../queue/01k1af74tdq9vt0xrge2", "01k1af74tdq9vt0xrge", "01k1af74tdq9vt0xrge2x", "01K1AF74TDQ9VT0XRGE2", "01k1af74tdq9vt0xrg%2", "01k1af74tdq9vt0xrg.2", "01k1af74tdq9vt0xrg/2"} {
		if ValidID(bad) {
			t.Errorf("ValidID(%q) = true", bad)
		}
	}
}
