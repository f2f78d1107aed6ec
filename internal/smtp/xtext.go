package smtp

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxXtext bounds the xtext a decoder takes. The longest xtext SMTP
// carries is an ORCPT: an address of at most 256 octets (RFC 5321 section
// 4.5.3.1.3) with its type, each octet three characters at worst, within
// the 500 characters RFC 3461 section 4.2 allows the parameter; ENVID is
// at most 100 (section 4.4). Anything longer is not a parameter value.
const MaxXtext = 1000

var (
	errXtextLong = errors.New("xtext longer than 1000 characters")
	errXtext     = errors.New("not xtext (RFC 3461 section 4)")
	errUTF8Xtext = errors.New("not utf-8-addr-xtext (RFC 6533 section 3)")
)

// xchar reports whether c stands for itself in xtext (RFC 3461 section 4:
// "any ASCII CHAR between "!" (33) and "~" (126) inclusive, except for "+"
// and "="").
func xchar(c byte) bool { return c >= '!' && c <= '~' && c != '+' && c != '=' }

// EncodeXtext encodes s as xtext (RFC 3461 section 4): an xchar as it is,
// every other octet as "+" and two upper-case hexadecimal digits.
func EncodeXtext(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if xchar(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('+')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

// DecodeXtext decodes xtext (RFC 3461 section 4). Anything but xchars and
// "+" with two hexadecimal digits is an error; lower-case digits, which the
// RFC does not allow a sender to write, are read as the upper-case ones.
func DecodeXtext(s string) (string, error) {
	if len(s) > MaxXtext {
		return "", errXtextLong
	}
	if strings.IndexByte(s, '+') < 0 {
		for i := 0; i < len(s); i++ {
			if !xchar(s[i]) {
				return "", errXtext
			}
		}
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case xchar(c):
			b = append(b, c)
		case c == '+' && i+2 < len(s):
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return "", errXtext
			}
			b = append(b, byte(v))
			i += 2
		default:
			return "", errXtext
		}
	}
	return string(b), nil
}

// qchar reports whether c stands for itself in utf-8-addr-xtext (RFC 6533
// section 3: QCHAR, printable ASCII except "+", "=" and "\").
func qchar(c byte) bool { return xchar(c) && c != '\\' }

// EncodeUTF8AddrXtext encodes s as utf-8-addr-xtext (RFC 6533 section 3):
// a QCHAR as it is, every other character as "\x{HEX}" with upper-case
// digits. The result is ASCII, so it is valid with or without SMTPUTF8.
// Invalid UTF-8 in s is encoded as U+FFFD.
func EncodeUTF8AddrXtext(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if n == 1 && r < utf8.RuneSelf && qchar(byte(r)) {
			b.WriteByte(byte(r))
		} else {
			b.WriteString(`\x{`)
			b.WriteString(strings.ToUpper(strconv.FormatInt(int64(r), 16)))
			b.WriteByte('}')
		}
		i += n
	}
	return b.String()
}

// DecodeUTF8AddrXtext decodes utf-8-addr-xtext, and utf-8-addr-unitext,
// which may also hold UTF-8 as it is (RFC 6533 section 3): QCHARs, UTF-8
// characters and "\x{HEX}" escapes of one to six hexadecimal digits naming
// a Unicode scalar value. Anything else is an error.
func DecodeUTF8AddrXtext(s string) (string, error) {
	if len(s) > MaxXtext {
		return "", errXtextLong
	}
	if !utf8.ValidString(s) {
		return "", errUTF8Xtext
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c >= utf8.RuneSelf:
			_, n := utf8.DecodeRuneInString(s[i:])
			b.WriteString(s[i : i+n])
			i += n
		case qchar(c):
			b.WriteByte(c)
			i++
		case strings.HasPrefix(s[i:], `\x{`):
			end := strings.IndexByte(s[i:], '}')
			if end < 4 || end > 9 {
				return "", errUTF8Xtext
			}
			v, err := strconv.ParseUint(s[i+3:i+end], 16, 32)
			if err != nil || !utf8.ValidRune(rune(v)) {
				return "", errUTF8Xtext
			}
			b.WriteRune(rune(v))
			i += end + 1
		default:
			return "", errUTF8Xtext
		}
	}
	return b.String(), nil
}

// DecodeORcpt turns an ORCPT parameter as received, "addr-type;" and the
// address in xtext (RFC 3461 section 4.2) or, for the "utf-8" type, in
// utf-8-addr-xtext or utf-8-addr-unitext (RFC 6533 section 3), into the
// decoded "addr-type;address" form that the courier encodes again and a
// DSN's Original-Recipient field shows. A value that does not decode is
// returned as it is: the parameter is informational (RFC 3461 section 4.2),
// it must never cost the recipient its delivery, and what is shown of it
// is sanitised where it is shown.
func DecodeORcpt(v string) string {
	typ, addr, ok := strings.Cut(v, ";")
	if !ok {
		return v
	}
	var dec string
	var err error
	if strings.EqualFold(strings.TrimSpace(typ), "utf-8") {
		dec, err = DecodeUTF8AddrXtext(addr)
	} else {
		dec, err = DecodeXtext(addr)
	}
	if err != nil {
		return v
	}
	return typ + ";" + dec
}
