package smtpd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"smimegate/internal/smtp"
)

// verifier is a recipient verification hook as the gateway would give
// one: it answers from a table, and for the addresses that block it waits
// for the test (release) or for its context, recording how that ended.
type verifier struct {
	mu      sync.Mutex
	asked   []string
	ended   chan error    // the context's error, for each blocking call that gave up
	release chan struct{} // closed to let the blocking calls answer nil
	started chan string   // each blocking call as it starts
}

func newVerifier() *verifier {
	return &verifier{ended: make(chan error, 16), release: make(chan struct{}), started: make(chan string, 16)}
}

func (v *verifier) verify(ctx context.Context, addr string) error {
	v.mu.Lock()
	v.asked = append(v.asked, addr)
	v.mu.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		return errors.New("the verification context has no deadline")
	}
	local, _, _ := strings.Cut(addr, "@")
	switch local {
	case "known", "Known", "bob":
		return nil
	case "unknown", "postmaster", "Postmaster":
		return &smtp.Error{Code: 550, Enhanced: smtp.EnhancedCode{5, 1, 1}, Message: "Recipient address rejected: unknown user"}
	case "busy":
		return &smtp.Error{Code: 450, Enhanced: smtp.EnhancedCode{4, 1, 1}, Message: "Recipient address verification: cannot verify now"}
	case "broken":
		return errors.New("relay.inbound: connection refused")
	case "multiline":
		// The internal server's reply text, passed on: it must stay one
		// line, with an enhanced code of its class.
		return &smtp.Error{Code: 550, Enhanced: smtp.EnhancedCode{2, 1, 1}, Message: "no such user\r\n250 OK"}
	case "liar":
		// A Reject that would read as success must not accept.
		return &smtp.Error{Code: 250, Enhanced: smtp.EnhancedCode{2, 0, 0}, Message: "fine"}
	case "block":
		v.started <- addr
		select {
		case <-v.release:
			return nil
		case <-ctx.Done():
			v.ended <- ctx.Err()
			return ctx.Err()
		}
	}
	return fmt.Errorf("no answer for %s in the test table", addr)
}

// waitStarted waits for a blocking call to begin: a test whose hook is
// never called fails rather than hangs.
func (v *verifier) waitStarted(t *testing.T) {
	t.Helper()
	select {
	case <-v.started:
	case <-time.After(20 * time.Second):
		t.Fatal("the verification hook was not called")
	}
}

// waitEnded returns how the blocking call's context ended.
func (v *verifier) waitEnded(t *testing.T, what string) error {
	t.Helper()
	select {
	case err := <-v.ended:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("%s, and the verification goes on", what)
		return nil
	}
}

func (v *verifier) askedFor() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return strings.Join(v.asked, " ")
}

// TestVerifyRecipient: every recipient in a local domain, from a trusted
// client too, is put to the hook in its canonical form after the relay and
// syntax checks; its *smtp.Error is the reply, another error is 451 4.3.0, nil
// accepts; foreign recipients and postmaster are never asked about. A
// transaction left with no recipient gets 554 at DATA.
func TestVerifyRecipient(t *testing.T) {
	t.Parallel()
	v := newVerifier()
	h := newHarness(t, "error_limit = 1000", Options{VerifyRecipient: v.verify})
	for _, from := range []string{untrustedIP, trustedIP} {
		c := h.session(from)
		c.cmd("MAIL FROM:<a@example.net> SMTPUTF8", 250)
		for _, tc := range []struct {
			rcpt  string
			code  int
			reply string
		}{
			{"<unknown@example.org>", 550, "5.1.1 Recipient address rejected: unknown user"},
			{"<busy@sub.example.org>", 450, "4.1.1 Recipient address verification: cannot verify now"},
			{"<broken@example.org>", 451, "4.3.0 Recipient address verification failed temporarily, try again later"},
			{"<liar@example.org>", 451, "4.3.0 Recipient address verification failed temporarily, try again later"},
			{"<multiline@example.org>", 550, "5.0.0 no such user??250 OK"},
			{"<unknown@ab--cd.example.org>", 553, "5.1.3 "}, // syntax first: never asked
			{"<unknown%evil.example@example.org>", 0, ""},   // relay check first, for outsiders
			{"<Known@EXAMPLE.ORG>", 250, ""},                // asked as Known@example.org
			{"<bob@BÜCHER.example.org>", 250, ""},           // asked with A-labels
			{"<Postmaster>", 250, ""},                       // RFC 5321 section 4.5.1
			{"<postmaster@sub.example.org>", 250, ""},       // likewise
			{"<unknown@partner.example>", 0, ""},            // not local: never asked
		} {
			want := tc.code
			switch {
			case tc.rcpt == "<unknown%evil.example@example.org>":
				// A trusted client may route so; the table has no
				// answer for it, which is a failure to verify.
				if want = 554; from == trustedIP {
					want = 451
				}
			case tc.rcpt == "<unknown@partner.example>":
				if want = 554; from == trustedIP {
					want = 250
				}
			}
			c.send("RCPT TO:" + tc.rcpt + "\r\n")
			code, msg := c.reply()
			if code != want || !strings.HasPrefix(msg, tc.reply) {
				t.Errorf("from %s: RCPT TO:%s got %d %s, want %d %s", from, tc.rcpt, code, msg, want, tc.reply)
			}
		}
		c.cmd("DATA", 354)
		c.send(message("verified-"+from) + ".\r\n")
		c.expect(250)

		// Only refused recipients: DATA is refused, and no 354 is given.
		c.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<unknown@example.org>\r\nRCPT TO:<busy@example.org>\r\nDATA\r\n")
		c.expect(250)
		c.expect(550)
		c.expect(450)
		if msg := c.expect(554); !strings.HasPrefix(msg, "5.5.1 No valid recipients") {
			t.Errorf("from %s: DATA without valid recipients: %q", from, msg)
		}
		c.cmd("RSET", 250)
		if msg := c.cmd("DATA", 503); !strings.HasPrefix(msg, "5.5.1 Send MAIL first") {
			t.Errorf("from %s: DATA without MAIL: %q", from, msg)
		}
		c.cmd("QUIT", 221)
	}
	outsider := "unknown@example.org busy@sub.example.org broken@example.org liar@example.org multiline@example.org Known@example.org bob@xn--bcher-kva.example.org unknown@example.org busy@example.org"
	insider := "unknown@example.org busy@sub.example.org broken@example.org liar@example.org multiline@example.org unknown%evil.example@example.org Known@example.org bob@xn--bcher-kva.example.org unknown@example.org busy@example.org"
	if got := v.askedFor(); got != outsider+" "+insider {
		t.Errorf("the hook was asked about\n%s\nwant\n%s %s", got, outsider, insider)
	}
	list := h.queued()
	if len(list) != 2 {
		t.Fatalf("%d queued, want 2", len(list))
	}
	for _, env := range list {
		var got []string
		for _, r := range env.Recipients {
			got = append(got, r.Addr)
		}
		want := "Known@example.org bob@xn--bcher-kva.example.org postmaster@example.org postmaster@sub.example.org"
		if env.Trusted {
			want += " unknown@partner.example"
		}
		if strings.Join(got, " ") != want {
			t.Errorf("trusted=%v: recipients %v, want %s", env.Trusted, got, want)
		}
	}
	if !hasAll(h.logs.String(), "smtpd: recipient verification failed", "relay.inbound: connection refused") {
		t.Errorf("the hook's failure is not logged:\n%s", h.logs.String())
	}
}

// TestVerifyRecipientTimeout: a hook that blocks is cut at the command
// timeout through its context, and the client gets 451 4.3.0.
func TestVerifyRecipientTimeout(t *testing.T) {
	t.Parallel()
	v := newVerifier()
	h := newHarness(t, `command_timeout = "1s"`, Options{VerifyRecipient: v.verify})
	c := h.session(untrustedIP)
	c.cmd("MAIL FROM:<a@example.net>", 250)
	if msg := c.cmd("RCPT TO:<block@example.org>", 451); !strings.HasPrefix(msg, "4.3.0 ") {
		t.Errorf("blocked verification: %q", msg)
	}
	if err := v.waitEnded(t, "the command timeout has passed"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the hook's context ended with %v, want the deadline", err)
	}
}

// TestVerifyRecipientPipelined: commands pipelined behind a RCPT whose
// verification blocks are neither lost nor taken for a disconnect, in
// clear and under TLS.
func TestVerifyRecipientPipelined(t *testing.T) {
	t.Parallel()
	cert, key, pool := testTLS(t)
	for _, tls := range []bool{false, true} {
		v := newVerifier()
		h := newHarness(t, fmt.Sprintf("tls_cert = %q\ntls_key = %q", cert, key), Options{VerifyRecipient: v.verify})
		c := h.session(untrustedIP)
		if tls {
			c.startTLS(pool)
			c.cmd("EHLO client.example.net", 250)
		}
		c.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<block@example.org>\r\nRCPT TO:<known@example.org>\r\nDATA\r\n")
		c.expect(250)
		v.waitStarted(t)
		// Let the watcher see the pipelined bytes, then answer.
		time.Sleep(50 * time.Millisecond)
		close(v.release)
		c.expect(250)
		c.expect(250)
		c.expect(354)
		c.send(message("pipelined") + ".\r\n")
		c.expect(250)
		if list := h.queued(); len(list) != 1 || len(list[0].Recipients) != 2 {
			t.Fatalf("tls=%v: queued %+v", tls, list)
		}
	}
}

// TestVerifyRecipientDisconnect: a client that goes away while its
// recipient is being verified cancels the verification at once, rather
// than at the command timeout (300s here).
func TestVerifyRecipientDisconnect(t *testing.T) {
	t.Parallel()
	cert, key, pool := testTLS(t)
	for _, tls := range []bool{false, true} {
		v := newVerifier()
		h := newHarness(t, fmt.Sprintf("tls_cert = %q\ntls_key = %q", cert, key), Options{VerifyRecipient: v.verify})
		c := h.session(untrustedIP)
		if tls {
			c.startTLS(pool)
			c.cmd("EHLO client.example.net", 250)
		}
		c.cmd("MAIL FROM:<a@example.net>", 250)
		c.send("RCPT TO:<block@example.org>\r\n")
		v.waitStarted(t)
		c.conn.Close()
		if err := v.waitEnded(t, "the client left"); !errors.Is(err, context.Canceled) {
			t.Errorf("tls=%v: the hook's context ended with %v, want cancelled", tls, err)
		}
	}
}

// TestVerifyRecipientShutdown: Shutdown cancels a verification in
// progress; the client gets 451 for its RCPT and then 421.
func TestVerifyRecipientShutdown(t *testing.T) {
	t.Parallel()
	v := newVerifier()
	h := newHarness(t, "", Options{VerifyRecipient: v.verify})
	c := h.session(untrustedIP)
	c.cmd("MAIL FROM:<a@example.net>", 250)
	c.send("RCPT TO:<block@example.org>\r\n")
	v.waitStarted(t)
	done := make(chan error, 1)
	go func() { done <- h.srv.Shutdown(t.Context()) }()
	if err := v.waitEnded(t, "the server shuts down"); !errors.Is(err, context.Canceled) {
		t.Errorf("the hook's context ended with %v, want cancelled", err)
	}
	if msg := c.expect(451); !strings.HasPrefix(msg, "4.3.0 ") {
		t.Errorf("RCPT during shutdown: %q", msg)
	}
	if msg := c.expect(421); !strings.HasPrefix(msg, "4.3.2 ") {
		t.Errorf("after the RCPT: %q", msg)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
