package smime

import (
	"bytes"
	"strings"
)

// Header protection (RFC 9788, which updates RFC 8551): the whole original
// message travels inside the encryption, and a signed payload says so. Its
// Content-Type carries hp="cipher" (RFC 9788 section 2.1: this
// Cryptographic Payload is encrypted and its header is the message's real
// one), and one HP-Outer field (section 2.2) records each field that Seal
// put on the outer, unprotected header, so that a receiver can tell what
// the sender showed outside (the obscured Subject, say) from what was
// added on the way.
//
// The outer header follows RFC 9788's hcp_baseline header confidentiality
// policy, made stricter: hcp_baseline obscures Subject to "[...]" and drops
// Keywords and Comments and keeps every other field outside; Seal keeps
// only what transport needs (outerFields in header.go) and drops the rest
// (Reply-To, In-Reply-To, References and every other field travel only
// inside), which RFC 9788 section 3 leaves to the sender's policy.
//
// An unsigned payload is the original message byte for byte, unmarked:
// marking it would mean adding hp="cipher" to the original's own
// Content-Type, which breaks every DKIM signature that covers that field
// for a partner that verifies after decrypting, and breaks the promise
// that `openssl cms -decrypt` gives back the original (README.md, Security
// notes and Interoperability). Its header is authoritative all the same: it
// is a whole message (unwrap.go).
// A signed payload is built around the original (sign.go), so it carries
// the marking at no such cost.
//
// On input, a payload with an hp parameter is a whole message whatever its
// fields (its header is the protected, authoritative one: RFC 9788 section
// 4), and RestoreHeaderProtection takes the markings away before it is
// relayed.

// hpParam is what Seal appends to the signed payload's Content-Type.
const hpParam = `; hp="cipher"`

// hpOuterName is RFC 9788's field that records an outer header field.
const hpOuterName = "HP-Outer"

// hpOuterFields returns one HP-Outer field for each field that
// writeOuterFields writes on the outer header, in the same order and with
// the same value ("HP-Outer: Subject: [...]").
func hpOuterFields(header []byte, protectSubject bool) []byte {
	var outer bytes.Buffer
	writeOuterFields(&outer, header, protectSubject)
	var b bytes.Buffer
	b.Grow(outer.Len() + outer.Len()/8 + 32)
	for s := newHeaderScanner(outer.Bytes()); s.next(); {
		b.WriteString(hpOuterName + ": ")
		b.Write(s.raw)
	}
	return b.Bytes()
}

// RestoreHeaderProtection undoes RFC 9788's markings on a decrypted
// message whose Content-Type has an hp parameter: it removes the HP-Outer
// fields and the hp parameter, so that the payload is an ordinary message
// whose header, the protected one, is authoritative, and so that a signed
// payload of ours whose signature layer is kept reads as a plain
// multipart/signed. A message
// without the parameter is returned as it is. The result aliases msg,
// which is rewritten in place.
func RestoreHeaderProtection(msg []byte) []byte {
	header, _ := splitHeader(msg)
	hp, ctStart, ctEnd := false, 0, 0
	for s := newHeaderScanner(header); s.next(); {
		if s.is("Content-Type") {
			_, params := mediaType(s.value())
			_, hp = params["hp"]
			ctEnd = len(header) - len(s.rest)
			ctStart = ctEnd - len(s.raw)
			break
		}
	}
	if !hp {
		return msg
	}
	if cut := hpParamSpan(msg[ctStart:ctEnd]); cut[1] > cut[0] {
		msg = append(msg[:ctStart+cut[0]], msg[ctStart+cut[1]:]...)
	}
	header, _ = splitHeader(msg)
	var spans [][2]int
	for s := newHeaderScanner(header); s.next(); {
		if s.is(hpOuterName) {
			end := len(header) - len(s.rest)
			spans = append(spans, [2]int{end - len(s.raw), end})
		}
	}
	// From the last to the first, so that the offsets still to be cut do
	// not move.
	for i := len(spans) - 1; i >= 0; i-- {
		msg = append(msg[:spans[i][0]], msg[spans[i][1]:]...)
	}
	return msg
}

// hpParamSpan finds the hp parameter in a raw Content-Type field: the
// offsets of the text to cut (the ";" before it, the blanks and any fold
// around it, and its value), or an empty span if there is none.
func hpParamSpan(field []byte) [2]int {
	lower := strings.ToLower(string(field))
	for from := 0; ; {
		i := strings.Index(lower[from:], "hp")
		if i < 0 {
			return [2]int{}
		}
		i += from
		from = i + 2
		// It must be a parameter name: preceded by ";" and blanks, and
		// followed by blanks and "=".
		j := i - 1
		for j >= 0 && isFoldBlank(lower[j]) {
			j--
		}
		if j < 0 || lower[j] != ';' {
			continue
		}
		k := i + 2
		for k < len(lower) && (lower[k] == ' ' || lower[k] == '\t') {
			k++
		}
		if k >= len(lower) || lower[k] != '=' {
			continue
		}
		k++
		for k < len(lower) && (lower[k] == ' ' || lower[k] == '\t') {
			k++
		}
		if k < len(lower) && lower[k] == '"' {
			end := strings.IndexByte(lower[k+1:], '"')
			if end < 0 {
				return [2]int{}
			}
			k += end + 2
		} else {
			for k < len(lower) && !strings.ContainsRune("; \t\r\n", rune(lower[k])) {
				k++
			}
		}
		return [2]int{j, k}
	}
}

func isFoldBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// hasHPParam reports whether a Content-Type value carries hp (RFC 9788
// section 2.1): such a payload's header is the message's own.
func hasHPParam(contentType string) bool {
	_, params := mediaType(contentType)
	_, ok := params["hp"]
	return ok
}
