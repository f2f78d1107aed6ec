package smtpd

import (
	"fmt"
	"net"
	"testing"
	"time"
)

// TestVerifyRecipientHalfClose: a client that pipelines its whole
// transaction up to QUIT and then shuts down its sending side, as Exim's
// smtp transport does, is still waiting for the replies (RFC 5321 section
// 4.1.1.10): the end of its stream is not taken for a disconnect, so the
// verification of its recipient runs to its answer, and the pipelined
// message and QUIT are answered after it. A stream that ends without QUIT
// is a disconnect (TestVerifyRecipientDisconnect).
func TestVerifyRecipientHalfClose(t *testing.T) {
	t.Parallel()
	v := newVerifier()
	h := newHarness(t, "", Options{VerifyRecipient: v.verify})
	c := h.session(untrustedIP)
	msg := message("half-close")
	c.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<block@example.org>\r\n" + fmt.Sprintf("BDAT %d LAST\r\n", len(msg)) + msg + "QUIT\r\n")
	tcp, ok := c.conn.(*net.TCPConn)
	if !ok {
		t.Fatalf("the test's connection is a %T, not TCP", c.conn)
	}
	if err := tcp.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	c.expect(250)
	v.waitStarted(t)
	// Let the watcher see the end of the stream, then answer.
	time.Sleep(50 * time.Millisecond)
	close(v.release)
	select {
	case err := <-v.ended:
		t.Fatalf("the verification was cancelled (%v): the half-close after QUIT was taken for a disconnect", err)
	default:
	}
	c.expect(250)
	c.expect(250)
	c.expect(221)
	if list := h.queued(); len(list) != 1 {
		t.Fatalf("%d messages queued, want 1", len(list))
	}
}
