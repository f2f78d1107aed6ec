package smtp

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// Path is a reverse-path or forward-path of RFC 5321 section 4.1.2, kept as
// written so that what is relayed is what was given, with the parts that
// matter for relay control picked out.
type Path struct {
	Null    bool   // the null reverse-path <>
	Route   bool   // a source route (A-d-l) preceded the mailbox
	Local   string // local part as written, quotes and escapes included
	Quoted  bool   // the local part is a Quoted-string
	Unquote string // the local part's value (escapes resolved)
	Domain  string // domain or address literal as written
	Literal bool   // the domain is an address literal [...]
	UTF8    bool   // the path contains non-ASCII characters
	Params  string // what follows the closing '>' (ESMTP parameters)
	// Postmaster is set for the forward-path <Postmaster> without a
	// domain, which RFC 5321 section 4.1.1.3 allows and section 4.5.1
	// requires every server to accept; Local is then "postmaster" and
	// Domain is empty: the receiver supplies its own.
	Postmaster bool
}

// Mailbox returns local@domain as written.
func (p Path) Mailbox() string {
	if p.Null {
		return ""
	}
	if p.Postmaster && p.Domain == "" {
		return p.Local
	}
	return p.Local + "@" + p.Domain
}

// ParsePath parses the argument of MAIL FROM: or RCPT TO: after the colon.
// It is strict about the angle brackets and the structure, and lenient only
// where RFC 5321 asks servers to be (whitespace before '<'). Whether the
// domain and local part are acceptable is decided by the caller (with
// CheckSyntax and RoutingTrick), so that routing tricks can get the
// relay-denied reply rather than a syntax error. The input is bounded by
// the command line it comes from.
func ParsePath(s string, reverse bool) (Path, error) {
	var p Path
	s = strings.TrimLeft(s, " ")
	if !strings.HasPrefix(s, "<") {
		return p, errors.New("the address must be enclosed in <>")
	}
	end := closingBracket(s)
	if end < 0 {
		return p, errors.New("no closing '>'")
	}
	inner := s[1:end]
	p.Params = strings.TrimSpace(s[end+1:])
	if end+1 < len(s) && s[end+1] != ' ' {
		return p, errors.New("parameters must be separated from the address by a space")
	}
	if !utf8.ValidString(inner) {
		return p, errors.New("the address is not valid UTF-8")
	}
	for _, r := range inner {
		if r < 0x20 || r == 0x7f {
			return p, errors.New("control character in the address")
		}
		if r >= 0x80 {
			p.UTF8 = true
		}
	}
	if !reverse && strings.EqualFold(inner, "postmaster") {
		// RFC 5321 section 4.1.1.3: "<Postmaster>" is the one
		// forward-path without a domain, in any case.
		p.Postmaster, p.Local, p.Unquote = true, "postmaster", "postmaster"
		return p, nil
	}
	if inner == "" {
		if !reverse {
			return p, errors.New("empty forward-path")
		}
		p.Null = true
		return p, nil
	}
	// A source route: <@relay1,@relay2:user@domain> (RFC 5321 section 4.1.2,
	// obsolete per appendix C, and a relay trick).
	if inner[0] == '@' {
		colon := strings.IndexByte(inner, ':')
		if colon < 0 {
			return p, errors.New("source route without ':'")
		}
		p.Route = true
		inner = inner[colon+1:]
	}
	var rest string
	if strings.HasPrefix(inner, `"`) {
		q, r, err := quotedString(inner)
		if err != nil {
			return p, err
		}
		p.Quoted = true
		p.Local = inner[:len(inner)-len(r)]
		p.Unquote = q
		rest = r
	} else {
		at := strings.LastIndexByte(inner, '@')
		if at < 0 {
			return p, errors.New("the address has no '@'")
		}
		p.Local, rest = inner[:at], inner[at:]
		p.Unquote = p.Local
	}
	if !strings.HasPrefix(rest, "@") {
		return p, errors.New("the local part must be followed by '@'")
	}
	p.Domain = rest[1:]
	if p.Local == "" {
		return p, errors.New("empty local part")
	}
	if p.Domain == "" {
		return p, errors.New("empty domain")
	}
	p.Literal = strings.HasPrefix(p.Domain, "[")
	return p, nil
}

// closingBracket finds the '>' that closes the path, skipping quoted parts.
func closingBracket(s string) int {
	inQuote := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '>':
			return i
		}
	}
	return -1
}

// quotedString parses a Quoted-string (RFC 5321 section 4.1.2) at the
// start of s and returns its value and what follows it.
func quotedString(s string) (value, rest string, err error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			if i+1 >= len(s) || s[i+1] < 0x20 || s[i+1] > 0x7e {
				return "", "", errors.New("bad quoted-pair in the local part")
			}
			i++
			b.WriteByte(s[i])
		case c == '"':
			return b.String(), s[i+1:], nil
		default:
			b.WriteByte(c)
		}
	}
	return "", "", errors.New("unterminated quoted local part")
}

// validDotString reports whether s is a Dot-string: atoms of atext joined
// by single dots (RFC 5321 section 4.1.2; with SMTPUTF8, RFC 6531 section
// 3.3 adds non-ASCII characters to atext).
func validDotString(s string, utf8OK bool) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 0x80:
			if !utf8OK {
				return false
			}
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("!#$%&'*+-/=?^_`{|}~.", r):
		default:
			return false
		}
	}
	return true
}

// validDomain reports whether d is a domain of LDH labels (or U-labels
// with SMTPUTF8), without a trailing dot.
func validDomain(d string, utf8OK bool) bool {
	if d == "" || len(d) > 255 {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			switch {
			case r >= 0x80:
				if !utf8OK {
					return false
				}
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-':
			default:
				return false
			}
		}
	}
	return true
}

// validLiteral reports whether d is an address literal of RFC 5321
// section 4.1.3.
func validLiteral(d string) bool {
	if !strings.HasPrefix(d, "[") || !strings.HasSuffix(d, "]") {
		return false
	}
	in := d[1 : len(d)-1]
	if v6, ok := strings.CutPrefix(in, "IPv6:"); ok {
		a, err := netip.ParseAddr(v6)
		return err == nil && a.Is6()
	}
	a, err := netip.ParseAddr(in)
	return err == nil && a.Is4()
}

// CheckSyntax applies the grammar to the parts ParsePath split out.
func (p Path) CheckSyntax(smtputf8 bool) error {
	if p.Null || p.Postmaster {
		return nil
	}
	if p.UTF8 && !smtputf8 {
		return ErrNeedUTF8
	}
	if !p.Quoted && !validDotString(p.Local, smtputf8) {
		return fmt.Errorf("local part %q is not a valid dot-string", Printable(p.Local))
	}
	if p.Literal {
		if !validLiteral(p.Domain) {
			return fmt.Errorf("%q is not a valid address literal", Printable(p.Domain))
		}
		return nil
	}
	if !validDomain(strings.TrimSuffix(p.Domain, "."), smtputf8) {
		return fmt.Errorf("%q is not a valid domain", Printable(p.Domain))
	}
	return nil
}

// ErrNeedUTF8 refuses a non-ASCII address in a transaction without
// SMTPUTF8.
var ErrNeedUTF8 = errors.New("non-ASCII address without the SMTPUTF8 parameter at MAIL (RFC 6531 section 3.4)")

// RoutingTrick names the way a recipient from an untrusted client tries to
// make us relay to somewhere other than its domain, or "" if it does not.
// Postfix's allow_untrusted_routing=no is the model, extended to every form
// in the relay-testing folklore: user%other@us, other!user@us,
// <@us:user@other>, "user@other"@us, user@us. (trailing dot), user@[ip].
// The receiver refuses an address literal from every client before it asks
// this; the case stays so that the answer does not depend on the order of
// the checks.
func (p Path) RoutingTrick() string {
	switch {
	case p.Route:
		return "source route"
	case strings.ContainsAny(p.Unquote, "@%!"):
		return "routing characters in the local part"
	case p.Literal:
		return "address literal"
	case strings.HasSuffix(p.Domain, "."):
		return "trailing dot in the domain"
	}
	return ""
}

// Printable makes client-supplied text safe for a reply or a log line:
// control characters become '?', so nothing quoted can end a line.
func Printable(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			b.WriteByte('?')
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}
