package smtp

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// MaxDomainLength is the longest domain name DNS can carry (RFC 1035
// section 2.3.4: 255 octets on the wire, 253 characters in text form).
const MaxDomainLength = 253

// ErrNumericDomain is CanonicalDomain's answer for a name whose top-level
// label is a number.
var ErrNumericDomain = errors.New("the top-level label is numeric, which makes the name an IP address to most resolvers (RFC 3696 section 2; RFC 1123 section 2.1)")

// CanonicalDomain returns the one form in which smimegate compares, stores
// and looks up domains: lower case, A-labels for internationalised names
// (RFC 5891 section 5, the lookup profile), no trailing dot. It is used for
// every domain, whoever wrote it: the operator in the configuration, a
// partner in a certificate, a client in an envelope. What has no such form is
// refused, never passed on as written: a later stage comparing the string
// as written would take it for some other, certificate-less domain (RFC
// 5891 section 5: a lookup application must not use a label that fails the
// IDNA tests). Refused too: invalid UTF-8 (idna would map it to U+FFFD and
// encode that as an A-label naming nothing), empty labels, names longer
// than DNS carries, and an all-numeric top-level label (ErrNumericDomain),
// which turns the name into an address literal in disguise. The error names
// the domain as given, made printable.
func CanonicalDomain(d string) (string, error) {
	d = strings.TrimSuffix(d, ".")
	if d == "" {
		return "", errors.New("empty domain")
	}
	if !utf8.ValidString(d) {
		return "", fmt.Errorf("domain %q is not valid UTF-8", d)
	}
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		return "", fmt.Errorf("domain %q is not a valid IDNA domain name (RFC 5891): %w", d, err)
	}
	a = strings.ToLower(a)
	if len(a) > MaxDomainLength {
		return "", fmt.Errorf("domain %q is longer than %d characters", d, MaxDomainLength)
	}
	for label := range strings.SplitSeq(a, ".") {
		if label == "" {
			return "", fmt.Errorf("domain %q has an empty label", d)
		}
	}
	if numericName(a) {
		return "", fmt.Errorf("domain %q: %w", d, ErrNumericDomain)
	}
	return a, nil
}

// numericName reports whether a canonical domain's top-level label is all
// digits, or a hexadecimal number in the form inet_aton reads ("0x7f"):
// "1.2.3.4", "127.1" and "0x7f000001" are domains to the grammar of RFC
// 5321 but IP addresses to the resolver libraries a next hop may use.
func numericName(d string) bool {
	tld := d[strings.LastIndexByte(d, '.')+1:]
	if hex, ok := strings.CutPrefix(tld, "0x"); ok {
		return strings.TrimLeft(hex, "0123456789abcdef") == ""
	}
	return strings.TrimLeft(tld, "0123456789") == ""
}
