package e2e

import (
	"bytes"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

// TestBounceReachesSender: a 5xx at the next hop becomes an RFC 3464 report
// to the (local) sender, with the original header and never the body of a
// message that was sealed. (Relayed first, a message that every next hop
// refuses is refused to the client instead: TestRelayFirstRefusalGoesToClient.)
func TestBounceReachesSender(t *testing.T) {
	t.Parallel()
	transit, inner := startSink(t), startSink(t)
	transit.Reject(&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user here"})
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"}, outbound: transit.Addr, inbound: inner.Addr, spoolFirst: true})
	msg := message("alice@example.org", "nobody@example.net", "will bounce")
	mustSend(t, org.smtp, "alice@example.org", []string{"nobody@example.net"}, msg)

	dsn := waitMessages(t, inner, 1)[0]
	if dsn.From != "" || len(dsn.To) != 1 || dsn.To[0] != "alice@example.org" {
		t.Errorf("bounce envelope: from %q to %v", dsn.From, dsn.To)
	}
	d := string(dsn.Data)
	for _, want := range []string{"multipart/report", "report-type=delivery-status", "message/delivery-status",
		"Final-Recipient: rfc822; nobody@example.net", "Action: failed", "Status: 5.1.1", "no such user here", "Subject: will bounce"} {
		if !strings.Contains(d, want) {
			t.Errorf("bounce lacks %q:\n%s", want, d)
		}
	}
	if strings.Contains(d, secretLine) {
		t.Error("the bounce carries the body of a message that was to be encrypted")
	}

	// The bounce itself is never bounced: a null-sender message that fails
	// is dropped with a log line.
	inner.Reject(&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "mailbox gone"})
	mustSend(t, org.smtp, "alice@example.org", []string{"nobody2@example.net"}, message("alice@example.org", "nobody2@example.net", "second"))
	waitQueueEmpty(t, org)
	org.expectLog("not bouncing a message from the null sender")
}

// TestDeferThenLifetimeExpiry: 4xx defers with retries; past the queue
// lifetime the message bounces with a delivery-status report.
func TestDeferThenLifetimeExpiry(t *testing.T) {
	t.Parallel()
	transit, inner := startSink(t), startSink(t)
	transit.Reject(&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"})
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, outbound: transit.Addr, inbound: inner.Addr,
		extra: "[queue]\nlifetime = \"4s\"\nmin_backoff = \"1s\"\nmax_backoff = \"1s\"\n"})
	mustSend(t, org.smtp, "alice@example.org", []string{"carol@plain.test"}, message("alice@example.org", "carol@plain.test", "expires"))
	dsn := waitMessages(t, inner, 1)[0]
	d := string(dsn.Data)
	for _, want := range []string{"Action: failed", "Final-Recipient: rfc822; carol@plain.test", "Status: 5.4.7", "451 4.3.0 try later"} {
		if !strings.Contains(d, want) {
			t.Errorf("expiry report lacks %q:\n%s", want, d)
		}
	}
	if n := strings.Count(org.log.String(), "outcome=deferred"); n < 2 {
		t.Errorf("expected retries before the expiry, saw %d deferred attempts", n)
	}
}

// TestQueueCommandsWhileRunning: list, show, flush and delete against a
// running gateway (through its admin API), then recovery after 4xx.
func TestQueueCommandsWhileRunning(t *testing.T) {
	t.Parallel()
	transit, inner := startSink(t), startSink(t)
	transit.Reject(&smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 5}, Message: "busy"})
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, outbound: transit.Addr, inbound: inner.Addr,
		extra: "[queue]\nmin_backoff = \"1h\"\nmax_backoff = \"2h\"\n"})
	mustSend(t, org.smtp, "alice@example.org", []string{"carol@plain.test"}, message("alice@example.org", "carol@plain.test", "keep"))
	mustSend(t, org.smtp, "alice@example.org", []string{"dave@plain.test"}, message("alice@example.org", "dave@plain.test", "drop"))

	org.waitRecipient("carol@plain.test", "pending", "busy")
	org.waitRecipient("dave@plain.test", "pending", "busy")
	out := org.mustRun("queue", "list")
	if strings.Count(out, "busy") != 2 {
		t.Fatalf("queue list does not show two deferred messages with their error:\n%s", out)
	}
	ids := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		for _, rcpt := range []string{"carol@plain.test", "dave@plain.test"} {
			if strings.Contains(line, rcpt) {
				ids[rcpt] = strings.Fields(line)[0]
			}
		}
	}
	show, err := org.run("queue", "show", ids["carol@plain.test"])
	if err != nil || !strings.Contains(show, "Subject: keep") || strings.Contains(show, secretLine) {
		t.Errorf("queue show: %v\n%s", err, show)
	}
	if out, err := org.run("queue", "delete", ids["dave@plain.test"]); err != nil {
		t.Fatalf("queue delete: %v\n%s", err, out)
	}
	if out, err := org.run("queue", "show", "no-such-id"); err == nil {
		t.Errorf("queue show of an unknown id succeeded:\n%s", out)
	}

	// The next hop recovers; flush sends the remaining message at once
	// (its next attempt would be an hour away).
	transit.Reject(nil)
	if out, err := org.run("queue", "flush"); err != nil {
		t.Fatalf("queue flush: %v\n%s", err, out)
	}
	got := waitMessages(t, transit, 1)
	if len(got) != 1 || got[0].To[0] != "carol@plain.test" {
		t.Errorf("after flush the sink got %v", got)
	}
	waitQueueEmpty(t, org)
	if transit.Count() != 1 {
		t.Errorf("the deleted message was delivered")
	}
}

// TestRestartContinuesQueue: a message deferred before a SIGTERM is
// delivered by the restarted gateway.
func TestRestartContinuesQueue(t *testing.T) {
	t.Parallel()
	transit, inner := startSink(t), startSink(t)
	transit.Reject(&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"})
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"}, outbound: transit.Addr, inbound: inner.Addr})
	msg := message("alice@example.org", "bob@example.net", "restart")
	mustSend(t, org.smtp, "alice@example.org", []string{"bob@example.net"}, msg)
	org.waitRecipient("bob@example.net", "pending", "later")
	org.expectLog("outcome=deferred")
	org.stop()
	transit.Reject(nil)
	org.start()
	got := waitMessages(t, transit, 1)[0]
	plain, err := opensslDecrypt(t, got.Data, "example.net")
	if err != nil || !bytes.Equal(withoutTrace(plain), []byte(msg)) {
		t.Errorf("after restart: %v", err)
	}
}

func waitQueueEmpty(t *testing.T, g *gateway) {
	t.Helper()
	g.waitEmptyQueue()
	if out := g.mustRun("queue", "list"); !regexp.MustCompile(`(?m)^0 message\(s\)`).MatchString(out) {
		t.Fatalf("queue list after the queue emptied:\n%s", out)
	}
}

// TestDelayWarningAndMetrics: with queue.delay_warning set, a deferred
// message earns its sender one "delayed" report; the admin listener's
// /metrics counts the attempts.
func TestDelayWarningAndMetrics(t *testing.T) {
	t.Parallel()
	transit, inner := startSink(t), startSink(t)
	transit.Reject(&smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "later"})
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, outbound: transit.Addr, inbound: inner.Addr,
		extra: "[queue]\ndelay_warning = \"1s\"\nmin_backoff = \"1s\"\nmax_backoff = \"1s\"\n"})
	mustSend(t, org.smtp, "alice@example.org", []string{"carol@plain.test"}, message("alice@example.org", "carol@plain.test", "slow"))
	warn := waitMessages(t, inner, 1)[0]
	if d := string(warn.Data); !strings.Contains(d, "Action: delayed") || !strings.Contains(d, "Will-Retry-Until:") || !strings.Contains(d, "carol@plain.test") {
		t.Errorf("delay warning:\n%s", d)
	}
	resp, err := http.Get("http://" + org.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{`smimegate_delivery_attempts_total{outcome="deferred"}`, `smimegate_decisions_total{action="pass"}`, "smimegate_bounces_total 1", "smimegate_queue_messages"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// Only one warning per recipient: the next attempt, also past
	// delay_warning, makes none (one would be queued at the attempt, then
	// delivered).
	after := org.waitRecipient("carol@plain.test", "pending", "later").attempts("carol@plain.test")
	org.waitQueue("the queue did not retry", func(q []queued) bool {
		return len(q) == 1 && q[0].attempts("carol@plain.test") > after
	})
	if n := inner.Count(); n != 1 {
		t.Errorf("%d delay warnings, want 1", n)
	}
}
