package certstore

import (
	"strings"

	"smimegate/internal/smtp"
)

// parentDomain returns the parent of a canonical domain ("a.b.c" -> "b.c"),
// "" at the top.
func parentDomain(d string) string {
	if i := strings.IndexByte(d, '.'); i >= 0 {
		return d[i+1:]
	}
	return ""
}

// domainOfMailbox returns the canonical domain of addr if its local part is
// one of names, and "" otherwise. Local parts are compared without regard to
// case: strictly they are case-sensitive (RFC 5321 section 2.4), but no
// issuer writes SMG_Encryptor on purpose, and a certificate that does still
// means the same thing.
func domainOfMailbox(addr string, names []string) (string, error) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 {
		return "", nil
	}
	local := addr[:at]
	match := false
	for _, n := range names {
		if strings.EqualFold(local, n) {
			match = true
			break
		}
	}
	if !match {
		return "", nil
	}
	return smtp.CanonicalDomain(addr[at+1:])
}
