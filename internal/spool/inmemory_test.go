package spool

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An in-memory message has no file until it outgrows its limit or is
// committed; committed, it is queued exactly like one written to a file.
func TestMessageInMemory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := openTest(t, dir)
	env := func() *Envelope {
		return &Envelope{Sender: "a@example.net", Recipients: []Recipient{{Addr: "b@example.org"}}, Arrival: time.Now().UTC()}
	}

	// Small: held in memory, nothing on disk, then committed.
	in := s.NewMessageInMemory(64)
	in.Write([]byte("Subject: x\r\n\r\n"))
	in.Write([]byte("hello\r\n"))
	if b, ok := in.Bytes(); !ok || string(b) != "Subject: x\r\n\r\nhello\r\n" {
		t.Fatalf("Bytes = %q, %v", b, ok)
	}
	if names := files(t, filepath.Join(dir, "tmp")); len(names) != 0 {
		t.Fatalf("an in-memory message made files in tmp/: %v", names)
	}
	e := env()
	if err := in.Commit(e); err != nil {
		t.Fatal(err)
	}
	if _, ok := in.Bytes(); ok {
		t.Error("Bytes still answers after Commit")
	}
	if data, err := s.ReadData(e.ID, ""); err != nil || string(data) != "Subject: x\r\n\r\nhello\r\n" {
		t.Fatalf("committed from memory: ReadData = %q, %v", data, err)
	}
	if got, err := s.Load(e.ID); err != nil || got.Size != 21 || got.Stage != StageReceived {
		t.Fatalf("Load = %+v, %v", got, err)
	}

	// Past the limit: moved to its file, every byte kept, in order.
	in = s.NewMessageInMemory(16)
	body := "Subject: big\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", 100)
	for chunk := range strings.SplitSeq(body, "\n") {
		if chunk != "" {
			in.Write([]byte(chunk + "\n"))
		}
	}
	if _, ok := in.Bytes(); ok {
		t.Fatal("a message past its limit is still in memory")
	}
	if names := files(t, filepath.Join(dir, "tmp")); len(names) != 1 {
		t.Fatalf("tmp/ after spilling: %v", names)
	}
	e = env()
	if err := in.Commit(e); err != nil {
		t.Fatal(err)
	}
	if data, err := s.ReadData(e.ID, ""); err != nil || !bytes.Equal(data, []byte(body)) {
		t.Fatalf("spilled message read back wrong (%d bytes, %v)", len(data), err)
	}

	// Aborted in memory: nothing anywhere.
	in = s.NewMessageInMemory(64)
	in.Write([]byte("partial"))
	in.Abort()
	if names := files(t, filepath.Join(dir, "tmp")); len(names) != 0 {
		t.Fatalf("tmp/ after aborting an in-memory message: %v", names)
	}
	if list, _ := s.List(); len(list) != 2 {
		t.Fatalf("queue holds %d messages, want the 2 committed", len(list))
	}
}

// TestIncomingReadAll: a receiver can read a message back before it is
// committed, from memory or from its file, and what it reads is what was
// written.
func TestIncomingReadAll(t *testing.T) {
	t.Parallel()
	sp, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	small := bytes.Repeat([]byte("a"), 100)
	big := bytes.Repeat([]byte("b"), 3*writeBuffer+7)
	for name, in := range map[string]*Incoming{"memory": sp.NewMessageInMemory(1 << 20), "spilled": sp.NewMessageInMemory(10)} {
		in.Write(small)
		in.Write(big)
		got, err := in.ReadAll()
		if err != nil || !bytes.Equal(got, append(bytes.Clone(small), big...)) {
			t.Errorf("%s: ReadAll gave %d bytes, %v", name, len(got), err)
		}
		// Writing goes on after a read.
		in.Write(small)
		if got, _ := in.ReadAll(); len(got) != 2*len(small)+len(big) {
			t.Errorf("%s: after another write ReadAll gave %d bytes", name, len(got))
		}
		in.Abort()
		if _, err := in.ReadAll(); err == nil {
			t.Errorf("%s: ReadAll after Abort gave no error", name)
		}
	}
}
