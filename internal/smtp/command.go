package smtp

import (
	"bytes"
	"errors"
	"strings"
)

// MaxCommandLine bounds an SMTP command line, CRLF excluded. RFC 5321
// section 4.5.3.1.4 allows 512 octets, and extensions (SMTPUTF8 addresses,
// DSN parameters) push real lines further; Postfix's line_length_limit is
// 2048, and so is ours.
const MaxCommandLine = 2048

// MaxParams bounds the ESMTP parameters of one MAIL or RCPT command. The
// extensions a receiver offers define at most five at MAIL (SIZE, BODY,
// SMTPUTF8, RET, ENVID) and two at RCPT (NOTIFY, ORCPT); a few more leave
// room for ones it refuses by name, and anything beyond is not a client
// speaking the protocol.
const MaxParams = 10

// Command is one command line (RFC 5321 section 4.1.1): the verb in upper
// case, and the argument as written after the single space that follows it.
type Command struct {
	Verb string
	Arg  string
}

// Errors of ParseCommand; the receiver answers each with 500 5.5.2.
var (
	ErrCommandLineEnd = errors.New("command lines must end with CRLF, and contain no other CR or LF (RFC 5321 section 2.3.8)")
	ErrCommandNUL     = errors.New("NUL in command line")
)

// ParseCommand splits a command line, CRLF included, into verb and
// argument. RFC 5321 section 2.3.8 allows CR and LF only together, as the
// line's end; a NUL has no place in a command either. The verb is what
// precedes the first space (section 4.1.1: "the command verb followed by
// SP"), compared case-insensitively; whether it is known is the caller's
// affair.
func ParseCommand(line []byte) (Command, error) {
	n := len(line)
	if n < 2 || line[n-2] != '\r' || line[n-1] != '\n' || bytes.IndexByte(line[:n-2], '\r') >= 0 || bytes.IndexByte(line[:n-2], '\n') >= 0 {
		return Command{}, ErrCommandLineEnd
	}
	text := line[:n-2]
	if bytes.IndexByte(text, 0) >= 0 {
		return Command{}, ErrCommandNUL
	}
	verb, arg, _ := bytes.Cut(text, []byte{' '})
	return Command{Verb: upperVerb(verb), Arg: string(arg)}, nil
}

// upperVerb returns the verb in upper case, without an allocation for the
// verbs of the protocol.
func upperVerb(v []byte) string {
	if len(v) == 4 {
		var u [4]byte
		for i, c := range v {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			u[i] = c
		}
		switch string(u[:]) {
		case "HELO":
			return "HELO"
		case "EHLO":
			return "EHLO"
		case "MAIL":
			return "MAIL"
		case "RCPT":
			return "RCPT"
		case "DATA":
			return "DATA"
		case "BDAT":
			return "BDAT"
		case "RSET":
			return "RSET"
		case "NOOP":
			return "NOOP"
		case "QUIT":
			return "QUIT"
		case "VRFY":
			return "VRFY"
		}
	}
	return strings.ToUpper(string(v))
}

// CutPrefixFold returns s without prefix (compared ASCII case-insensitively)
// and whether it was there: "FROM:" after MAIL, "TO:" after RCPT.
func CutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

// Param is one ESMTP parameter of MAIL or RCPT (RFC 5321 section 4.1.2:
// esmtp-param = esmtp-keyword ["=" esmtp-value]). Keyword is in upper
// case; Value is as written, "" when there is none (HasValue tells an empty
// value, which the grammar forbids, from none).
type Param struct {
	Keyword  string
	Value    string
	HasValue bool
}

// ParseParams parses the ESMTP parameters that follow a path: SP-separated
// esmtp-params (RFC 5321 section 4.1.2), with esmtp-keyword = (ALPHA /
// DIGIT) *(ALPHA / DIGIT / "-") and esmtp-value = 1*(%d33-60 / %d62-126),
// to which RFC 6531 section 3.3 adds UTF-8 for SMTPUTF8. A keyword may
// appear once (a second SIZE or NOTIFY has no meaning anyone agrees on),
// and there are at most MaxParams.
func ParseParams(s string) ([]Param, error) {
	var out []Param
	for f := range strings.FieldsSeq(s) {
		if len(out) == MaxParams {
			return nil, errors.New("too many parameters")
		}
		k, v, has := strings.Cut(f, "=")
		if !validKeyword(k) {
			return nil, errors.New("malformed parameter keyword")
		}
		if has && !validParamValue(v) {
			return nil, errors.New("malformed value of " + strings.ToUpper(k))
		}
		k = strings.ToUpper(k)
		for _, p := range out {
			if p.Keyword == k {
				return nil, errors.New("parameter " + k + " given twice")
			}
		}
		out = append(out, Param{Keyword: k, Value: v, HasValue: has})
	}
	return out, nil
}

func validKeyword(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case c == '-' && i > 0:
		default:
			return false
		}
	}
	return true
}

func validParamValue(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 33 || c == '=' || c == 127 {
			return false
		}
	}
	return true
}
