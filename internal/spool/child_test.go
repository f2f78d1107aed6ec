package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The tests that need another process run this test binary again with one
// of these set; the child does its part and exits.
const (
	// childRecoverAs = "UID:DIR": take on uid UID, open (and so recover)
	// the spool in DIR, print the queued ids, one a line.
	childRecoverAs = "SMIMEGATE_SPOOL_TEST_RECOVER_AS"
)

func init() {
	if v := os.Getenv(childRecoverAs); v != "" {
		os.Exit(childRecover(v))
	}
}

func childRecover(v string) int {
	uidS, dir, _ := strings.Cut(v, ":")
	uid, err := strconv.Atoi(uidS)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	// Supplementary groups, group, user: in this order, since after the
	// uid the others can no longer be changed.
	if err := syscall.Setgroups(nil); err != nil {
		fmt.Fprintln(os.Stderr, "setgroups:", err)
		return 3
	}
	if err := syscall.Setgid(uid); err != nil {
		fmt.Fprintln(os.Stderr, "setgid:", err)
		return 3
	}
	if err := syscall.Setuid(uid); err != nil {
		fmt.Fprintln(os.Stderr, "setuid:", err)
		return 3
	}
	s, err := Open(dir, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	defer s.Close()
	envs, err := s.List()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 3
	}
	for _, env := range envs {
		fmt.Println(env.ID)
	}
	return 0
}

// runChild runs this test binary with env set and returns its output.
func runChild(t *testing.T, env string) (stdout, stderr string, code int) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), env)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

// unprivileged is the uid the permission tests run recovery as when the
// tests run as root ("nobody" on Debian and most others).
const unprivileged = 65534

// chownTree gives every file under dir to uid.
func chownTree(t *testing.T, dir string, uid int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, uid)
	})
	if err != nil {
		t.Fatal(err)
	}
}
