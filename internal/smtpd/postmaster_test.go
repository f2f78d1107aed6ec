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

// FuzzPostmasterLine: the rewrite never panics, touches only the bare
// postmaster form, keeps what follows the address (parameters, CRLF), and
// leaves every other line as it was.
func FuzzPostmasterLine(f *testing.F) {
	for _, s := range []string{"RCPT TO:<postmaster>\r\n", "rcpt to:<PostMaster> NOTIFY=NEVER\r\n", "RCPT TO:<postmaster>x\r\n",
		"RCPT TO:<postmaster@x>\r\n", "RCPT TO:<postmaster>", "\r\n", "MAIL FROM:<postmaster>\r\n"} {
		f.Add(s)
	}
	w := &wireConn{srv: &Server{cfg: testConfig(f, f.TempDir(), "")}}
	f.Fuzz(func(t *testing.T, line string) {
		out := string(w.postmasterLine([]byte(line)))
		if out == line {
			return
		}
		const want = "RCPT TO:<postmaster@example.org>"
		if !strings.HasPrefix(out, want) || out[len(want):] != line[len("RCPT TO:<postmaster>"):] || strings.HasSuffix(out, "\r\n") != strings.HasSuffix(line, "\r\n") {
			t.Fatalf("%q became %q", line, out)
		}
	})
}
