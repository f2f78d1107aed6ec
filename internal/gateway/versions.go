package gateway

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"smimegate/internal/spool"
)

// fastPathMax is the largest message whose versions are first kept in
// memory. Most mail is small and is delivered at the first attempt, right
// after the policy step; for it, writing and fsyncing every version and the
// routed envelope only to delete them a moment later would double the disk
// work per message. Until the versions are written to the spool the
// envelope on disk still says "received", so a crash repeats the policy
// step (a recipient may then get a duplicate, as with any MTA crash between
// delivery and bookkeeping) and never loses the message. Larger messages
// take the disk path, so that memory stays bounded by a few copies of
// fastPathMax per worker.
const fastPathMax = 2 << 20

// memPrefix marks a version name that is not yet in the spool.
const memPrefix = "mem-"

// versions holds the data of one pass over a message: the versions, in
// memory on the fast path, else in the spool; and, for a message relayed
// first (relayfirst.go), the original itself, which is not yet in the spool.
type versions struct {
	g   *Gateway
	id  string
	mem map[string][]byte

	// original is the received message while it is not in the spool; nil
	// for a queued message (the worker's pass).
	original []byte
	// store commits original to the spool; stored says it is there (always
	// for a worker's pass).
	store  func() error
	stored bool
	// startBy and finishBy are the courier's Message.StartBy and FinishBy
	// for this pass's attempts (relay first only).
	startBy, finishBy time.Time
}

func newVersions(g *Gateway, id string) *versions {
	return &versions{g: g, id: id, stored: true}
}

// ensureStored commits the original to the spool unless it is there: before
// anything that needs it there (a bounce, the quarantine, a version written
// to the spool, an envelope update).
func (vs *versions) ensureStored() error {
	if vs.stored {
		return nil
	}
	if err := vs.store(); err != nil {
		return fmt.Errorf("committing the message to the spool: %w", err)
	}
	vs.stored = true
	return nil
}

// write stores one version made by fill and returns its name: in memory
// when fast, else in the spool (fsynced, but committed only by the next
// envelope update that names it).
func (vs *versions) write(fast bool, size int, fill func(w io.Writer) error) (string, error) {
	if fast {
		b := bytes.NewBuffer(getBuffer(size))
		if err := fill(b); err != nil {
			return "", err
		}
		if vs.mem == nil {
			vs.mem = map[string][]byte{}
		}
		name := fmt.Sprintf("%s%d", memPrefix, len(vs.mem))
		vs.mem[name] = b.Bytes()
		return name, nil
	}
	vw, err := vs.g.spool.NewVersion(vs.id)
	if err != nil {
		return "", err
	}
	if err := fill(vw); err != nil {
		vw.Abort()
		return "", err
	}
	return vw.Commit()
}

// release gives the in-memory versions' buffers back for reuse, once the
// pass is over: delivered, or written to the spool by persist.
func (vs *versions) release() {
	for name, b := range vs.mem {
		putBuffer(b)
		delete(vs.mem, name)
	}
}

// bufferPool recycles the buffers of sealed copies and of the plaintext
// copies that sealing encrypts in place: two allocations of about the
// message's size for every message relayed, and most of the allocated
// bytes. Buffers over bufferPoolMax are left to the collector.
var bufferPool sync.Pool // of *[]byte

const bufferPoolMax = 1 << 20

// getBuffer returns an empty slice with at least size bytes of capacity.
func getBuffer(size int) []byte {
	if size <= bufferPoolMax {
		if p, ok := bufferPool.Get().(*[]byte); ok && cap(*p) >= size {
			return (*p)[:0]
		}
	}
	return make([]byte, 0, size)
}

// putBuffer recycles b; nothing may use it afterwards.
func putBuffer(b []byte) {
	if cap(b) == 0 || cap(b) > bufferPoolMax {
		return
	}
	b = b[:0]
	bufferPool.Put(&b)
}

// open returns a reader of a version's data for the courier.
func (vs *versions) open(name string) (io.ReadCloser, error) {
	if b := vs.bytes(name); b != nil {
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	return vs.g.spool.OpenData(vs.id, name)
}

// bytes returns a version (or the original) when it is in memory, else
// nil: the courier then announces its size and may send it with BDAT.
func (vs *versions) bytes(name string) []byte {
	if b, ok := vs.mem[name]; ok {
		return b
	}
	if name == "" && vs.original != nil {
		return vs.original
	}
	return nil
}

// inMemory reports whether some versions are not yet in the spool.
func (vs *versions) inMemory() bool { return len(vs.mem) > 0 }

// persist writes the in-memory versions into the spool and renames them in
// env, before env is committed with an update.
func (vs *versions) persist(env *spool.Envelope) error {
	renamed := map[string]string{}
	for name, data := range vs.mem {
		stored, err := vs.write(false, len(data), func(w io.Writer) error {
			_, err := w.Write(data)
			return err
		})
		if err != nil {
			return fmt.Errorf("writing version %s to the spool: %w", name, err)
		}
		renamed[name] = stored
	}
	for i := range env.Versions {
		if strings.HasPrefix(env.Versions[i].Data, memPrefix) {
			env.Versions[i].Data = renamed[env.Versions[i].Data]
		}
	}
	vs.mem = nil
	return nil
}
