package spool

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// idFiles is what one directory holds for one message id.
type idFiles struct {
	env  bool
	data []string // version names, "" for the original
}

// recover brings the spool to a consistent state after a crash: it finishes
// interrupted moves between queue and quarantine, empties tmp/, removes data
// files that no envelope references (versions an Update never named, links
// left by a move) and moves damaged envelopes and torn originals, with
// their data, to corrupt/. Damage never makes it fail; only an unreadable
// directory does.
func (s *Spool) recover() error {
	if err := s.emptyTmp(); err != nil {
		return err
	}
	if err := s.finishMoves(); err != nil {
		return err
	}
	for _, dir := range []string{s.queueDir, s.quarDir} {
		if err := s.recoverDir(dir); err != nil {
			return err
		}
	}
	for _, dir := range []string{s.queueDir, s.quarDir, s.corruptDir, s.tmpDir} {
		if err := syncDir(dir); err != nil {
			return err
		}
	}
	return nil
}

func (s *Spool) emptyTmp() error {
	entries, err := os.ReadDir(s.tmpDir)
	if err != nil {
		return fmt.Errorf("spool: recovery: %w", err)
	}
	for _, e := range entries {
		p := filepath.Join(s.tmpDir, e.Name())
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("spool: recovery: removing %s: %w", p, err)
		}
		if !strings.HasPrefix(e.Name(), "free-") { // emptied, recycled inodes: nothing was lost
			s.log.Info("spool: removed unfinished temporary file", "file", p)
		}
	}
	return nil
}

// scan groups the entries of dir by message id. Entries that are not spool
// files are moved to corrupt/ on the spot.
func (s *Spool) scan(dir string) (map[string]*idFiles, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool: recovery: %w", err)
	}
	byID := map[string]*idFiles{}
	for _, e := range entries {
		id, kind, data, ok := parseName(e.Name())
		if !ok || !e.Type().IsRegular() {
			s.toCorrupt(dir, e.Name(), "", "not a spool file")
			continue
		}
		f := byID[id]
		if f == nil {
			f = &idFiles{}
			byID[id] = f
		}
		if kind == "json" {
			f.env = true
		} else {
			f.data = append(f.data, data)
		}
	}
	return byID, nil
}

func (s *Spool) recoverDir(dir string) error {
	byID, err := s.scan(dir)
	if err != nil {
		return err
	}
	for id, files := range byID {
		var env *Envelope
		switch {
		case files.env:
			env, err = readEnvelope(dir, id)
			if err == nil {
				err = s.checkData(dir, env, files)
			}
			if errors.Is(err, fs.ErrPermission) {
				s.unreadable(dir, id, err)
				continue
			}
			if err != nil {
				s.toCorrupt(dir, envName(id), id, err.Error())
				for _, d := range files.data {
					s.toCorrupt(dir, dataName(id, d), id, "data of a damaged envelope")
				}
				continue
			}
		case dir == s.queueDir && slices.Contains(files.data, "") && !s.inQuarantine(id):
			// An original without an envelope file is committed exactly when
			// its trailer is whole: the trailer was fsynced with the data
			// before the rename, and the 250 follows the rename's directory
			// sync. A torn one was therefore never acknowledged; it is kept
			// in corrupt/ for the operator like any damaged file.
			env, err = readTrailerEnvelope(dir, id)
			if err == nil {
				err = s.checkData(dir, env, files)
			}
			if errors.Is(err, fs.ErrPermission) {
				s.unreadable(dir, id, err)
				continue
			}
			if err != nil {
				s.toCorrupt(dir, dataName(id, ""), id, "torn original (never acknowledged): "+err.Error())
				for _, d := range files.data {
					if d != "" {
						s.toCorrupt(dir, dataName(id, d), id, "data of a torn original")
					}
				}
				continue
			}
		default:
			// Without an envelope file or (in queue/) an original the message
			// was never accepted (no 250 was sent), and in quarantine/ only
			// the envelope file commits a move: the data goes. So does an
			// original in queue/ whose envelope is in quarantine/, a link
			// left by a move.
			for _, d := range files.data {
				s.removeData(dir, id, d, "data without an envelope (never committed)")
			}
			continue
		}
		refs := references(env)
		for _, d := range files.data {
			if !slices.Contains(refs, d) {
				s.removeData(dir, id, d, "data no envelope references")
			}
		}
	}
	return nil
}

// unreadable logs a message whose envelope or original this process may
// not read (EACCES or EPERM). That is not damage: the files are typically
// whole but belong to another user, written by a command run as root while
// the gateway was stopped. Moving them to corrupt/ would lose the mail for
// a mistake the operator can undo with chown, so every file of the message
// stays where it is, nothing of it is removed, and the next start tries
// again.
func (s *Spool) unreadable(dir, id string, err error) {
	s.log.Error("spool: recovery cannot read a message (permission denied); its files are left in place, not moved to corrupt/: give them to the gateway's user (chown -R) and restart",
		"id", id, "dir", dir, "err", err)
}

// inQuarantine reports whether quarantine/ holds an envelope for id.
func (s *Spool) inQuarantine(id string) bool {
	_, err := os.Lstat(filepath.Join(s.quarDir, envName(id)))
	return err == nil
}

// checkData verifies that every data file env needs is present, and that
// the original has the size the envelope recorded (a torn write shows as a
// shorter file). The original's size is that of its data before the
// trailer.
func (s *Spool) checkData(dir string, env *Envelope, files *idFiles) error {
	for _, d := range references(env) {
		if !slices.Contains(files.data, d) {
			if d == "" {
				return errors.New("the original message named by the envelope is missing")
			}
			return fmt.Errorf("data file %q named by the envelope is missing", d)
		}
		if d == "" {
			f, err := os.Open(filepath.Join(dir, dataName(env.ID, "")))
			if err != nil {
				return err
			}
			n, err := dataLength(f)
			f.Close()
			if err != nil {
				return err
			}
			if n != env.Size {
				return fmt.Errorf("the original message has %d bytes, the envelope says %d", n, env.Size)
			}
		}
	}
	return nil
}

func (s *Spool) removeData(dir, id, data, why string) {
	p := filepath.Join(dir, dataName(id, data))
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Error("spool: recovery could not remove a file", "file", p, "err", err)
		return
	}
	s.log.Info("spool: recovery removed a file", "id", id, "file", p, "reason", why)
}

// toCorrupt moves dir/name to corrupt/, under a new name if one of that
// name is already there. It logs, and never fails the start: a file that
// cannot even be moved is logged and left where it is.
func (s *Spool) toCorrupt(dir, name, id, why string) {
	src := filepath.Join(dir, name)
	dst := filepath.Join(s.corruptDir, filepath.Base(dir)+"-"+name)
	for i := 1; ; i++ {
		if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
			break
		}
		dst = filepath.Join(s.corruptDir, filepath.Base(dir)+"-"+name+"."+strconv.Itoa(i))
	}
	if err := os.Rename(src, dst); err != nil {
		s.log.Error("spool: recovery could not move a damaged file to corrupt/", "file", src, "err", err)
		return
	}
	s.log.Warn("spool: moved damaged file to corrupt/", "id", id, "file", src, "to", dst, "reason", why)
}

// finishMoves completes moves between queue/ and quarantine/ that a crash
// interrupted. Quarantine and Release first rewrite the envelope in its old
// directory with the new state (QuarantinedAt set, or cleared), then rename
// it across: an envelope in the wrong directory for its state is a move
// whose rename has not happened yet.
func (s *Spool) finishMoves() error {
	for _, dir := range []string{s.queueDir, s.quarDir} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("spool: recovery: %w", err)
		}
		for _, e := range entries {
			id, kind, _, ok := parseName(e.Name())
			if !ok || kind != "json" {
				continue
			}
			env, err := readEnvelope(dir, id)
			if err != nil {
				continue // recoverDir deals with it
			}
			quarantined := !env.QuarantinedAt.IsZero()
			switch {
			case dir == s.queueDir && quarantined:
				s.log.Info("spool: recovery finishes an interrupted quarantine", "id", id)
				if _, err := s.move(env, s.queueDir, s.quarDir, nil); err != nil {
					s.log.Error("spool: recovery could not finish a quarantine", "id", id, "err", err)
				}
			case dir == s.quarDir && !quarantined:
				s.log.Info("spool: recovery finishes an interrupted release", "id", id)
				// The versions the message had in quarantine are no longer
				// named by its envelope; recoverDir removes them from
				// quarantine/ as data without an envelope.
				if _, err := s.move(env, s.quarDir, s.queueDir, nil); err != nil {
					s.log.Error("spool: recovery could not finish a release", "id", id, "err", err)
				}
			}
		}
	}
	return nil
}
