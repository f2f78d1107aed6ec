package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// LockFile is the state directory's one lock: an exclusive flock(2) held by
// the process that has the spool open and recovered it. A running gateway
// holds it for as long as it runs, which is how the queue commands know to
// go through its admin API, and why a second gateway, or one started while
// a command on a stopped gateway has the spool open, refuses to start
// rather than share the spool or skip its recovery.
const LockFile = "smimegate.lock"

// ErrLocked is OpenWith's answer, with Options.Exclusive, when another
// process (or another open Spool in this one) holds LockFile.
var ErrLocked = errors.New("the state directory is in use by another smimegate process")

// lockSpool takes the lock without waiting, or returns nil if another open
// file (another process, or another Spool in this one) holds it. The
// holder's process id is written into the file for the operator; the lock,
// not the id, is what counts.
func lockSpool(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, LockFile), os.O_RDWR|os.O_CREATE, fileMode)
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("spool: locking %s: %w", f.Name(), err)
	}
	if err := f.Truncate(0); err == nil {
		fmt.Fprintf(f, "%d\n", os.Getpid())
	}
	return f, nil
}

// Locked reports whether some process holds the state directory's lock,
// without taking it: true while a gateway runs on dir (or a command has
// its spool open). A directory without the file is not locked.
func Locked(dir string) bool {
	f, err := os.Open(filepath.Join(dir, LockFile))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return true
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}
