package spool

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// maxFree bounds the recycled files kept for reuse: enough for the messages
// that arrive while others are delivered, few enough to be nothing on disk
// (they are empty).
const maxFree = 256

// freeList keeps the inodes of delivered originals for the next received
// messages. Creating a file is the most expensive step of a commit on some
// file systems: ext4 without a journal scans the inode table past every
// recently deleted inode (fs/ext4/ialloc.c recently_deleted), and a spool
// that creates and deletes a file per message fills it with those. A
// delivered original is instead renamed into tmp/ and truncated, and the
// next NewMessage renames it to its own name. The file is empty from the
// truncate on, so no message content outlives its delivery; recovery
// empties tmp/ and with it the list.
type freeList struct {
	mu    sync.Mutex
	names []string
	token string // unique to this Spool: two Spools on one directory never share names
	next  uint64
}

func newFreeList() *freeList {
	b := make([]byte, 4)
	rand.Read(b)
	return &freeList{token: hex.EncodeToString(b)}
}

// recycle takes the file at path out of the queue (the rename is as atomic
// as the unlink it replaces) and keeps it, emptied, for reuse. It falls back
// to removing the file.
func (s *Spool) recycle(path string) error {
	fl := s.free
	fl.mu.Lock()
	if len(fl.names) >= maxFree {
		fl.mu.Unlock()
		return os.Remove(path)
	}
	fl.next++
	name := filepath.Join(s.tmpDir, "free-"+fl.token+"-"+strconv.FormatUint(fl.next, 36))
	fl.mu.Unlock()
	if err := os.Rename(path, name); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return os.Remove(path)
	}
	if err := os.Truncate(name, 0); err != nil {
		os.Remove(name)
		return nil
	}
	fl.mu.Lock()
	fl.names = append(fl.names, name)
	fl.mu.Unlock()
	return nil
}

// createFile makes the new, empty file path (in tmp/) for writing, from a
// recycled inode when one is free. It is open for reading too:
// Incoming.ReadAll reads a message back before it is committed.
func (s *Spool) createFile(path string) (*os.File, error) {
	fl := s.free
	for {
		fl.mu.Lock()
		if len(fl.names) == 0 {
			fl.mu.Unlock()
			break
		}
		name := fl.names[len(fl.names)-1]
		fl.names = fl.names[:len(fl.names)-1]
		fl.mu.Unlock()
		if err := os.Rename(name, path); err != nil {
			os.Remove(name)
			continue
		}
		f, err := os.OpenFile(path, os.O_RDWR|os.O_TRUNC, fileMode)
		if err == nil {
			return f, nil
		}
		os.Remove(path)
	}
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, fileMode)
}
