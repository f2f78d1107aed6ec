package spool

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTrailerRoundTrip: a committed message is one file whose trailer holds
// the envelope, and Load, List and a restart all read it back from there.
func TestTrailerRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := openTest(t, dir)
	body := "Subject: trailer\r\n\r\nbody\r\n"
	env := commitMessage(t, s, body)
	q := filepath.Join(dir, "queue")
	if names := files(t, q); len(names) != 1 || names[0] != dataName(env.ID, "") {
		t.Fatalf("queue after commit: %v", names)
	}
	raw, err := os.ReadFile(filepath.Join(q, dataName(env.ID, "")))
	if err != nil {
		t.Fatal(err)
	}
	dataLen, b, err := parseTrailer(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if dataLen != int64(len(body)) || string(raw[:dataLen]) != body {
		t.Fatalf("data before the trailer: %q", raw[:dataLen])
	}
	if !strings.HasSuffix(string(raw), footerMagic) || binary.BigEndian.Uint64(raw[len(raw)-footerSize:]) != uint64(len(b)) {
		t.Fatalf("footer: %q", raw[len(raw)-footerSize:])
	}
	var inFile Envelope
	if err := json.Unmarshal(b, &inFile); err != nil || inFile.ID != env.ID || inFile.Size != int64(len(body)) || inFile.Stage != StageReceived {
		t.Fatalf("trailer envelope %+v, %v", inFile, err)
	}
	check := func(s *Spool) {
		t.Helper()
		got, err := s.Load(env.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Sender != env.Sender || got.Recipients[0].Addr != "b@example.org" || got.Recipients[0].Notify[0] != "FAILURE" || !got.Arrival.Equal(env.Arrival) || got.Size != env.Size {
			t.Fatalf("loaded %+v, committed %+v", got, env)
		}
		list, err := s.List()
		if err != nil || len(list) != 1 || list[0].ID != env.ID {
			t.Fatalf("List = %v, %v", list, err)
		}
	}
	check(s)
	s.Close()
	s2, logs := openTest(t, dir)
	check(s2)
	if names := files(t, q); len(names) != 1 {
		t.Fatalf("queue after recovery: %v\n%s", names, logs)
	}
	if n := len(files(t, filepath.Join(dir, "corrupt"))); n != 0 {
		t.Fatalf("recovery moved %d files to corrupt/:\n%s", n, logs)
	}
}

// TestLoadPrefersEnvelopeFile: after an Update, ID.json supersedes the
// trailer, which the original keeps unchanged.
func TestLoadPrefersEnvelopeFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := openTest(t, dir)
	env := commitMessage(t, s, "prefer json\r\n")
	env.Attempts = 3
	env.LastError = "451 try later"
	if err := s.Update(env); err != nil {
		t.Fatal(err)
	}
	check := func(s *Spool) {
		t.Helper()
		got, err := s.Load(env.ID)
		if err != nil || got.Attempts != 3 || got.LastError != "451 try later" {
			t.Fatalf("Load = %+v, %v", got, err)
		}
		list, err := s.List()
		if err != nil || len(list) != 1 || list[0].Attempts != 3 {
			t.Fatalf("List = %v, %v", list, err)
		}
	}
	check(s)
	trailer, err := readTrailerEnvelope(s.queueDir, env.ID)
	if err != nil || trailer.Attempts != 0 {
		t.Fatalf("trailer after Update: %+v, %v", trailer, err)
	}
	s.Close()
	s2, _ := openTest(t, dir)
	check(s2)
	// Routing that drops the original removes it; the envelope file alone
	// is then the message.
	vw, err := s2.NewVersion(env.ID)
	if err != nil {
		t.Fatal(err)
	}
	vw.Write([]byte("sealed"))
	v, err := vw.Commit()
	if err != nil {
		t.Fatal(err)
	}
	env.Stage = StageRouted
	env.Versions = []Version{{Data: v, Action: "encrypt", Recipients: []Delivery{{Recipient: env.Recipients[0], State: Pending}}}}
	if err := s2.Update(env); err != nil {
		t.Fatal(err)
	}
	if names := files(t, filepath.Join(dir, "queue")); strings.Join(names, " ") != envName(env.ID)+" "+dataName(env.ID, v) {
		t.Fatalf("queue after routing: %v", names)
	}
	if err := s2.Remove(env.ID); err != nil {
		t.Fatal(err)
	}
	if names := files(t, filepath.Join(dir, "queue")); len(names) != 0 {
		t.Fatalf("queue after Remove: %v", names)
	}
}

// TestTornOriginalsGoToCorrupt: an original in queue/ without an envelope
// file and without a whole trailer was never acknowledged; recovery keeps
// it in corrupt/ and says so.
func TestTornOriginalsGoToCorrupt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := openTest(t, dir)
	q := filepath.Join(dir, "queue")
	damage := map[string]func([]byte) []byte{
		"truncated footer": func(b []byte) []byte { return b[:len(b)-5] },
		"truncated trailer": func(b []byte) []byte {
			return b[:len(b)-footerSize-3]
		},
		"bad magic": func(b []byte) []byte { b[len(b)-1] = 'X'; return b },
		"length beyond the file": func(b []byte) []byte {
			binary.BigEndian.PutUint64(b[len(b)-footerSize:], uint64(len(b)))
			return b
		},
		"huge length": func(b []byte) []byte {
			binary.BigEndian.PutUint64(b[len(b)-footerSize:], ^uint64(0))
			return b
		},
		"length off by one": func(b []byte) []byte {
			n := binary.BigEndian.Uint64(b[len(b)-footerSize:])
			binary.BigEndian.PutUint64(b[len(b)-footerSize:], n+1)
			return b
		},
		"empty file": func(b []byte) []byte { return nil },
	}
	ids := map[string]string{}
	for what, f := range damage {
		env := commitMessage(t, s, "message that will be torn: "+what+"\r\n")
		p := filepath.Join(q, dataName(env.ID, ""))
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, f(b), 0o600); err != nil {
			t.Fatal(err)
		}
		ids[what] = env.ID
		if _, err := s.Load(env.ID); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("%s: Load = %v, want an error that is not ErrNotFound", what, err)
		}
	}
	good := commitMessage(t, s, "good\r\n")
	if list, _ := s.List(); len(list) != 1 || list[0].ID != good.ID {
		t.Errorf("List lists torn messages: %v", list)
	}
	if err := os.WriteFile(filepath.Join(dir, "tmp", dataName(NewID(), "")), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, logs := openTest(t, dir)
	if names := files(t, q); len(names) != 1 || names[0] != dataName(good.ID, "") {
		t.Errorf("queue after recovery: %v", names)
	}
	corrupt := strings.Join(files(t, filepath.Join(dir, "corrupt")), " ")
	for what, id := range ids {
		if !strings.Contains(corrupt, "queue-"+dataName(id, "")) {
			t.Errorf("%s: corrupt/ lacks the original: %s", what, corrupt)
		}
	}
	if n := len(files(t, filepath.Join(dir, "tmp"))); n != 0 {
		t.Errorf("tmp/ not emptied")
	}
	if n := strings.Count(logs.String(), "torn original (never acknowledged)"); n != len(damage) {
		t.Errorf("recovery logged %d torn originals, want %d:\n%s", n, len(damage), logs)
	}
	if list, err := s2.List(); err != nil || len(list) != 1 {
		t.Errorf("List after recovery = %v, %v", list, err)
	}
}

// TestOpenDataStopsBeforeTrailer: readers of the original see the message
// bytes only, also for an empty message and for one whose own last bytes
// look like a footer.
func TestOpenDataStopsBeforeTrailer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := openTest(t, dir)
	fake := string(appendFooter([]byte(`{"id":"x"}`), 10))
	for _, body := range []string{"", "x", "Subject: a\r\n\r\nb\r\n", strings.Repeat("0123456789", 10000), "ends like a trailer " + fake} {
		env := commitMessage(t, s, body)
		check := func(when string) {
			t.Helper()
			d, err := s.OpenData(env.ID, "")
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if d.Size() != int64(len(body)) {
				t.Errorf("%s: Size = %d, want %d", when, d.Size(), len(body))
			}
			got, err := io.ReadAll(d)
			if err != nil || string(got) != body {
				t.Errorf("%s: OpenData read %d bytes (%v), want %d", when, len(got), err, len(body))
			}
			var one [1]byte
			if n, err := d.ReadAt(one[:], int64(len(body))); n != 0 || err != io.EOF {
				t.Errorf("%s: ReadAt past the message = %d, %v", when, n, err)
			}
			b, err := s.ReadData(env.ID, "")
			if err != nil || string(b) != body {
				t.Errorf("%s: ReadData = %d bytes, %v", when, len(b), err)
			}
		}
		check("after commit")
		env.Attempts++
		if err := s.Update(env); err != nil {
			t.Fatal(err)
		}
		check("after update")
	}
}

// TestQuarantineReleaseTrailerOnly moves a message that has only its
// trailer to the quarantine and back, across restarts.
func TestQuarantineReleaseTrailerOnly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := openTest(t, dir)
	body := "Subject: held\r\n\r\nbody\r\n"
	env := commitMessage(t, s, body)
	if err := s.Quarantine(env, "no certificate"); err != nil {
		t.Fatal(err)
	}
	q, quar := filepath.Join(dir, "queue"), filepath.Join(dir, "quarantine")
	checkQuarantined := func(s *Spool) {
		t.Helper()
		if names := files(t, q); len(names) != 0 {
			t.Fatalf("queue holds %v", names)
		}
		if names := files(t, quar); strings.Join(names, " ") != envName(env.ID)+" "+dataName(env.ID, "") {
			t.Fatalf("quarantine holds %v", names)
		}
		got, err := s.LoadQuarantined(env.ID)
		if err != nil || got.Reason != "no certificate" || got.QuarantinedAt.IsZero() {
			t.Fatalf("LoadQuarantined = %+v, %v", got, err)
		}
		b, err := s.ReadQuarantinedData(env.ID)
		if err != nil || string(b) != body {
			t.Fatalf("ReadQuarantinedData = %q, %v", b, err)
		}
		if _, err := s.Load(env.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Load of a quarantined message: %v", err)
		}
		if list, _ := s.List(); len(list) != 0 {
			t.Fatalf("List = %v", list)
		}
		if list, _ := s.ListQuarantine(); len(list) != 1 {
			t.Fatalf("ListQuarantine = %v", list)
		}
	}
	checkQuarantined(s)
	s.Close()
	s, _ = openTest(t, dir)
	checkQuarantined(s)

	if err := s.Release(env.ID); err != nil {
		t.Fatal(err)
	}
	checkQueued := func(s *Spool) {
		t.Helper()
		if names := files(t, quar); len(names) != 0 {
			t.Fatalf("quarantine holds %v", names)
		}
		got, err := s.Load(env.ID)
		if err != nil || got.Stage != StageReceived || got.Reason != "" || !got.QuarantinedAt.IsZero() {
			t.Fatalf("Load after release = %+v, %v", got, err)
		}
		b, err := s.ReadData(env.ID, "")
		if err != nil || string(b) != body {
			t.Fatalf("ReadData after release = %q, %v", b, err)
		}
		if list, _ := s.List(); len(list) != 1 {
			t.Fatalf("List = %v", list)
		}
	}
	checkQueued(s)
	s.Close()
	s, _ = openTest(t, dir)
	checkQueued(s)
	if err := s.Remove(env.ID); err != nil {
		t.Fatal(err)
	}
	if names := files(t, q); len(names) != 0 {
		t.Fatalf("queue after Remove: %v", names)
	}
}

// TestRecoveryMoveLinksAreNotMessages: a crash in the middle of a move can
// leave the original linked into queue/ while the envelope file is in
// quarantine/; that link must not come back as a second, queued copy.
func TestRecoveryMoveLinksAreNotMessages(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, logs := openTest(t, dir)
	// The end of a Quarantine whose source link was not yet removed.
	quarantined := commitMessage(t, s, "quarantined\r\n")
	if err := s.Quarantine(quarantined, "x"); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(s.quarDir, dataName(quarantined.ID, "")), filepath.Join(s.queueDir, dataName(quarantined.ID, ""))); err != nil {
		t.Fatal(err)
	}
	// The start of a Release that linked the data but never rewrote the
	// envelope.
	held := commitMessage(t, s, "held\r\n")
	if err := s.Quarantine(held, "y"); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(s.quarDir, dataName(held.ID, "")), filepath.Join(s.queueDir, dataName(held.ID, ""))); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.List(); len(list) != 0 {
		t.Errorf("List shows move links as messages: %v", list)
	}
	if _, err := s.Load(held.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load of a move link: %v", err)
	}
	s.Close()
	s2, _ := openTest(t, dir)
	if names := files(t, s2.queueDir); len(names) != 0 {
		t.Errorf("queue after recovery: %v\n%s", names, logs)
	}
	if list, _ := s2.ListQuarantine(); len(list) != 2 {
		t.Errorf("ListQuarantine after recovery = %v", list)
	}
}

// TestLegacyOriginalWithoutTrailer: an original written before trailers
// existed (no footer, envelope in ID.json) is still read whole.
func TestLegacyOriginalWithoutTrailer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := openTest(t, dir)
	id := NewID()
	body := "Subject: old\r\n\r\nbody\r\n"
	env := &Envelope{ID: id, Sender: "a@example.net", Recipients: []Recipient{{Addr: "b@example.org"}}, Client: "local", Arrival: time.Now().UTC(), Size: int64(len(body)), Stage: StageReceived}
	if err := os.WriteFile(filepath.Join(s.queueDir, dataName(id, "")), []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.writeEnvelope(s.queueDir, env); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, logs := openTest(t, dir)
	if _, err := s2.Load(id); err != nil {
		t.Fatalf("Load: %v\n%s", err, logs)
	}
	if b, err := s2.ReadData(id, ""); err != nil || string(b) != body {
		t.Fatalf("ReadData = %q, %v", b, err)
	}
}
