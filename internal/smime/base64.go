package smime

import (
	"encoding/base64"
	"io"
	"sync"
)

// RFC 2045 section 6.8: encoded lines are at most 76 characters, and RFC
// 5322 section 2.1 ends every line with CRLF. 57 input bytes make exactly
// one 76-character line.
const (
	lineChars = 76
	lineBytes = lineChars / 4 * 3
)

// encodeBufLines is how many encoded lines lineEncoder collects before it
// writes to the underlying writer: 64 lines are just under 5 KB, large
// enough that a 20 MB message costs few writes, small enough to be a fixed
// cost beside the message.
const encodeBufLines = 64

// lineEncoder is a streaming base64 encoder that writes CRLF-terminated
// lines of 76 characters. encoding/base64's own encoder writes one endless
// line, which mail cannot carry (RFC 5322 section 2.1.1: at most 998).
type lineEncoder struct {
	w       io.Writer
	pending [lineBytes]byte
	npend   int
	out     []byte
	err     error
}

func newLineEncoder(w io.Writer) *lineEncoder {
	e := encoders.Get().(*lineEncoder)
	*e = lineEncoder{w: w, out: e.out[:0]}
	return e
}

// encoders recycles line encoders and their buffers, one per sealed
// message otherwise.
var encoders = sync.Pool{New: func() any {
	return &lineEncoder{out: make([]byte, 0, encodeBufLines*(lineChars+2))}
}}

// release returns e to the pool; it must not be used afterwards.
func (e *lineEncoder) release() {
	e.w = nil
	encoders.Put(e)
}

// Write encodes p; only whole lines are produced until Close.
func (e *lineEncoder) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n := len(p)
	if e.npend > 0 {
		c := copy(e.pending[e.npend:], p)
		e.npend += c
		p = p[c:]
		if e.npend < lineBytes {
			return n, nil
		}
		e.line(e.pending[:])
		e.npend = 0
	}
	for len(p) >= lineBytes && e.err == nil {
		e.line(p[:lineBytes])
		p = p[lineBytes:]
	}
	e.npend = copy(e.pending[:], p)
	if e.err != nil {
		return 0, e.err
	}
	return n, nil
}

// line appends one encoded line and flushes the buffer when it is full.
func (e *lineEncoder) line(src []byte) {
	m := len(e.out)
	enc := base64.StdEncoding.EncodedLen(len(src))
	e.out = e.out[:m+enc+2]
	base64.StdEncoding.Encode(e.out[m:], src)
	e.out[m+enc] = '\r'
	e.out[m+enc+1] = '\n'
	if cap(e.out)-len(e.out) < lineChars+2 {
		e.flush()
	}
}

func (e *lineEncoder) flush() {
	if len(e.out) == 0 || e.err != nil {
		return
	}
	_, e.err = e.w.Write(e.out)
	e.out = e.out[:0]
}

// Close encodes the last, short line (with its padding) and writes
// everything that is still buffered. It does not close the writer.
func (e *lineEncoder) Close() error {
	if e.npend > 0 && e.err == nil {
		e.line(e.pending[:e.npend])
		e.npend = 0
	}
	e.flush()
	return e.err
}
