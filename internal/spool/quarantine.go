package spool

import (
	"errors"
	"fmt"
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
func (s *Spool) Quarantine(env *Envelope, reason string) error {
	if err := checkID(env.ID); err != nil {
		return err
	}
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
	return s.move(&q, s.queueDir, s.quarDir)
}

// Release moves a quarantined message back to the queue as if it had just
// been received, so that the policy step runs again (after the operator has,
// say, installed the missing key).
func (s *Spool) Release(id string) error {
	env, err := s.LoadQuarantined(id)
	if err != nil {
		return err
	}
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
	return s.move(&r, s.quarDir, s.queueDir)
}

// move links the data files env references from src to dst, makes them
// durable, renames the envelope from src to dst (the commit of the move),
// makes that durable and removes what is left in src.
func (s *Spool) move(env *Envelope, src, dst string) error {
	id := env.ID
	refs := references(env)
	for _, d := range refs {
		from, to := filepath.Join(src, dataName(id, d)), filepath.Join(dst, dataName(id, d))
		if err := os.Link(from, to); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("spool: moving %s: %w", id, err)
		}
	}
	if err := syncDir(dst); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(src, envName(id)), filepath.Join(dst, envName(id))); err != nil {
		return fmt.Errorf("spool: moving %s: %w", id, err)
	}
	if err := syncDir(dst); err != nil {
		return err
	}
	if err := syncDir(src); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("spool: moving %s: %w", id, err)
	}
	for _, e := range entries {
		if eid, kind, _, ok := parseName(e.Name()); ok && eid == id && kind == "msg" {
			os.Remove(filepath.Join(src, e.Name()))
		}
	}
	return nil
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
	env, err := s.LoadQuarantined(id)
	if err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(s.quarDir, envName(id))); err != nil {
		return fmt.Errorf("spool: deleting quarantined %s: %w", id, err)
	}
	for _, d := range append(references(env), "") {
		if err := os.Remove(filepath.Join(s.quarDir, dataName(id, d))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("spool: deleting quarantined %s: %w", id, err)
		}
	}
	return nil
}
