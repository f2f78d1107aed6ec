package smime

import (
	"bufio"
	"bytes"
	"fmt"
	stdtextproto "net/textproto"

	"github.com/emersion/go-message/textproto"
)

// outerField is a header field that Seal copies from the original message to
// the outer, encrypted one, with the reason it has to travel in the clear.
type outerField struct {
	name   string
	reason string
}

// outerFields is the one place that decides what stands outside the
// encryption. RFC 9788 (header protection, which updates RFC 8551) keeps the
// whole original header inside the ciphertext and only what transport needs
// outside. Every field not listed here, Bcc first among them, travels only
// encrypted. MIME-Version and the Content-* fields of the outer message are
// written by Seal itself (RFC 2045 section 4, RFC 8551 section 3.2).
var outerFields = []outerField{
	{"From", "RFC 5322 section 3.6.2: the originator; receiving MTAs, DMARC and the partner gateway decide inbound/outbound by it"},
	{"To", "RFC 5322 section 3.6.3: the visible recipients; filters and the partner gateway's logs read them"},
	{"Cc", "RFC 5322 section 3.6.3: as To"},
	{"Date", "RFC 5322 section 3.6.1: a required field; MTAs judge message age by it"},
	{"Message-ID", "RFC 5322 section 3.6.4: duplicate and loop detection, and tracing one message through both gateways' logs"},
	{"Subject", "RFC 5322 section 3.6.5: kept for the partner's filters and logs, or replaced by \"[...]\" when policy.protect_subject is set (RFC 9788's obscured Subject)"},
}

// neverOutside lists fields that must not leave in the clear whatever the
// list above says. RFC 5322 section 3.6.3: the Bcc addresses must not be
// disclosed to the other recipients.
var neverOutside = map[string]bool{"Bcc": true}

// protectedSubject is the outer Subject when policy.protect_subject is set,
// the placeholder RFC 9788 recommends for an obscured Subject.
const protectedSubject = "[...]"

// splitHeader returns the header section of msg (including the blank line
// that ends it) and the body. It accepts CRLF and bare LF line ends, because
// messages from peers and files arrive with either. A message without a
// blank line is all header.
func splitHeader(msg []byte) (header, body []byte) {
	for i := 0; i < len(msg); {
		if msg[i] == '\n' {
			return msg[:i+1], msg[i+1:]
		}
		if msg[i] == '\r' && i+1 < len(msg) && msg[i+1] == '\n' {
			return msg[:i+2], msg[i+2:]
		}
		j := bytes.IndexByte(msg[i:], '\n')
		if j < 0 {
			break
		}
		i += j + 1
	}
	return msg, nil
}

// readHeader parses a header section with go-message's textproto, which
// keeps each field's raw bytes so that copied fields are not re-encoded
// (only their line ends become CRLF).
func readHeader(header []byte) (textproto.Header, error) {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(header)))
	if err != nil {
		return h, fmt.Errorf("header section: %w", err)
	}
	return h, nil
}

// readOuterHeader parses the header of a message whose fields are only
// looked at, never judged: the original message that Seal encrypts whole,
// and the outer header of a message Open inspects. Lines that are not header
// fields (an mbox "From " line, junk without a colon, a folded first line)
// are left out, so that one bad line neither stops encryption nor hides an
// encrypted message's Content-Type. Left-out lines are never copied outside;
// in Seal they still travel inside the ciphertext with the rest.
func readOuterHeader(header []byte) (h textproto.Header, skipped int) {
	h, err := readHeader(header)
	if err == nil {
		return h, 0
	}
	var clean bytes.Buffer
	clean.Grow(len(header))
	for _, f := range rawHeaderFields(header) {
		if validFieldName(f) {
			clean.Write(f)
			if f[len(f)-1] != '\n' {
				clean.WriteString("\r\n")
			}
		} else {
			skipped++
		}
	}
	clean.WriteString("\r\n")
	h, _ = readHeader(clean.Bytes())
	return h, skipped
}

// rawHeaderFields splits a header section into fields, each with its
// continuation lines (RFC 5322 section 2.2.3), line ends included, and
// without the blank line that ends the section.
func rawHeaderFields(header []byte) [][]byte {
	var fields [][]byte
	start, i := -1, 0
	for i < len(header) {
		end := len(header)
		if j := bytes.IndexByte(header[i:], '\n'); j >= 0 {
			end = i + j + 1
		}
		line := header[i:end]
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break
		}
		if start < 0 || (line[0] != ' ' && line[0] != '\t') {
			if start >= 0 {
				fields = append(fields, header[start:i])
			}
			start = i
		}
		i = end
	}
	if start >= 0 {
		fields = append(fields, header[start:i])
	}
	return fields
}

// validFieldName tells whether a raw field starts with a field name and a
// colon (RFC 5322 section 3.6.8: printable US-ASCII except colon).
func validFieldName(f []byte) bool {
	colon := bytes.IndexByte(f, ':')
	if colon <= 0 || f[0] == ' ' || f[0] == '\t' {
		return false
	}
	for _, c := range bytes.TrimRight(f[:colon], " \t") {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}

// writeOuterFields writes the fields of h that outerFields lets stand
// outside, in their original order and with their original bytes.
func writeOuterFields(b *bytes.Buffer, h textproto.Header, protectSubject bool) error {
	keep := make(map[string]bool, len(outerFields))
	for _, f := range outerFields {
		// textproto keys are canonical ("Message-Id"), so compare so.
		keep[stdtextproto.CanonicalMIMEHeaderKey(f.name)] = true
	}
	for fs := h.Fields(); fs.Next(); {
		key := fs.Key()
		if !keep[key] || neverOutside[stdtextproto.CanonicalMIMEHeaderKey(key)] {
			continue
		}
		if key == "Subject" && protectSubject {
			b.WriteString("Subject: " + protectedSubject + "\r\n")
			continue
		}
		raw, err := fs.Raw()
		if err != nil {
			return fmt.Errorf("header field %s: %w", key, err)
		}
		b.Write(raw)
	}
	return nil
}
