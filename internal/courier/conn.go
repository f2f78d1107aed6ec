package courier

import (
	"errors"
	"net"
	"sync/atomic"
	"time"
)

// errAborted is returned by a watchConn after its attempt was cancelled.
var errAborted = errors.New("delivery attempt cancelled")

// maxReadWithoutWrite bounds what a server may send between two of our
// writes. Without pipelining every reply follows a command of ours, so
// this bounds each reply (net/textproto reads lines and multi-line replies
// without a limit of its own) while leaving room for a TLS handshake with
// a long certificate chain.
const maxReadWithoutWrite = 256 << 10

var errReplyTooLong = errors.New("server sent more than 256 KiB without being asked")

// watchConn wraps the TCP connection of a session. net/smtp sets no
// deadlines of its own, so every Read and Write here gets one (the
// command timeout, or the longer wait after the final dot); a cancelled
// context aborts the connection at once; and the outcome of the last write
// tells whether the final dot left this host, which decides whether a lost
// connection may have produced a duplicate.
type watchConn struct {
	net.Conn
	timeout atomic.Int64 // time.Duration for the next read or write
	aborted atomic.Bool
	// lastWriteOK is the outcome of the most recent Write.
	lastWriteOK atomic.Bool
	// unasked counts the bytes read since the last successful Write.
	unasked    atomic.Int64
	overflowed atomic.Bool
}

func newWatchConn(c net.Conn, timeout time.Duration) *watchConn {
	w := &watchConn{Conn: c}
	w.timeout.Store(int64(timeout))
	return w
}

func (w *watchConn) setTimeout(d time.Duration) { w.timeout.Store(int64(d)) }

func (w *watchConn) Read(p []byte) (int, error) {
	// The deadline is set before the abort flag is read, and abort sets
	// the flag before it moves the deadline into the past: whichever runs
	// second wins, so a cancelled read never blocks.
	if err := w.Conn.SetReadDeadline(time.Now().Add(time.Duration(w.timeout.Load()))); err != nil {
		return 0, err
	}
	if w.aborted.Load() {
		return 0, errAborted
	}
	if w.overflowed.Load() || w.unasked.Load() > maxReadWithoutWrite {
		// Sticky: the dialogue is out of step for good, and the
		// connection is only fit to be closed.
		w.overflowed.Store(true)
		return 0, errReplyTooLong
	}
	n, err := w.Conn.Read(p)
	w.unasked.Add(int64(n))
	return n, err
}

func (w *watchConn) Write(p []byte) (int, error) {
	if err := w.Conn.SetWriteDeadline(time.Now().Add(time.Duration(w.timeout.Load()))); err != nil {
		w.lastWriteOK.Store(false)
		return 0, err
	}
	if w.aborted.Load() {
		w.lastWriteOK.Store(false)
		return 0, errAborted
	}
	n, err := w.Conn.Write(p)
	w.lastWriteOK.Store(err == nil && n == len(p))
	if n > 0 {
		w.unasked.Store(0)
	}
	return n, err
}

// abort makes every pending and future Read and Write fail.
func (w *watchConn) abort() {
	w.aborted.Store(true)
	_ = w.Conn.SetDeadline(time.Unix(1, 0))
}
