package smime

import (
	"bytes"
	"fmt"
	"strings"
)

// unwrap turns a decrypted plaintext into the message to relay
// (docs/threats.md section 4), outer being the header section of
// the message that carried it:
//
//   - a message/rfc822 entity (RFC 8551 section 3.1 wrapping of a whole
//     message): its body, the original message, byte for byte;
//   - a whole message, recognised by its originator fields (RFC 5322
//     section 3.6.2: From, Sender): the plaintext itself, byte for byte;
//   - otherwise a MIME entity that a peer encrypted alone: the outer header
//     fields except the Content-* ones and the trace fields (which Open
//     returns apart, as OpenResult.Trace), followed by the entity.
//
// Every header section it parses or relays is bounded by maxHeader bytes
// and maxHeaderFields lines; beyond that the plaintext is refused. Only the
// last case allocates, one buffer of the outer header plus the plaintext.
func unwrap(pt, outer []byte, maxHeader int) ([]byte, error) {
	ph, body := splitHeader(pt)
	h, err := scanPlainHeader(ph, maxHeader)
	if err != nil {
		return nil, fmt.Errorf("decrypted content: %w", err)
	}
	mt, _ := mediaType(h.contentType)
	if mt == "message/rfc822" {
		inner := body
		// RFC 2046 section 5.2.1 allows only 7bit, 8bit and binary here,
		// but an encoded one is decoded rather than refused.
		switch h.cte {
		case "", "7bit", "8bit", "binary":
		case "base64", "quoted-printable":
			if inner, err = decodeBody(body, h.cte); err != nil {
				return nil, fmt.Errorf("encrypted message/rfc822 entity: %w", err)
			}
		default:
			return nil, fmt.Errorf("encrypted message/rfc822 entity: unsupported Content-Transfer-Encoding %q", h.cte)
		}
		// The inner message is relayed as it stands, so its header is
		// held to the same bounds as any other.
		ih, _ := splitHeader(inner)
		if err := boundedHeader(ih, maxHeader); err != nil {
			return nil, fmt.Errorf("encrypted message/rfc822 entity: %w", err)
		}
		return inner, nil
	}
	if h.originator || hasHPParam(h.contentType) {
		// A whole message, or an RFC 9788 Cryptographic Payload, whose
		// header is the message's own (section 4.3: the protected header
		// is authoritative) and is never mixed with the outer one.
		return pt, nil
	}
	// An entity. If its header does not even parse, the plaintext is taken
	// as the body of an entity without header fields (RFC 2045 section 5.2
	// defaults), which is what a peer that encrypted bare text meant.
	var b bytes.Buffer
	b.Grow(len(outer) + len(pt) + 2)
	for s := newHeaderScanner(outer); s.next(); {
		if len(s.name) >= 8 && strings.EqualFold(string(s.name[:8]), "content-") || s.isTraceField() {
			continue
		}
		b.Write(s.raw)
		if s.raw[len(s.raw)-1] != '\n' {
			b.WriteString("\r\n")
		}
	}
	if !h.strict {
		b.WriteString("\r\n")
	}
	b.Write(pt)
	return b.Bytes(), nil
}

// plainHeader is what unwrap needs from the header of a plaintext.
type plainHeader struct {
	contentType string
	cte         string // lower case
	originator  bool   // a From or Sender field
	// strict: every line is a header field (RFC 5322 section 2.2), so
	// that the plaintext can follow other header fields as it stands.
	strict bool
}

// scanPlainHeader reads the header section of a plaintext, tolerantly (so
// that a whole message with one junk line in its header, an mbox "From "
// line, is still recognised by its From field). A section beyond maxHeader
// bytes or maxHeaderFields lines is refused if it starts with a header
// field; if it does not, the plaintext has no header at all (bare text
// without a blank line) and is an entity without header fields.
func scanPlainHeader(ph []byte, maxHeader int) (plainHeader, error) {
	var p plainHeader
	s := newHeaderScanner(ph[:min(len(ph), maxHeader+1)])
	for s.next() {
		if s.fields+s.skipped > maxHeaderFields {
			break
		}
		switch {
		case s.is("Content-Type") && p.contentType == "":
			p.contentType = s.value()
		case s.is("Content-Transfer-Encoding") && p.cte == "":
			p.cte = strings.ToLower(s.value())
		case s.is("From"), s.is("Sender"):
			p.originator = true
		}
	}
	if len(ph) > maxHeader || s.fields+s.skipped > maxHeaderFields {
		if !s.first {
			return plainHeader{}, nil
		}
		return plainHeader{}, boundedHeader(ph, maxHeader)
	}
	p.strict = s.skipped == 0
	return p, nil
}

// boundedHeader refuses a header section beyond maxHeader bytes or
// maxHeaderFields lines.
func boundedHeader(header []byte, maxHeader int) error {
	if err := headerTooLarge(header, maxHeader); err != nil {
		return err
	}
	s := newHeaderScanner(header)
	for s.next() {
		if s.fields+s.skipped > maxHeaderFields {
			break
		}
	}
	if s.fields+s.skipped > maxHeaderFields {
		return fmt.Errorf("more than %d header lines", maxHeaderFields)
	}
	return nil
}
