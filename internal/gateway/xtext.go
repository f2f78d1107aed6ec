package gateway

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// decodeORcpt turns an ORCPT parameter as received ("rfc822;bob+2Bx@b.example",
// RFC 3461 section 4.2, xtext; or RFC 6533's utf-8-addr-xtext with \x{HEX})
// into the decoded "type;address" form that the courier re-encodes and the
// DSN's Original-Recipient field shows. A malformed escape is kept as it is:
// the parameter is informational and must never fail a delivery.
func decodeORcpt(s string) string {
	if !strings.ContainsAny(s, "+\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '+' && i+2 < len(s):
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		case strings.HasPrefix(s[i:], `\x{`):
			if end := strings.IndexByte(s[i:], '}'); end > 3 {
				if v, err := strconv.ParseUint(s[i+3:i+end], 16, 32); err == nil && utf8.ValidRune(rune(v)) {
					b.WriteRune(rune(v))
					i += end
					continue
				}
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
