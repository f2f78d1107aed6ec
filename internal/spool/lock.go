package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

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

// The holder of LockFile writes its process id and its role into it, so
// that the queue commands can tell a running gateway (which holds the lock
// for as long as it runs) from another command that has the spool open for
// a moment: only the first has an admin API to go through.
const (
	roleGateway = "gateway"
	roleCommand = "command"
)

// lockSpool takes the lock without waiting, or returns nil if another open
// file (another process, or another Spool in this one) holds it. The
// holder's process id and role are written into the file; the lock, not
// the text, says whether it is held.
func lockSpool(dir, role string) (*os.File, error) {
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
		fmt.Fprintf(f, "%d %s\n", os.Getpid(), role)
	}
	return f, nil
}

// maxLockText bounds what GatewayRunning reads of the lock file: a process
// id and a role are a few bytes.
const maxLockText = 64

// GatewayRunning reports whether a gateway holds the state directory's
// lock: it is held (probed without taking it) and its holder says it is a
// gateway (Options.Exclusive). A command that has the spool open holds the
// lock too, but is no gateway; a lock file left by a gateway that has
// stopped is not held. A directory without the file has no gateway.
func GatewayRunning(dir string) bool {
	f, err := os.Open(filepath.Join(dir, LockFile))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err == nil {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return false
	}
	b := make([]byte, maxLockText)
	n, _ := f.Read(b)
	fields := strings.Fields(string(b[:n]))
	// A holder that has not written its line yet (the instant after it
	// took the lock) is taken for a gateway: the commands then ask the
	// admin API, which fails loudly, rather than write beside a gateway.
	return len(fields) < 2 || fields[1] == roleGateway
}
