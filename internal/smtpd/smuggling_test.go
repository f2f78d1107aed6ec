package smtpd

import (
	"fmt"
	"strings"
	"testing"

	"smimegate/internal/smtp"
)

// TestSmuggling sends each smuggling variant (CVE-2023-51764 and kin): a
// first message, a fake end of data, a second complete transaction, and
// the real end. The receiver must refuse the whole stream as one message
// with bare CR or LF, or with a NUL, answer exactly once, stay in step,
// and queue nothing.
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
		"CRLFNUL.CRLF":  "\r\n\x00.\r\n",
		"CRLFNUL.NUL":   "\r\n\x00.\x00\r\n",
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
			why := "bare CR or LF"
			if strings.Contains(fake, "\x00") {
				why = "NUL character"
			}
			if code != 550 || !strings.HasPrefix(msg, "5.6.0 ") || !strings.Contains(msg, why) {
				t.Errorf("%s from %s: reply %d %s, want 550 5.6.0 naming the %s", name, from, code, msg, why)
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
	// Not the first message, nor the smuggled one: nothing.
	if list := h.queued(); len(list) != 0 {
		t.Errorf("%d messages queued, want none: %+v", len(list), list)
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

// TestNULInData: a NUL anywhere in the message (a header, the body, a line
// of its own, a dot-stuffed line, a line longer than the read buffer)
// refuses it with 550 5.6.0 naming where it was; the dialogue stays in
// step, and the next clean message is accepted.
func TestNULInData(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "error_limit = 1000\nmax_line_length = 100000", Options{})
	cases := map[string]string{
		"header":       "Subject: a\x00b\r\n\r\nbody\r\n",
		"body":         "Subject: x\r\n\r\nbo\x00dy\r\n",
		"line":         "Subject: x\r\n\r\n\x00\r\n",
		"stuffed":      "Subject: x\r\n\r\n.\x00\r\n",
		"end of line":  "Subject: x\r\n\r\nbody\x00\r\n",
		"long line":    "Subject: x\r\n\r\n" + strings.Repeat("y", 3*readBuffer) + "\x00\r\n",
		"first byte":   "\x00Subject: x\r\n\r\nbody\r\n",
		"before a dot": "Subject: x\r\n\r\nbody\r\n\x00.\r\nmore\r\n",
	}
	for _, from := range []string{untrustedIP, trustedIP} {
		c := h.session(from)
		for name, body := range cases {
			code, msg := sendData(c, body)
			at := fmt.Sprintf("at byte %d of the DATA stream", strings.IndexByte(body, 0))
			if code != 550 || !strings.HasPrefix(msg, "5.6.0 "+smtp.NULRefusal) || !strings.Contains(msg, at) {
				t.Errorf("%s from %s: %d %s, want 550 5.6.0 NUL %s", name, from, code, msg, at)
			}
			c.send("NOOP\r\n")
			if code, msg := c.reply(); code != 250 || !strings.Contains(msg, "done nothing") {
				t.Errorf("%s from %s: after the message, NOOP got %d %s: out of step", name, from, code, msg)
			}
		}
		if code, msg := sendData(c, message("clean-"+from)); code != 250 {
			t.Errorf("clean message after the NUL ones from %s: %d %s", from, code, msg)
		}
	}
	if n := len(h.queued()); n != 2 {
		t.Errorf("%d queued, want only the 2 clean messages", n)
	}
}
