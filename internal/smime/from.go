package smime

import (
	"net/mail"
	"strings"
)

// maxFromAddresses bounds the addresses taken from the From fields of one
// header section: RFC 5322 section 3.6.2 allows a list, real mail has one,
// and every address becomes a domain that policy is looked up for.
const maxFromAddresses = 32

// Originator is what the From fields of a header section say about who
// sent the message (RFC 5322 section 3.6.2).
type Originator struct {
	// Addresses are the mailboxes of every From field, as net/mail parses
	// them, at most maxFromAddresses.
	Addresses []string
	// Claimed are the domains of every "@domain" in the From fields,
	// parsed or not, display names and comments included, as written: a
	// field that does not parse, or a display name "ceo@a.example" in
	// front of another address, still claims a.example.
	Claimed []string
	// Fields counts the From fields; Parsed is false when one of them
	// does not parse as an address list.
	Fields int
	Parsed bool
}

// FromOf reads the From fields of a message's header section, whose bounds
// the caller has checked (the walk did).
func FromOf(msg []byte) Originator {
	header, _ := entity(msg)
	o := Originator{Parsed: true}
	for s := newHeaderScanner(header); s.next(); {
		if s.fields+s.skipped > maxHeaderFields {
			break
		}
		if !s.is("From") {
			continue
		}
		o.Fields++
		v := s.value()
		o.Claimed = appendClaimed(o.Claimed, v)
		list, err := mail.ParseAddressList(v)
		if err != nil {
			o.Parsed = false
			continue
		}
		for _, a := range list {
			if len(o.Addresses) < maxFromAddresses {
				o.Addresses = append(o.Addresses, a.Address)
			}
		}
	}
	return o
}

// appendClaimed adds the text after every "@" up to a character that no
// domain (or address literal) holds, lower-cased.
func appendClaimed(dst []string, v string) []string {
	for {
		i := strings.IndexByte(v, '@')
		if i < 0 || len(dst) >= maxFromAddresses {
			return dst
		}
		v = v[i+1:]
		end := 0
		for end < len(v) && !strings.ContainsRune(" \t\r\n<>()\",;:\\@", rune(v[end])) {
			end++
		}
		if d := strings.TrimSuffix(strings.ToLower(v[:end]), "."); d != "" {
			dst = append(dst, d)
		}
		v = v[end:]
	}
}
