package e2e

import (
	"strings"
	"testing"

	"github.com/emersion/go-smtp"

	"smimegate/test/postfixtest"
)

// Issue 17's delivery side: every outcome the courier reports is one
// smtp.Error, and where it came from decides what the sender and the
// client are told. A next hop's reply reaches them as that hop wrote it
// (its code, its enhanced code, its words): a bounce's Diagnostic-Code is
// "smtp;" and a relay-first client refused for good gets the hop's own
// code. An outcome the courier decided without a reply, here a message
// larger than the SIZE a real Postfix announces (RFC 1870 section 6), is
// the courier's: "X-Smimegate;" in the bounce, RFC 5321's catch-all 554
// with the RFC 3463 status to the client.

// bigMessage is a message of some 8 KB, larger than smallPostfix takes.
func bigMessage(from, to, subject string) string {
	return message(from, to, subject) + strings.Repeat("A line to make the message larger than the next hop takes.\r\n", 140)
}

// smallPostfix is a real Postfix that takes messages of at most 4000
// bytes, which it announces with EHLO's SIZE.
func smallPostfix(t *testing.T) *postfixtest.Instance {
	return postfixtest.Start(t, postfixtest.Options{MainCF: map[string]string{"message_size_limit": "4000"}})
}

func TestBounceDiagnosticsKeepTheirOrigin(t *testing.T) {
	t.Parallel()
	pf := smallPostfix(t)
	refusing, inner := startSink(t), startSink(t)
	refusing.Reject(&smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "content refused here"})
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, outbound: refusing.Addr, inbound: inner.Addr, spoolFirst: true,
		extra: "[relay.routes]\n\"small.test\" = \"" + pf.Addr + "\"\n\"refused.test\" = \"" + refusing.Addr + "\"\n"})
	mustSend(t, org.smtp, "alice@example.org", []string{"bob@refused.test", "carol@small.test"}, bigMessage("alice@example.org", "bob@refused.test", "two refusals"))

	var bob, carol string
	for _, m := range waitMessages(t, inner, 1) {
		if m.To[0] != "alice@example.org" {
			t.Fatalf("a message to %v at the inner server", m.To)
		}
		for _, group := range strings.Split(strings.ReplaceAll(string(m.Data), "\r\n ", " "), "\r\n\r\n") {
			switch {
			case strings.Contains(group, "Final-Recipient: rfc822; bob@refused.test"):
				bob = group
			case strings.Contains(group, "Final-Recipient: rfc822; carol@small.test"):
				carol = group
			}
		}
	}
	if !strings.Contains(bob, "Status: 5.7.1") || !strings.Contains(bob, "Diagnostic-Code: smtp; 550 5.7.1 content refused here") || !strings.Contains(bob, "Remote-MTA: dns; 127.0.0.1") {
		t.Errorf("the next hop's refusal is not reported as its reply:\n%s", bob)
	}
	if !strings.Contains(carol, "Status: 5.3.4") || !strings.Contains(carol, "Diagnostic-Code: X-Smimegate; message size") || !strings.Contains(carol, "exceeds size limit 4000") {
		t.Errorf("the courier's own refusal is not reported as ours:\n%s", carol)
	}
}

func TestRelayFirstRefusalCodesKeepTheirOrigin(t *testing.T) {
	t.Parallel()
	pf := smallPostfix(t)
	refusing, inner := startSink(t), startSink(t)
	refusing.Reject(&smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 2, 2}, Message: "mailbox full"})
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, outbound: refusing.Addr, inbound: inner.Addr,
		extra: "[relay.routes]\n\"small.test\" = \"" + pf.Addr + "\"\n"})

	err := send(org.smtp, "alice@example.org", []string{"bob@refused.test"}, message("alice@example.org", "bob@refused.test", "full"))
	if err == nil || !strings.HasPrefix(err.Error(), "552 ") || !strings.Contains(err.Error(), "5.2.2 Refused") || !strings.Contains(err.Error(), "mailbox full") {
		t.Errorf("client got %v, want the next hop's 552 5.2.2", err)
	}
	err = send(org.smtp, "alice@example.org", []string{"carol@small.test"}, bigMessage("alice@example.org", "carol@small.test", "too big"))
	if err == nil || !strings.HasPrefix(err.Error(), "554 ") || !strings.Contains(err.Error(), "5.3.4 Refused") || !strings.Contains(err.Error(), "exceeds size limit 4000") {
		t.Errorf("client got %v, want 554 5.3.4 with the courier's reason", err)
	}
	if n := refusing.Count(); n != 0 {
		t.Errorf("the refusing hop holds %d messages", n)
	}
	if m := org.metric(`smimegate_relay_first_total{outcome="refused"}`); !strings.HasSuffix(m, " 2") {
		t.Errorf("metrics: %q, want two refusals", m)
	}
	waitQueueEmpty(t, org)
}
