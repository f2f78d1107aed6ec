package smtpd

import (
	"strings"
	"testing"
)

// RFC 5321 section 4.5.1: "RCPT TO:<Postmaster>" without a domain must be
// accepted, from anyone; it reaches postmaster at the first local domain.
// Anything that only looks like it is still refused.
func TestPostmasterWithoutDomain(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "", Options{})
	c := h.session(untrustedIP)
	c.cmd("MAIL FROM:<someone@elsewhere.example>", 250)
	c.cmd("RCPT TO:<Postmaster> NOTIFY=NEVER", 250)
	c.cmd("RCPT TO:<postmasterx>", 501)
	c.cmd("RCPT TO:<postmaster>x", 501)
	c.cmd("DATA", 354)
	c.send("Subject: to the postmaster\r\n\r\nhello\r\n.\r\n")
	c.expect(250)
	list := h.queued()
	if len(list) != 1 || len(list[0].Recipients) != 1 {
		t.Fatalf("queued %+v", list)
	}
	r := list[0].Recipients[0]
	if r.Addr != "postmaster@example.org" || strings.Join(r.Notify, ",") != "NEVER" {
		t.Errorf("recipient %+v, want postmaster@example.org with NOTIFY=NEVER", r)
	}
}
