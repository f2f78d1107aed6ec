package e2e

import (
	"io"
	"net"
	"net/http"
	netsmtp "net/smtp"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// metric returns the /metrics line of a sample (name with its labels), or
// "" when the gateway does not show it.
func (g *gateway) metric(sample string) string {
	g.t.Helper()
	resp, err := http.Get("http://" + g.admin + "/metrics")
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, sample+" ") {
			return line
		}
	}
	return ""
}

// queueFiles lists what is in the spool's queue directory.
func (g *gateway) queueFiles() []string {
	g.t.Helper()
	ents, err := os.ReadDir(filepath.Join(g.dir, "state", "queue"))
	if err != nil {
		g.t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestRelayFirstAnswersAfterTheNextHop: with queue.relay_first (the
// default) the client's 250 comes after the next hop's, so the sealed copy is
// there the moment the client has its reply, and nothing went to the spool.
func TestRelayFirstAnswersAfterTheNextHop(t *testing.T) {
	t.Parallel()
	transit, inner := startSink(t), startSink(t)
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"}, outbound: transit.Addr, inbound: inner.Addr})
	mustSend(t, org.smtp, "alice@example.org", []string{"bob@example.net"}, message("alice@example.org", "bob@example.net", "relayed first"))
	got := transit.Messages()
	if len(got) != 1 {
		t.Fatalf("the next hop holds %d messages when the client has its 250, want 1", len(got))
	}
	if !strings.Contains(string(got[0].Data), "application/pkcs7-mime") || strings.Contains(string(got[0].Data), secretLine) {
		t.Errorf("relayed first, but not sealed:\n%s", got[0].Data)
	}
	if m := org.metric(`smimegate_relay_first_total{outcome="relayed"}`); !strings.HasSuffix(m, " 1") {
		t.Errorf("metrics: %q, want one message relayed first", m)
	}
	if files := org.queueFiles(); len(files) != 0 {
		t.Errorf("a message relayed first left files in the queue: %v", files)
	}
}

// TestRelayFirstRefusalGoesToClient: when every next hop refuses the message
// for good, the client gets the refusal (with the next hop's words) instead
// of a 250 and a bounce, and nothing stays queued.
func TestRelayFirstRefusalGoesToClient(t *testing.T) {
	t.Parallel()
	transit, inner := startSink(t), startSink(t)
	transit.Reject(&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user here"})
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"}, outbound: transit.Addr, inbound: inner.Addr})
	err := send(org.smtp, "alice@example.org", []string{"nobody@example.net"}, message("alice@example.org", "nobody@example.net", "refused"))
	if err == nil || !strings.Contains(err.Error(), "550") || !strings.Contains(err.Error(), "5.1.1") || !strings.Contains(err.Error(), "no such user here") {
		t.Fatalf("client got %v, want the next hop's 550 5.1.1", err)
	}
	if m := org.metric(`smimegate_relay_first_total{outcome="refused"}`); !strings.HasSuffix(m, " 1") {
		t.Errorf("metrics: %q, want one refusal", m)
	}
	if m := org.metric("smimegate_bounces_total"); !strings.HasSuffix(m, " 0") {
		t.Errorf("metrics: %q, want no bounce", m)
	}
	waitQueueEmpty(t, org)
}

// TestRelayFirstPartialDeliveryQueuesTheBounce: one recipient delivered, the
// other refused by its own next hop: the client gets its 250, the message
// goes to the spool for the bounce, and the sender gets a report for the
// refused recipient only.
func TestRelayFirstPartialDeliveryQueuesTheBounce(t *testing.T) {
	t.Parallel()
	plain, partner, inner := startSink(t), startSink(t), startSink(t)
	partner.Reject(&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user here"})
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"}, outbound: plain.Addr, inbound: inner.Addr,
		extra: "[relay.routes]\n\"example.net\" = \"" + partner.Addr + "\"\n"})
	mustSend(t, org.smtp, "alice@example.org", []string{"carol@plain.test", "nobody@example.net"},
		message("alice@example.org", "carol@plain.test", "half refused"))
	if got := plain.Messages(); len(got) != 1 || len(got[0].To) != 1 || got[0].To[0] != "carol@plain.test" {
		t.Fatalf("the plain next hop holds %v when the client has its 250", got)
	}
	dsn := waitMessages(t, inner, 1)[0]
	d := string(dsn.Data)
	if dsn.To[0] != "alice@example.org" || !strings.Contains(d, "Final-Recipient: rfc822; nobody@example.net") || strings.Contains(d, "Final-Recipient: rfc822; carol@plain.test") {
		t.Errorf("report to %v:\n%s", dsn.To, d)
	}
	if m := org.metric(`smimegate_relay_first_total{outcome="spooled"}`); !strings.HasSuffix(m, " 1") {
		t.Errorf("metrics: %q, want one message spooled", m)
	}
	waitQueueEmpty(t, org)
}

// TestRelayFirstDeferredIsQueued: a 4xx from the next hop: the client still
// gets its 250 (the message is in the spool by then) and the queue retries.
func TestRelayFirstDeferredIsQueued(t *testing.T) {
	t.Parallel()
	transit, inner := startSink(t), startSink(t)
	transit.Reject(&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"})
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"}, outbound: transit.Addr, inbound: inner.Addr,
		extra: "[queue]\nmin_backoff = \"1h\"\nmax_backoff = \"1h\"\n"})
	mustSend(t, org.smtp, "alice@example.org", []string{"bob@example.net"}, message("alice@example.org", "bob@example.net", "deferred"))
	out, err := org.run("queue", "list")
	if err != nil || !regexp.MustCompile(`(?m)^1 message\(s\)`).MatchString(out) || !strings.Contains(out, "bob@example.net") {
		t.Fatalf("after the 250 the message must be queued: %v\n%s", err, out)
	}
	transit.Reject(nil)
	if _, err := org.run("queue", "flush"); err != nil {
		t.Fatal(err)
	}
	got := waitMessages(t, transit, 1)
	if !strings.Contains(string(got[0].Data), "application/pkcs7-mime") {
		t.Errorf("delivered from the queue, but not sealed:\n%s", got[0].Data)
	}
	waitQueueEmpty(t, org)
}

// TestRelayFirstGivesUpOnSilentNextHop: a next hop that accepts the
// connection and never greets holds the client only for
// queue.relay_first_timeout; the message is then queued, and the 250 follows.
// The next message for that hop is not relayed first at all for a while.
func TestRelayFirstGivesUpOnSilentNextHop(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // silent until the test ends
		}
	}()
	inner := startSink(t)
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, outbound: l.Addr().String(), inbound: inner.Addr,
		extra: "[queue]\nrelay_first_timeout = \"1s\"\nmin_backoff = \"1h\"\nmax_backoff = \"1h\"\n"})
	start := time.Now()
	mustSend(t, org.smtp, "alice@example.org", []string{"carol@plain.test"}, message("alice@example.org", "carol@plain.test", "silent hop"))
	if waited := time.Since(start); waited > 20*time.Second {
		t.Errorf("the client waited %v for its 250", waited)
	}
	out, err := org.run("queue", "list")
	if err != nil || !strings.Contains(out, "carol@plain.test") {
		t.Fatalf("the message must be queued: %v\n%s", err, out)
	}
	// The next message for that hop is queued at once: the hop did not
	// answer at its last attempt, and a client should not wait for it again.
	mustSend(t, org.smtp, "alice@example.org", []string{"dave@plain.test"}, message("alice@example.org", "dave@plain.test", "silent hop again"))
	if m := org.metric(`smimegate_relay_first_total{outcome="skipped"}`); !strings.HasSuffix(m, " 1") {
		t.Errorf("metrics: %q, want the second message queued without a relay-first attempt", m)
	}
}

// TestSpoolFirstDeliversFromTheQueue: with queue.relay_first = false every
// message is committed before its 250 and delivered by the queue's workers,
// sealed as ever; nothing is relayed first.
func TestSpoolFirstDeliversFromTheQueue(t *testing.T) {
	t.Parallel()
	transit, inner := startSink(t), startSink(t)
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"}, outbound: transit.Addr, inbound: inner.Addr, spoolFirst: true})
	mustSend(t, org.smtp, "alice@example.org", []string{"bob@example.net"}, message("alice@example.org", "bob@example.net", "spooled first"))
	got := waitMessages(t, transit, 1)
	if !strings.Contains(string(got[0].Data), "application/pkcs7-mime") || strings.Contains(string(got[0].Data), secretLine) {
		t.Errorf("delivered from the queue, but not sealed:\n%s", got[0].Data)
	}
	if m := org.metric(`smimegate_relay_first_total{outcome="relayed"}`); m != "" {
		t.Errorf("relay_first = false, yet %s", m)
	}
	if m := org.metric("smimegate_messages_received_total"); !strings.HasSuffix(m, " 1") {
		t.Errorf("metrics: %q, want one message received", m)
	}
	waitQueueEmpty(t, org)
}

// TestLargeMessageIsSpooledFirst: a message over queue.relay_first_max_bytes
// is not held in memory: it goes to the spool before its 250 and is
// delivered from there, byte for byte inside the encryption.
func TestLargeMessageIsSpooledFirst(t *testing.T) {
	t.Parallel()
	transit, inner := startSink(t), startSink(t)
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"}, outbound: transit.Addr, inbound: inner.Addr,
		extra: "[queue]\nrelay_first_max_bytes = 65536\n"})
	msg := message("alice@example.org", "bob@example.net", "large", "X-Filler: "+strings.Repeat("x", 900)) +
		strings.Repeat("0123456789 0123456789 0123456789 0123456789 0123456789 0123456789\r\n", 2000)
	mustSend(t, org.smtp, "alice@example.org", []string{"bob@example.net"}, msg)
	got := waitMessages(t, transit, 1)
	plain, err := opensslDecrypt(t, got[0].Data, "example.net")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(withoutTrace(crlf(plain))), msg) {
		t.Errorf("the large message did not come back byte for byte (%d bytes, want %d)", len(plain), len(msg))
	}
	if m := org.metric(`smimegate_relay_first_total{outcome="relayed"}`); m != "" {
		t.Errorf("a message over relay_first_max_bytes was relayed first: %s", m)
	}
	waitQueueEmpty(t, org)
}

// TestSIGTERMLetsRelayFirstFinish: SIGTERM while a relay-first delivery
// waits for the next hop's reply to the final dot: the delivery finishes
// within the shutdown grace, the client gets its 250, and nothing is left
// queued to be sent again (cutting the attempt would have made a possible
// duplicate of it).
func TestSIGTERMLetsRelayFirstFinish(t *testing.T) {
	t.Parallel()
	transit, inner := startSink(t), startSink(t)
	transit.Delay(2 * time.Second)
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"}, outbound: transit.Addr, inbound: inner.Addr})
	sent := make(chan error, 1)
	go func() {
		// The reply to the message is what counts; the QUIT after it gets
		// the 421 of a server shutting down.
		c, err := netsmtp.Dial(org.smtp)
		if err != nil {
			sent <- err
			return
		}
		defer c.Close()
		if err := c.Mail("alice@example.org"); err != nil {
			sent <- err
			return
		}
		if err := c.Rcpt("bob@example.net"); err != nil {
			sent <- err
			return
		}
		w, err := c.Data()
		if err != nil {
			sent <- err
			return
		}
		io.WriteString(w, message("alice@example.org", "bob@example.net", "in flight at SIGTERM"))
		sent <- w.Close()
	}()
	waitMessages(t, transit, 1) // the content is there; the reply is pending
	org.stop()
	if err := <-sent; err != nil {
		t.Fatalf("client: %v", err)
	}
	if files := org.queueFiles(); len(files) != 0 {
		t.Errorf("after the shutdown the queue holds %v: the delivery was cut and will be repeated", files)
	}
	if strings.Contains(org.log.String(), "duplicate") {
		t.Errorf("the attempt was cut:\n%s", org.log.String())
	}
}
