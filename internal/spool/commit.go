package spool

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// writeBuffer is the size of the buffer in front of a data file: large
// enough that a typical message costs a handful of write(2) calls.
const writeBuffer = 64 << 10

// Incoming is a message being received. Its bytes go to a file in tmp/;
// Commit makes it part of the queue, Abort throws it away.
type Incoming struct {
	// ID is the queue id the message will have, known from the start so
	// that the receiver can put it in the Received header and the log.
	ID string

	s    *Spool
	f    *os.File // nil while the message is held in memory
	w    *bufio.Writer
	n    int64
	err  error
	done bool

	// mem holds the message while it is no larger than memMax (see
	// NewMessageInMemory); the file is made only when it grows past that
	// or is committed.
	mem    []byte
	memMax int
}

// NewMessage starts a new message in tmp/.
func (s *Spool) NewMessage() (*Incoming, error) {
	id := NewID()
	f, err := s.createFile(filepath.Join(s.tmpDir, dataName(id, "")))
	if err != nil {
		return nil, fmt.Errorf("spool: new message: %w", err)
	}
	w := writers.Get().(*bufio.Writer)
	w.Reset(f)
	return &Incoming{ID: id, s: s, f: f, w: w}, nil
}

// NewMessageInMemory starts a new message that stays in memory while it is
// at most memMax bytes: no file exists for it until it grows past that or
// Commit is called. Bytes returns it meanwhile. This is for a receiver that
// may hand a small message on to its next hop before answering, and so never
// need to store it (see gateway's relay-first); Commit still makes it
// durable exactly as NewMessage's would be.
func (s *Spool) NewMessageInMemory(memMax int) *Incoming {
	b := memBuffers.Get().(*[]byte)
	return &Incoming{ID: NewID(), s: s, mem: (*b)[:0], memMax: memMax}
}

// memBuffers recycles the in-memory messages' buffers; those that grew past
// memPoolMax are left to the garbage collector instead of pinning memory.
var memBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}

const memPoolMax = 256 << 10

// Bytes returns the message received so far while it is held in memory
// (ok is false once it is in a file). The slice stays valid after Commit,
// until Abort; the caller must not change it: Commit writes it.
func (in *Incoming) Bytes() (b []byte, ok bool) {
	if in.f != nil || in.done {
		return nil, false
	}
	return in.mem, true
}

// ReadAll returns the message received so far, from memory or from its
// file in tmp/ (the write buffer is flushed first), for a receiver that must
// look at a large message before it answers. It allocates the whole
// message; the caller bounds when it does so.
func (in *Incoming) ReadAll() ([]byte, error) {
	if b, ok := in.Bytes(); ok {
		return b, nil
	}
	if in.done || in.f == nil {
		return nil, fmt.Errorf("spool: message %s: read after commit or abort", in.ID)
	}
	if in.err != nil {
		return nil, in.err
	}
	if err := in.w.Flush(); err != nil {
		in.err = fmt.Errorf("spool: writing message %s: %w", in.ID, err)
		return nil, in.err
	}
	b := make([]byte, in.n)
	if _, err := in.f.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("spool: reading back message %s: %w", in.ID, err)
	}
	return b, nil
}

// spill moves an in-memory message into its file in tmp/.
func (in *Incoming) spill() error {
	f, err := in.s.createFile(filepath.Join(in.s.tmpDir, dataName(in.ID, "")))
	if err != nil {
		return err
	}
	w := writers.Get().(*bufio.Writer)
	w.Reset(f)
	in.f, in.w = f, w
	_, err = w.Write(in.mem)
	// Not back to the pool: a caller may still hold the slice Bytes gave
	// it (a relay-first pass commits halfway); the collector takes it.
	in.mem = nil
	return err
}

// releaseMem gives an in-memory message's buffer back for reuse, at Abort:
// by then whoever had it from Bytes is done with it.
func (in *Incoming) releaseMem() {
	if in.mem != nil && cap(in.mem) <= memPoolMax {
		b := in.mem[:0]
		memBuffers.Put(&b)
	}
	in.mem = nil
}

// writers recycles the write buffers of incoming messages: one per message
// would be the largest allocation of the receiving path (64 KiB for a
// message that is typically 10 KiB).
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBuffer) }}

// releaseWriter returns the write buffer once the message is committed or
// aborted (Write refuses to run after that).
func (in *Incoming) releaseWriter() {
	if in.w != nil {
		in.w.Reset(nil)
		writers.Put(in.w)
		in.w = nil
	}
}

// Write appends p to the message. After the first error every call fails
// with it, so the receiver may keep reading the DATA stream to its end and
// report the error once.
func (in *Incoming) Write(p []byte) (int, error) {
	if in.err != nil {
		return 0, in.err
	}
	if in.done {
		return 0, fmt.Errorf("spool: message %s: write after commit or abort", in.ID)
	}
	if in.f == nil {
		if len(in.mem)+len(p) <= in.memMax {
			in.mem = append(in.mem, p...)
			in.n += int64(len(p))
			return len(p), nil
		}
		if err := in.spill(); err != nil {
			in.err = fmt.Errorf("spool: writing message %s: %w", in.ID, err)
			return 0, in.err
		}
	}
	n, err := in.w.Write(p)
	in.n += int64(n)
	if err != nil {
		in.err = fmt.Errorf("spool: writing message %s: %w", in.ID, err)
		return n, in.err
	}
	return n, nil
}

// Size returns the number of bytes written so far.
func (in *Incoming) Size() int64 { return in.n }

// Commit makes the message durable and queued: the envelope is appended to
// the data as a JSON trailer with a fixed-size footer, the file is flushed,
// fsynced and renamed into queue/ (that rename is the commit), then the
// queue directory is fsynced (grouped with concurrent commits). When Commit
// returns nil the message survives a crash; on error nothing is queued.
// env.ID, env.Size and (if empty) env.Stage are filled in.
func (in *Incoming) Commit(env *Envelope) (err error) {
	if in.done {
		return fmt.Errorf("spool: message %s: already committed or aborted", in.ID)
	}
	if in.f == nil && in.err == nil {
		if err := in.spill(); err != nil {
			in.err = fmt.Errorf("spool: writing message %s: %w", in.ID, err)
		}
	}
	in.done = true
	defer in.releaseWriter()
	s := in.s
	tmpData := filepath.Join(s.tmpDir, dataName(in.ID, ""))
	queueData := filepath.Join(s.queueDir, dataName(in.ID, ""))
	defer func() {
		if err != nil {
			// Nothing may stay queued after an error: the client is told
			// to try again and would otherwise get the message twice.
			if in.f != nil {
				in.f.Close()
			}
			os.Remove(tmpData)
			os.Remove(queueData)
		}
	}()
	if in.err != nil {
		return in.err
	}
	env.ID = in.ID
	env.Size = in.n
	if env.Stage == "" {
		env.Stage = StageReceived
	}
	b, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("spool: encoding envelope of %s: %w", in.ID, err)
	}
	b = appendFooter(b, len(b))
	if _, err := in.w.Write(b); err != nil {
		return fmt.Errorf("spool: writing envelope trailer of %s: %w", in.ID, err)
	}
	if err := in.w.Flush(); err != nil {
		return fmt.Errorf("spool: writing message %s: %w", in.ID, err)
	}
	if err := in.f.Sync(); err != nil {
		return fmt.Errorf("spool: fsync of message %s: %w", in.ID, err)
	}
	if err := in.f.Close(); err != nil {
		return fmt.Errorf("spool: closing message %s: %w", in.ID, err)
	}
	if err := os.Rename(tmpData, queueData); err != nil {
		return fmt.Errorf("spool: message %s: %w", in.ID, err)
	}
	if err := s.syncQueue(); err != nil {
		return fmt.Errorf("spool: message %s: %w", in.ID, err)
	}
	return nil
}

// Abort discards the message. It is safe to call after Commit (it then does
// nothing), so a receiver can defer it.
func (in *Incoming) Abort() {
	if in.done {
		return
	}
	in.done = true
	in.releaseMem()
	if in.f == nil {
		return
	}
	in.releaseWriter()
	in.f.Close()
	os.Remove(filepath.Join(in.s.tmpDir, dataName(in.ID, "")))
}

// writeEnvelope replaces dir/ID.json atomically: the JSON goes to a new file
// in tmp/, is fsynced and renamed over the old one. The caller syncs dir.
// Once it exists, ID.json supersedes the trailer of the original.
func (s *Spool) writeEnvelope(dir string, env *Envelope) error {
	b, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("spool: encoding envelope of %s: %w", env.ID, err)
	}
	f, err := os.CreateTemp(s.tmpDir, env.ID+".*.json")
	if err != nil {
		return fmt.Errorf("spool: envelope of %s: %w", env.ID, err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, envName(env.ID)))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("spool: writing envelope of %s: %w", env.ID, err)
	}
	return nil
}

// VersionWriter writes one version of a queued message (a sealed or opened
// copy). Commit returns the name to put in Version.Data.
type VersionWriter struct {
	s    *Spool
	id   string
	name string
	f    *os.File
	w    *bufio.Writer
	err  error
	done bool
}

// NewVersion starts a new data file for the queued message id.
func (s *Spool) NewVersion(id string) (*VersionWriter, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if !s.queued(id) {
		return nil, fmt.Errorf("spool: new version of %s: %w", id, ErrNotFound)
	}
	// The version name only needs to be unique within the message; the
	// random part of a fresh id is plenty.
	name := "v" + NewID()[idTimeChars:]
	f, err := os.OpenFile(filepath.Join(s.tmpDir, dataName(id, name)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return nil, fmt.Errorf("spool: new version of %s: %w", id, err)
	}
	return &VersionWriter{s: s, id: id, name: name, f: f, w: bufio.NewWriterSize(f, writeBuffer)}, nil
}

// Write appends p to the version.
func (v *VersionWriter) Write(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if v.done {
		return 0, fmt.Errorf("spool: version of %s: write after commit or abort", v.id)
	}
	n, err := v.w.Write(p)
	if err != nil {
		v.err = fmt.Errorf("spool: writing version of %s: %w", v.id, err)
	}
	return n, v.err
}

// Commit makes the version's file durable and moves it into the queue. It
// is not referenced until an Update names it; recovery removes it if that
// never happens.
func (v *VersionWriter) Commit() (string, error) {
	if v.done {
		return "", fmt.Errorf("spool: version of %s: already committed or aborted", v.id)
	}
	v.done = true
	tmp := filepath.Join(v.s.tmpDir, dataName(v.id, v.name))
	err := v.err
	if err == nil {
		err = v.w.Flush()
	}
	if err == nil {
		err = v.f.Sync()
	}
	if cerr := v.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(v.s.queueDir, dataName(v.id, v.name)))
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("spool: committing version of %s: %w", v.id, err)
	}
	v.s.addPending(v.id, v.name)
	return v.name, nil
}

// Abort discards the version; after Commit it does nothing.
func (v *VersionWriter) Abort() {
	if v.done {
		return
	}
	v.done = true
	v.f.Close()
	os.Remove(filepath.Join(v.s.tmpDir, dataName(v.id, v.name)))
}

// Update replaces the envelope of a queued message atomically and then
// removes the data files that the new envelope no longer references (the
// original once every recipient has a sealed copy, versions dropped by the
// policy step). Every data file the new envelope names must exist.
func (s *Spool) Update(env *Envelope) error {
	if err := checkID(env.ID); err != nil {
		return err
	}
	old, err := s.loadQueued(env.ID)
	if err != nil {
		return err
	}
	if env.Stage == "" {
		return fmt.Errorf("spool: update of %s: envelope has no stage", env.ID)
	}
	refs := references(env)
	for _, d := range refs {
		if err := checkData(d); err != nil {
			return fmt.Errorf("spool: update of %s: %w", env.ID, err)
		}
		if _, err := os.Stat(filepath.Join(s.queueDir, dataName(env.ID, d))); err != nil {
			return fmt.Errorf("spool: update of %s names data %q: %w", env.ID, d, err)
		}
	}
	pending := s.takePending(env.ID)
	if len(pending) > 0 {
		// The versions' renames must be durable before an envelope that
		// names them is: otherwise a crash could leave an envelope whose
		// data is gone.
		if err := s.syncQueue(); err != nil {
			s.restorePending(env.ID, pending)
			return fmt.Errorf("spool: update of %s: %w", env.ID, err)
		}
	}
	if err := s.writeEnvelope(s.queueDir, env); err != nil {
		s.restorePending(env.ID, pending)
		return err
	}
	if err := s.syncQueue(); err != nil {
		// The new envelope may or may not survive a crash; both are valid
		// states, and the old data files are still there.
		s.restorePending(env.ID, pending)
		return fmt.Errorf("spool: update of %s: %w", env.ID, err)
	}
	var errs []error
	for _, d := range append(references(old), pending...) {
		if slices.Contains(refs, d) {
			continue
		}
		if err := os.Remove(filepath.Join(s.queueDir, dataName(env.ID, d))); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("spool: update of %s: removing old data: %w", env.ID, errors.Join(errs...))
	}
	return nil
}
