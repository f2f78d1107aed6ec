package smtpd

import (
	"errors"
	netsmtp "net/smtp"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"smimegate/internal/smtp"
	"smimegate/internal/spool"
)

// TestAcceptAndStore sends a message with net/smtp from a trusted client
// and checks what reached the spool: the envelope with its DSN parameters
// and the bytes, with our Received field on top and the dots unstuffed.
func TestAcceptAndStore(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var queuedIDs []string
	h := newHarness(t, "", Options{OnQueued: func(id string) {
		mu.Lock()
		queuedIDs = append(queuedIDs, id)
		mu.Unlock()
	}})
	c := h.session(trustedIP)
	c.cmd("MAIL FROM:<sender@example.org> BODY=8BITMIME RET=HDRS ENVID=abc+2Bdef", 250)
	c.cmd("RCPT TO:<one@partner.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;one+40partner.example", 250)
	c.cmd("RCPT TO:<two@example.org>", 250)
	c.cmd("DATA", 354)
	c.send("Subject: dots\r\n\r\n..leading dot\r\n.\r\n")
	msg := c.expect(250)
	c.cmd("QUIT", 221)

	list := h.queued()
	if len(list) != 1 {
		t.Fatalf("%d messages queued, want 1", len(list))
	}
	env := list[0]
	if !strings.Contains(msg, env.ID) {
		t.Errorf("250 reply %q does not carry the queue id %s", msg, env.ID)
	}
	mu.Lock()
	if len(queuedIDs) != 1 || queuedIDs[0] != env.ID {
		t.Errorf("OnQueued got %v, want [%s]", queuedIDs, env.ID)
	}
	mu.Unlock()
	if env.Sender != "sender@example.org" || env.Body != "8BITMIME" || env.RET != "HDRS" || env.EnvID != "abc+def" {
		t.Errorf("envelope MAIL fields: %+v", env)
	}
	want := []spool.Recipient{
		{Addr: "one@partner.example", Notify: []string{"SUCCESS", "FAILURE"}, ORcpt: "rfc822;one+40partner.example"},
		{Addr: "two@example.org"},
	}
	if len(env.Recipients) != 2 || env.Recipients[0].Addr != want[0].Addr || strings.Join(env.Recipients[0].Notify, ",") != "SUCCESS,FAILURE" ||
		env.Recipients[0].ORcpt != want[0].ORcpt || env.Recipients[1].Addr != want[1].Addr {
		t.Errorf("recipients %+v, want %+v", env.Recipients, want)
	}
	if !env.Trusted || !strings.HasPrefix(env.Client, "127.0.0.1:") || env.Helo != "client.example.net" || env.TLS || env.Stage != spool.StageReceived || env.Arrival.IsZero() {
		t.Errorf("envelope session fields: %+v", env)
	}
	data, err := h.sp.ReadData(env.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(data)) != env.Size {
		t.Errorf("Size %d, data has %d bytes", env.Size, len(data))
	}
	s := string(data)
	if !strings.HasPrefix(s, "Received: from client.example.net ([127.0.0.1])\r\n\tby mx.example.org (smimegate) with ESMTP id "+env.ID+";\r\n\t") {
		t.Errorf("no Received field first (two recipients, so no \"for\"):\n%s", s)
	}
	if !strings.HasSuffix(s, "\r\nSubject: dots\r\n\r\n.leading dot\r\n") {
		t.Errorf("message body not stored exactly (dot-unstuffed):\n%q", s)
	}
	if !hasAll(h.logs.String(), "smtpd: message accepted", "id="+env.ID, "size=", "sender=sender@example.org", "reply=\"250 2.0.0 OK queued as "+env.ID) {
		t.Errorf("no transaction log line:\n%s", h.logs.String())
	}
}

// TestNetSMTPClient uses Go's own client, pipelining and all.
func TestNetSMTPClient(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "", Options{})
	for i := range 3 {
		if err := netsmtp.SendMail(h.addr, nil, "a@example.net", []string{"b@example.org"}, []byte(message("netsmtp"+string(rune('a'+i))))); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(h.queued()); n != 3 {
		t.Fatalf("%d messages queued, want 3", n)
	}
}

// TestSwaks sends with swaks, a real client with its own ideas of SMTP.
func TestSwaks(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Skip("swaks is not installed")
	}
	h := newHarness(t, "", Options{})
	out, err := exec.Command("swaks", "--server", h.addr, "--from", "a@example.net", "--to", "b@example.org",
		"--header", "Subject: via swaks", "--body", "line one\n.line two with a dot\n", "--pipeline").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	list := h.queued()
	if len(list) != 1 {
		t.Fatalf("%d queued\n%s", len(list), out)
	}
	data, _ := h.sp.ReadData(list[0].ID, "")
	if !hasAll(string(data), "Subject: via swaks\r\n", "\r\n.line two with a dot\r\n", "for <b@example.org>;") {
		t.Errorf("stored message:\n%s", data)
	}
}

// TestRelayMatrix is Postfix's relay control, applied to every trick in
// the book, from an untrusted and a trusted address.
func TestRelayMatrix(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "error_limit = 1000", Options{})
	cases := []struct {
		rcpt               string
		untrusted, trusted int
	}{
		{"<user@example.org>", 250, 250},
		{"<user@EXAMPLE.ORG>", 250, 250},
		{"<user@sub.example.org>", 250, 250},
		{"<user@deep.sub.example.org>", 250, 250},
		{"<\"john doe\"@example.org>", 250, 250},
		{"<user@example.net>", 554, 250},
		{"<user@notexample.org>", 554, 250},
		{"<user@example.org.evil.example>", 554, 250},
		{"<user%evil.example@example.org>", 554, 250},
		{"<evil.example!user@example.org>", 554, 250},
		{"<@example.org:user@evil.example>", 554, 250},
		{"<@evil.example:user@example.org>", 554, 250},
		{"<@a.example,@b.example:user@example.org>", 554, 250},
		{"<\"user@evil.example\"@example.org>", 554, 250},
		{"<\"user%evil.example\"@example.org>", 554, 250},
		{"<user@example.org.>", 554, 250},
		// Address literals and names without a canonical form are refused
		// from everyone (see TestRecipientDomainMustCanonicalise).
		{"<user@[127.0.0.1]>", 553, 553},
		{"<user@[IPv6:::1]>", 553, 553},
		{"<user@[192.0.2.1]>", 553, 553},
		{"<@evil.example:user@[192.0.2.1]>", 553, 553},
		{"<user@exa_mple.org>", 553, 553},
		{"<user@ab--cd.example.org>", 553, 553},
		{"user@example.org", 501, 501},
		{"<user@example.org", 501, 501},
		{"<userexample.org>", 501, 501},
		{"<user@>", 501, 501},
		{"<us..er@example.org>", 501, 501},
		{"<üser@example.org>", 553, 553}, // no SMTPUTF8 at MAIL
	}
	for _, from := range []string{untrustedIP, trustedIP} {
		c := h.session(from)
		c.cmd("MAIL FROM:<boss@example.org>", 250) // a local sender buys no relaying
		for _, tc := range cases {
			want := tc.trusted
			if from == untrustedIP {
				want = tc.untrusted
			}
			c.send("RCPT TO:" + tc.rcpt + "\r\n")
			code, msg := c.reply()
			if code != want {
				t.Errorf("from %s: RCPT TO:%s got %d %s, want %d", from, tc.rcpt, code, msg, want)
			}
			if code == 554 && !strings.HasPrefix(msg, "5.7.1 ") {
				t.Errorf("from %s: RCPT TO:%s refused with %q, want 5.7.1", from, tc.rcpt, msg)
			}
			if code == 553 && !strings.HasPrefix(msg, "5.1.3 ") && !strings.HasPrefix(msg, "5.6.7 ") {
				t.Errorf("from %s: RCPT TO:%s refused with %q, want 5.1.3", from, tc.rcpt, msg)
			}
		}
		c.cmd("QUIT", 221)
	}
	if !hasAll(h.logs.String(), "smtpd: recipient refused", "Relay access denied") {
		t.Errorf("refusals are not logged:\n%s", h.logs.String())
	}
	// With SMTPUTF8 the same non-ASCII local part is fine.
	c := h.session(untrustedIP)
	c.cmd("MAIL FROM:<a@example.net> SMTPUTF8", 250)
	c.cmd("RCPT TO:<üser@example.org>", 250)
	c.cmd("RCPT TO:<user@bücher.example.org>", 250)
	c.cmd("RCPT TO:<user@bücher.example>", 554)
}

// TestChecker: the lead's hook sees the complete envelope after DATA and
// can refuse before the 250; a plain error means "try again later".
func TestChecker(t *testing.T) {
	t.Parallel()
	var seen *spool.Envelope
	h := newHarness(t, "", Options{Check: func(env *spool.Envelope) error {
		seen = env
		switch {
		case len(env.Recipients) > 1:
			return &smtp.Error{Code: 554, Enhanced: smtp.EnhancedCode{5, 7, 1}, Message: "Mixed secured and unsecured recipients"}
		case env.Sender == "temp@example.net":
			return errors.New("certificate store is reloading")
		}
		return nil
	}})
	c := h.session(trustedIP)
	c.cmd("MAIL FROM:<a@example.net>", 250)
	c.cmd("RCPT TO:<x@secure.example>", 250)
	c.cmd("RCPT TO:<y@plain.example>", 250)
	c.cmd("DATA", 354)
	c.send(message("mixed") + ".\r\n")
	if msg := c.expect(554); msg != "5.7.1 Mixed secured and unsecured recipients" {
		t.Errorf("reply %q", msg)
	}
	if seen == nil || len(seen.Recipients) != 2 || seen.Size == 0 || seen.ID == "" {
		t.Errorf("checker saw %+v", seen)
	}
	c.cmd("MAIL FROM:<temp@example.net>", 250)
	c.cmd("RCPT TO:<x@secure.example>", 250)
	c.cmd("DATA", 354)
	c.send(message("temp") + ".\r\n")
	c.expect(451)
	c.cmd("MAIL FROM:<ok@example.net>", 250)
	c.cmd("RCPT TO:<x@secure.example>", 250)
	c.cmd("DATA", 354)
	c.send(message("ok") + ".\r\n")
	c.expect(250)
	if n := len(h.queued()); n != 1 {
		t.Fatalf("%d queued, want only the accepted one", n)
	}
}
