package smime

import (
	"bytes"
	"fmt"
	"strings"
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

// writeOuterFields writes the fields of the header section header that
// outerFields lets stand outside, in their original order and with their
// original bytes, only their line ends made CRLF. It reads the header with
// headerScanner, so that lines that are not header fields (an mbox "From "
// line, junk without a colon, a folded first line) are left out rather
// than stopping encryption, and so that a header of millions of fields
// costs no memory per field. Left-out lines are never copied outside; they
// still travel inside the ciphertext with the rest.
func writeOuterFields(b *bytes.Buffer, header []byte, protectSubject bool) {
	for s := newHeaderScanner(header); s.next(); {
		if !isOuterField(s.name) {
			continue
		}
		if protectSubject && s.is("Subject") {
			b.WriteString("Subject: " + protectedSubject + "\r\n")
			continue
		}
		writeCRLF(b, s.raw)
	}
}

// isOuterField reports whether outerFields lists name, and neverOutside
// does not.
func isOuterField(name []byte) bool {
	for _, f := range outerFields {
		if bytes.EqualFold(name, []byte(f.name)) {
			return !neverOutside[f.name]
		}
	}
	return false
}

// writeCRLF writes a raw field line by line, each line ending in CRLF
// whether it ended in CRLF, in LF or in nothing.
func writeCRLF(b *bytes.Buffer, raw []byte) {
	for len(raw) > 0 {
		end := lineEnd(raw, 0)
		line := raw[:end]
		raw = raw[end:]
		line = bytes.TrimSuffix(line, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		b.Write(line)
		b.WriteString("\r\n")
	}
}

// DefaultMaxHeaderBytes is the limit on one header section (the message's,
// a body part's, or a decrypted plaintext's) when OpenOptions.MaxHeaderBytes
// is 0. It is two and a half times smtp.max_header_bytes' default (102400,
// Postfix's header_size_limit), so that every header the SMTP receiver
// accepts can be inspected, and it bounds the work on a decrypted header,
// which no SMTP receiver has bounded.
const DefaultMaxHeaderBytes = 256 << 10

// maxHeaderFields bounds the fields of one header section. Ordinary mail
// has a few dozen; a long relay chain with ARC and DKIM sets reaches a few
// hundred (RFC 5321 section 6.3 loop detection stops at about 100 Received
// fields). A thousand is far beyond that and still a small, fixed amount of
// work per section.
const maxHeaderFields = 1000

// headerScanner reads the fields of a header section one at a time,
// without allocating: name and raw alias the section. It is tolerant: a
// line that is not a field (an mbox "From " line, junk without a colon, a
// continuation line with no field before it) is skipped and counted, so
// that one bad line neither stops encryption nor hides an encrypted
// message's Content-Type.
type headerScanner struct {
	rest    []byte // the section still to read
	name    []byte // the current field's name, without blanks before the colon
	raw     []byte // the current field, continuation lines and line ends included
	fields  int    // fields read so far
	skipped int    // lines (with their continuations) that were not fields
	first   bool   // the first line was a field
	started bool
}

func newHeaderScanner(header []byte) headerScanner { return headerScanner{rest: header} }

// next moves to the next field; it returns false at the blank line that
// ends the section or at its end.
func (s *headerScanner) next() bool {
	for len(s.rest) > 0 {
		end := lineEnd(s.rest, 0)
		if isBlankLine(s.rest[:end]) {
			s.rest = nil
			return false
		}
		// RFC 5322 section 2.2.3: a line that starts with a blank
		// continues the field before it.
		for end < len(s.rest) && (s.rest[end] == ' ' || s.rest[end] == '\t') {
			end = lineEnd(s.rest, end)
		}
		f := s.rest[:end]
		s.rest = s.rest[end:]
		valid := validFieldName(f)
		if !s.started {
			s.started, s.first = true, valid
		}
		if !valid {
			s.skipped++
			continue
		}
		s.fields++
		s.raw = f
		s.name = bytes.TrimRight(f[:bytes.IndexByte(f, ':')], " \t")
		return true
	}
	return false
}

// is reports whether the current field is called name (ASCII, any case).
func (s *headerScanner) is(name string) bool { return bytes.EqualFold(s.name, []byte(name)) }

// value returns the current field's value unfolded (RFC 5322 section
// 2.2.3) and trimmed.
func (s *headerScanner) value() string { return fieldValue(s.raw) }

// lineEnd returns the index just past the line of b that starts at i.
func lineEnd(b []byte, i int) int {
	if j := bytes.IndexByte(b[i:], '\n'); j >= 0 {
		return i + j + 1
	}
	return len(b)
}

func isBlankLine(l []byte) bool {
	for _, c := range l {
		if c != '\r' && c != '\n' {
			return false
		}
	}
	return true
}

// fieldValue unfolds the value of a raw field: what follows the colon, with
// its line ends removed and the blanks around it trimmed.
func fieldValue(raw []byte) string {
	v := raw[bytes.IndexByte(raw, ':')+1:]
	if bytes.IndexByte(v, '\n') < 0 && bytes.IndexByte(v, '\r') < 0 {
		return string(bytes.Trim(v, " \t"))
	}
	b := make([]byte, 0, len(v))
	for _, c := range v {
		if c != '\r' && c != '\n' {
			b = append(b, c)
		}
	}
	return string(bytes.Trim(b, " \t"))
}

// headerTooLarge reports a header section beyond the bounds above.
func headerTooLarge(header []byte, maxBytes int) error {
	if len(header) > maxBytes {
		return fmt.Errorf("header section of %d bytes, limit %d", len(header), maxBytes)
	}
	return nil
}

// mimeHeader is what the walk needs from a header section: its MIME
// fields, as the first field of each name says them.
type mimeHeader struct {
	contentType string // unfolded value, "" when absent
	cte         string // Content-Transfer-Encoding, lower case, "" when absent
	disposition string // Content-Disposition, unfolded
	// conflict names a MIME field that occurs twice with different
	// values: readers disagree on which one counts, so the structure one
	// of them sees cannot be known.
	conflict string
}

// scanMIMEHeader reads the MIME fields of header, a section of at most
// maxBytes bytes and maxHeaderFields fields.
func scanMIMEHeader(header []byte, maxBytes int) (mimeHeader, error) {
	var m mimeHeader
	if err := headerTooLarge(header, maxBytes); err != nil {
		return m, err
	}
	set := func(dst *string, name, v string) {
		switch {
		case *dst == "":
			*dst = v
		case !strings.EqualFold(*dst, v) && m.conflict == "":
			m.conflict = name
		}
	}
	s := newHeaderScanner(header)
	for s.next() {
		if s.fields > maxHeaderFields {
			return m, fmt.Errorf("more than %d header fields", maxHeaderFields)
		}
		if len(s.name) < 8 || !bytes.EqualFold(s.name[:8], []byte("content-")) {
			continue
		}
		switch {
		case s.is("Content-Type"):
			set(&m.contentType, "Content-Type", s.value())
		case s.is("Content-Transfer-Encoding"):
			set(&m.cte, "Content-Transfer-Encoding", strings.ToLower(s.value()))
		case s.is("Content-Disposition"):
			set(&m.disposition, "Content-Disposition", s.value())
		}
	}
	if s.skipped+s.fields > maxHeaderFields {
		return m, fmt.Errorf("more than %d header lines", maxHeaderFields)
	}
	return m, nil
}

// isTraceField reports the trace fields of RFC 5321 section 4.4 and RFC
// 5322 section 3.6.7, which must not be deleted on the way.
func (s *headerScanner) isTraceField() bool { return s.is("Received") || s.is("Return-Path") }

// traceFields returns the trace fields of header, raw and in their order.
func traceFields(header []byte) []byte {
	var b []byte
	for s := newHeaderScanner(header); s.next(); {
		if s.isTraceField() {
			b = append(b, s.raw...)
			if s.raw[len(s.raw)-1] != '\n' {
				b = append(b, '\r', '\n')
			}
		}
	}
	return b
}
