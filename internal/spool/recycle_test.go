package spool

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// TestRecycledInodeCarriesNothingOver: the original of a removed message is
// emptied and its inode reused for the next message, whose data is exactly
// its own.
func TestRecycledInodeCarriesNothingOver(t *testing.T) {
	s, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	commit := func(body string) string {
		in, err := s.NewMessage()
		if err != nil {
			t.Fatal(err)
		}
		in.Write([]byte(body))
		if err := in.Commit(&Envelope{Sender: "a@example.org", Recipients: []Recipient{{Addr: "b@example.net"}}}); err != nil {
			t.Fatal(err)
		}
		return in.ID
	}
	first := commit(strings.Repeat("secret first message\r\n", 1000))
	firstIno := inode(t, filepath.Join(s.queueDir, dataName(first, "")))
	if err := s.Remove(first); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(s.tmpDir)
	if len(entries) != 1 || !strings.HasPrefix(entries[0].Name(), "free-") {
		t.Fatalf("tmp/ holds %v, want one recycled file", entries)
	}
	if info, _ := entries[0].Info(); info.Size() != 0 {
		t.Errorf("the recycled file still holds %d bytes of the delivered message", info.Size())
	}
	if _, err := s.Load(first); err == nil {
		t.Error("a removed message is still queued")
	}

	second := commit("Subject: short\r\n\r\nsecond\r\n")
	if got := inode(t, filepath.Join(s.queueDir, dataName(second, ""))); got != firstIno {
		t.Errorf("the second message got inode %d, not the recycled %d", got, firstIno)
	}
	data, err := s.ReadData(second, "")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(data, []byte("Subject: short\r\n\r\nsecond\r\n")) {
		t.Errorf("the reused file reads %q", data)
	}
	env, err := s.Load(second)
	if err != nil || env.Size != int64(len(data)) {
		t.Errorf("envelope of the reused file: %v %+v", err, env)
	}
}

// TestRecoveryDropsRecycledFiles: a restart empties tmp/, free list included,
// and recovers the queue unharmed.
func TestRecoveryDropsRecycledFiles(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	in, _ := s.NewMessage()
	in.Write([]byte("x\r\n"))
	if err := in.Commit(&Envelope{Sender: "a@example.org", Recipients: []Recipient{{Addr: "b@example.net"}}}); err != nil {
		t.Fatal(err)
	}
	keep, _ := s.NewMessage()
	keep.Write([]byte("kept\r\n"))
	if err := keep.Commit(&Envelope{Sender: "a@example.org", Recipients: []Recipient{{Addr: "b@example.net"}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(in.ID); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if entries, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(entries) != 0 {
		t.Errorf("tmp/ not emptied: %v", entries)
	}
	envs, err := s.List()
	if err != nil || len(envs) != 1 || envs[0].ID != keep.ID {
		t.Errorf("after recovery: %v %v", err, envs)
	}
}

// TestRemoveDone: removing with the envelope in hand takes the message, its
// versions and its envelope file away, as Remove does.
func TestRemoveDone(t *testing.T) {
	s, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in, _ := s.NewMessage()
	in.Write([]byte("x\r\n"))
	env := &Envelope{Sender: "a@example.org", Recipients: []Recipient{{Addr: "b@example.net"}}}
	if err := in.Commit(env); err != nil {
		t.Fatal(err)
	}
	vw, err := s.NewVersion(env.ID)
	if err != nil {
		t.Fatal(err)
	}
	vw.Write([]byte("sealed\r\n"))
	name, err := vw.Commit()
	if err != nil {
		t.Fatal(err)
	}
	env.Stage = StageRouted
	env.Versions = []Version{{Data: name, Action: "encrypt", Recipients: []Delivery{{Recipient: env.Recipients[0], State: Pending}}}}
	if err := s.Update(env); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveDone(env); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(s.queueDir)
	if len(entries) != 0 {
		t.Errorf("queue/ still holds %v", entries)
	}
}
