package smtpd

import (
	"fmt"
	"strings"
	"time"

	"crypto/tls"
)

// received returns our Received header field (RFC 5321 section 4.4, RFC
// 5322 section 3.6.7), which RFC 5321 requires of every SMTP server that
// accepts a message for relaying. It names the recipient only when there is
// one, as a list of all recipients would disclose the Bcc ones.
func (c *conn) received(id string, now time.Time) []byte {
	with := "ESMTP"
	if c.tx.mail.utf8 {
		with = "UTF8SMTP" // RFC 6531 section 3.7.3
	}
	if c.tlsState != nil {
		with += "S" // RFC 3848
	}
	helo := heloForHeader(c.helo)
	var b strings.Builder
	fmt.Fprintf(&b, "Received: from %s ([%s])\r\n\tby %s (smimegate) with %s id %s", helo, c.client.Addr().Unmap(), c.srv.cfg.Hostname, with, id)
	if st := c.tlsState; st != nil {
		fmt.Fprintf(&b, "\r\n\t(%s %s)", tls.VersionName(st.Version), tls.CipherSuiteName(st.CipherSuite))
	}
	if len(c.tx.rcpts) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", c.tx.rcpts[0].Addr)
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", now.Format(time.RFC1123Z))
	return []byte(b.String())
}

// heloForHeader keeps the client's greeting from breaking the header: only
// the characters of a domain or address literal pass.
func heloForHeader(h string) string {
	if h == "" {
		return "unknown"
	}
	var b strings.Builder
	for _, r := range h {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune(".-_:[]", r):
			b.WriteRune(r)
		default:
			b.WriteByte('?')
		}
		if b.Len() > 255 {
			break
		}
	}
	return b.String()
}
