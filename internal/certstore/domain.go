package certstore

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// maxDomainLength is the longest domain name DNS can carry (RFC 1035 section
// 2.3.4: 255 octets on the wire, 253 characters in text form).
const maxDomainLength = 253

// CanonicalDomain returns the form in which smimegate compares domains:
// lower case, A-labels (punycode) for internationalised names (RFC 5891), no
// trailing dot. It duplicates config.CanonicalDomain on purpose, because
// certstore imports no other smimegate package; it is a little stricter
// (empty labels and over-long names are refused) because its input also
// comes from certificates that a partner wrote.
func CanonicalDomain(d string) (string, error) {
	d = strings.TrimSuffix(d, ".")
	if d == "" {
		return "", errors.New("empty domain")
	}
	// idna maps invalid UTF-8 to U+FFFD and encodes that as an A-label
	// that names nothing ("0\xbc0" became "xn--00-gg4n"; found by
	// FuzzCanonicalDomain), so such input is refused first.
	if !utf8.ValidString(d) {
		return "", fmt.Errorf("domain %q is not valid UTF-8", d)
	}
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		return "", fmt.Errorf("domain %q: %w", d, err)
	}
	a = strings.ToLower(a)
	if len(a) > maxDomainLength {
		return "", fmt.Errorf("domain %q is longer than %d characters", d, maxDomainLength)
	}
	for label := range strings.SplitSeq(a, ".") {
		if label == "" {
			return "", fmt.Errorf("domain %q has an empty label", d)
		}
	}
	return a, nil
}

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
	return CanonicalDomain(addr[at+1:])
}
