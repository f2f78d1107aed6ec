package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRecoveryLeavesUnreadableMessages is the state a `quarantine release`
// run as root leaves: envelope files the gateway's user cannot read.
// Recovery must tell that from damage, leave the files in place and say so;
// once the ownership is fixed the messages are queued as before. A truly
// damaged envelope next to them still goes to corrupt/.
//
// As root a chmod does not stop reads, so the recovery runs in a child
// process that has taken on an unprivileged uid, with root's files as the
// unreadable ones. Run as any other user the test makes the files
// unreadable with chmod and recovers in-process.
func TestRecoveryLeavesUnreadableMessages(t *testing.T) {
	// Not parallel: between its fork and its exec a child holds every
	// descriptor of this process, the spool locks of the other tests among
	// them, and a test that reopened its spool then would skip recovery.
	root := os.Geteuid() == 0
	dir := t.TempDir()
	if root {
		// The unprivileged child must be able to reach the state directory.
		dir = filepath.Join(mkdirTraversable(t), "state")
	}
	s, _ := openTest(t, dir)
	trailerOnly := commitMessage(t, s, "trailer only\r\n")
	withEnvFile := commitMessage(t, s, "with envelope file\r\n")
	withEnvFile.Attempts = 1
	if err := s.Update(withEnvFile); err != nil {
		t.Fatal(err)
	}
	released := commitMessage(t, s, "released by root\r\n")
	if err := s.Quarantine(released, "no key"); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(released.ID); err != nil {
		t.Fatal(err)
	}
	damaged := commitMessage(t, s, "damaged\r\n")
	damaged.Attempts = 1
	if err := s.Update(damaged); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.WriteFile(filepath.Join(dir, "queue", envName(damaged.ID)), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	unreadable := []string{
		dataName(trailerOnly.ID, ""),
		envName(withEnvFile.ID),
		envName(released.ID),
	}
	var recoverNow func() (queued []string, logs string)
	if root {
		chownTree(t, dir, unprivileged)
		for _, name := range unreadable {
			if err := os.Lchown(filepath.Join(dir, "queue", name), 0, 0); err != nil {
				t.Fatal(err)
			}
		}
		recoverNow = func() ([]string, string) {
			out, logs, code := runChild(t, fmt.Sprintf("%s=%d:%s", childRecoverAs, unprivileged, dir))
			if code != 0 {
				t.Fatalf("recovery as uid %d: exit %d\n%s", unprivileged, code, logs)
			}
			return strings.Fields(out), logs
		}
	} else {
		for _, name := range unreadable {
			if err := os.Chmod(filepath.Join(dir, "queue", name), 0); err != nil {
				t.Fatal(err)
			}
		}
		recoverNow = func() ([]string, string) {
			s, logs := openTest(t, dir)
			envs, err := s.List()
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			var ids []string
			for _, env := range envs {
				ids = append(ids, env.ID)
			}
			return ids, logs.String()
		}
	}

	queued, logs := recoverNow()
	if len(queued) != 0 {
		t.Errorf("queued while unreadable: %v", queued)
	}
	for _, id := range []string{trailerOnly.ID, withEnvFile.ID, released.ID} {
		if !logLine(logs, "cannot read a message (permission denied)", id) {
			t.Errorf("recovery did not name unreadable message %s as such:\n%s", id, logs)
		}
	}
	for _, name := range append(unreadable, dataName(withEnvFile.ID, ""), dataName(released.ID, "")) {
		if _, err := os.Lstat(filepath.Join(dir, "queue", name)); err != nil {
			t.Errorf("queue/%s after recovery: %v", name, err)
		}
	}
	corrupt := strings.Join(files(t, filepath.Join(dir, "corrupt")), " ")
	for _, id := range []string{trailerOnly.ID, withEnvFile.ID, released.ID} {
		if strings.Contains(corrupt, id) {
			t.Errorf("unreadable message %s moved to corrupt/: %s", id, corrupt)
		}
	}
	if !strings.Contains(corrupt, damaged.ID) {
		t.Errorf("damaged envelope not in corrupt/: %s", corrupt)
	}

	// The operator gives the files back; the next start queues them.
	if root {
		chownTree(t, dir, unprivileged)
	} else {
		for _, name := range unreadable {
			if err := os.Chmod(filepath.Join(dir, "queue", name), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	queued, logs = recoverNow()
	if strings.Join(queued, " ") != strings.Join([]string{trailerOnly.ID, withEnvFile.ID, released.ID}, " ") {
		t.Errorf("queued after the ownership was fixed: %v, want the three messages\n%s", queued, logs)
	}
}

// logLine reports whether one line of logs holds all of words.
func logLine(logs string, words ...string) bool {
	for _, l := range strings.Split(logs, "\n") {
		all := true
		for _, w := range words {
			all = all && strings.Contains(l, w)
		}
		if all {
			return true
		}
	}
	return false
}

// mkdirTraversable returns a new empty directory that any user can reach
// (t.TempDir's parents are private to the user who runs the tests).
func mkdirTraversable(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "spooltest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	if err := os.Chmod(d, 0o711); err != nil {
		t.Fatal(err)
	}
	return d
}
