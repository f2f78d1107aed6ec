package spool

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBuffer collects log output so tests can check that recovery says what
// it did.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func openTest(t testing.TB, dir string) (*Spool, *logBuffer) {
	t.Helper()
	var lb logBuffer
	s, err := Open(dir, slog.New(slog.NewTextHandler(&lb, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, &lb
}

func commitMessage(t testing.TB, s *Spool, body string) *Envelope {
	t.Helper()
	in, err := s.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	env := &Envelope{Sender: "a@example.net", Recipients: []Recipient{{Addr: "b@example.org", Notify: []string{"FAILURE"}}}, Client: "192.0.2.1:1234", Arrival: time.Now().UTC()}
	if err := in.Commit(env); err != nil {
		t.Fatal(err)
	}
	return env
}

func files(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func TestCommitLoadRead(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := openTest(t, dir)
	env := commitMessage(t, s, "Subject: x\r\n\r\nhello\r\n")
	if !validID(env.ID) || env.Stage != StageReceived || env.Size != 21 {
		t.Fatalf("envelope after commit: %+v", env)
	}
	got, err := s.Load(env.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Sender != env.Sender || got.Recipients[0].Notify[0] != "FAILURE" || got.Size != 21 {
		t.Fatalf("loaded %+v", got)
	}
	data, err := s.ReadData(env.ID, "")
	if err != nil || string(data) != "Subject: x\r\n\r\nhello\r\n" {
		t.Fatalf("ReadData = %q, %v", data, err)
	}
	// The commit is one file: the envelope is its trailer, no ID.json yet.
	if names := files(t, filepath.Join(dir, "queue")); len(names) != 1 || names[0] != dataName(env.ID, "") {
		t.Fatalf("queue after commit: %v", names)
	}
	for _, name := range []string{dataName(env.ID, "")} {
		st, err := os.Stat(filepath.Join(dir, "queue", name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, st.Mode().Perm())
		}
	}
	for _, d := range []string{"", "queue", "quarantine", "corrupt", "tmp"} {
		st, err := os.Stat(filepath.Join(dir, d))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o700 {
			t.Errorf("directory %q has mode %v, want 0700", d, st.Mode().Perm())
		}
	}
	if n := len(files(t, filepath.Join(dir, "tmp"))); n != 0 {
		t.Errorf("tmp/ holds %d files after a commit", n)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0].ID != env.ID {
		t.Fatalf("List = %v, %v", list, err)
	}
	if err := s.Remove(env.ID); err != nil {
		t.Fatal(err)
	}
	if names := files(t, filepath.Join(dir, "queue")); len(names) != 0 {
		t.Fatalf("queue after Remove: %v", names)
	}
	if _, err := s.Load(env.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Load after Remove: %v", err)
	}
}

func TestAbortLeavesNothing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := openTest(t, dir)
	in, err := s.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	in.Write([]byte("partial"))
	in.Abort()
	in.Abort() // twice is harmless
	for _, d := range []string{"queue", "tmp"} {
		if names := files(t, filepath.Join(dir, d)); len(names) != 0 {
			t.Fatalf("%s after Abort: %v", d, names)
		}
	}
	if err := in.Commit(&Envelope{}); err == nil {
		t.Fatal("Commit after Abort succeeded")
	}
}

func TestIDs(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	prev := ""
	for range 10000 {
		id := NewID()
		if !validID(id) {
			t.Fatalf("invalid id %q", id)
		}
		if seen[id] {
			t.Fatalf("duplicate id %q", id)
		}
		if id <= prev {
			t.Fatalf("ids not increasing: %q after %q", id, prev)
		}
		seen[id], prev = true, id
	}
	for _, bad := range []string{"", "../../etc/passwd", strings.Repeat("A", idLen), strings.Repeat("a", idLen-1) + "/"} {
		if validID(bad) {
			t.Errorf("validID(%q) = true", bad)
		}
		if _, err := (&Spool{}).Load(bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("Load(%q) = %v, want ErrNotFound", bad, err)
		}
	}
}

func TestVersionsAndUpdate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := openTest(t, dir)
	env := commitMessage(t, s, "original\r\n")
	var names []string
	for i := range 3 {
		vw, err := s.NewVersion(env.ID)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(vw, "version %d\r\n", i)
		name, err := vw.Commit()
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	aborted, err := s.NewVersion(env.ID)
	if err != nil {
		t.Fatal(err)
	}
	aborted.Write([]byte("never"))
	aborted.Abort()

	// Route to versions 0 and 1 only: the original and version 2 go.
	env.Stage = StageRouted
	env.Versions = []Version{
		{Data: names[0], Action: "encrypt", Domain: "a.example", Recipients: []Delivery{{Recipient: Recipient{Addr: "x@a.example"}, State: Pending}}},
		{Data: names[1], Action: "encrypt", Domain: "b.example", Recipients: []Delivery{{Recipient: Recipient{Addr: "x@b.example"}, State: Pending}}},
	}
	if err := s.Update(env); err != nil {
		t.Fatal(err)
	}
	want := []string{envName(env.ID), dataName(env.ID, names[0]), dataName(env.ID, names[1])}
	sort.Strings(want)
	if got := files(t, filepath.Join(dir, "queue")); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("queue after Update: %v, want %v", got, want)
	}
	b, err := s.ReadData(env.ID, names[1])
	if err != nil || string(b) != "version 1\r\n" {
		t.Fatalf("ReadData(version 1) = %q, %v", b, err)
	}
	if _, err := s.ReadData(env.ID, ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the original survived an Update that no longer needs it: %v", err)
	}
	if _, err := s.OpenData(env.ID, "../x"); err == nil {
		t.Fatal("OpenData accepted a path")
	}
	// An Update naming a file that does not exist is refused and changes nothing.
	bad := *env
	bad.Versions = append(bad.Versions, Version{Data: "vnothere", Action: "pass"})
	if err := s.Update(&bad); err == nil {
		t.Fatal("Update naming a missing data file succeeded")
	}
	got, _ := s.Load(env.ID)
	if len(got.Versions) != 2 {
		t.Fatalf("failed Update changed the envelope: %+v", got.Versions)
	}
	// Dropping version 0 removes its file.
	env.Versions = env.Versions[1:]
	if err := s.Update(env); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ReadData(env.ID, names[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("version 0 survived: %v", err)
	}
}

func TestQuarantineRelease(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := openTest(t, dir)
	env := commitMessage(t, s, "sealed\r\n")
	env.Attempts = 2
	if err := s.Quarantine(env, "no key for this recipient"); err != nil {
		t.Fatal(err)
	}
	if names := files(t, filepath.Join(dir, "queue")); len(names) != 0 {
		t.Fatalf("queue after Quarantine: %v", names)
	}
	list, err := s.ListQuarantine()
	if err != nil || len(list) != 1 || list[0].Reason != "no key for this recipient" || list[0].QuarantinedAt.IsZero() {
		t.Fatalf("ListQuarantine = %+v, %v", list, err)
	}
	b, err := s.ReadQuarantinedData(env.ID)
	if err != nil || string(b) != "sealed\r\n" {
		t.Fatalf("ReadQuarantinedData = %q, %v", b, err)
	}
	if err := s.Release(env.ID); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load(env.ID)
	if err != nil || got.Stage != StageReceived || got.Reason != "" || got.Attempts != 0 || !got.QuarantinedAt.IsZero() {
		t.Fatalf("released envelope %+v, %v", got, err)
	}
	if names := files(t, filepath.Join(dir, "quarantine")); len(names) != 0 {
		t.Fatalf("quarantine after Release: %v", names)
	}
	if err := s.Quarantine(got, "again"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteQuarantined(env.ID); err != nil {
		t.Fatal(err)
	}
	if names := files(t, filepath.Join(dir, "quarantine")); len(names) != 0 {
		t.Fatalf("quarantine after DeleteQuarantined: %v", names)
	}
}

// TestRecovery lays out every kind of damage a crash or a careless operator
// can leave and checks what Open makes of it.
func TestRecovery(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := openTest(t, dir)
	good := commitMessage(t, s, "good\r\n")
	badJSON := commitMessage(t, s, "bad json\r\n")
	noData := commitMessage(t, s, "no data\r\n")
	torn := commitMessage(t, s, "torn message body\r\n")
	routed := commitMessage(t, s, "routed\r\n")
	vw, _ := s.NewVersion(routed.ID)
	vw.Write([]byte("sealed copy"))
	vname, _ := vw.Commit()
	routed.Stage = StageRouted
	routed.Versions = []Version{{Data: vname, Action: "encrypt", Recipients: []Delivery{{Recipient: Recipient{Addr: "x@p.example"}, State: Pending}}}}
	if err := s.Update(routed); err != nil {
		t.Fatal(err)
	}
	q := filepath.Join(dir, "queue")
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(q, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(envName(badJSON.ID), `{"id": "`+badJSON.ID+`", "sender": `)
	// An envelope file supersedes the trailer once an update has written
	// one; these two cases need it.
	for _, env := range []*Envelope{noData, torn} {
		if err := s.Update(env); err != nil {
			t.Fatal(err)
		}
	}
	os.Remove(filepath.Join(q, dataName(noData.ID, "")))
	write(dataName(torn.ID, ""), "torn")
	orphan := NewID()
	write(dataName(orphan, "vorphan"), "never committed")
	write(dataName(good.ID, "vleftover"), "a version no Update named")
	write("README", "not a spool file")
	if err := os.WriteFile(filepath.Join(dir, "tmp", "x.msg"), []byte("half written"), 0o600); err != nil {
		t.Fatal(err)
	}

	s.Close()
	s2, logs := openTest(t, dir)
	wantQueue := []string{dataName(good.ID, ""), envName(routed.ID), dataName(routed.ID, vname)}
	sort.Strings(wantQueue)
	if got := files(t, q); strings.Join(got, " ") != strings.Join(wantQueue, " ") {
		t.Errorf("queue after recovery:\n got %v\nwant %v", got, wantQueue)
	}
	corrupt := strings.Join(files(t, filepath.Join(dir, "corrupt")), " ")
	for _, want := range []string{"queue-" + envName(badJSON.ID), "queue-" + dataName(badJSON.ID, ""), "queue-" + envName(noData.ID), "queue-" + envName(torn.ID), "queue-" + dataName(torn.ID, ""), "queue-README"} {
		if !strings.Contains(corrupt, want) {
			t.Errorf("corrupt/ lacks %s: %s", want, corrupt)
		}
	}
	if n := len(files(t, filepath.Join(dir, "tmp"))); n != 0 {
		t.Errorf("tmp/ not emptied")
	}
	log := logs.String()
	for _, want := range []string{"not valid JSON", "original message named by the envelope is missing", "has 4 bytes, the envelope says 19", "never committed", "not a spool file", "unfinished temporary file"} {
		if !strings.Contains(log, want) {
			t.Errorf("recovery log lacks %q:\n%s", want, log)
		}
	}
	list, err := s2.List()
	if err != nil || len(list) != 2 {
		t.Fatalf("List after recovery = %d envelopes, %v", len(list), err)
	}
}

// TestRecoveryFinishesMoves simulates crashes between the steps of
// Quarantine and Release: an envelope already rewritten for its new place
// but not yet renamed there.
func TestRecoveryFinishesMoves(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := openTest(t, dir)
	toQuar := commitMessage(t, s, "to quarantine\r\n")
	q := *toQuar
	q.Reason = "cannot open"
	q.QuarantinedAt = time.Now().UTC()
	if err := s.writeEnvelope(s.queueDir, &q); err != nil {
		t.Fatal(err)
	}
	// Half of a release: the envelope in quarantine/ already says
	// "received", its data is still only in quarantine/.
	toQueue := commitMessage(t, s, "to queue\r\n")
	if err := s.Quarantine(toQueue, "x"); err != nil {
		t.Fatal(err)
	}
	r, _ := s.LoadQuarantined(toQueue.ID)
	r.Reason, r.QuarantinedAt = "", time.Time{}
	if err := s.writeEnvelope(s.quarDir, r); err != nil {
		t.Fatal(err)
	}

	s.Close()
	s2, _ := openTest(t, dir)
	if got, err := s2.LoadQuarantined(toQuar.ID); err != nil || got.Reason != "cannot open" {
		t.Fatalf("interrupted quarantine not finished: %+v, %v", got, err)
	}
	if b, err := s2.ReadQuarantinedData(toQuar.ID); err != nil || string(b) != "to quarantine\r\n" {
		t.Fatalf("quarantined data = %q, %v", b, err)
	}
	if _, err := s2.Load(toQuar.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("quarantined message still queued: %v", err)
	}
	if b, err := s2.ReadData(toQueue.ID, ""); err != nil || string(b) != "to queue\r\n" {
		t.Fatalf("interrupted release not finished: %q, %v", b, err)
	}
	if names := files(t, filepath.Join(dir, "quarantine")); strings.Contains(strings.Join(names, " "), toQueue.ID) {
		t.Fatalf("released message left files in quarantine: %v", names)
	}
}

// TestGroupedSync commits from many goroutines at once and checks that the
// directory syncs were shared, which is the whole point of grouping.
func TestGroupedSync(t *testing.T) {
	t.Parallel()
	s, _ := openTest(t, t.TempDir())
	const n = 200
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			for range n / 20 {
				commitMessage(t, s, strings.Repeat("x", 1000))
			}
		})
	}
	wg.Wait()
	rounds := s.SyncRounds()
	t.Logf("%d commits, %d directory syncs", n, rounds)
	if rounds >= n {
		t.Fatalf("%d syncs for %d concurrent commits: nothing was grouped", rounds, n)
	}
	list, _ := s.List()
	if len(list) != n {
		t.Fatalf("%d messages queued, want %d", len(list), n)
	}
}

// TestSecondOpenDoesNotRecover: a queue command that opens the spool of a
// running gateway must not "recover" the files the gateway is writing.
func TestSecondOpenDoesNotRecover(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s, _ := openTest(t, dir)
	in, err := s.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	in.Write([]byte("being received"))
	s2, logs := openTest(t, dir)
	if !strings.Contains(logs.String(), "recovery skipped") {
		t.Errorf("second Open did not say it skipped recovery:\n%s", logs)
	}
	if err := in.Commit(&Envelope{Sender: "a@example.net"}); err != nil {
		t.Fatalf("the second Open broke a commit in progress: %v", err)
	}
	if list, _ := s2.List(); len(list) != 1 {
		t.Fatalf("second opener sees %d messages", len(list))
	}
	// Once the first closes, the next Open recovers again.
	s.Close()
	s2.Close()
	os.WriteFile(filepath.Join(dir, "tmp", "left.msg"), []byte("x"), 0o600)
	openTest(t, dir)
	if n := len(files(t, filepath.Join(dir, "tmp"))); n != 0 {
		t.Errorf("recovery did not run after the lock was released")
	}
}
