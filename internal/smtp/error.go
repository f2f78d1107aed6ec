package smtp

import (
	"strconv"
	"strings"
)

// EnhancedCode is an enhanced mail system status code, class.subject.detail
// (RFC 3463 section 2). The zero value means that there is none, as in a
// reply from a server that does not offer ENHANCEDSTATUSCODES (RFC 2034).
type EnhancedCode [3]int

// Class-only enhanced codes, "X.0.0 Other undefined status" (RFC 3463
// section 3.1), for a reply that needs one and has nothing more precise.
var (
	EnhancedOK        = EnhancedCode{2, 0, 0}
	EnhancedTemporary = EnhancedCode{4, 0, 0}
	EnhancedPermanent = EnhancedCode{5, 0, 0}
)

// IsZero reports whether the code is absent.
func (c EnhancedCode) IsZero() bool { return c == EnhancedCode{} }

// Valid reports whether c is a code RFC 3463 section 2 allows: class 2, 4
// or 5, subject and detail of one to three digits.
func (c EnhancedCode) Valid() bool {
	return (c[0] == 2 || c[0] == 4 || c[0] == 5) && c[1] >= 0 && c[1] <= 999 && c[2] >= 0 && c[2] <= 999
}

// String is "5.1.1", or "" for the zero value.
func (c EnhancedCode) String() string {
	if c.IsZero() {
		return ""
	}
	b := make([]byte, 0, 11)
	b = strconv.AppendInt(b, int64(c[0]), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(c[1]), 10)
	b = append(b, '.')
	b = strconv.AppendInt(b, int64(c[2]), 10)
	return string(b)
}

// ParseEnhancedCode reads "class.subject.detail" as RFC 3463 section 2
// writes it; ok is false for anything else.
func ParseEnhancedCode(s string) (c EnhancedCode, ok bool) {
	// Read digit by digit rather than split: it runs for every reply the
	// courier reads, and must not allocate there.
	part, digits := 0, 0
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; {
		case ch >= '0' && ch <= '9':
			if digits == 3 || (part == 0 && digits == 1) {
				return EnhancedCode{}, false
			}
			c[part] = c[part]*10 + int(ch-'0')
			digits++
		case ch == '.' && digits > 0 && part < 2:
			part, digits = part+1, 0
		default:
			return EnhancedCode{}, false
		}
	}
	if part != 2 || digits == 0 || !c.Valid() {
		return EnhancedCode{}, false
	}
	return c, true
}

// Error is an SMTP reply: the three-digit code (RFC 5321 section 4.2), the
// enhanced status code (RFC 3463; zero if there is none) and the text. It is
// the one type in which every smimegate package carries an SMTP outcome: the
// receiver refuses with it and writes it as it is, the courier returns the
// next hop's reply in it, the gateway decides on its Code and Enhanced
// fields, never on its text. A reply with a 2xx code is an Error too (the
// receiver's 250 carries the queue id), so that there is one shape only;
// Error() then reads as the reply does.
//
// Message holds the text of each line after the code and the enhanced code,
// joined by "\n" for a multi-line reply. It must not contain CR; Lines
// refuses to produce a line that could be taken for a new reply.
type Error struct {
	Code     int
	Enhanced EnhancedCode
	Message  string
}

// NewError returns the reply code, enhanced code, message.
func NewError(code int, enhanced EnhancedCode, message string) *Error {
	return &Error{Code: code, Enhanced: enhanced, Message: message}
}

// Error renders the reply's first line as the client sees it: "550 5.1.1
// text"; further lines follow after a "; " so that a log line stays one
// line.
func (e *Error) Error() string {
	b := make([]byte, 0, 16+len(e.Message))
	b = strconv.AppendInt(b, int64(e.Code), 10)
	if en := e.enhanced(); !en.IsZero() {
		b = append(b, ' ')
		b = append(b, en.String()...)
	}
	if e.Message != "" {
		b = append(b, ' ')
		b = append(b, strings.ReplaceAll(e.Message, "\n", "; ")...)
	}
	return string(b)
}

// Temporary reports whether the reply asks to try again later: a 4xx
// (RFC 5321 section 4.2.1, "transient negative completion").
func (e *Error) Temporary() bool { return e.Code >= 400 && e.Code < 500 }

// Permanent reports whether the reply is a 5xx, a refusal for good.
func (e *Error) Permanent() bool { return e.Code >= 500 && e.Code < 600 }

// Positive reports whether the reply is a 2xx.
func (e *Error) Positive() bool { return e.Code >= 200 && e.Code < 300 }

// Status is the enhanced code to report in a DSN or a log: the reply's own
// if its class agrees with the code (RFC 3463 section 2: "the class ... MUST
// match"), else the class's "X.0.0" (section 3.1). Anything that is neither
// a 2xx nor a 5xx is reported as a deferral, since that is what the courier
// does with it.
func (e *Error) Status() EnhancedCode {
	if en := e.enhanced(); !en.IsZero() {
		return en
	}
	switch e.Code / 100 {
	case 2:
		return EnhancedOK
	case 5:
		return EnhancedPermanent
	}
	return EnhancedTemporary
}

// enhanced is the enhanced code if it is valid and of the reply's class,
// zero otherwise: a server that answers 550 4.1.1 has said nothing usable.
func (e *Error) enhanced() EnhancedCode {
	if !e.Enhanced.Valid() || e.Enhanced[0] != e.Code/100 {
		return EnhancedCode{}
	}
	return e.Enhanced
}

// Lines renders the reply for the wire (RFC 5321 section 4.2.1): every line
// but the last as "code-", the last as "code ", each with the enhanced code
// when there is one (RFC 2034 section 4 asks that every line carry it), and
// CRLF after each. Control characters in the text become '?', so that
// nothing in a message, whatever it quotes, can end a line early.
func (e *Error) Lines() []byte {
	code := e.Code
	if code < 200 || code > 599 {
		// A reply code outside RFC 5321's range is a bug here; the client
		// gets a temporary failure rather than something it cannot parse.
		code = 451
	}
	en := e.enhanced()
	lines := strings.Split(e.Message, "\n")
	var b []byte
	for i, l := range lines {
		b = strconv.AppendInt(b, int64(code), 10)
		if i < len(lines)-1 {
			b = append(b, '-')
		} else {
			b = append(b, ' ')
		}
		if !en.IsZero() {
			b = append(b, en.String()...)
			if l != "" {
				b = append(b, ' ')
			}
		}
		for j := 0; j < len(l); j++ {
			c := l[j]
			if c < 0x20 || c == 0x7f {
				c = '?'
			}
			b = append(b, c)
		}
		b = append(b, '\r', '\n')
	}
	return b
}
