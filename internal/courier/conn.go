package courier

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// errAborted is the reason a session gives after its context was
// cancelled by the caller.
var errAborted = errors.New("delivery attempt cancelled")

// errTooSlow is the reason a session gives when a deadline passed
// (Message.StartBy or FinishBy, the time a Verify may take, or the
// caller's): the attempt is abandoned because the next hop did not answer
// in time.
var errTooSlow = errors.New("the next hop did not answer in time")

// maxReadWithoutWrite bounds what a server may send between two of our
// commands, TLS records and handshake included. Each reply is bounded on
// its own (smtp.MaxReplyLine, smtp.MaxReplyLines); this is the backstop for a
// pipelined group, whose replies all follow one write, and for the TLS
// handshake, with room for a long certificate chain.
const maxReadWithoutWrite = 256 << 10

var errReplyTooLong = errors.New("server sent more than 256 KiB without being asked")

// watchConn wraps the TCP connection of a session; a TLS session runs over
// it. It gives every wait a deadline that the server cannot move:
//
//   - Reads have the deadline the session armed when it began to wait for
//     a reply (expect). A read does not move it, so a server that sends
//     one byte every few seconds is cut when the reply is not whole in
//     time. Writes do not move it either: under TLS 1.3 a server can make
//     our TLS stack write (a KeyUpdate asking for one) in the middle of a
//     reply, and that must not buy it time.
//   - Writes each have the write timeout, and while message content is
//     sent (pace) also a deadline that grows with the bytes written at the
//     minimum data rate, so a server that reads slowly cannot stretch a
//     large message over days.
//
// A cancelled context aborts the connection at once (abort), and the
// outcome of the last write tells whether the final dot left this host,
// which decides whether a lost connection may have produced a duplicate.
//
// Only abort runs concurrently with the session's own goroutine; the other
// fields belong to whoever holds the session.
type watchConn struct {
	net.Conn
	writeTimeout time.Duration
	aborted      atomic.Bool
	reason       atomic.Pointer[error] // set before aborted
	// lastWriteOK is the outcome of the most recent Write.
	lastWriteOK bool
	// unasked counts the bytes read since the last command (asked).
	unasked    int64
	overflowed bool
	// Pacing of message content: the deadline earned so far is paceStart
	// plus the write timeout plus paced bytes at paceRate bytes/s.
	paceStart time.Time
	paced     int64
	paceRate  int64
}

func newWatchConn(c net.Conn, writeTimeout time.Duration) *watchConn {
	return &watchConn{Conn: c, writeTimeout: writeTimeout}
}

// expect arms the read deadline: whatever is read next must arrive by
// now+d. The deadline is set before the abort flag is read, and abort sets
// the flag before it moves the deadline into the past: whichever runs
// second wins, so an aborted session never waits.
func (w *watchConn) expect(d time.Duration) {
	_ = w.Conn.SetReadDeadline(time.Now().Add(d))
	if w.aborted.Load() {
		_ = w.Conn.SetDeadline(time.Unix(1, 0))
	}
}

// asked records that a command went out: the server may send
// maxReadWithoutWrite bytes again.
func (w *watchConn) asked() { w.unasked = 0 }

// pace starts the content deadline: from now on every write must also be
// done by the time the bytes written so far earn at rate bytes/s, on top
// of the write timeout (Postfix's smtp_min_data_rate).
func (w *watchConn) pace(rate int) {
	w.paceStart, w.paced, w.paceRate = time.Now(), 0, int64(rate)
}

// unpace ends the content deadline.
func (w *watchConn) unpace() { w.paceStart = time.Time{} }

func (w *watchConn) Read(p []byte) (int, error) {
	if w.aborted.Load() {
		return 0, w.why()
	}
	if w.overflowed || w.unasked > maxReadWithoutWrite {
		// Sticky: the dialogue is out of step for good, and the
		// connection is only fit to be closed.
		w.overflowed = true
		return 0, errReplyTooLong
	}
	n, err := w.Conn.Read(p)
	w.unasked += int64(n)
	if err != nil && w.aborted.Load() {
		err = w.why()
	}
	return n, err
}

// errSlowReader is the reason a write of message content gives when the
// server did not take it at the minimum data rate.
type errSlowReader struct{ rate int64 }

func (e *errSlowReader) Error() string {
	return fmt.Sprintf("the next hop took the message content slower than %d bytes/s", e.rate)
}

func (w *watchConn) Write(p []byte) (int, error) {
	now := time.Now()
	deadline := now.Add(w.writeTimeout)
	paced := false
	if !w.paceStart.IsZero() && w.paceRate > 0 {
		// In floating point: bytes times nanoseconds overflows an int64
		// past 9 GB.
		earned := w.paceStart.Add(w.writeTimeout + time.Duration(float64(w.paced+int64(len(p)))/float64(w.paceRate)*float64(time.Second)))
		if earned.Before(deadline) {
			deadline, paced = earned, true
		}
	}
	if err := w.Conn.SetWriteDeadline(deadline); err != nil {
		w.lastWriteOK = false
		return 0, err
	}
	if w.aborted.Load() {
		w.lastWriteOK = false
		return 0, w.why()
	}
	n, err := w.Conn.Write(p)
	w.paced += int64(n)
	w.lastWriteOK = err == nil && n == len(p)
	switch {
	case err == nil:
	case w.aborted.Load():
		err = w.why()
	case paced && errors.Is(err, os.ErrDeadlineExceeded):
		err = &errSlowReader{w.paceRate}
	}
	return n, err
}

// abort makes every pending and future Read and Write fail with reason.
func (w *watchConn) abort(reason error) {
	w.reason.Store(&reason)
	w.aborted.Store(true)
	_ = w.Conn.SetDeadline(time.Unix(1, 0))
}

func (w *watchConn) why() error {
	if r := w.reason.Load(); r != nil {
		return *r
	}
	return errAborted
}

// abortOn aborts w when ctx ends, with the reason cause gives.
func abortOn(ctx context.Context, w *watchConn) (stop func() bool) {
	return context.AfterFunc(ctx, func() { w.abort(cause(ctx)) })
}

// cause is why ctx ended, as the courier reports it: any deadline
// (StartBy, FinishBy, Verify's, or the caller's own) means the next hop
// did not answer in time; a cancellation is the caller's doing.
func cause(ctx context.Context) error {
	if err := context.Cause(ctx); errors.Is(err, errTooSlow) || errors.Is(err, context.DeadlineExceeded) {
		return errTooSlow
	}
	return errAborted
}
