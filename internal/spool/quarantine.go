package spool

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Quarantine moves a queued message to the quarantine, with the reason the
// operator will see. env is the message's envelope (as loaded or as last
// updated); its data files move with it.
//
// The move never has two envelopes at once: the envelope is written to
// queue/ID.json with QuarantinedAt set (superseding the trailer of a
// message that had none), the data files are linked into quarantine/, and
// then the envelope is renamed into quarantine/. The trailer travels with
// the original but counts only in queue/, and there only while no
// quarantine/ID.json exists. Recovery finishes a move that a crash
// interrupted.
//
// Quarantine never refuses for want of room: a message the gateway must not
// deliver is better kept beyond the quota than delivered. Whoever enforces
// the quota (see QuarantineUsage) does it before accepting mail. The
// message's work marker is cleared once the move has committed.
func (s *Spool) Quarantine(env *Envelope, reason string) error {
	if err := checkID(env.ID); err != nil {
		return err
	}
	s.quarMu.Lock()
	defer s.quarMu.Unlock()
	if !s.queued(env.ID) {
		return fmt.Errorf("spool: quarantine of %s: %w", env.ID, ErrNotFound)
	}
	for _, d := range references(env) {
		if _, err := os.Stat(filepath.Join(s.queueDir, dataName(env.ID, d))); err != nil {
			return fmt.Errorf("spool: quarantine of %s: data %q: %w", env.ID, d, err)
		}
	}
	q := *env
	q.Reason = reason
	q.QuarantinedAt = time.Now().UTC()
	for _, d := range s.takePending(env.ID) {
		os.Remove(filepath.Join(s.queueDir, dataName(env.ID, d)))
	}
	if err := s.writeEnvelope(s.queueDir, &q); err != nil {
		return err
	}
	committed, err := s.move(&q, s.queueDir, s.quarDir, nil)
	if committed {
		s.addUsage(1, s.quarantinedSize(&q))
		s.clearWork(env.ID)
	}
	return err
}

// Release moves a quarantined message back to the queue as if it had just
// been received, so that the policy step runs again (after the operator has,
// say, installed the missing key).
func (s *Spool) Release(id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	s.quarMu.Lock()
	defer s.quarMu.Unlock()
	env, err := s.LoadQuarantined(id)
	if err != nil {
		return err
	}
	// Measured before the envelope is rewritten, so that what leaves the
	// usage is what Quarantine or Open put into it.
	size := s.quarantinedSize(env)
	if _, err := os.Stat(filepath.Join(s.quarDir, dataName(id, ""))); err != nil {
		return fmt.Errorf("spool: release of %s: the original message is not in the quarantine: %w", id, err)
	}
	r := *env
	r.Stage = StageReceived
	r.Versions = nil
	r.Reason = ""
	r.QuarantinedAt = time.Time{}
	r.Attempts = 0
	r.NextAttempt = time.Time{}
	r.LastError = ""
	if err := s.writeEnvelope(s.quarDir, &r); err != nil {
		return err
	}
	committed, err := s.move(&r, s.quarDir, s.queueDir, references(env))
	if committed {
		s.addUsage(-1, -size)
	}
	return err
}

// move links the data files env references from src to dst, makes them
// durable, renames the envelope from src to dst (the commit of the move),
// makes that durable and removes from src the files it linked, the original
// and the data files named in extra (those the envelope named before the
// move rewrote it). committed says whether the rename happened: from then on
// the message is in dst, whatever error follows.
//
// The files to remove are named rather than found by listing src: a listing
// costs time in proportion to the whole directory, and a flood of mail that
// ends in the quarantine must not make every move slower than the last.
// Anything a crash leaves behind is data without an envelope, which recovery
// removes.
func (s *Spool) move(env *Envelope, src, dst string, extra []string) (committed bool, err error) {
	id := env.ID
	refs := references(env)
	for _, d := range refs {
		from, to := filepath.Join(src, dataName(id, d)), filepath.Join(dst, dataName(id, d))
		if err := os.Link(from, to); err != nil && !errors.Is(err, fs.ErrExist) {
			return false, fmt.Errorf("spool: moving %s: %w", id, err)
		}
	}
	if err := syncDir(dst); err != nil {
		return false, err
	}
	if err := os.Rename(filepath.Join(src, envName(id)), filepath.Join(dst, envName(id))); err != nil {
		return false, fmt.Errorf("spool: moving %s: %w", id, err)
	}
	if err := syncDir(dst); err != nil {
		return true, err
	}
	if err := syncDir(src); err != nil {
		return true, err
	}
	leftovers := append(append([]string{""}, refs...), extra...)
	for _, d := range leftovers {
		if err := os.Remove(filepath.Join(src, dataName(id, d))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("spool: a moved message left a file behind; the next start removes it", "id", id, "err", err)
		}
	}
	return true, nil
}

// ListQuarantine returns the envelopes of the quarantined messages.
func (s *Spool) ListQuarantine() ([]*Envelope, error) {
	return s.list(s.quarDir)
}

// LoadQuarantined returns the envelope of a quarantined message.
func (s *Spool) LoadQuarantined(id string) (*Envelope, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	return readEnvelope(s.quarDir, id)
}

// ReadQuarantinedData returns the original message of a quarantined
// message.
func (s *Spool) ReadQuarantinedData(id string) ([]byte, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	d, err := openData(s.quarDir, id, "")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	b, err := readAll(d)
	if err != nil {
		return nil, fmt.Errorf("spool: quarantined message %s: %w", id, err)
	}
	return b, nil
}

// DeleteQuarantined removes a quarantined message for good.
func (s *Spool) DeleteQuarantined(id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	s.quarMu.Lock()
	defer s.quarMu.Unlock()
	env, err := s.LoadQuarantined(id)
	if err != nil {
		return err
	}
	return s.deleteQuarantined(env)
}

// deleteQuarantined removes the quarantined message env, with quarMu held.
// The removal of the envelope is the deletion: the usage drops with it, and
// data files left by a failure after it are removed by the next start.
func (s *Spool) deleteQuarantined(env *Envelope) error {
	id := env.ID
	size := s.quarantinedSize(env)
	if err := os.Remove(filepath.Join(s.quarDir, envName(id))); err != nil {
		return fmt.Errorf("spool: deleting quarantined %s: %w", id, err)
	}
	s.addUsage(-1, -size)
	for _, d := range append(references(env), "") {
		if err := os.Remove(filepath.Join(s.quarDir, dataName(id, d))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("spool: deleting quarantined %s: %w", id, err)
		}
	}
	return nil
}

// QuarantineUsage returns how many messages the quarantine holds and how
// many bytes their files take: every data file of each message (the
// original with its trailer, the versions) and its envelope file. It costs
// a mutex, no file system access: it is counted from quarantine/ at Open,
// after recovery has finished any move a crash interrupted, and adjusted
// when a Quarantine, a Release, a DeleteQuarantined or an ExpireQuarantine
// commits. A second process that changes the quarantine directly (a queue
// command while the gateway runs, which the commands avoid by using the
// admin API) is not seen until the next Open.
//
// The numbers change only after the fact: a caller that enforces a quota
// with them lets every message through that arrives before the one that
// fills it, so the quarantine can exceed its quota by what is in flight at
// that moment. They never go below zero.
func (s *Spool) QuarantineUsage() (messages int, bytes int64) {
	s.usageMu.Lock()
	defer s.usageMu.Unlock()
	return s.quarMsgs, s.quarBytes
}

func (s *Spool) addUsage(messages int, bytes int64) {
	s.usageMu.Lock()
	s.quarMsgs = max(0, s.quarMsgs+messages)
	s.quarBytes = max(0, s.quarBytes+bytes)
	s.usageMu.Unlock()
}

// quarantinedSize returns the bytes the files of the quarantined message env
// take: its envelope file, the original, and the data files env names.
func (s *Spool) quarantinedSize(env *Envelope) int64 {
	var n int64
	names := []string{envName(env.ID), dataName(env.ID, "")}
	for _, d := range references(env) {
		if d != "" {
			names = append(names, dataName(env.ID, d))
		}
	}
	for _, name := range names {
		if st, err := os.Lstat(filepath.Join(s.quarDir, name)); err == nil {
			n += st.Size()
		}
	}
	return n
}

// countQuarantine sets the usage from the files in quarantine/: a message
// counts by its envelope file, and all its files count for its bytes. Files
// of an id without an envelope (a move in progress in another process) do
// not count. ReadDir sorts by name, so the files of one id are adjacent,
// and the envelope, ID.json, comes before the data files, ID.*.msg.
func (s *Spool) countQuarantine() error {
	entries, err := os.ReadDir(s.quarDir)
	if err != nil {
		return fmt.Errorf("spool: counting the quarantine: %w", err)
	}
	var (
		messages int
		bytes    int64
		counted  string // the id whose envelope was seen last
	)
	for _, e := range entries {
		id, kind, _, ok := parseName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		if kind == "json" {
			messages++
			counted = id
		} else if id != counted {
			continue
		}
		if info, err := e.Info(); err == nil {
			bytes += info.Size()
		}
	}
	s.usageMu.Lock()
	s.quarMsgs, s.quarBytes = messages, bytes
	s.usageMu.Unlock()
	return nil
}

// expireBatch is how many directory entries ExpireQuarantine reads at a
// time: its memory stays the same however large the quarantine has grown.
const expireBatch = 1024

// maxExpireErrors bounds the errors ExpireQuarantine collects: one bad file
// system gives the same error for every message, and a few name it.
const maxExpireErrors = 10

// ExpireQuarantine deletes the quarantined messages whose QuarantinedAt is
// before the time before, as DeleteQuarantined would, and returns how many
// it removed. A message whose envelope cannot be read is left alone (it
// cannot say when it came; the next start moves a damaged one to corrupt/)
// and so is one whose release a crash interrupted (QuarantinedAt is zero;
// the next start finishes the release). It goes on past a message it cannot
// delete and returns the first errors it met (up to maxExpireErrors) with
// the count of the others, after trying every message.
//
// It holds the quarantine's lock for one message at a time, so moves into
// the quarantine and operators' commands wait for one deletion at most. Its
// memory is bounded by expireBatch directory entries.
func (s *Spool) ExpireQuarantine(before time.Time) (removed int, err error) {
	d, err := os.Open(s.quarDir)
	if err != nil {
		return 0, fmt.Errorf("spool: expiring the quarantine: %w", err)
	}
	defer d.Close()
	var errs []error
	failed := 0
	for {
		entries, rerr := d.ReadDir(expireBatch)
		for _, e := range entries {
			id, kind, _, ok := parseName(e.Name())
			if !ok || kind != "json" {
				continue
			}
			done, err := s.expireOne(id, before)
			if done {
				removed++
			}
			if err != nil {
				failed++
				if len(errs) < maxExpireErrors {
					errs = append(errs, err)
				}
			}
		}
		if errors.Is(rerr, io.EOF) || (rerr == nil && len(entries) == 0) {
			break
		}
		if rerr != nil {
			errs = append(errs, fmt.Errorf("spool: expiring the quarantine: %w", rerr))
			break
		}
	}
	if failed > len(errs) {
		errs = append(errs, fmt.Errorf("spool: and %d more messages that could not be expired", failed-len(errs)))
	}
	return removed, errors.Join(errs...)
}

// expireOne deletes quarantined message id if it was quarantined before the
// time before.
func (s *Spool) expireOne(id string, before time.Time) (bool, error) {
	s.quarMu.Lock()
	defer s.quarMu.Unlock()
	// Read again under the lock: a release may have taken the message since
	// the directory was read.
	env, err := readEnvelope(s.quarDir, id)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	if err != nil {
		s.log.Warn("spool: quarantined message with an unreadable envelope left out of the expiry", "id", id, "err", err)
		return false, nil
	}
	if env.QuarantinedAt.IsZero() || !env.QuarantinedAt.Before(before) {
		return false, nil
	}
	if err := s.deleteQuarantined(env); err != nil {
		return false, err
	}
	s.log.Info("spool: quarantined message expired", "id", id, "quarantined_at", env.QuarantinedAt)
	return true, nil
}
