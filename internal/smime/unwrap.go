package smime

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/emersion/go-message/textproto"
)

// unwrap turns a decrypted plaintext into the message to relay
// (shared/spec/STANDARDS.md section 4):
//
//   - a message/rfc822 entity (RFC 8551 section 3.1 wrapping of a whole
//     message): its body, the original message, byte for byte;
//   - a whole message, recognised by its originator fields (RFC 5322
//     section 3.6.2: From, Sender): the plaintext itself, byte for byte;
//   - otherwise a MIME entity that a peer encrypted alone: the outer header
//     fields except the Content-* ones, followed by the entity.
//
// Only the last case allocates, one buffer of the outer header plus the
// plaintext.
func unwrap(pt []byte, outer textproto.Header) ([]byte, error) {
	ph, body := splitHeader(pt)
	// Tolerant, so that a whole message with one junk line in its header
	// (an mbox "From " line) is still recognised by its From field.
	h, _ := readOuterHeader(ph)
	mt, _ := mediaType(h.Get("Content-Type"))
	if mt == "message/rfc822" {
		// RFC 2046 section 5.2.1 allows only 7bit, 8bit and binary here,
		// but an encoded one is decoded rather than refused.
		cte := strings.ToLower(strings.TrimSpace(h.Get("Content-Transfer-Encoding")))
		switch cte {
		case "", "7bit", "8bit", "binary":
			return body, nil
		case "base64", "quoted-printable":
			inner, err := decodeBody(body, cte)
			if err != nil {
				return nil, fmt.Errorf("encrypted message/rfc822 entity: %w", err)
			}
			return inner, nil
		default:
			return nil, fmt.Errorf("encrypted message/rfc822 entity: unsupported Content-Transfer-Encoding %q", cte)
		}
	}
	if h.Has("From") || h.Has("Sender") {
		return pt, nil
	}
	// An entity. If its header does not even parse, the plaintext is taken
	// as the body of an entity without header fields (RFC 2045 section 5.2
	// defaults), which is what a peer that encrypted bare text meant.
	lf := bareLF(pt)
	nl := "\r\n"
	if lf {
		nl = "\n"
	}
	var b bytes.Buffer
	b.Grow(len(pt) + 1024)
	for fs := outer.Fields(); fs.Next(); {
		if strings.HasPrefix(fs.Key(), "Content-") {
			continue
		}
		raw, err := fs.Raw()
		if err != nil {
			return nil, fmt.Errorf("outer header field %s: %w", fs.Key(), err)
		}
		if lf {
			raw = bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
		}
		b.Write(raw)
	}
	if _, err := readHeader(ph); err != nil {
		b.WriteString(nl)
	}
	b.Write(pt)
	return b.Bytes(), nil
}

// bareLF tells whether the first line of b ends in LF without CR, so that
// header fields joined to it use the same line ends.
func bareLF(b []byte) bool {
	i := bytes.IndexByte(b, '\n')
	return i == 0 || i > 0 && b[i-1] != '\r'
}
