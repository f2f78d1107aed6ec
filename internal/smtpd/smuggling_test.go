package smtpd

import (
	"strings"
	"testing"
)

// TestSmuggling sends each smuggling variant (CVE-2023-51764 and kin): a
// first message, a fake end of data, a second complete transaction, and
// the real end. The receiver must refuse the whole stream as one message
// with bare CR or LF, answer exactly once, stay in step, and queue nothing.
func TestSmuggling(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "error_limit = 1000", Options{})
	smuggled := "MAIL FROM:<attacker@evil.example>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n" +
		"From: <ceo@example.org>\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n"
	variants := map[string]string{
		"LF.CRLF":       "\n.\r\n",
		"CRLF.LF":       "\r\n.\n",
		"LF.LF":         "\n.\n",
		"CR.CR":         "\r.\r",
		"CR.CRLF":       "\r.\r\n",
		"CRLF.CR":       "\r\n.\r",
		"CRCRLF.CRCRLF": "\r\r\n.\r\r\n",
		"CRLF.CRCRLF":   "\r\n.\r\r\n",
		"LF..LF":        "\n..\n",
		"CRLF.NUL":      "\r\n.\x00\r\n",
	}
	for name, fake := range variants {
		for _, from := range []string{untrustedIP, trustedIP} {
			c := h.session(from)
			// Pipelined, as an attacker would (RFC 2920 lets the client send
			// these three without waiting).
			c.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
			c.expect(250)
			c.expect(250)
			c.expect(354)
			c.send("Subject: first\r\n\r\nfirst body" + fake + smuggled + ".\r\n")
			code, msg := c.reply()
			wantRefused := name != "CRLF.NUL"
			if wantRefused && (code != 550 || !strings.HasPrefix(msg, "5.6.0 ")) {
				t.Errorf("%s from %s: reply %d %s, want 550 5.6.0", name, from, code, msg)
			}
			// The next command must get its own reply: nothing of the
			// smuggled transaction may have been taken as a command.
			c.send("NOOP\r\n")
			if code, msg := c.reply(); code != 250 || !strings.Contains(msg, "done nothing") {
				t.Errorf("%s from %s: after the message, NOOP got %d %s: the dialogue is out of step", name, from, code, msg)
			}
			c.cmd("QUIT", 221)
		}
	}
	for _, env := range h.queued() {
		data, _ := h.sp.ReadData(env.ID, "")
		if env.Sender == "attacker@evil.example" || strings.Contains(string(data), "Subject: smuggled") && !strings.Contains(string(data), "\x00") {
			t.Errorf("a smuggled message was queued: %+v", env)
		}
	}
	// "\r\n.\x00\r\n" has no bare CR or LF: it is one message whose body
	// contains a line ".\x00" (unstuffed to "\x00"), never two messages.
	for _, env := range h.queued() {
		if env.Sender != "a@example.net" {
			t.Errorf("unexpected sender %q queued", env.Sender)
		}
	}
}

// TestBareNewlineNotEnd: after a bare LF, a line with a single dot is not
// the end of the message; the server keeps waiting for CRLF.CRLF.
func TestBareNewlineNotEnd(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "", Options{})
	c := h.session(untrustedIP)
	c.cmd("MAIL FROM:<a@example.net>", 250)
	c.cmd("RCPT TO:<b@example.org>", 250)
	c.cmd("DATA", 354)
	c.send("Subject: x\r\n\r\nbody\n.\r\n")
	// Had the server taken "\n.\r\n" as the end, this NOOP would be a
	// command and get its 250 before the message's reply.
	c.send("NOOP\r\n.\r\n")
	c.expect(550)
	c.cmd("NOOP", 250)
	if n := len(h.queued()); n != 0 {
		t.Fatalf("%d queued", n)
	}
}

// TestBareLFInCommand: command lines need CRLF too.
func TestBareLFInCommand(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "", Options{})
	c := h.dial(untrustedIP)
	c.expect(220)
	c.send("EHLO x\n")
	c.expect(500)
	c.send("EHLO x\rNOOP\r\n")
	c.expect(500)
	c.cmd("EHLO x", 250)
}
