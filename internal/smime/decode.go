package smime

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
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
// accepts a missing final padding. The only allocation is the result.
//
// Text as every S/MIME agent writes it (RFC 2045 section 6.8: lines of the
// alphabet ending in CRLF, padding only at the end) is decoded by one call
// of encoding/base64, which skips CR and LF itself; anything else, and any
// text that call refuses, takes the line-by-line decoder, which then gives
// the answer and the error. The two agree wherever the first succeeds (it
// sees the same characters, and padding only at the very end), so the
// result never depends on which ran; FuzzDecodeBase64Paths holds them to
// that.
func decodeBase64(text []byte) ([]byte, error) {
	dst := make([]byte, 0, len(text)/4*3+3)
	if bytes.IndexByte(text, ' ') < 0 && bytes.IndexByte(text, '\t') < 0 {
		n, err := base64.StdEncoding.Decode(dst[:cap(dst)], text)
		if err == nil && n > 0 {
			return dst[:n], nil
		}
	}
	return decodeBase64Lines(dst, text)
}

// decodeBase64Lines is decodeBase64's decoder for any text: it streams
// through a fixed chunk into dst (empty, with room for len(text)/4*3+3
// bytes), so it allocates nothing more.
func decodeBase64Lines(dst, text []byte) ([]byte, error) {
	dst = dst[:0]
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

// bodyEncoding is how the walk reads a body that may be CMS.
type bodyEncoding int

const (
	encRaw    bodyEncoding = iota // binary DER or BER as it stands
	encBase64                     // base64 text (RFC 2045 section 6.8), leniently
	encQP                         // quoted-printable (RFC 2045 section 6.7)
)

// peekBase64Chars is how many base64 characters peekBody decodes: 44 make
// 33 bytes, at least peekLen, and are a whole number of 4-character groups.
const peekBase64Chars = 44

// peekBody decodes the first bytes of body, at most len(buf) of them, into
// buf, and says how the whole body is to be decoded. Whatever the label, a
// body that already is a ContentInfo is read as binary; otherwise the
// Content-Transfer-Encoding decides, and a body without one (or with one
// that is not base64 or quoted-printable) is tried as base64 text, because
// senders that forget the Content-Transfer-Encoding of a base64 body are
// common. Only the first bytes are decoded, without allocating, so that the
// cost on a part that is not CMS does not grow with the part.
func peekBody(body []byte, cte string, buf []byte) ([]byte, bodyEncoding, error) {
	if kind, _ := peekContentInfo(body); kind != notCMS {
		return body[:min(len(body), len(buf))], encRaw, nil
	}
	if cte == "quoted-printable" {
		n, err := io.ReadFull(quotedprintable.NewReader(bytes.NewReader(body)), buf)
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return nil, encQP, fmt.Errorf("quoted-printable body: %w", err)
		}
		return buf[:n], encQP, nil
	}
	var text [peekBase64Chars]byte
	n := 0
	for _, c := range body {
		if c == '\n' || isBlank(c) {
			continue
		}
		text[n] = c
		if n++; n == len(text) {
			break
		}
	}
	enc := base64.StdEncoding
	if n < len(text) && n%4 != 0 && bytes.IndexByte(text[:n], '=') < 0 {
		// The whole body is shorter than the peek: its end, like
		// decodeBase64's, may lack the final padding.
		enc = base64.RawStdEncoding
	} else {
		n = n / 4 * 4
	}
	var out [peekBase64Chars / 4 * 3]byte
	k, err := enc.Decode(out[:], text[:n])
	if err != nil {
		if ce, ok := err.(base64.CorruptInputError); ok {
			return nil, encBase64, fmt.Errorf("base64 body: illegal data at character %d", int(ce))
		}
		return nil, encBase64, fmt.Errorf("base64 body: %w", err)
	}
	return buf[:copy(buf, out[:k])], encBase64, nil
}

// decodeAs decodes the whole body as peekBody said. A raw body is returned
// as it stands, aliasing the caller's message: whoever modifies it (the
// in-place decryption) must copy it first.
func decodeAs(body []byte, enc bodyEncoding) ([]byte, error) {
	switch enc {
	case encBase64:
		return decodeBase64(body)
	case encQP:
		return decodeBody(body, "quoted-printable")
	}
	return body, nil
}
