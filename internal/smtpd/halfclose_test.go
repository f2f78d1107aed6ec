package smtpd

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
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
	cert, key, pool := testTLS(t)
	for _, overTLS := range []bool{false, true} {
		v := newVerifier()
		h := newHarness(t, fmt.Sprintf("tls_cert = %q\ntls_key = %q", cert, key), Options{VerifyRecipient: v.verify})
		c := h.session(untrustedIP)
		if overTLS {
			c.startTLS(pool)
			c.cmd("EHLO client.example.net", 250)
		}
		msg := message("half-close")
		c.send("MAIL FROM:<a@example.net>\r\nRCPT TO:<block@example.org>\r\n" + fmt.Sprintf("BDAT %d LAST\r\n", len(msg)) + msg + "QUIT\r\n")
		// In clear a TCP half-close; under TLS a close_notify alert
		// (RFC 8446 section 6.1), which is how a TLS client says it
		// sends no more while it still reads.
		switch conn := c.conn.(type) {
		case *net.TCPConn:
			if err := conn.CloseWrite(); err != nil {
				t.Fatal(err)
			}
		case *tls.Conn:
			if err := conn.CloseWrite(); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("the test's connection is a %T", c.conn)
		}
		c.expect(250)
		v.waitStarted(t)
		// Let the watcher see the end of the stream, then answer.
		time.Sleep(50 * time.Millisecond)
		close(v.release)
		select {
		case err := <-v.ended:
			t.Fatalf("tls=%v: the verification was cancelled (%v): the half-close after QUIT was taken for a disconnect", overTLS, err)
		default:
		}
		c.expect(250)
		c.expect(250)
		c.expect(221)
		if list := h.queued(); len(list) != 1 {
			t.Fatalf("tls=%v: %d messages queued, want 1", overTLS, len(list))
		}
	}
}

// FuzzEndsInQuit: endsInQuit agrees with a plain reading of its rule (the
// unread input's last line, CRLF-terminated, is QUIT in any case) for any
// input, and never panics, whatever the buffer holds.
func FuzzEndsInQuit(f *testing.F) {
	for _, s := range []string{"QUIT\r\n", "quit\r\n", "RCPT TO:<a@b>\r\nQUIT\r\n", "QUIT", "QUIT\n", "xQUIT\r\n", "\r\n", "", "BDAT 4 LAST\r\nQUITQUIT\r\n", "QUIT\r\n\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(in), max(16, len(in)))
		if len(in) > 0 {
			if _, err := br.Peek(len(in)); err != nil {
				t.Fatal(err)
			}
		}
		want := false
		if s, ok := strings.CutSuffix(string(in), "\r\n"); ok {
			lines := strings.Split(s, "\n")
			want = strings.EqualFold(lines[len(lines)-1], "QUIT")
		}
		if got := endsInQuit(br); got != want {
			t.Errorf("endsInQuit(%q) = %v, want %v", in, got, want)
		}
		if br.Buffered() != len(in) {
			t.Errorf("endsInQuit consumed input: %d of %d octets left", br.Buffered(), len(in))
		}
	})
}
