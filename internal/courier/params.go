package courier

import (
	"strings"
	"unicode/utf8"

	"smimegate/internal/smtp"
)

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
		return "ORCPT=utf-8;" + smtp.EncodeUTF8AddrXtext(addr)
	}
	if !isASCII(addr) {
		// An rfc822 address cannot carry UTF-8 (RFC 3461 section 4.2);
		// say it the RFC 6533 way instead.
		return "ORCPT=utf-8;" + smtp.EncodeUTF8AddrXtext(addr)
	}
	return "ORCPT=" + typ + ";" + smtp.EncodeXtext(addr)
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
