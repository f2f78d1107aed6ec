// Package spool is smimegate's durable queue: one data file per message
// version, in plain directories, no database. A received message is one
// file, queue/ID.msg: the message bytes, then its envelope as JSON (the
// trailer), then a 16-byte footer (the JSON's length, 8 bytes big-endian,
// and the magic "SMGENV01"). Later envelope changes go to queue/ID.json,
// which supersedes the trailer from then on.
//
// The commit is the rename of the original into queue/. Crash safety is as
// strong as with a separate envelope file, for these reasons:
//
//   - The file is written whole in tmp/ (data, trailer, footer) and fsynced
//     once before the rename. So every original that can be seen in queue/
//     after a crash, if it was acknowledged, has its envelope and footer on
//     disk: the rename is durable (a directory fsync, grouped with the
//     commits that arrived meanwhile) before the 250 is sent, and its
//     contents were durable before the rename.
//   - Files in tmp/ were never renamed, so never acknowledged: recovery
//     removes them, as before.
//   - An original in queue/ without a valid footer, with an envelope JSON
//     that does not decode, names another id or another size, can only be
//     a torn write that no 250 followed (a lying disk); recovery moves it to corrupt/ with a log line, as it does with
//     any damaged file.
//   - ID.json is written as before (tmp file, fsync, rename, directory
//     sync), so an update is either the old trailer or envelope, or the new
//     envelope, never a mix. The original's bytes are never rewritten: the
//     trailer stays, and readers (OpenData, ReadData) stop where it starts.
//   - The trailer counts only in queue/ and only while quarantine/ has no
//     envelope for the id: a move between queue/ and quarantine/ links the
//     original across before its envelope file is renamed, and such a link
//     must not look like a second message.
//
// Originals without a footer (written before trailers existed) are still
// read whole while their ID.json names their size.
//
// Layout under the state directory:
//
//	queue/ID.msg         the original as received, with its envelope trailer
//	queue/ID.json        the envelope once it has changed (see Envelope)
//	queue/ID.NAME.msg    a version written by the policy step (NewVersion)
//	quarantine/          the same files for quarantined messages; there the
//	                     envelope is always ID.json
//	corrupt/             damaged files found at start-up, kept for the operator
//	tmp/                 files being written; emptied at start-up
//	work                 work markers: the starts of processing that did not
//	                     end, per message (BeginWork, EndWork); never fsynced
//	smimegate.lock       held (flock) by the process that recovered the spool:
//	                     a running gateway (LockFile)
package spool

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// File and directory modes: the spool holds plaintext mail, so only the
// gateway's user may read it.
const (
	fileMode = 0o600
	dirMode  = 0o700
)

// ErrNotFound is returned (wrapped) for a queue id that is not in the
// queue or the quarantine.
var ErrNotFound = errors.New("no such message")

// Options configures OpenWith.
type Options struct {
	Logger *slog.Logger
	// Exclusive makes OpenWith fail with ErrLocked, rather than open the
	// spool without recovering it, when another process holds LockFile,
	// and marks the holder as a gateway (GatewayRunning): the gateway
	// opens its spool so, the queue commands do not.
	Exclusive bool
}

// Spool is the queue on disk. Its methods may be called from many
// goroutines; operations on one message id are expected to come from one
// goroutine at a time (the gateway handles each message in one worker).
type Spool struct {
	dir        string
	queueDir   string
	quarDir    string
	corruptDir string
	tmpDir     string
	log        *slog.Logger
	// queueSync makes the queue directory's entries durable, one
	// directory fsync for every commit that arrived while the previous one
	// ran (groupsync.go).
	queueSync dirSyncer

	// lock holds an exclusive flock on state_dir/smimegate.lock while this
	// Spool is open; nil if another process held it at Open.
	lock *os.File

	mu sync.Mutex
	// pending holds, per message, the versions committed with
	// VersionWriter.Commit that no envelope references yet: Update makes
	// their directory entries durable before the envelope names them and
	// removes those the new envelope leaves out.
	pending map[string][]string

	// free holds emptied inodes of delivered originals for reuse.
	free *freeList
	// work is the work markers (work.go), under mu; nil unless this Spool
	// recovered the spool.
	work *workTable

	// quarMu serialises the moves into and out of the quarantine and its
	// deletions (Quarantine, Release, DeleteQuarantined, ExpireQuarantine),
	// so that an expiry and an operator's release of the same message never
	// interleave, and the usage below changes exactly when a move commits.
	quarMu sync.Mutex
	// usage is what QuarantineUsage reports: counted from quarantine/ at
	// Open, then adjusted by every move and deletion under quarMu.
	usageMu   sync.Mutex
	quarMsgs  int
	quarBytes int64
}

// Open opens (creating if needed) the spool under the state directory dir
// and recovers it: temporary files are removed, unreferenced data files are
// removed and damaged envelopes are moved to corrupt/ with a log line. It
// fails only when the directories cannot be made or read, never because of
// a damaged file.
func Open(dir string, logger *slog.Logger) (*Spool, error) {
	return OpenWith(dir, Options{Logger: logger})
}

// OpenWith is Open with options: a logger, and whether another holder of
// the lock is an error (Exclusive).
func OpenWith(dir string, opts Options) (*Spool, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Spool{
		dir:        dir,
		queueDir:   filepath.Join(dir, "queue"),
		quarDir:    filepath.Join(dir, "quarantine"),
		corruptDir: filepath.Join(dir, "corrupt"),
		tmpDir:     filepath.Join(dir, "tmp"),
		log:        logger,
		pending:    map[string][]string{},
		free:       newFreeList(),
	}
	for _, d := range []string{dir, s.queueDir, s.quarDir, s.corruptDir, s.tmpDir} {
		if err := os.MkdirAll(d, dirMode); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		// MkdirAll leaves existing directories alone; tighten them too, since
		// a spool created by hand with a loose umask would expose mail.
		if err := os.Chmod(d, dirMode); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
	}
	s.queueSync = newSyncGroup(func() error { return syncDir(s.queueDir) })
	role := roleCommand
	if opts.Exclusive {
		role = roleGateway
	}
	lock, err := lockSpool(dir, role)
	if err != nil {
		return nil, err
	}
	if lock == nil && opts.Exclusive {
		return nil, fmt.Errorf("spool: %s: %w", dir, ErrLocked)
	}
	if lock == nil {
		// Recovery removes files that a live gateway may be in the middle of
		// committing; a second opener (a queue command) must not run it.
		logger.Info("spool: another process has the spool open; recovery skipped", "dir", dir)
		if err := s.countQuarantine(); err != nil {
			return nil, err
		}
		return s, nil
	}
	s.lock = lock
	if err := s.recover(); err != nil {
		lock.Close()
		return nil, err
	}
	// Counted after recovery, which finishes interrupted moves and removes
	// their links: what is counted is what the quarantine holds.
	if err := s.countQuarantine(); err != nil {
		lock.Close()
		return nil, err
	}
	// Markers of messages that recovery left queued are kept, so that the
	// next BeginWork sees how often their processing never ended.
	if err := s.openWork(s.queued); err != nil {
		lock.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the spool's lock, so that the next Open recovers. The
// Spool must not be used afterwards.
func (s *Spool) Close() error {
	if s.lock == nil {
		return nil
	}
	s.mu.Lock()
	if s.work != nil {
		s.work.f.Close()
		s.work = nil
	}
	s.mu.Unlock()
	err := s.lock.Close()
	s.lock = nil
	return err
}

// Dir returns the state directory the spool lives in.
func (s *Spool) Dir() string { return s.dir }

// SyncRounds returns how many directory syncs the queue has needed so far;
// with grouping it is well below the number of commits.
func (s *Spool) SyncRounds() uint64 { return s.queueSync.Rounds() }

// syncQueue makes the queue directory's entries durable, grouped with
// concurrent callers.
func (s *Spool) syncQueue() error { return s.queueSync.Sync() }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: syncing directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("spool: syncing directory %s: %w", dir, err)
	}
	return nil
}

// File names inside queue/ and quarantine/.

func envName(id string) string { return id + ".json" }

func dataName(id, data string) string {
	if data == "" {
		return id + ".msg"
	}
	return id + "." + data + ".msg"
}

// parseName splits a spool file name into its id and kind: "json" for an
// envelope, "msg" for data (data names the version, "" the original).
func parseName(name string) (id, kind, data string, ok bool) {
	id, rest, found := strings.Cut(name, ".")
	if !found || !validID(id) {
		return "", "", "", false
	}
	switch {
	case rest == "json":
		return id, "json", "", true
	case rest == "msg":
		return id, "msg", "", true
	}
	v, ok2 := strings.CutSuffix(rest, ".msg")
	if !ok2 || !validToken(v) {
		return "", "", "", false
	}
	return id, "msg", v, true
}

// references returns the data files an envelope needs: the original while
// the policy step has not run or while a version still delivers it, and
// every version's own file.
func references(env *Envelope) []string {
	var refs []string
	if env.Stage != StageRouted {
		refs = append(refs, "")
	}
	for _, v := range env.Versions {
		if !slices.Contains(refs, v.Data) {
			refs = append(refs, v.Data)
		}
	}
	return refs
}

func checkID(id string) error {
	if !validID(id) {
		return fmt.Errorf("spool: %q is not a queue id: %w", id, ErrNotFound)
	}
	return nil
}

func checkData(data string) error {
	if data != "" && !validToken(data) {
		return fmt.Errorf("spool: %q is not a data file name", data)
	}
	return nil
}

func readEnvelope(dir, id string) (*Envelope, error) {
	b, err := os.ReadFile(filepath.Join(dir, envName(id)))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("spool: message %s: %w", id, ErrNotFound)
		}
		return nil, fmt.Errorf("spool: message %s: %w", id, err)
	}
	env, err := decodeEnvelope(b)
	if err != nil {
		return nil, fmt.Errorf("spool: message %s: %w", id, err)
	}
	if env.ID != id {
		return nil, fmt.Errorf("spool: message %s: envelope names id %q", id, env.ID)
	}
	return env, nil
}

func decodeEnvelope(b []byte) (*Envelope, error) {
	var env Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, fmt.Errorf("envelope is not valid JSON: %w", err)
	}
	if !validID(env.ID) {
		return nil, fmt.Errorf("envelope has no valid id (%q)", env.ID)
	}
	switch env.Stage {
	case StageReceived, StageRouted:
	default:
		return nil, fmt.Errorf("envelope has unknown stage %q", env.Stage)
	}
	for _, v := range env.Versions {
		if err := checkData(v.Data); err != nil {
			return nil, err
		}
		if !v.Action.Valid() {
			return nil, fmt.Errorf("envelope has a version with unknown action %q", v.Action)
		}
	}
	return &env, nil
}

// Load returns the envelope of a queued message.
func (s *Spool) Load(id string) (*Envelope, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	return s.loadQueued(id)
}

// loadQueued returns the envelope of a queued message: queue/ID.json if it
// exists (every envelope written after the commit is one), else the trailer
// of queue/ID.msg.
func (s *Spool) loadQueued(id string) (*Envelope, error) {
	env, err := readEnvelope(s.queueDir, id)
	if !errors.Is(err, ErrNotFound) {
		return env, err
	}
	// While the envelope is in quarantine/, a queue/ID.msg is a link that a
	// move between the two directories has made or not yet removed, not a
	// message of its own.
	if _, err := os.Stat(filepath.Join(s.quarDir, envName(id))); err == nil {
		return nil, fmt.Errorf("spool: message %s: %w", id, ErrNotFound)
	}
	// A Release may have renamed its envelope into queue/ since the first
	// look; the envelope then supersedes the trailer.
	env, err = readEnvelope(s.queueDir, id)
	if !errors.Is(err, ErrNotFound) {
		return env, err
	}
	return readTrailerEnvelope(s.queueDir, id)
}

// queued reports whether id is in the queue, by its envelope file or its
// original (the trailer is not checked: a damaged one shows at Load).
func (s *Spool) queued(id string) bool {
	for _, name := range []string{envName(id), dataName(id, "")} {
		if _, err := os.Stat(filepath.Join(s.queueDir, name)); err == nil {
			return true
		}
	}
	return false
}

// List returns the envelopes of every queued message, oldest first. An
// envelope that has become unreadable since start-up is logged and left
// out (the next start moves it to corrupt/).
func (s *Spool) List() ([]*Envelope, error) {
	return s.list(s.queueDir)
}

func (s *Spool) list(dir string) ([]*Envelope, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("spool: listing %s: %w", dir, err)
	}
	var out []*Envelope
	seen := map[string]bool{}
	for _, e := range entries {
		id, kind, data, ok := parseName(e.Name())
		if !ok || seen[id] {
			continue
		}
		var env *Envelope
		switch {
		case kind == "json" && dir != s.queueDir:
			env, err = readEnvelope(dir, id)
		case dir == s.queueDir && (kind == "json" || data == ""):
			// In the queue a message may have only its original, with
			// the envelope in the trailer.
			env, err = s.loadQueued(id)
		default:
			continue
		}
		seen[id] = true
		if err != nil {
			if !errors.Is(err, ErrNotFound) { // removed meanwhile: not worth a line
				s.log.Warn("spool: unreadable envelope left out of the listing", "id", id, "err", err)
			}
			continue
		}
		out = append(out, env)
	}
	return out, nil // ReadDir sorts by name, and ids sort by time
}

// OpenData opens a data file of a queued message: data "" is the original,
// otherwise the name VersionWriter.Commit returned. The reader ends where
// the message does: the original's envelope trailer is never part of it.
func (s *Spool) OpenData(id, data string) (*Data, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if err := checkData(data); err != nil {
		return nil, err
	}
	return openData(s.queueDir, id, data)
}

// ReadData returns a data file of a queued message (see OpenData).
func (s *Spool) ReadData(id, data string) ([]byte, error) {
	d, err := s.OpenData(id, data)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	b, err := readAll(d)
	if err != nil {
		return nil, fmt.Errorf("spool: data %q of message %s: %w", data, id, err)
	}
	return b, nil
}

// Remove deletes a queued message: the envelope file first, then its data
// files, the original (with its trailer) among them. The removal is not
// fsynced: after a crash the message may come back and be delivered twice,
// which is better than paying a sync per delivered message. A crash
// between the two unlinks brings it back as its trailer describes it (as
// received), which is the same duplicate delivery.
func (s *Spool) Remove(id string) error {
	if err := checkID(id); err != nil {
		return err
	}
	env, err := s.loadQueued(id)
	if err != nil {
		return err
	}
	return s.remove(env)
}

// RemoveDone is Remove for the caller that holds the message's current
// envelope (the worker that has just finished it), which saves reading the
// envelope back from disk once per delivered message.
func (s *Spool) RemoveDone(env *Envelope) error {
	if err := checkID(env.ID); err != nil {
		return err
	}
	return s.remove(env)
}

func (s *Spool) remove(env *Envelope) error {
	id := env.ID
	if err := os.Remove(filepath.Join(s.queueDir, envName(id))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("spool: removing message %s: %w", id, err)
	}
	names := references(env)
	names = append(names, s.takePending(id)...)
	// The original goes first of the data: while it is there without an
	// envelope file its trailer makes it a queued message again.
	names = slices.DeleteFunc(names, func(d string) bool { return d == "" })
	names = append([]string{""}, names...)
	var errs []error
	for _, d := range names {
		remove := os.Remove
		if d == "" {
			remove = s.recycle // the original's inode serves the next message
		}
		if err := remove(filepath.Join(s.queueDir, dataName(id, d))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	// The message is gone with its envelope file: its work marker, if the
	// worker did not end it, would only count starts of nothing.
	s.clearWork(id)
	if len(errs) > 0 {
		return fmt.Errorf("spool: removing data of message %s: %w", id, errors.Join(errs...))
	}
	return nil
}

func (s *Spool) addPending(id, data string) {
	s.mu.Lock()
	s.pending[id] = append(s.pending[id], data)
	s.mu.Unlock()
}

func (s *Spool) takePending(id string) []string {
	s.mu.Lock()
	p := s.pending[id]
	delete(s.pending, id)
	s.mu.Unlock()
	return p
}

func (s *Spool) restorePending(id string, p []string) {
	if len(p) == 0 {
		return
	}
	s.mu.Lock()
	s.pending[id] = append(p, s.pending[id]...)
	s.mu.Unlock()
}
