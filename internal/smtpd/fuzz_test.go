package smtpd

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
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
		d := &dataReader{
			br:  bufio.NewReaderSize(bytes.NewReader(in), 16),
			dst: &out,
			lim: dataLimits{maxBytes: 1 << 40, maxLine: 1 << 30, maxHeader: 1 << 30, maxReceived: 1 << 30},
		}
		reject, werr, nerr := d.readData()
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
		if d.total != int64(consumed) {
			t.Fatalf("%q: consumed %d bytes, reference %d", in, d.total, consumed)
		}
		isNUL := reject != nil && strings.HasPrefix(reject.msg, nulRefusal)
		switch {
		case bare && nul >= 0:
			if reject != errBareNewline && !isNUL {
				t.Fatalf("%q: bare CR/LF and NUL, reader refused with %v", in, reject)
			}
		case bare:
			if reject != errBareNewline {
				t.Fatalf("%q: bare CR/LF, reader refused with %v", in, reject)
			}
		case nul >= 0:
			if !isNUL || !strings.Contains(reject.msg, fmt.Sprintf(" at byte %d of ", nul)) {
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
		if int64(len(want)) != d.size {
			t.Fatalf("%q: size %d, reference %d", in, d.size, len(want))
		}
	})
}

// FuzzParsePath: the path parser never panics, and an address it accepts
// (and the grammar allows) reads back the same from its own Mailbox().
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"<a@b.example>", "<>", "<@x:a@b>", `<"a b"@c>`, `<"a\"@b"@c>`, "<a%b@c>", "<a@[1.2.3.4]>", "<a@b.> SIZE=1",
		"<a@b> NOTIFY=NEVER ORCPT=rfc822;a+40b", `<"unterminated@b>`, "<ü@b>", "a@b", "<a@b",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, reverse bool) {
		p, err := parsePath(s, reverse)
		if err != nil {
			return
		}
		_ = p.routingTrick()
		if p.Null {
			if !reverse {
				t.Fatalf("%q: null forward-path accepted", s)
			}
			return
		}
		if p.checkSyntax(true) != nil {
			return
		}
		q, err := parsePath("<"+p.Mailbox()+">", reverse)
		if err != nil {
			t.Fatalf("%q: Mailbox %q does not parse: %v", s, p.Mailbox(), err)
		}
		if q.Local != p.Local || q.Domain != p.Domain || q.Unquote != p.Unquote {
			t.Fatalf("%q: round trip %+v != %+v", s, q, p)
		}
		if !p.Quoted && strings.ContainsAny(p.Local, `"@ `) {
			t.Fatalf("%q: unquoted local part %q passed the grammar", s, p.Local)
		}
	})
}

// FuzzCanonicalDomain: the receiver's canonical form of a domain is ASCII,
// lower case, stable (canonicalising it again changes nothing), never an IP
// address in disguise, and what the receiver stores is what config's
// CanonicalDomain would make of it.
func FuzzCanonicalDomain(f *testing.F) {
	for _, s := range []string{
		"example.org", "EXAMPLE.ORG.", "bücher.example", "ab--cd.example.net", "xn--zz.example.net", "xn--bcher-kva.example",
		"1.2.3.4", "127.1", "0x7f000001", "0x", "a.0xg", "exa_mple.org", "a..b", "ﬁ.example", "", ".", strings.Repeat("a.", 130),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, d string) {
		a, err := canonicalDomain(d)
		if err != nil {
			return
		}
		for i := 0; i < len(a); i++ {
			if c := a[i]; c >= 0x80 || 'A' <= c && c <= 'Z' {
				t.Fatalf("%q: canonical form %q is not lower-case ASCII", d, a)
			}
		}
		if b, err := canonicalDomain(a); err != nil || b != a {
			t.Fatalf("%q: canonical form %q canonicalises to %q, %v", d, a, b, err)
		}
		if _, err := netip.ParseAddr(a); err == nil {
			t.Fatalf("%q: canonical form %q is an IP address", d, a)
		}
		if numericName(a) {
			t.Fatalf("%q: canonical form %q has a numeric top-level label", d, a)
		}
	})
}
