package courier

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxReplyText bounds the reply text kept for results, logs and DSNs: a
// hostile server must not make the queue files or the bounces grow without
// limit. Postfix keeps a similar amount.
const maxReplyText = 1000

// reply is a server reply in the form the courier reasons about.
type reply struct {
	code     int
	enhanced string // "5.1.1", "" if the server sent none
	text     string // one line, enhanced code stripped, sanitised
}

// parseReply reads a reply as readReply assembles it: msg holds the texts
// of its lines after the code, joined by "\n". The enhanced status code (RFC 2034 section 4, RFC 3463)
// is taken from the first line only when its class agrees with the reply
// code; later lines repeat it and lose it too.
func parseReply(code int, msg string) reply {
	r := reply{code: code}
	lines := strings.Split(msg, "\n")
	if first, rest, ok := strings.Cut(lines[0], " "); ok || first != "" {
		if validEnhanced(first) && code >= 200 && code < 600 && first[0] == byte('0'+code/100) {
			r.enhanced = first
			lines[0] = rest
			for i := 1; i < len(lines); i++ {
				lines[i] = strings.TrimPrefix(strings.TrimPrefix(lines[i], first), " ")
			}
		}
	}
	r.text = sanitizeText(strings.Join(lines, " "))
	return r
}

// validEnhanced reports whether s is class.subject.detail as RFC 3463
// section 2 defines it: class 2, 4 or 5, subject and detail of 1 to 3
// digits.
func validEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) != 1 || !strings.ContainsAny(parts[0], "245") {
		return false
	}
	for _, p := range parts[1:] {
		if len(p) < 1 || len(p) > 3 {
			return false
		}
		for i := 0; i < len(p); i++ {
			if p[i] < '0' || p[i] > '9' {
				return false
			}
		}
	}
	return true
}

// sanitizeText makes s safe for a log line, a queue file and a DSN field:
// control characters and invalid UTF-8 become '?', runs of blanks collapse,
// and the result is cut at maxReplyText bytes on a rune boundary.
func sanitizeText(s string) string {
	var b strings.Builder
	space := false
	for _, r := range s {
		switch {
		case r == ' ' || r == '\t':
			if !space && b.Len() > 0 {
				b.WriteByte(' ')
			}
			space = true
			continue
		case r == utf8.RuneError || r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			r = '?'
		}
		space = false
		if b.Len()+utf8.RuneLen(r) > maxReplyText {
			break
		}
		b.WriteRune(r)
	}
	return strings.TrimRight(b.String(), " ")
}

// line renders the reply as it appears in results: "550 5.1.1 text".
func (r reply) line() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(r.code))
	if r.enhanced != "" {
		b.WriteByte(' ')
		b.WriteString(r.enhanced)
	}
	if r.text != "" {
		b.WriteByte(' ')
		b.WriteString(r.text)
	}
	return b.String()
}

// status is the enhanced code to report: the server's, or one derived from
// the reply class (RFC 3463 section 3.1, "X.0.0 Other undefined status").
func (r reply) status() string {
	if r.enhanced != "" {
		return r.enhanced
	}
	switch r.code / 100 {
	case 2:
		return "2.0.0"
	case 5:
		return "5.0.0"
	}
	// 1xx, 3xx where a final reply was due, or a code outside 100-599:
	// the outcome is a deferral, so the status says so too.
	return "4.0.0"
}

// outcome classifies a reply code for a recipient.
func (r reply) outcome() Status {
	switch r.code / 100 {
	case 2:
		return Delivered
	case 5:
		return Failed
	}
	// 4xx, and anything a confused server sends that is neither, is worth
	// another try later rather than a bounce.
	return Deferred
}

// encodeXtext encodes s as RFC 3461 section 4 xtext: printable ASCII except
// "+" and "=" as is, everything else as "+XX".
func encodeXtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			fmt.Fprintf(&b, "+%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// encodeUTF8AddrXtext encodes s as utf-8-addr-xtext (RFC 6533 section 3):
// printable ASCII except "+", "=" and "\" as is, every other character as
// "\x{HEX}". The result is ASCII, so it is valid with or without SMTPUTF8.
func encodeUTF8AddrXtext(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '!' && r <= '~' && r != '+' && r != '=' && r != '\\' {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, "\\x{%X}", r)
		}
	}
	return b.String()
}

// orcptParam renders the ORCPT parameter for a decoded "type;address"
// value; "" when the value is unusable, since ORCPT is optional and a bad
// one must not cost the recipient its delivery.
func orcptParam(v string) string {
	typ, addr, ok := strings.Cut(v, ";")
	typ = strings.TrimSpace(typ)
	if !ok || addr == "" || typ == "" || !isAtom(typ) || !utf8.ValidString(addr) {
		return ""
	}
	if strings.EqualFold(typ, "utf-8") {
		return "ORCPT=utf-8;" + encodeUTF8AddrXtext(addr)
	}
	if !isASCII(addr) {
		// An rfc822 address cannot carry UTF-8 (RFC 3461 section 4.2);
		// say it the RFC 6533 way instead.
		return "ORCPT=utf-8;" + encodeUTF8AddrXtext(addr)
	}
	return "ORCPT=" + typ + ";" + encodeXtext(addr)
}

func isAtom(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return s != ""
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// notifyParam renders NOTIFY (RFC 3461 section 4.1): NEVER alone, or a
// comma list of SUCCESS, FAILURE, DELAY. Unknown or contradictory values
// drop the parameter rather than make the server refuse the recipient.
func notifyParam(values []string) string {
	if len(values) == 0 {
		return ""
	}
	seen := map[string]bool{}
	var out []string
	for _, v := range values {
		v = strings.ToUpper(strings.TrimSpace(v))
		switch v {
		case "NEVER", "SUCCESS", "FAILURE", "DELAY":
		default:
			return ""
		}
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	if seen["NEVER"] && len(out) > 1 {
		return ""
	}
	return "NOTIFY=" + strings.Join(out, ",")
}
