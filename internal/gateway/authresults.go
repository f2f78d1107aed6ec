package gateway

import (
	"crypto/x509"
	"fmt"
	"strings"

	"smimegate/internal/certstore"
	"smimegate/internal/smime"
	"smimegate/internal/smtp"
)

// The verdict the gateway gives the recipient (RFC 8601, with RFC 7281's
// smime method), and the fields of ours that nobody outside may write.
//
// Every inbound message that was decrypted, and every one whose signature
// was checked, gets our Authentication-Results field, with our hostname as
// its authserv-id; a decrypted one also gets our Smimegate-Decrypted field,
// which says to which of our certificates and with which cipher it was
// encrypted. Before they are added, every Authentication-Results field that
// names our hostname as its authserv-id and every field whose name starts
// with ownFieldPrefix is removed from the message's header (RFC 8601
// section 5: a border MTA removes such fields that arrive from outside), so
// that what the recipient reads under our name is ours.

// ownFieldPrefix starts the name of every header field the gateway
// writes besides Received and Authentication-Results; fields with this
// prefix are the gateway's to write, and any that arrive are removed.
const ownFieldPrefix = "Smimegate-"

// decryptedField is our field on a decrypted message.
const decryptedField = ownFieldPrefix + "Decrypted"

// maxCommentBytes bounds the reason text in a field's comment: a reason
// names a certificate subject and a date or two.
const maxCommentBytes = 300

// forgedField reports whether a header field arriving from outside claims
// to be ours: an Authentication-Results field whose authserv-id is our
// hostname (or that cannot be parsed and names it anywhere), or a field of
// our own prefix.
func forgedField(hostname string) func(name, value string) bool {
	host := strings.ToLower(hostname)
	return func(name, value string) bool {
		if len(name) >= len(ownFieldPrefix) && strings.EqualFold(name[:len(ownFieldPrefix)], ownFieldPrefix) {
			return true
		}
		if !strings.EqualFold(name, "Authentication-Results") {
			return false
		}
		id, ok := authservID(value)
		if !ok {
			return strings.Contains(strings.ToLower(value), host)
		}
		id = strings.TrimSuffix(strings.ToLower(id), ".")
		if c, err := smtp.CanonicalDomain(id); err == nil {
			id = c
		}
		return id == host
	}
}

// authservID reads the authserv-id at the start of an Authentication-Results
// value (RFC 8601 section 2.2: [CFWS] authserv-id [CFWS version] ";"): a
// token or a quoted-string, after blanks and comments, which may nest.
func authservID(v string) (string, bool) {
	i := skipCFWS(v, 0)
	if i < 0 || i >= len(v) {
		return "", false
	}
	if v[i] == '"' {
		var b strings.Builder
		for j := i + 1; j < len(v); j++ {
			switch v[j] {
			case '\\':
				if j+1 < len(v) {
					j++
					b.WriteByte(v[j])
				}
			case '"':
				return b.String(), true
			default:
				b.WriteByte(v[j])
			}
		}
		return "", false
	}
	j := i
	// RFC 2045 section 5.1: a token is any CHAR but SPACE, CTLs and
	// tspecials.
	for j < len(v) && v[j] > ' ' && v[j] < 0x7f && !strings.ContainsRune(`()<>@,;:\"/[]?=`, rune(v[j])) {
		j++
	}
	if j == i {
		return "", false
	}
	return v[i:j], true
}

// skipCFWS returns the index after blanks and comments from i, or -1 for an
// unclosed comment.
func skipCFWS(v string, i int) int {
	for i < len(v) {
		switch v[i] {
		case ' ', '\t', '\r', '\n':
			i++
		case '(':
			depth := 0
			for ; i < len(v); i++ {
				switch v[i] {
				case '\\':
					i++
				case '(':
					depth++
				case ')':
					depth--
				}
				if depth == 0 {
					break
				}
			}
			if depth != 0 {
				return -1
			}
			i++
		default:
			return i
		}
	}
	return i
}

// decryption is what the Smimegate-Decrypted field and the verdict's
// comment say about how a message arrived.
type decryption struct {
	fingerprint, cipher, keyTransport string
}

// authResultsField renders our Authentication-Results field for a
// verdict (RFC 8601 section 2.2, RFC 7281 section 3), with the signer's
// identity, serial number and issuer as properties when there is a
// signer, and how the message arrived in the comment when it was
// decrypted.
func authResultsField(hostname string, r smime.DomainResult, dec *decryption) string {
	var comment []string
	switch {
	case r.Verdict == smime.VerdictPass && r.WholeMessage:
		comment = append(comment, "domain signature of "+r.Domain+" over the whole message")
	case r.Verdict == smime.VerdictPass:
		comment = append(comment, "domain signature of "+r.Domain+" over the body only: the header is not signed")
	case r.Verdict == smime.VerdictNone:
		comment = append(comment, "not signed")
	default:
		comment = append(comment, r.Reason+": "+r.Detail)
	}
	if dec != nil {
		comment = append(comment, fmt.Sprintf("arrived encrypted to our domain certificate sha256:%s with %s", dec.fingerprint, dec.cipher))
	} else {
		comment = append(comment, "arrived unencrypted")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Authentication-Results: %s;\r\n\tsmime=%s (%s)", hostname, r.Verdict, commentText(strings.Join(comment, "; ")))
	if c := r.Signer; c != nil && r.Verdict != smime.VerdictNone {
		fmt.Fprintf(&b, "\r\n\tbody.smime-identifier=%s", pvalue(signerIdentity(c, r.Domain)))
		fmt.Fprintf(&b, "\r\n\tbody.smime-part=1")
		if c.SerialNumber != nil {
			fmt.Fprintf(&b, "\r\n\tbody.smime-serial=%s", strings.ToUpper(c.SerialNumber.Text(16)))
		}
		fmt.Fprintf(&b, "\r\n\tbody.smime-issuer=%s", pvalue(c.Issuer.String()))
	}
	b.WriteString("\r\n")
	return b.String()
}

// decryptedFieldText is our Smimegate-Decrypted field: machine-readable,
// for filters that want to know how a message crossed the Internet.
func decryptedFieldText(hostname string, dec *decryption) string {
	return fmt.Sprintf("%s: %s; cert-sha256=%s; cipher=%s; key-transport=%s\r\n", decryptedField, hostname, dec.fingerprint, dec.cipher, dec.keyTransport)
}

// signerIdentity is the signer's mailbox for its domain (its
// domain-signing-authority@D, say), or the domain itself.
func signerIdentity(c *x509.Certificate, domain string) string {
	for _, e := range c.EmailAddresses {
		if strings.EqualFold(e, certstore.SigningName+"@"+domain) {
			return e
		}
	}
	for _, e := range c.EmailAddresses {
		if _, d, ok := strings.Cut(e, "@"); ok && strings.EqualFold(d, domain) {
			return e
		}
	}
	if domain != "" {
		return domain
	}
	if len(c.EmailAddresses) > 0 {
		return c.EmailAddresses[0]
	}
	return c.Subject.CommonName
}

// printable keeps s to printable ASCII on one line, bounded: a reason
// names a certificate subject, which a partner wrote.
func printable(s string) string {
	b := make([]byte, 0, min(len(s), maxCommentBytes))
	for i := 0; i < len(s) && len(b) < maxCommentBytes; i++ {
		switch c := s[i]; {
		case c < ' ' || c == 0x7f:
			b = append(b, ' ')
		case c > '~':
			b = append(b, '?')
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

// commentText makes s the content of an RFC 5322 comment (section 3.2.2):
// printable, with parentheses and backslashes as quoted-pairs, so that
// nothing in it can end the comment early.
func commentText(s string) string {
	return quotePairs(printable(s), "()\\")
}

// pvalue renders an RFC 8601 property value: a token (or an address) when
// it is one, else a quoted-string (RFC 5322 section 3.2.4) with quoted-pairs.
func pvalue(s string) string {
	s = printable(s)
	token := s != ""
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || strings.ContainsRune(`()<>,;:\"/[]?=`, rune(s[i])) {
			token = false
			break
		}
	}
	if token {
		return s
	}
	return `"` + quotePairs(s, `"\`) + `"`
}

// quotePairs puts a backslash before every character of s that is in
// special.
func quotePairs(s, special string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(special, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
