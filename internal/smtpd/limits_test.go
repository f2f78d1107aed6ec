package smtpd

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// sendData runs one transaction and returns the reply to the final dot.
func sendData(c *rawClient, body string) (int, string) {
	c.t.Helper()
	c.cmd("MAIL FROM:<a@example.net>", 250)
	c.cmd("RCPT TO:<b@example.org>", 250)
	c.cmd("DATA", 354)
	c.send(body + ".\r\n")
	return c.reply()
}

func TestMessageSize(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "max_message_bytes = 2000", Options{})
	c := h.session(untrustedIP)
	if msg := c.cmd("MAIL FROM:<a@example.net> SIZE=2001", 552); !strings.HasPrefix(msg, "5.3.4") {
		t.Errorf("SIZE= over the limit: %q", msg)
	}
	if !strings.Contains(c.cmd("EHLO x", 250), "SIZE 2000") {
		t.Error("EHLO does not announce SIZE 2000")
	}
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 70)+"\r\n", 100)
	if code, msg := sendData(c, big); code != 552 || !strings.HasPrefix(msg, "5.3.4") {
		t.Errorf("oversized DATA: %d %s", code, msg)
	}
	// The dialogue is still in step, and a message within the limit passes.
	if code, msg := sendData(c, message("small")); code != 250 {
		t.Errorf("small message after a big one: %d %s", code, msg)
	}
	if n := len(h.queued()); n != 1 {
		t.Errorf("%d queued, want 1", n)
	}
}

func TestLineAndHeaderLimits(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "max_line_length = 998\nmax_header_bytes = 500", Options{})
	c := h.session(untrustedIP)
	if code, msg := sendData(c, "Subject: x\r\n\r\n"+strings.Repeat("y", 999)+"\r\n"); code != 550 || !strings.Contains(msg, "longer than 998") {
		t.Errorf("long line: %d %s", code, msg)
	}
	// A line longer than the read buffer, to exercise the partial-line path.
	if code, msg := sendData(c, "Subject: x\r\n\r\n"+strings.Repeat("y", 50000)+"\r\n"); code != 550 || !strings.Contains(msg, "longer than 998") {
		t.Errorf("very long line: %d %s", code, msg)
	}
	if code, _ := sendData(c, "Subject: x\r\n\r\n"+strings.Repeat("y", 998)+"\r\n"); code != 250 {
		t.Errorf("a 998-byte line was refused: %d", code)
	}
	hdr := strings.Repeat("X-Filler: "+strings.Repeat("h", 60)+"\r\n", 10)
	if code, msg := sendData(c, hdr+"\r\nbody\r\n"); code != 552 || !strings.Contains(msg, "header section") {
		t.Errorf("big header: %d %s", code, msg)
	}
	// The long line must be split across reads and still end properly: a
	// CRLF straddling the buffer boundary is not a bare CR.
	h2 := newHarness(t, "max_line_length = 100000", Options{})
	c2 := h2.session(untrustedIP)
	for _, n := range []int{readBuffer - 1, readBuffer, readBuffer + 1, 2*readBuffer - 1} {
		if code, msg := sendData(c2, "Subject: x\r\n\r\n"+strings.Repeat("z", n)+"\r\n"); code != 250 {
			t.Errorf("line of %d bytes: %d %s", n, code, msg)
		}
	}
	loop := strings.Repeat("Received: from a by b; Thu, 1 Jan 2026 00:00:00 +0000\r\n", 101)
	if code, msg := sendData(c2, loop+"\r\nbody\r\n"); code != 554 || !strings.HasPrefix(msg, "5.4.6") {
		t.Errorf("loop: %d %s", code, msg)
	}
	if code, _ := sendData(c2, strings.Repeat("Received: from a by b; Thu, 1 Jan 2026 00:00:00 +0000\r\n", 100)+"\r\nbody\r\n"); code != 250 {
		t.Errorf("100 Received fields were refused: %d", code)
	}
	for _, env := range h2.queued() {
		if env.Size < 5000 {
			t.Errorf("stored %d bytes", env.Size)
		}
	}
}

func TestRecipientLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "max_recipients = 3", Options{})
	c := h.session(untrustedIP)
	c.cmd("MAIL FROM:<a@example.net>", 250)
	for i := range 3 {
		c.cmd(fmt.Sprintf("RCPT TO:<u%d@example.org>", i), 250)
	}
	if msg := c.cmd("RCPT TO:<u4@example.org>", 452); !strings.HasPrefix(msg, "4.5.3") {
		t.Errorf("4th recipient: %q", msg)
	}
	c.cmd("DATA", 354)
	c.send(message("three") + ".\r\n")
	c.expect(250)
	if env := h.queued(); len(env) != 1 || len(env[0].Recipients) != 3 {
		t.Errorf("queued %+v", env)
	}
}

func TestConnectionLimits(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "max_connections = 4\nmax_connections_per_client = 2\ntrusted_reserve = 0", Options{})
	a := h.dial(untrustedIP)
	a.expect(220)
	b := h.dial(untrustedIP)
	b.expect(220)
	c := h.dial(untrustedIP)
	if msg := c.expect(421); !strings.HasPrefix(msg, "4.7.0") {
		t.Errorf("third connection from one untrusted client: %q", msg)
	}
	// Trusted clients are exempt from the per-client limit (as Postfix's
	// mynetworks are), not from the total.
	d := h.dial(trustedIP)
	d.expect(220)
	e := h.dial(trustedIP)
	e.expect(220)
	f := h.dial(trustedIP)
	if msg := f.expect(421); !strings.HasPrefix(msg, "4.3.2") {
		t.Errorf("connection over the total: %q", msg)
	}
	// A slot comes back when a connection ends.
	a.cmd("QUIT", 221)
	a.closed()
	deadline := time.Now().Add(10 * time.Second)
	for {
		g := h.dial(untrustedIP)
		code, _ := g.reply()
		if code == 220 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slot of a closed connection never came back")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCommandTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t, `command_timeout = "1s"`, Options{})
	c := h.session(untrustedIP)
	if msg := c.expect(421); !strings.HasPrefix(msg, "4.4.2") {
		t.Errorf("idle client: %q", msg)
	}
	if !c.closed() {
		t.Error("connection still open after the timeout")
	}
}

// TestMinDataRate trickles a message: each read is well within the
// command timeout, but the average rate is far below min_data_rate.
func TestMinDataRate(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "command_timeout = \"2s\"\nmin_data_rate = 1000", Options{})
	c := h.session(untrustedIP)
	c.cmd("MAIL FROM:<a@example.net>", 250)
	c.cmd("RCPT TO:<b@example.org>", 250)
	c.cmd("DATA", 354)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 100; i++ {
			if _, err := c.conn.Write([]byte("slow line\r\n")); err != nil {
				return
			}
			time.Sleep(300 * time.Millisecond)
		}
	}()
	code, msg := c.reply()
	if code != 421 || !strings.Contains(msg, "1000 bytes/s") {
		t.Errorf("slow sender: %d %s", code, msg)
	}
	c.conn.Close()
	<-done
	if n := len(h.queued()); n != 0 {
		t.Errorf("%d queued", n)
	}
}

func TestErrorLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "error_limit = 3", Options{})
	c := h.session(untrustedIP)
	c.cmd("MAIL FROM:<a@example.net>", 250)
	c.cmd("RCPT TO:<x@evil.example>", 554)
	c.cmd("RCPT TO:<y@evil.example>", 554)
	c.cmd("RCPT TO:<z@evil.example>", 554)
	if msg := c.cmd("RCPT TO:<b@example.org>", 421); !strings.HasPrefix(msg, "4.7.0") {
		t.Errorf("after 3 errors: %q", msg)
	}
	if !c.closed() {
		t.Error("still open")
	}
}

func TestJunkLimit(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "junk_command_limit = 5", Options{})
	c := h.session(untrustedIP)
	for range 5 {
		c.cmd("NOOP", 250)
	}
	if msg := c.cmd("NOOP", 421); !strings.HasPrefix(msg, "4.7.0") {
		t.Errorf("6th NOOP: %q", msg)
	}
	if !c.closed() {
		t.Error("still open")
	}
}

// TestUnknownAndChunking: the EHLO keywords offered (CHUNKING now among
// them, BINARYMIME, STARTTLS without a certificate and AUTH not), and the
// answers to what is not offered.
func TestUnknownAndChunking(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "", Options{})
	c := h.dial(untrustedIP)
	c.expect(220)
	ehlo := c.cmd("EHLO x", 250)
	for _, want := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE", "ENHANCEDSTATUSCODES", "DSN", "CHUNKING"} {
		if !strings.Contains(ehlo, want) {
			t.Errorf("EHLO lacks %s:\n%s", want, ehlo)
		}
	}
	for _, absent := range []string{"BINARYMIME", "STARTTLS", "AUTH"} {
		if strings.Contains(ehlo, absent) {
			t.Errorf("EHLO offers %s:\n%s", absent, ehlo)
		}
	}
	// BDAT without MAIL: refused, and its octets read so that the
	// dialogue stays in step.
	c.send("BDAT 10 LAST\r\nNOOP\r\nXYZW")
	c.expect(503)
	c.cmd("NOOP", 250)
	c.cmd("MAIL FROM:<a@example.net> BODY=BINARYMIME", 555)
	c.cmd("MAIL FROM:<a@example.net> AUTH=<>", 555)
	c.cmd("MAIL FROM:<a@example.net> SIZE=10 SIZE=10", 501)
	c.cmd("VRFY b@example.org", 252)
	c.cmd("EXPN staff", 502)
	c.cmd("HELP", 214)
	c.cmd("XYZZY", 500)
	c.cmd("ETRN", 502)
	c.cmd("STARTTLS", 502)
	c.cmd(strings.Repeat("N", 3000), 500)
	c.cmd("NOOP", 250)
}

// TestShutdown: idle sessions are told 421 at once; a message in progress
// is finished first.
func TestShutdown(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "", Options{})
	idle := h.session(untrustedIP)
	busy := h.session(untrustedIP)
	busy.cmd("MAIL FROM:<a@example.net>", 250)
	busy.cmd("RCPT TO:<b@example.org>", 250)
	busy.cmd("DATA", 354)
	busy.send("Subject: in flight\r\n\r\n")
	done := make(chan error, 1)
	go func() { done <- h.srv.Shutdown(t.Context()) }()
	if msg := idle.expect(421); !strings.HasPrefix(msg, "4.3.2") {
		t.Errorf("idle session: %q", msg)
	}
	busy.send("body\r\n.\r\n")
	busy.expect(250)
	if msg := busy.expect(421); !strings.HasPrefix(msg, "4.3.2") {
		t.Errorf("busy session after its message: %q", msg)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := len(h.queued()); n != 1 {
		t.Errorf("the message in flight was not queued")
	}
}

// TestTrustedReserve: an outsider with two addresses, each within the
// per-client limit, opens connections until it is refused; it must not get
// the last trusted_reserve slots, and a trusted client still gets in and
// delivers. The trusted client is refused only at max_connections.
func TestTrustedReserve(t *testing.T) {
	t.Parallel()
	const max, reserve = 6, 2
	h := newHarness(t, fmt.Sprintf("max_connections = %d\nmax_connections_per_client = %d\ntrusted_reserve = %d", max, max, reserve), Options{})
	outsider := []string{untrustedIP, "127.0.0.3"}
	var held []*rawClient
	refused := 0
	for i := range max {
		c := h.dial(outsider[i%2])
		switch code, msg := c.reply(); {
		case code == 220:
			held = append(held, c)
		case code == 421 && strings.HasPrefix(msg, "4.7.0 ") && strings.Contains(msg, "trusted networks"):
			refused++
		default:
			t.Fatalf("outsider's connection %d: %d %s", i+1, code, msg)
		}
	}
	if len(held) != max-reserve || refused != reserve {
		t.Fatalf("the outsider holds %d connections and was refused %d times; want %d and %d", len(held), refused, max-reserve, reserve)
	}
	var trusted []*rawClient
	for range reserve {
		c := h.dial(trustedIP)
		c.expect(220)
		trusted = append(trusted, c)
	}
	if msg := h.dial(trustedIP).expect(421); !strings.HasPrefix(msg, "4.3.2 ") {
		t.Errorf("trusted connection over max_connections: %q", msg)
	}
	c := trusted[0]
	c.cmd("EHLO internal.example.org", 250)
	if code, msg := sendData(c, message("reserve")); code != 250 {
		t.Fatalf("trusted client in the reserve: %d %s", code, msg)
	}
}

// TestGreetingLoop: every HELO/EHLO after the first of a session, and
// after the one STARTTLS requires, is a junk command.
func TestGreetingLoop(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "junk_command_limit = 5", Options{})
	for _, verb := range []string{"EHLO", "HELO"} {
		c := h.session(untrustedIP) // the first EHLO is free
		for range 5 {
			c.cmd(verb+" again.example.net", 250)
		}
		if msg := c.cmd(verb+" again.example.net", 421); !strings.HasPrefix(msg, "4.7.0 Too many junk commands") {
			t.Errorf("%s loop: %q", verb, msg)
		}
		if !c.closed() {
			t.Errorf("%s loop: still open at the junk limit", verb)
		}
	}
}

// TestGreetingLoopTLS: the EHLO that must follow STARTTLS is free; the
// junk count of the clear-text part carries over.
func TestGreetingLoopTLS(t *testing.T) {
	t.Parallel()
	cert, key, pool := testTLS(t)
	h := newHarness(t, fmt.Sprintf("junk_command_limit = 2\ntls_cert = %q\ntls_key = %q", cert, key), Options{})
	c := h.session(untrustedIP)
	c.cmd("EHLO x", 250) // junk 1
	c.startTLS(pool)
	c.cmd("EHLO x", 250) // required by RFC 3207: free
	c.cmd("EHLO x", 250) // junk 2
	if msg := c.cmd("EHLO x", 421); !strings.HasPrefix(msg, "4.7.0 ") {
		t.Errorf("third junk greeting: %q", msg)
	}
}

// TestMaxSessionTime: a client that keeps the session busy with valid
// commands is told 421 4.4.2 and disconnected once max_session_time has
// passed, as is one that waits.
func TestMaxSessionTime(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "max_session_time = \"1s\"\njunk_command_limit = 100000", Options{})
	c := h.session(untrustedIP)
	for i := 0; ; i++ {
		if i == 1000 {
			t.Fatal("1000 commands and the session still goes on")
		}
		c.send("NOOP\r\n")
		code, msg := c.reply()
		if code == 250 {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if code != 421 || !strings.HasPrefix(msg, "4.4.2 Session longer than the limit of 1s") {
			t.Fatalf("NOOP: %d %s", code, msg)
		}
		break
	}
	if !c.closed() {
		t.Error("still open after the session limit")
	}
	// A client that sends nothing is not kept for command_timeout (300s
	// by default) but ends with the session.
	idle := h.session(untrustedIP)
	if msg := idle.expect(421); !strings.HasPrefix(msg, "4.4.2 Session longer than the limit of 1s") {
		t.Errorf("idle client: %q", msg)
	}
	if !idle.closed() {
		t.Error("idle client still open after the session limit")
	}
}

// TestMaxSessionTimeDuringData: a DATA stream still coming in at the end
// of the session is cut with 421 4.4.2, and its message is not queued.
func TestMaxSessionTimeDuringData(t *testing.T) {
	t.Parallel()
	h := newHarness(t, "max_session_time = \"1s\"", Options{})
	c := h.session(untrustedIP)
	c.cmd("MAIL FROM:<a@example.net>", 250)
	c.cmd("RCPT TO:<b@example.org>", 250)
	c.cmd("DATA", 354)
	c.send("Subject: never ending\r\n\r\n")
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := c.conn.Write([]byte("another line\r\n")); err != nil {
				return
			}
		}
	}()
	code, msg := c.reply()
	close(stop)
	<-done
	if code != 421 || !strings.HasPrefix(msg, "4.4.2 Session longer than the limit of 1s during DATA; the message was not accepted") {
		t.Errorf("DATA at the end of the session: %d %s", code, msg)
	}
	if !c.closed() {
		t.Error("still open after the session limit")
	}
	if n := len(h.queued()); n != 0 {
		t.Errorf("%d queued from a cut DATA stream", n)
	}
}

// TestEnvelopeMemory: recipients with the longest command lines smtpd
// takes are refused with 452 4.5.3 once they would hold more than
// max_recipients times bytesPerRecipient, well before max_recipients of
// them; recipients of ordinary length still reach max_recipients.
func TestEnvelopeMemory(t *testing.T) {
	t.Parallel()
	const max = 8
	h := newHarness(t, fmt.Sprintf("max_recipients = %d", max), Options{})
	c := h.session(untrustedIP)
	c.cmd("MAIL FROM:<a@example.net>", 250)
	long := strings.Repeat("x", 1000)
	accepted := 0
	for i := range max {
		// A 1 KB local part and a 1 KB ORCPT: a line within maxCommandLine.
		c.send(fmt.Sprintf("RCPT TO:<%s%d@example.org> ORCPT=rfc822;%s\r\n", long, i, long))
		code, msg := c.reply()
		if code == 250 {
			accepted++
			continue
		}
		want := fmt.Sprintf("4.5.3 Too many recipients: together they would take more than %d bytes", max*bytesPerRecipient)
		if code != 452 || !strings.HasPrefix(msg, want) {
			t.Fatalf("recipient %d: %d %s, want 452 %s", i+1, code, msg, want)
		}
		break
	}
	if accepted == 0 || accepted >= max/2 {
		t.Errorf("%d long recipients accepted of %d; want the memory bound to stop them first", accepted, max)
	}
	c.cmd("RSET", 250)
	c.cmd("MAIL FROM:<a@example.net>", 250)
	for i := range max {
		c.cmd(fmt.Sprintf("RCPT TO:<user%d@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;user%d@example.org", i, i), 250)
	}
	c.cmd("DATA", 354)
	c.send(message("many") + ".\r\n")
	c.expect(250)
	if list := h.queued(); len(list) != 1 || len(list[0].Recipients) != max || list[0].Recipients[0].Notify[1] != "FAILURE" {
		t.Fatalf("queued %+v", list)
	}
}
