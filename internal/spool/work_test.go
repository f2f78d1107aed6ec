package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// childDieInWork = "DIR:ID" makes this test binary open the spool in DIR,
// call BeginWork(ID), print its result and die as a gateway would on a
// poison message.
const childDieInWork = "SMIMEGATE_SPOOL_TEST_DIE_IN_WORK"

func init() {
	if v := os.Getenv(childDieInWork); v != "" {
		dir, id, _ := strings.Cut(v, ":")
		s, err := Open(dir, nil)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		n, err := s.BeginWork(id)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		fmt.Println(n)
		panic("the parser of this message blew up")
	}
}

// TestWorkMarkerSurvivesCrash: a child process begins work on a message and
// dies (a panic, as a parser bug would); the next start sees the count,
// through Open's recovery, and EndWork clears it.
func TestWorkMarkerSurvivesCrash(t *testing.T) {
	// Not parallel: between its fork and its exec a child holds every
	// descriptor of this process, the spool locks of the other tests among
	// them, and a test that reopened its spool then would skip recovery.
	dir := t.TempDir()
	s, _ := openTest(t, dir)
	env := commitMessage(t, s, "poison\r\n")
	s.Close()
	for want := range 3 {
		out, logs, code := runChild(t, fmt.Sprintf("%s=%s:%s", childDieInWork, dir, env.ID))
		if code == 0 || !strings.Contains(logs, "blew up") {
			t.Fatalf("the child did not die: exit %d\n%s", code, logs)
		}
		if got := strings.TrimSpace(out); got != strconv.Itoa(want) {
			t.Fatalf("start %d: BeginWork returned %q, want %d\n%s", want+1, got, want, logs)
		}
	}
	s2, _ := openTest(t, dir)
	if n, err := s2.BeginWork(env.ID); err != nil || n != 3 {
		t.Fatalf("BeginWork after three deaths = %d, %v; want 3", n, err)
	}
	s2.EndWork(env.ID)
	if n, err := s2.BeginWork(env.ID); err != nil || n != 0 {
		t.Fatalf("BeginWork after EndWork = %d, %v; want 0", n, err)
	}
	s2.EndWork(env.ID)
	if m := markersOnDisk(t, dir); len(m) != 0 {
		t.Fatalf("markers after EndWork: %v", m)
	}
}

// markersOnDisk reads the work file as the next Open would: id -> starts.
func markersOnDisk(t *testing.T, dir string) map[string]int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "work"))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int{}
	for len(b) >= workSlotSize {
		id, starts, free, ok := decodeWorkSlot(b[:workSlotSize])
		if !ok {
			t.Fatalf("damaged slot %q in the work file", b[:workSlotSize])
		}
		if !free {
			if _, dup := m[id]; dup {
				t.Fatalf("two slots for %s", id)
			}
			m[id] = starts
		}
		b = b[workSlotSize:]
	}
	if len(b) != 0 {
		t.Fatalf("work file ends in a partial slot %q", b)
	}
	return m
}

func TestWorkMarkers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := openTest(t, dir)
	begin := func(id string, want int) {
		t.Helper()
		if n, err := s.BeginWork(id); err != nil || n != want {
			t.Fatalf("BeginWork(%s) = %d, %v; want %d", id, n, err, want)
		}
	}

	// Remove, RemoveDone and Quarantine clear the marker.
	removed := commitMessage(t, s, "delivered\r\n")
	begin(removed.ID, 0)
	begin(removed.ID, 1)
	if err := s.Remove(removed.ID); err != nil {
		t.Fatal(err)
	}
	done := commitMessage(t, s, "delivered\r\n")
	begin(done.ID, 0)
	if err := s.RemoveDone(done); err != nil {
		t.Fatal(err)
	}
	quar := commitMessage(t, s, "poison\r\n")
	begin(quar.ID, 0)
	begin(quar.ID, 1)
	begin(quar.ID, 2)
	if err := s.Quarantine(quar, "processing stopped the gateway twice"); err != nil {
		t.Fatal(err)
	}
	if m := markersOnDisk(t, dir); len(m) != 0 {
		t.Errorf("markers outlived the messages' removal or quarantine: %v", m)
	}
	// Released, it starts from nothing.
	if err := s.Release(quar.ID); err != nil {
		t.Fatal(err)
	}
	begin(quar.ID, 0)

	// The count stops growing at maxWorkStarts.
	capped := commitMessage(t, s, "capped\r\n")
	for i := range maxWorkStarts + 5 {
		begin(capped.ID, min(i, maxWorkStarts))
	}

	// Ids are checked.
	for _, bad := range []string{"", "../queue/x", "../../etc/passwd", "01K1AF74TDQ9VT0XRGE2", "01k1af74tdq9vt0xrge2/x", "01k1af74tdq9vt0xrge2 99"} {
		if _, err := s.BeginWork(bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("BeginWork(%q) = %v, want ErrNotFound", bad, err)
		}
		s.EndWork(bad)
	}
	if m := markersOnDisk(t, dir); len(m) != 2 || m[quar.ID] != 1 || m[capped.ID] != maxWorkStarts {
		t.Errorf("markers %v, want %s at 1 and %s at %d", m, quar.ID, capped.ID, maxWorkStarts)
	}

	// A second opener (a queue command while the gateway runs) keeps none.
	other, _ := openTest(t, dir)
	if _, err := other.BeginWork(quar.ID); !errors.Is(err, ErrWorkUnavailable) {
		t.Errorf("BeginWork on a second opener = %v, want ErrWorkUnavailable", err)
	}
	other.Close()

	// Recovery keeps the markers of queued messages and frees the others:
	// one of a message that is gone, a damaged slot, and a partial one.
	f, err := os.OpenFile(filepath.Join(dir, "work"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(encodeWorkSlot(NewID(), 1))
	f.Write([]byte(strings.Repeat("x", workSlotSize)))
	f.Write(encodeWorkSlot(capped.ID, 3)) // a duplicate: the larger count wins
	f.Write([]byte("01k1af74"))
	f.Close()
	s.Close()
	s, _ = openTest(t, dir)
	if m := markersOnDisk(t, dir); len(m) != 2 || m[quar.ID] != 1 || m[capped.ID] != maxWorkStarts {
		t.Errorf("markers after recovery %v, want %s at 1 and %s at %d", m, quar.ID, capped.ID, maxWorkStarts)
	}
	begin(quar.ID, 1)
	begin(capped.ID, maxWorkStarts)
	s.EndWork(quar.ID)
	s.EndWork(capped.ID)

	// At most maxWorkSlots messages are in work at once; then the file
	// stops growing and BeginWork says why.
	for range maxWorkSlots {
		if _, err := s.BeginWork(NewID()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.BeginWork(NewID()); err == nil || !strings.Contains(err.Error(), strconv.Itoa(maxWorkSlots)) {
		t.Fatalf("BeginWork beyond %d markers = %v", maxWorkSlots, err)
	}
	st, err := os.Stat(filepath.Join(dir, "work"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != maxWorkSlots*workSlotSize {
		t.Fatalf("work file of %d markers has %d bytes, want %d", maxWorkSlots, st.Size(), maxWorkSlots*workSlotSize)
	}
}
