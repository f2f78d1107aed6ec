package smime

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"mime/quotedprintable"
)

// decodeChunk is how many base64 characters are decoded at a time: a
// multiple of 4, so that only the last chunk can hold padding, and large
// enough that the per-call cost of encoding/base64 vanishes (32 KiB, kept on
// the stack).
const decodeChunk = 32 << 10

// decodeBody undoes the Content-Transfer-Encoding of the encrypted part into
// one new buffer (RFC 2045 section 6), leaving body untouched so that the
// original message can still be relayed or quarantined as it came. The
// result is at most len(body) bytes, and 3/4 of it for base64.
func decodeBody(body []byte, cte string) ([]byte, error) {
	switch cte {
	case "base64":
		return decodeBase64(body)
	case "quoted-printable":
		var b bytes.Buffer
		b.Grow(len(body))
		if _, err := b.ReadFrom(quotedprintable.NewReader(bytes.NewReader(body))); err != nil {
			return nil, fmt.Errorf("quoted-printable body: %w", err)
		}
		return b.Bytes(), nil
	case "", "7bit", "8bit", "binary":
		// A binary DER body starts with a SEQUENCE tag followed by a
		// length byte that is not printable; base64 text never does.
		// Senders that forget the Content-Transfer-Encoding of a base64
		// body are common enough that the text form is tried next.
		if kind, _ := peekContentInfo(body); kind != notCMS {
			return bytes.Clone(body), nil
		}
		return decodeBase64(body)
	default:
		return nil, fmt.Errorf("unsupported Content-Transfer-Encoding %q", cte)
	}
}

// decodeBase64 decodes base64 text in lines of any length, ending in CRLF or
// LF, and ignores the spaces and tabs that some MTAs add at line ends. It
// accepts a missing final padding. It streams through a fixed chunk, so the
// only allocation is the result.
func decodeBase64(text []byte) ([]byte, error) {
	dst := make([]byte, 0, len(text)/4*3+3)
	var chunk [decodeChunk]byte
	n, seen := 0, 0 // characters in chunk; characters decoded before it
	flush := func(final bool) error {
		enc := base64.StdEncoding
		if final && n%4 != 0 && bytes.IndexByte(chunk[:n], '=') < 0 {
			enc = base64.RawStdEncoding
		}
		m := len(dst)
		dst = dst[:m+enc.DecodedLen(n)]
		k, err := enc.Decode(dst[m:], chunk[:n])
		if err != nil {
			if ce, ok := err.(base64.CorruptInputError); ok {
				return fmt.Errorf("base64 body: illegal data at character %d", seen+int(ce))
			}
			return fmt.Errorf("base64 body: %w", err)
		}
		dst = dst[:m+k]
		seen += n
		n = 0
		return nil
	}
	add := func(p []byte) error {
		for len(p) > 0 {
			c := copy(chunk[n:], p)
			n += c
			p = p[c:]
			if n == len(chunk) {
				if err := flush(false); err != nil {
					return err
				}
			}
		}
		return nil
	}
	// Line by line, so that the common case (lines without inner blanks)
	// moves whole lines with copy rather than byte by byte.
	for len(text) > 0 {
		line := text
		if i := bytes.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			text = nil
		}
		line = trimBlanks(line)
		if bytes.IndexByte(line, ' ') < 0 && bytes.IndexByte(line, '\t') < 0 && bytes.IndexByte(line, '\r') < 0 {
			if err := add(line); err != nil {
				return nil, err
			}
			continue
		}
		// Blanks inside the line: add each run between them in turn,
		// without collecting the runs first. A line of "A A A ..." is
		// millions of runs, and a slice of them cost 24 bytes each
		// (bytes.FieldsFunc peaked at 20 times the input).
		for len(line) > 0 {
			i := 0
			for i < len(line) && !isBlank(line[i]) {
				i++
			}
			if err := add(line[:i]); err != nil {
				return nil, err
			}
			for i < len(line) && isBlank(line[i]) {
				i++
			}
			line = line[i:]
		}
	}
	if err := flush(true); err != nil {
		return nil, err
	}
	if len(dst) == 0 {
		return nil, fmt.Errorf("base64 body: empty")
	}
	return dst, nil
}

// isBlank reports the characters that lenient base64 decoding skips.
func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\r' }

// trimBlanks is bytes.Trim(b, " \t\r") without building a cutset per call,
// which shows in the profile at one call per 76-character line.
func trimBlanks(b []byte) []byte {
	for len(b) > 0 && isBlank(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isBlank(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}
