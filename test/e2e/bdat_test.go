package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// sendBDAT submits a message with BDAT (RFC 3030), in chunks of chunk
// octets, MAIL, RCPT and the chunks pipelined (RFC 2920), and returns the
// reply to BDAT LAST.
func sendBDAT(t *testing.T, addr, from string, to []string, msg []byte, chunk int) (int, string) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(waitTimeout))
	tp := textproto.NewConn(nc)
	if _, _, err := tp.ReadResponse(220); err != nil {
		t.Fatal(err)
	}
	tp.PrintfLine("EHLO bdat-client.example")
	if _, ehlo, err := tp.ReadResponse(250); err != nil || !strings.Contains(ehlo, "CHUNKING") {
		t.Fatalf("EHLO: %v\n%s", err, ehlo)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "MAIL FROM:<%s>\r\n", from)
	for _, r := range to {
		fmt.Fprintf(&b, "RCPT TO:<%s>\r\n", r)
	}
	chunks := 0
	for rest := msg; ; chunks++ {
		n := min(chunk, len(rest))
		last := ""
		if n == len(rest) {
			last = " LAST"
		}
		fmt.Fprintf(&b, "BDAT %d%s\r\n", n, last)
		b.Write(rest[:n])
		rest = rest[n:]
		if last != "" {
			break
		}
	}
	if _, err := nc.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	for range 1 + len(to) + chunks {
		if code, text, err := tp.ReadResponse(250); err != nil {
			t.Fatalf("before BDAT LAST: %d %s %v", code, text, err)
		}
	}
	code, text, _ := tp.ReadResponse(0)
	tp.PrintfLine("QUIT")
	return code, text
}

// TestBDATEncryptedToUsCommittedBefore250 is TestRefusedDecryptedMailGives
// NoOracle with the message in BDAT chunks from an untrusted client: valid
// and invalid padding both get the 250 of BDAT LAST only once committed
// (never relayed first, which would decrypt while the client waits), both
// end in the quarantine, neither produces a report.
func TestBDATEncryptedToUsCommittedBefore250(t *testing.T) {
	t.Parallel()
	transit, bob := startSink(t), startSink(t)
	bob.Reject(&gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"})
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]"})

	plain := message("eve@elsewhere.test", "nobody@example.net", "oracle probe over BDAT")
	valid := opensslEncrypt(t, []byte(plain), "example.net", "-aes-256-cbc")
	invalid := tamperLastBlock(valid)
	replies := map[string]string{}
	for name, m := range map[string][]byte{"valid": valid, "invalid": invalid} {
		code, text := sendBDAT(t, netgw.smtp, "eve@elsewhere.test", []string{"nobody@example.net"}, m, 777)
		replies[name] = fmt.Sprint(code, " ", strings.Fields(text)[0])
	}
	if replies["valid"] != "250 2.0.0" || replies["invalid"] != "250 2.0.0" {
		t.Fatalf("the client's replies to BDAT LAST differ with the padding: valid %s, invalid %s", replies["valid"], replies["invalid"])
	}
	netgw.waitRun("both messages quarantined", func(out string) bool { return strings.Contains(out, "2 message(s)") }, "quarantine", "list")
	if m := httpGet(t, "http://"+netgw.admin+"/metrics"); !strings.Contains(m, `smimegate_relay_first_total{outcome="encrypted_to_us"} 2`) {
		t.Errorf("mail encrypted to us in BDAT chunks was not committed before its 250:\n%s", grepLines(m, "relay_first"))
	}
	if n := transit.Count(); n != 0 {
		t.Fatalf("%d report(s) went to the sender", n)
	}
	if !strings.Contains(netgw.log.String(), "verb=BDAT") {
		t.Errorf("the gateway's log does not show the messages came by BDAT:\n%s", netgw.log.String())
	}
}

// TestBDATBetweenGateways: one smimegate's courier hands the sealed
// message to the partner's smimegate, which now offers CHUNKING, with
// BDAT; the partner opens it and delivers the original byte for byte.
func TestBDATBetweenGateways(t *testing.T) {
	t.Parallel()
	transit, bob, orgInner := startSink(t), startSink(t), startSink(t)
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, partners: []string{"example.org"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]"})
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"}, outbound: netgw.smtp, inbound: orgInner.Addr})

	msg := message("alice@example.org", "bob@example.net", "Across by BDAT")
	mustSend(t, org.smtp, "alice@example.org", []string{"bob@example.net"}, msg)
	got := waitMessages(t, bob, 1)[0]
	if !bytes.Equal(withoutTrace(got.Data), []byte(msg)) {
		t.Errorf("bob received\n%q\nwant\n%q", got.Data, msg)
	}
	netgw.waitLog("verb=BDAT")
	if !strings.Contains(org.log.String(), "smtpd: message accepted") || !strings.Contains(org.log.String(), "verb=DATA") {
		t.Errorf("the first gateway did not log its DATA submission:\n%s", org.log.String())
	}
}

// TestBDATRelayFirst: a message in BDAT chunks is relayed first exactly as
// one by DATA: the 250 of BDAT LAST comes after the next hop's, with the
// sealed copy already there and nothing in the queue; when the next hop
// refuses for good, the client's BDAT LAST gets that refusal.
func TestBDATRelayFirst(t *testing.T) {
	t.Parallel()
	transit, inner := startSink(t), startSink(t)
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"}, outbound: transit.Addr, inbound: inner.Addr})
	msg := []byte(message("alice@example.org", "bob@example.net", "relayed first over BDAT"))
	if code, text := sendBDAT(t, org.smtp, "alice@example.org", []string{"bob@example.net"}, msg, 100); code != 250 {
		t.Fatalf("BDAT LAST: %d %s", code, text)
	}
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

	transit.Reject(&gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user here"})
	code, text := sendBDAT(t, org.smtp, "alice@example.org", []string{"nobody@example.net"}, []byte(message("alice@example.org", "nobody@example.net", "refused")), 100)
	if code != 550 || !strings.Contains(text, "5.1.1") || !strings.Contains(text, "no such user here") {
		t.Fatalf("BDAT LAST got %d %s, want the next hop's 550 5.1.1", code, text)
	}
	waitQueueEmpty(t, org)
}
