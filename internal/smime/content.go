package smime

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// checkContent holds decrypted content to the rules that the SMTP
// receiver's strict DATA reader holds what arrives in the clear, because
// the plaintext of an opened message goes to the internal server without
// ever having passed that reader (docs/threats.md section 5, "smuggling
// through decryption"):
//
//   - a NUL byte anywhere refuses the content: RFC 5321 section 4.5.2 and
//     RFC 6152 allow none in DATA, and servers disagree on what follows it;
//   - a bare CR (one not followed by LF) refuses it: a "\r.\r\n" or a lone
//     CR before "MAIL FROM" is what some MTAs read as the end of one message
//     and the start of another (CVE-2023-51764 and its kin);
//   - a bare LF becomes CRLF: peers that encrypted LF-only text (`openssl
//     smime` without -crlfeol) are common, and RFC 5322 section 2.3 allows
//     only CRLF line ends;
//   - the content ends with CRLF, one is appended if it does not, so that
//     the dot that ends DATA always stands on a line of its own.
//
// It returns the content (b itself when nothing had to change, else a new
// buffer with room for exactly the added bytes), whether it has any byte of
// 0x80 or more (8BITMIME, RFC 6152), and for refused content an error that
// names the offset, never the content.
func checkContent(b []byte) ([]byte, bool, error) {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return nil, false, fmt.Errorf("a NUL byte at offset %d", i)
	}
	crlf, bareLF := 0, 0
	for i := 0; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			break
		}
		if k := i + j; k > 0 && b[k-1] == '\r' {
			crlf++
		} else {
			bareLF++
		}
		i += j + 1
	}
	if bytes.Count(b, []byte{'\r'}) != crlf {
		for i, c := range b {
			if c == '\r' && (i+1 == len(b) || b[i+1] != '\n') {
				return nil, false, fmt.Errorf("a bare CR (not followed by LF) at offset %d", i)
			}
		}
	}
	eightBit := hasEightBit(b)
	final := len(b) == 0 || b[len(b)-1] != '\n'
	if bareLF == 0 && !final {
		return b, eightBit, nil
	}
	n := len(b) + bareLF
	if final {
		n += 2
	}
	out := make([]byte, 0, n)
	for len(b) > 0 {
		j := bytes.IndexByte(b, '\n')
		if j < 0 {
			out = append(out, b...)
			break
		}
		if j > 0 && b[j-1] == '\r' {
			out = append(out, b[:j+1]...)
		} else {
			out = append(out, b[:j]...)
			out = append(out, '\r', '\n')
		}
		b = b[j+1:]
	}
	if final {
		out = append(out, '\r', '\n')
	}
	return out, eightBit, nil
}

// hasEightBit reports whether b has a byte of 0x80 or more, eight bytes at
// a time.
func hasEightBit(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b)&0x8080808080808080 != 0 {
			return true
		}
		b = b[8:]
	}
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}
