package smtp

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// referenceData is the obvious, slow reading of RFC 5321's DATA rules: the
// message is everything before the first CRLF.CRLF (counting the CRLF of
// the DATA command), it is refused if it has a CR or LF outside a CRLF pair
// or a NUL (nul is the first one's offset, -1 if none), and otherwise each
// line loses one leading dot.
func referenceData(in []byte) (msg []byte, consumed int, found, bare bool, nul int) {
	p := append([]byte("\r\n"), in...)
	k := bytes.Index(p, []byte("\r\n.\r\n"))
	if k < 0 {
		return nil, 0, false, false, -1
	}
	raw := p[2 : k+2]
	if k == 0 {
		raw = nil
	}
	for i, c := range raw {
		if c == '\r' && (i+1 >= len(raw) || raw[i+1] != '\n') || c == '\n' && (i == 0 || raw[i-1] != '\r') {
			bare = true
		}
	}
	var out []byte
	for _, line := range bytes.SplitAfter(raw, []byte("\r\n")) {
		out = append(out, bytes.TrimPrefix(line, []byte("."))...)
	}
	return out, len(raw) + 3, true, bare, bytes.IndexByte(raw, 0)
}

// FuzzDataReader checks the streaming reader against referenceData, with a
// tiny read buffer so that lines and CRLFs are split across reads.
func FuzzDataReader(f *testing.F) {
	for _, s := range []string{
		".\r\n", "a\r\n.\r\n", "a\n.\r\n.\r\n", "a\r\n.\n\r\n.\r\n", "a\r.\r\n.\r\n", "a\r\r\n.\r\r\n\r\n.\r\n",
		"..x\r\n.\r\n", ".\rX\r\n.\r\n", "0123456789abcde\r\n.\r\n", "0123456789abcdef\r\n.\r\n", "0123456789abcdefg\r\r\n.\r\n",
		"Received: x\r\n\r\nbody\r\n.\r\n", "no end", "\r\n.\r\n", "\n.\n", "a\r\n.",
		"a\r\n\x00.\r\n.\r\n", "a\r\n.\x00\r\n.\r\n", "\x00\r\n.\r\n", "0123456789abcdef\x00\r\n.\r\n", "a\n\x00\r\n.\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var out bytes.Buffer
		d := &DotReader{
			R:   bufio.NewReaderSize(bytes.NewReader(in), 16),
			Dst: &out,
			Lim: Limits{MaxBytes: 1 << 40, MaxLine: 1 << 30, MaxHeader: 1 << 30, MaxReceived: 1 << 30},
		}
		reject, werr, nerr := d.Read()
		if werr != nil {
			t.Fatal(werr)
		}
		want, consumed, found, bare, nul := referenceData(in)
		if !found {
			if nerr == nil {
				t.Fatalf("%q: message ended without CRLF.CRLF", in)
			}
			return
		}
		if nerr != nil {
			t.Fatalf("%q: no end found (%v), reference ends after %d bytes", in, nerr, consumed)
		}
		if d.Total != int64(consumed) {
			t.Fatalf("%q: consumed %d bytes, reference %d", in, d.Total, consumed)
		}
		isNUL := reject != nil && strings.HasPrefix(reject.Message, NULRefusal)
		switch {
		case bare && nul >= 0:
			if reject != ErrBareNewline && !isNUL {
				t.Fatalf("%q: bare CR/LF and NUL, reader refused with %v", in, reject)
			}
		case bare:
			if reject != ErrBareNewline {
				t.Fatalf("%q: bare CR/LF, reader refused with %v", in, reject)
			}
		case nul >= 0:
			if !isNUL || !strings.Contains(reject.Message, fmt.Sprintf(" at byte %d of ", nul)) {
				t.Fatalf("%q: NUL at %d, reader refused with %v", in, nul, reject)
			}
		case reject != nil:
			t.Fatalf("%q: clean message refused with %v", in, reject)
		}
		if reject != nil {
			return
		}
		if !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("%q: message %q, reference %q", in, out.Bytes(), want)
		}
		if int64(len(want)) != d.Size {
			t.Fatalf("%q: size %d, reference %d", in, d.Size, len(want))
		}
	})
}
