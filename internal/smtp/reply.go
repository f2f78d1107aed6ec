package smtp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// MaxReplyLine bounds one reply line, CRLF included. RFC 5321 section
// 4.5.3.1.5 allows 512 octets; four times that is Postfix's
// line_length_limit, room for the long texts some servers put in a 550. A
// reader given to ReadReply must have a buffer of at least this size, so
// that a longer line is refused before any of it is copied.
const MaxReplyLine = 2048

// MaxReplyLines bounds the lines of one reply. RFC 5321 section 4.2 sets
// no limit, but an EHLO reply has a line per extension (about fifteen at
// the largest providers) and the longest greetings and refusals seen run
// to a few dozen lines; a hundred lines of MaxReplyLine bytes is 200 KiB,
// which a client can afford per reply.
const MaxReplyLines = 100

// MaxReplyBytes bounds one reply as a whole, line ends included. The
// largest honest reply, an EHLO of a few dozen keywords, is under 4 KiB;
// this is room for a server that fills half of MaxReplyLines to
// MaxReplyLine, and caps what one reply can make its reader hold at half
// of what MaxReplyLines lines of MaxReplyLine bytes would.
const MaxReplyBytes = 128 << 10

// MaxReplyText bounds the reply text kept for results, logs and DSNs: a
// hostile server must not make the queue files or the bounces grow without
// limit. Postfix keeps a similar amount.
const MaxReplyText = 1000

// ProtocolError is a reply that cannot be read as SMTP: a line too long,
// too many lines, a line that is not a reply line, or lines of one reply
// with different codes. The dialogue is out of step, and the connection is
// fit only to be closed.
type ProtocolError struct{ text string }

func (e *ProtocolError) Error() string { return e.text }

// ReadReply reads one whole reply (RFC 5321 section 4.2) from br, whose
// buffer must hold at least MaxReplyLine bytes. It returns the reply as an
// Error whose Message is the text of its lines on one line, made safe for
// a log line, a queue file and a DSN field (SanitizeText), and lines, the
// texts of the lines as the server sent them after the code (an EHLO
// reply's keywords are there). Only a failure of the reader or a
// ProtocolError is an error: a reply of any class is returned with a nil
// error.
func ReadReply(br *bufio.Reader) (reply *Error, lines []string, err error) {
	code, total := 0, 0
	for n := 0; ; n++ {
		if n == MaxReplyLines {
			return nil, nil, &ProtocolError{fmt.Sprintf("reply of more than %d lines", MaxReplyLines)}
		}
		raw, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, nil, &ProtocolError{fmt.Sprintf("reply line longer than %d bytes", MaxReplyLine)}
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, nil, err
		}
		if len(raw) > MaxReplyLine {
			// A reader with a larger buffer than asked for: the bound is
			// the protocol's, not the buffer's.
			return nil, nil, &ProtocolError{fmt.Sprintf("reply line longer than %d bytes", MaxReplyLine)}
		}
		if total += len(raw); total > MaxReplyBytes {
			return nil, nil, &ProtocolError{fmt.Sprintf("reply longer than %d bytes", MaxReplyBytes)}
		}
		raw = raw[:len(raw)-1]
		if len(raw) > 0 && raw[len(raw)-1] == '\r' {
			raw = raw[:len(raw)-1]
		}
		c, more, text, ok := parseReplyLine(raw)
		if !ok {
			return nil, nil, &ProtocolError{fmt.Sprintf("not a reply line: %q", raw[:min(len(raw), 40)])}
		}
		if n > 0 && c != code {
			return nil, nil, &ProtocolError{fmt.Sprintf("reply lines with codes %d and %d", code, c)}
		}
		code = c
		lines = append(lines, string(text))
		if !more {
			return ParseReply(code, lines), lines, nil
		}
	}
}

// parseReplyLine splits a reply line (RFC 5321 section 4.2): a three-digit
// code, then "-" for a line that is not the last, " " and text, or
// nothing. Codes below 100 are refused; 600 and above are kept, and their
// Error is neither Temporary, Permanent nor Positive.
func parseReplyLine(line []byte) (code int, more bool, text []byte, ok bool) {
	if len(line) < 3 {
		return 0, false, nil, false
	}
	for i := 0; i < 3; i++ {
		if line[i] < '0' || line[i] > '9' {
			return 0, false, nil, false
		}
		code = code*10 + int(line[i]-'0')
	}
	if code < 100 {
		return 0, false, nil, false
	}
	switch {
	case len(line) == 3:
		return code, false, nil, true
	case line[3] == ' ':
		return code, false, line[4:], true
	case line[3] == '-':
		return code, true, line[4:], true
	}
	return 0, false, nil, false
}

// ParseReply makes the Error of a reply from its code and the texts of its
// lines after the code. The enhanced status code (RFC 2034 section 4, RFC
// 3463 section 2) is taken from the first line when it is well formed and
// its class agrees with the reply code; later lines that repeat it lose it
// too. The text of all lines becomes one line, sanitised (SanitizeText).
func ParseReply(code int, lines []string) *Error {
	e := &Error{Code: code}
	if len(lines) == 0 {
		return e
	}
	first, rest, _ := strings.Cut(lines[0], " ")
	en, ok := ParseEnhancedCode(first)
	if !ok || en[0] != code/100 {
		e.Message = SanitizeText(strings.Join(lines, " "))
		return e
	}
	e.Enhanced = en
	if len(lines) == 1 {
		e.Message = SanitizeText(rest)
		return e
	}
	texts := make([]string, len(lines))
	texts[0] = rest
	for i := 1; i < len(lines); i++ {
		texts[i] = strings.TrimPrefix(strings.TrimPrefix(lines[i], first), " ")
	}
	e.Message = SanitizeText(strings.Join(texts, " "))
	return e
}

// SanitizeText makes s, text a server or a failure wrote, safe for a log
// line, a queue file and a DSN field: control characters, the C1 controls
// and invalid UTF-8 become '?', runs of blanks collapse into one space, and
// the result is cut at MaxReplyText bytes on a rune boundary. The result
// never contains CR or LF, so it cannot end a header field or a reply line
// early.
func SanitizeText(s string) string {
	if plainText(s) {
		return s
	}
	var b strings.Builder
	b.Grow(min(len(s), MaxReplyText))
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
		if b.Len()+utf8.RuneLen(r) > MaxReplyText {
			break
		}
		b.WriteRune(r)
	}
	return strings.TrimRight(b.String(), " ")
}

// plainText reports whether SanitizeText would return s unchanged: short
// enough, printable ASCII with single spaces between words. It is the
// common case (every ordinary reply), which then costs no copy.
func plainText(s string) bool {
	if len(s) > MaxReplyText || (len(s) > 0 && (s[0] == ' ' || s[len(s)-1] == ' ')) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < ' ' || c > '~' || (c == ' ' && s[i+1] == ' ') {
			return false
		}
	}
	return true
}
