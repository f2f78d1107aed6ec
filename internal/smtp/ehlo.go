package smtp

import (
	"strconv"
	"strings"
)

// MaxExtensions bounds the service extensions kept from one EHLO reply.
// RFC 5321 section 4.1.1.1 sets no limit; the largest providers list about
// fifteen, and IANA's registry of SMTP service extensions has fewer than
// sixty entries, so a server listing more than that is padding its reply.
// The lines beyond it are ignored, never an error: a client must not
// refuse a server for what it offers.
const MaxExtensions = 64

// Extensions are the service extensions of an EHLO reply (RFC 5321 section
// 4.1.1.1), by upper-case keyword, each with its parameters as sent. The
// zero value is the answer to HELO: no extensions.
type Extensions struct {
	kw map[string]string
	// size is SIZE's limit, read once here rather than at every
	// transaction of a kept connection.
	size int64
}

// ParseEHLO reads the lines of a positive EHLO reply as ReadReply returns
// them: the first names the server, every later one is "ehlo-keyword
// *(SP ehlo-param)" (section 4.1.1.1). Keywords are case-insensitive
// (section 2.4), and are kept in upper case; a line that is not a keyword
// is skipped, as are lines beyond MaxExtensions. When keep is given, only
// the keywords it lists (in upper case) are kept, which bounds what a
// pooled connection holds to what its client acts on.
func ParseEHLO(lines []string, keep ...string) Extensions {
	e := Extensions{kw: map[string]string{}}
	if len(lines) < 2 {
		return e
	}
	for _, l := range lines[1:] {
		if len(e.kw) == MaxExtensions {
			break
		}
		kw, params, _ := strings.Cut(l, " ")
		if !isKeyword(kw) {
			continue
		}
		kw = strings.ToUpper(kw)
		if len(keep) > 0 && !contains(keep, kw) {
			continue
		}
		if _, dup := e.kw[kw]; !dup {
			e.kw[kw] = strings.TrimSpace(params)
		}
	}
	e.size = sizeParam(e.kw["SIZE"])
	return e
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}

// isKeyword reports whether s is an ehlo-keyword: (ALPHA / DIGIT) *(ALPHA
// / DIGIT / "-") (RFC 5321 section 4.1.1.1).
func isKeyword(s string) bool {
	if s == "" || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Has reports whether the server offered the extension named by keyword,
// given in upper case.
func (e Extensions) Has(keyword string) bool {
	_, ok := e.kw[keyword]
	return ok
}

// Param is the parameter text of an offered extension, "" if it has none
// or was not offered.
func (e Extensions) Param(keyword string) string { return e.kw[keyword] }

// Len is the number of extensions kept.
func (e Extensions) Len() int { return len(e.kw) }

// maxSizeDigits bounds the digits of a SIZE parameter: 20 digits is more
// than an int64 holds, so a longer number is not one a server means.
const maxSizeDigits = 19

// Size is the fixed maximum message size the server announced with SIZE
// (RFC 1870 section 4: "SIZE" [SP number]), in octets. ok is false when
// SIZE was not offered; limit is 0 when it was offered without a number,
// with 0 ("no fixed maximum"), or with a parameter that is not a number,
// which a client must then treat as no announced limit rather than guess.
func (e Extensions) Size() (limit int64, ok bool) {
	_, ok = e.kw["SIZE"]
	return e.size, ok
}

// sizeParam reads SIZE's parameter as Size describes it.
func sizeParam(v string) int64 {
	if v == "" || len(v) > maxSizeDigits || strings.TrimLeft(v, "0123456789") != "" {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0
	}
	return n
}
