package spool

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// dirUsage counts what a quarantine directory holds independently of the
// spool's counters: messages by their envelope files, bytes of every file.
func dirUsage(t *testing.T, dir string) (int, int64) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dir, "quarantine"))
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var b int64
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") {
			n++
		}
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		b += info.Size()
	}
	return n, b
}

func checkUsage(t *testing.T, s *Spool, dir string, wantMessages int) {
	t.Helper()
	n, b := s.QuarantineUsage()
	dn, db := dirUsage(t, dir)
	if n != wantMessages || n != dn || b != db {
		t.Fatalf("QuarantineUsage = %d messages, %d bytes; the directory holds %d, %d; want %d messages", n, b, dn, db, wantMessages)
	}
	if n > 0 && b == 0 {
		t.Fatalf("QuarantineUsage counts %d messages in 0 bytes", n)
	}
}

func TestQuarantineUsage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := openTest(t, dir)
	checkUsage(t, s, dir, 0)

	a := commitMessage(t, s, strings.Repeat("a", 3000))
	b := commitMessage(t, s, strings.Repeat("b", 5000))
	// c has been routed: a sealed version beside the original.
	c := commitMessage(t, s, strings.Repeat("c", 700))
	vw, err := s.NewVersion(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	vw.Write([]byte(strings.Repeat("sealed", 2000)))
	name, err := vw.Commit()
	if err != nil {
		t.Fatal(err)
	}
	c.Stage = StageRouted
	c.Versions = []Version{{Action: "pass", Recipients: []Delivery{{State: Pending}}}, {Data: name, Action: "encrypt", Recipients: []Delivery{{State: Pending}}}}
	if err := s.Update(c); err != nil {
		t.Fatal(err)
	}

	for _, env := range []*Envelope{a, b, c} {
		if err := s.Quarantine(env, "cannot open"); err != nil {
			t.Fatal(err)
		}
	}
	checkUsage(t, s, dir, 3)
	if _, bytes := s.QuarantineUsage(); bytes < 3000+5000+700+12000 {
		t.Fatalf("QuarantineUsage counts %d bytes, less than the data files", bytes)
	}
	if err := s.Release(a.ID); err != nil {
		t.Fatal(err)
	}
	checkUsage(t, s, dir, 2)
	if err := s.DeleteQuarantined(c.ID); err != nil {
		t.Fatal(err)
	}
	checkUsage(t, s, dir, 1)
	// Failures change nothing.
	if err := s.DeleteQuarantined(c.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if err := s.Release(a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("release of a queued message: %v", err)
	}
	checkUsage(t, s, dir, 1)

	// Open counts what is there.
	s.Close()
	s2, _ := openTest(t, dir)
	checkUsage(t, s2, dir, 1)
}

// TestQuarantineUsageAfterCrash stops moves at each step a crash can
// interrupt them and checks that the usage after reopening is what the
// quarantine holds once recovery has finished the moves.
func TestQuarantineUsageAfterCrash(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := openTest(t, dir)
	stage := func(env *Envelope) *Envelope {
		q := *env
		q.Reason = "cannot open"
		q.QuarantinedAt = time.Now().UTC()
		if err := s.writeEnvelope(s.queueDir, &q); err != nil {
			t.Fatal(err)
		}
		return &q
	}
	link := func(env *Envelope, from, to string) {
		for _, d := range references(env) {
			if err := os.Link(filepath.Join(from, dataName(env.ID, d)), filepath.Join(to, dataName(env.ID, d))); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Envelope rewritten in queue/, nothing linked yet.
	stage(commitMessage(t, s, "before the links\r\n"))
	// Data linked into quarantine/, the envelope not renamed.
	link(stage(commitMessage(t, s, "before the rename\r\n")), s.queueDir, s.quarDir)
	// Renamed, the links in queue/ not removed: the data is in both.
	q := stage(commitMessage(t, s, "before the cleanup\r\n"))
	link(q, s.queueDir, s.quarDir)
	if err := os.Rename(filepath.Join(s.queueDir, envName(q.ID)), filepath.Join(s.quarDir, envName(q.ID))); err != nil {
		t.Fatal(err)
	}
	// A release interrupted after the envelope in quarantine/ was rewritten.
	rel := commitMessage(t, s, "being released\r\n")
	if err := s.Quarantine(rel, "x"); err != nil {
		t.Fatal(err)
	}
	r, _ := s.LoadQuarantined(rel.ID)
	r.Reason, r.QuarantinedAt = "", time.Time{}
	if err := s.writeEnvelope(s.quarDir, r); err != nil {
		t.Fatal(err)
	}
	// And one message whose quarantine was whole.
	if err := s.Quarantine(commitMessage(t, s, "whole\r\n"), "x"); err != nil {
		t.Fatal(err)
	}

	s.Close()
	s2, _ := openTest(t, dir)
	checkUsage(t, s2, dir, 4)
	if list, _ := s2.List(); len(list) != 1 || list[0].ID != rel.ID {
		t.Fatalf("queue after recovery: %d messages, want the released one", len(list))
	}
	// And the counts stay right through the next operations.
	list, _ := s2.ListQuarantine()
	for i, env := range list {
		if i%2 == 0 {
			err := s2.DeleteQuarantined(env.ID)
			if err != nil {
				t.Fatal(err)
			}
		} else if err := s2.Release(env.ID); err != nil {
			t.Fatal(err)
		}
	}
	checkUsage(t, s2, dir, 0)
}

// writeQuarantined puts a quarantined message straight into quarantine/,
// without the fsyncs of Quarantine, for tests that need many.
func writeQuarantined(t *testing.T, dir string, at time.Time) string {
	t.Helper()
	env := &Envelope{ID: NewID(), Stage: StageReceived, Size: 5, Reason: "x", QuarantinedAt: at}
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "quarantine", envName(env.ID)), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "quarantine", dataName(env.ID, "")), []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	return env.ID
}

func TestExpireQuarantine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := openTest(t, dir)
	now := time.Now().UTC()
	old1 := commitMessage(t, s, "old one\r\n")
	old2 := commitMessage(t, s, "old two\r\n")
	fresh := commitMessage(t, s, "fresh\r\n")
	for _, env := range []*Envelope{old1, old2, fresh} {
		if err := s.Quarantine(env, "cannot open"); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{old1.ID, old2.ID} {
		env, err := s.LoadQuarantined(id)
		if err != nil {
			t.Fatal(err)
		}
		env.QuarantinedAt = now.Add(-40 * 24 * time.Hour)
		if err := s.writeEnvelope(s.quarDir, env); err != nil {
			t.Fatal(err)
		}
	}
	// Neither a damaged envelope nor a release a crash interrupted can say
	// when it was quarantined: both stay.
	damaged := NewID()
	if err := os.WriteFile(filepath.Join(s.quarDir, envName(damaged)), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	releasing := writeQuarantined(t, dir, time.Time{})

	removed, err := s.ExpireQuarantine(now.Add(-30 * 24 * time.Hour))
	if err != nil || removed != 2 {
		t.Fatalf("ExpireQuarantine = %d, %v; want 2", removed, err)
	}
	names := strings.Join(files(t, s.quarDir), " ")
	for _, id := range []string{old1.ID, old2.ID} {
		if strings.Contains(names, id) {
			t.Errorf("expired message %s left files: %s", id, names)
		}
	}
	for _, id := range []string{fresh.ID, damaged, releasing} {
		if !strings.Contains(names, id) {
			t.Errorf("message %s that had not expired is gone: %s", id, names)
		}
	}
	if n, _ := s.QuarantineUsage(); n != 1 {
		t.Errorf("QuarantineUsage after expiry: %d messages, want the fresh one", n)
	}
	// Nothing else is old enough.
	if removed, err := s.ExpireQuarantine(now.Add(-30 * 24 * time.Hour)); err != nil || removed != 0 {
		t.Fatalf("second ExpireQuarantine = %d, %v; want 0", removed, err)
	}
}

// TestExpireQuarantineManyBatches expires a quarantine larger than one
// batch of directory entries, and checks the usage against the directory.
func TestExpireQuarantineManyBatches(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "quarantine"), 0o700); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	const n = expireBatch + 100 // two files each: three batches
	for range n {
		writeQuarantined(t, dir, old)
	}
	keep := writeQuarantined(t, dir, time.Now().Add(time.Hour))
	s, _ := openTest(t, dir)
	checkUsage(t, s, dir, n+1)
	removed, err := s.ExpireQuarantine(time.Now())
	if err != nil || removed != n {
		t.Fatalf("ExpireQuarantine = %d, %v; want %d", removed, err, n)
	}
	if names := files(t, s.quarDir); len(names) != 2 || !strings.HasPrefix(names[0], keep) {
		t.Fatalf("quarantine after expiry: %d files, want the two of %s", len(names), keep)
	}
	checkUsage(t, s, dir, 1)
}
