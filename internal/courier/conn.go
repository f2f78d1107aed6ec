package courier

import (
	"errors"
	"net"
	"sync/atomic"
	"time"
)

// errAborted is returned by a watchConn after its attempt was cancelled.
var errAborted = errors.New("delivery attempt cancelled")

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
	return w.Conn.Read(p)
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
	return n, err
}

// abort makes every pending and future Read and Write fail.
func (w *watchConn) abort() {
	w.aborted.Store(true)
	_ = w.Conn.SetDeadline(time.Unix(1, 0))
}
