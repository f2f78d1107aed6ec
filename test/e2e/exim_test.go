package e2e

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	gosmtp "github.com/emersion/go-smtp"

	"smimegate/test/eximtest"
)

// eximLineLimit is the longest line the Exim transport is let pass
// (message_linelength_limit, whose default is RFC 5322 section 2.1.1's 998
// octets): above smimegate's max_line_length, so that it is smimegate's
// limit that the long-line message comes near.
const eximLineLimit = 20000

// gatewayMaxLine is smimegate's default smtp.max_line_length, the longest
// line the long-line message may carry (CRLF excluded).
const gatewayMaxLine = 10000

// eximMessage builds a message as a user agent hands it to Exim: every
// field Exim would otherwise add for a local submission (Date, Message-ID)
// is there, so that what the last hop gets can be compared octet for octet
// with what Exim was given; lines end in LF, as on a command line.
func eximMessage(from, to, subject string, extraHeader string, body string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\nTo: <%s>\nSubject: %s\nDate: Tue, 01 Dec 2026 12:00:00 +0000\nMessage-ID: <%s@exim.example.org>\n", from, to, subject, strings.ReplaceAll(strings.ToLower(subject), " ", "-"))
	b.WriteString(extraHeader)
	b.WriteString("\n")
	b.WriteString(body)
	return []byte(b.String())
}

// longLines returns a body of about size octets whose lines are, in turn,
// of RFC 5322's 998 octets, of smimegate's limit exactly, and one short of
// it, each ending in LF.
func longLines(size int) string {
	var b strings.Builder
	widths := []int{998, gatewayMaxLine, gatewayMaxLine - 1}
	for i := 0; b.Len() < size; i++ {
		w := widths[i%len(widths)]
		c := byte('a' + i%26)
		b.WriteString(strings.Repeat(string(c), w))
		b.WriteString("\n")
	}
	return b.String()
}

// TestEximDeliversWithBDAT: a real Exim, the BDAT client Postfix is not
// (Exim's smtp transport uses CHUNKING whenever the server offers it),
// takes messages of several shapes on its standard input and delivers
// them into smimegate as a smarthost. Each goes in by BDAT (Exim's
// transcript and smimegate's log both say so), is sealed for the partner,
// opened by the partner's smimegate and reaches the partner's inside
// server octet for octet as Exim was given it, Exim's Received field
// aside. A message larger than Exim's output buffer goes in several
// chunks, checked across chunk boundaries by smimegate's strict reader.
func TestEximDeliversWithBDAT(t *testing.T) {
	t.Parallel()
	transit, bob, orgInner := startSink(t), startSink(t), startSink(t)
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, partners: []string{"example.org"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]"})
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"}, outbound: netgw.smtp, inbound: orgInner.Addr})
	exim := eximtest.Start(t, eximtest.Options{Smarthost: org.smtp, QualifyDomain: "example.org",
		Transport: fmt.Sprintf("  message_linelength_limit = %d", eximLineLimit)})

	const from, to = "alice@example.org", "bob@example.net"
	dots := ".\n..\n...\n.leading dot\n. space after a dot\n..two leading dots\nthe next line is a lone dot\n.\n"
	shapes := []struct {
		name   string
		msg    []byte
		chunks int
	}{
		{"small", eximMessage(from, to, "Small", "", secretLine+"\n"), 1},
		{"long lines", eximMessage(from, to, "Long lines", "", longLines(200<<10)), 2},
		{"8-bit", eximMessage(from, to, "Eight bit", "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n",
			"Gr\u00fc\u00dfe aus K\u00f6ln, na\u00efve caf\u00e9 \u2603 \u65e5\u672c\u8a9e\n\xff\xfe are not UTF-8 but are 8-bit octets all the same\n"), 1},
		{"dots", eximMessage(from, to, "Dots", "", dots+".\n"), 1},
		{"a megabyte", eximMessage(from, to, "A megabyte", "", strings.Repeat("a line of seventy-two octets, sixteen thousand times, a megabyte in all\n", 16<<10)), 2},
	}
	for i, s := range shapes {
		sub, err := exim.Submit(from, []string{to}, s.msg)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if !strings.Contains(sub.Delivery(), "=> "+to+" ") {
			t.Fatalf("%s: Exim did not deliver the message:\n%s", s.name, lastLines(sub.Delivery(), 40))
		}
		sizes, last := sub.Chunks()
		if len(sizes) != s.chunks || !last || sub.SentDATA() {
			t.Errorf("%s: Exim sent BDAT chunks %v (LAST %v, DATA %v), want %d ending in LAST and no DATA:\n%s",
				s.name, sizes, last, sub.SentDATA(), s.chunks, lastLines(sub.Transcript, 40))
		}
		t.Logf("%s: %d octets given to Exim, BDAT chunks %v", s.name, len(s.msg), sizes)

		got := waitMessages(t, bob, i+1)[i]
		if got.From != from || len(got.To) != 1 || got.To[0] != to {
			t.Errorf("%s: bob's server got the envelope %s -> %v", s.name, got.From, got.To)
		}
		// What Exim sent begins with the Received field it added; the
		// gateways' own trace fields are above it.
		at := -1
		if by := bytes.Index(got.Data, []byte(" by "+exim.Hostname+" with local")); by >= 0 {
			at = bytes.LastIndex(got.Data[:by], []byte("Received: "))
		}
		if at < 0 {
			t.Errorf("%s: Exim's Received field is not in the message:\n%s", s.name, header(got.Data))
			continue
		}
		sent := got.Data[at:]
		if total := sum(sizes); len(sent) != total {
			t.Errorf("%s: bob's server got %d octets from Exim's Received field on, Exim's chunks held %d", s.name, len(sent), total)
		}
		if len(sizes) == 2 {
			// Exim sends the header section as one chunk and the body as
			// the next, so the strict reader sees the header's end at a
			// chunk boundary.
			if h := len(header(sent)) + len("\r\n"); sizes[0] != h {
				t.Errorf("%s: the first chunk (%d octets) is not the header section and its empty line (%d octets)", s.name, sizes[0], h)
			}
		}
		want := crlf(s.msg)
		if body := withoutTrace(sent); !bytes.Equal(body, want) {
			t.Errorf("%s: bob's server got %d octets that differ from the %d Exim was given (first difference at %d)",
				s.name, len(body), len(want), firstDifference(body, want))
		}
	}
	// The log reaches the test through a pipe, a moment after the reply
	// reaches Exim.
	org.waitFor(fmt.Sprintf("smimegate's log shows all %d messages from Exim taken by BDAT", len(shapes)), func() (bool, error) {
		return strings.Count(org.log.String(), "verb=BDAT") == len(shapes), nil
	})
	if n := strings.Count(org.log.String(), "verb=DATA"); n != 0 {
		t.Errorf("smimegate's log shows %d messages from Exim taken by DATA", n)
	}
	// Sealed by the first gateway, opened by the second, each of them.
	if m := org.metric(`smimegate_decisions_total{action="encrypt"}`); m != fmt.Sprintf(`smimegate_decisions_total{action="encrypt"} %d`, len(shapes)) {
		t.Errorf("the first gateway's encrypt decisions: %q, want %d", m, len(shapes))
	}
	if m := netgw.metric(`smimegate_decisions_total{action="decrypt"}`); m != fmt.Sprintf(`smimegate_decisions_total{action="decrypt"} %d`, len(shapes)) {
		t.Errorf("the partner's decrypt decisions: %q, want %d", m, len(shapes))
	}
	for _, m := range transit.Messages() {
		t.Errorf("a message went to the transit sink (a report?): %s -> %v", m.From, m.To)
	}
	// Exim's own record: every delivery line ("=>") of a message sent
	// with CHUNKING carries its K flag, and nothing is left in its queue.
	log := exim.MainLog()
	if n := strings.Count(log, " => "); n != len(shapes) {
		t.Errorf("Exim's main log has %d deliveries, want %d:\n%s", n, len(shapes), log)
	}
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, " => ") && !strings.Contains(line, " K ") {
			t.Errorf("Exim's delivery line has no K (CHUNKING) flag: %s", line)
		}
	}
	if n, err := exim.QueueCount(); err != nil || n != 0 {
		t.Errorf("Exim's queue holds %d messages (%v), want none", n, err)
	}
}

// TestEximBouncesRefusedRecipient: smimegate refuses one of two recipients
// at RCPT (smtp.verify_recipients asks the inside server, which does not
// know it); Exim delivers to the other by BDAT and bounces the refused one
// to the sender, whose bounce comes back through smimegate to the inside
// server: nothing is lost and nothing waits in a queue.
func TestEximBouncesRefusedRecipient(t *testing.T) {
	t.Parallel()
	transit, inner := startSink(t), startSink(t)
	inner.RejectRcpt(func(addr string) *gosmtp.SMTPError {
		if strings.HasPrefix(addr, "nobody@") {
			return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user here"}
		}
		return nil
	})
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, outbound: transit.Addr, inbound: inner.Addr,
		smtpExtra: "verify_recipients = true\n"})
	exim := eximtest.Start(t, eximtest.Options{Smarthost: org.smtp, QualifyDomain: "example.org"})

	msg := eximMessage("alice@example.org", "carol@example.org", "One known one unknown", "", secretLine+"\n")
	sub, err := exim.Submit("alice@example.org", []string{"carol@example.org", "nobody@example.org"}, msg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sub.Transcript, "SMTP<< 550 5.1.1") {
		t.Errorf("smimegate did not refuse nobody@example.org at RCPT with 550 5.1.1:\n%s", lastLines(sub.Transcript, 40))
	}
	if sizes, last := sub.Chunks(); len(sizes) == 0 || !last {
		t.Errorf("Exim did not deliver to the known recipient by BDAT:\n%s", lastLines(sub.Transcript, 40))
	}

	// carol's copy and alice's bounce, in either order.
	msgs := waitMessages(t, inner, 2)
	var delivered, bounced bool
	for _, m := range msgs {
		switch {
		case len(m.To) == 1 && m.To[0] == "carol@example.org" && m.From == "alice@example.org":
			delivered = bytes.Equal(withoutTrace(m.Data), crlf(msg))
			if !delivered {
				t.Errorf("carol got a message that differs from what Exim was given:\n%s", m.Data)
			}
		case len(m.To) == 1 && m.To[0] == "alice@example.org" && m.From == "":
			bounced = strings.Contains(string(m.Data), "nobody@example.org") && strings.Contains(string(m.Data), "no such user here")
			if !bounced {
				t.Errorf("alice's bounce does not name the refused recipient and the reason:\n%s", m.Data)
			}
		default:
			t.Errorf("unexpected message %s -> %v", m.From, m.To)
		}
	}
	if !delivered || !bounced {
		t.Errorf("delivered to carol %v, bounce to alice %v; want both", delivered, bounced)
	}
	if n := inner.Count(); n != 2 {
		t.Errorf("the inside server got %d messages, want 2", n)
	}
	if n, err := exim.QueueCount(); err != nil || n != 0 {
		t.Errorf("Exim's queue holds %d messages (%v), want none", n, err)
	}
	if !strings.Contains(exim.MainLog(), "** nobody@example.org") {
		t.Errorf("Exim's log has no failure line for nobody@example.org:\n%s", exim.MainLog())
	}
	waitQueueEmpty(t, org)
}

// TestEximBouncesOverlongLine: a line one octet longer than smimegate's
// max_line_length, in the body chunk Exim pipelines after the header
// chunk, is refused at BDAT LAST (smimegate reads the chunk to its end and
// refuses the transaction, RFC 3030 section 3); Exim bounces the message
// to its sender, the bounce comes back through smimegate, nothing reaches
// the partner and nothing is left in either queue.
func TestEximBouncesOverlongLine(t *testing.T) {
	t.Parallel()
	transit, inner := startSink(t), startSink(t)
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"}, outbound: transit.Addr, inbound: inner.Addr})
	exim := eximtest.Start(t, eximtest.Options{Smarthost: org.smtp, QualifyDomain: "example.org",
		Transport: fmt.Sprintf("  message_linelength_limit = %d", eximLineLimit)})

	body := longLines(64<<10) + strings.Repeat("y", gatewayMaxLine+1) + "\n"
	msg := eximMessage("alice@example.org", "bob@example.net", "One line too long", "", body)
	sub, err := exim.Submit("alice@example.org", []string{"bob@example.net"}, msg)
	if err != nil {
		t.Fatal(err)
	}
	if sizes, last := sub.Chunks(); len(sizes) != 2 || !last {
		t.Errorf("Exim sent BDAT chunks %v (LAST %v), want a header chunk and a body chunk:\n%s", sizes, last, lastLines(sub.Transcript, 40))
	}
	if !strings.Contains(sub.Delivery(), "SMTP<< 550 5.6.0 ") {
		t.Errorf("smimegate did not refuse the over-long line at BDAT LAST with 550 5.6.0:\n%s", lastLines(sub.Delivery(), 40))
	}
	bounce := waitMessages(t, inner, 1)[0]
	if bounce.From != "" || len(bounce.To) != 1 || bounce.To[0] != "alice@example.org" {
		t.Errorf("the bounce went %q -> %v, want <> -> alice@example.org", bounce.From, bounce.To)
	}
	if !strings.Contains(string(bounce.Data), "bob@example.net") {
		t.Errorf("the bounce does not name the recipient:\n%s", bounce.Data)
	}
	if n := transit.Count(); n != 0 {
		t.Errorf("%d message(s) reached the partner's side", n)
	}
	if n, err := exim.QueueCount(); err != nil || n != 0 {
		t.Errorf("Exim's queue holds %d messages (%v), want none", n, err)
	}
	if !strings.Contains(exim.MainLog(), "** bob@example.net") {
		t.Errorf("Exim's log has no failure line for bob@example.net:\n%s", exim.MainLog())
	}
	refused := regexp.MustCompile(`smtpd: message refused.*verb=BDAT`)
	org.waitFor("smimegate's log shows the BDAT refusal", func() (bool, error) { return refused.MatchString(org.log.String()), nil })
	waitQueueEmpty(t, org)
}

// TestEximBDATOverSTARTTLS: Exim requires STARTTLS and verifies
// smimegate's certificate (its name too, here the address literal in the
// certificate's subjectAltName); the message then goes by BDAT inside TLS,
// to a local recipient that smtp.verify_recipients checks while Exim's
// header chunk is already pipelined behind its RCPT, and to a partner,
// sealed as in the clear. (Under TLS Exim sends QUIT only after the reply
// to BDAT LAST, so the half-close after a pipelined QUIT is the clear-text
// tests' and TestVerifyRecipientHalfClose's.)
func TestEximBDATOverSTARTTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	out, err := exec.Command("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=gw.example.org", "-addext", "subjectAltName=DNS:gw.example.org,IP:127.0.0.1").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl req: %v\n%s", err, out)
	}
	transit, inner := startSink(t), startSink(t)
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"}, outbound: transit.Addr, inbound: inner.Addr,
		smtpExtra: fmt.Sprintf("tls_cert = %q\ntls_key = %q\nverify_recipients = true\n", crt, key)})
	exim := eximtest.Start(t, eximtest.Options{Smarthost: org.smtp, QualifyDomain: "example.org", TLSCAFile: crt})

	// carol, in the local domain, is verified with the inside server while
	// Exim's pipelined header chunk waits.
	// Lines of RFC 5322's 998 octets: the inside sink's DATA takes no
	// longer ones, and a message to a recipient in the spool goes to it by
	// DATA.
	msg := eximMessage("alice@example.org", "bob@example.net", "BDAT inside TLS", "", strings.Repeat(strings.Repeat("a", 998)+"\n", 40))
	sub, err := exim.Submit("alice@example.org", []string{"carol@example.org", "bob@example.net"}, msg)
	if err != nil {
		t.Fatal(err)
	}
	if sizes, last := sub.Chunks(); len(sizes) != 2 || !last {
		t.Errorf("Exim sent BDAT chunks %v (LAST %v), want two:\n%s", sizes, last, lastLines(sub.Delivery(), 40))
	}
	if got := waitMessages(t, inner, 1)[0]; !bytes.Equal(withoutTrace(got.Data), crlf(msg)) {
		t.Errorf("carol got %d octets that differ from the %d Exim was given:\n%s", len(withoutTrace(got.Data)), len(msg), header(got.Data))
	}
	got := waitMessages(t, transit, 1)[0]
	if !strings.Contains(string(got.Data), "application/pkcs7-mime") || strings.Contains(string(got.Data), "aaaaaaaaaa") {
		t.Errorf("the message did not leave sealed:\n%s", header(got.Data))
	}
	if plain, err := opensslDecrypt(t, got.Data, "example.net"); err != nil {
		t.Errorf("the partner cannot open it: %v", err)
	} else if !bytes.HasSuffix(crlf(plain), crlf(msg)) {
		t.Errorf("the partner opens %d octets that do not end in the %d Exim was given", len(plain), len(msg))
	}
	overTLS := regexp.MustCompile(`message accepted.*tls=true.*verb=BDAT`)
	org.waitFor("smimegate logs the message as taken by BDAT over TLS", func() (bool, error) { return overTLS.MatchString(org.log.String()), nil })
	// Exim's delivery line: X= names the TLS version and cipher, CV=yes
	// that the certificate was verified, K that CHUNKING was used.
	if !regexp.MustCompile(` => bob@example\.net .* X=TLS1\.[23]\S* CV=yes .*K C="250 `).MatchString(exim.MainLog()) && !regexp.MustCompile(` => carol@example\.org .* X=TLS1\.[23]\S* CV=yes .*K C="250 `).MatchString(exim.MainLog()) {
		t.Errorf("Exim's log does not show a verified TLS delivery with CHUNKING:\n%s", exim.MainLog())
	}
}

// TestEximQueueRunOneConnection: messages that Exim queued and then
// delivers in one two-stage queue run go down one SMTP connection, one
// BDAT transaction after another (Exim's log marks the later deliveries
// as down the open connection; smimegate's log shows one client port):
// each transaction starts clean after the last one's BDAT LAST, and each
// message reaches the partner octet for octet.
func TestEximQueueRunOneConnection(t *testing.T) {
	t.Parallel()
	transit, bob, orgInner := startSink(t), startSink(t), startSink(t)
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, partners: []string{"example.org"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]"})
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"}, outbound: netgw.smtp, inbound: orgInner.Addr})
	exim := eximtest.Start(t, eximtest.Options{Smarthost: org.smtp, QualifyDomain: "example.org"})

	const from = "alice@example.org"
	msgs := map[string][]byte{}
	for i, body := range []string{secretLine + "\n", strings.Repeat("a line of a queued message\n", 2000), ".\n..\n.\n"} {
		to := fmt.Sprintf("bob%d@example.net", i)
		msgs[to] = eximMessage(from, to, fmt.Sprintf("Queued %d", i), "", body)
		if _, err := exim.Enqueue(from, []string{to}, msgs[to]); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := exim.QueueCount(); err != nil || n != len(msgs) {
		t.Fatalf("Exim's queue holds %d messages (%v), want %d", n, err, len(msgs))
	}
	if _, err := exim.RunQueue(); err != nil {
		t.Fatal(err)
	}
	// Exim passes the open connection from one delivery process to the
	// next (-MC), so the later transcripts are not in the queue runner's
	// output; its main log marks a delivery down a connection already
	// open with a * after the host, and K for CHUNKING.
	deliveries := regexp.MustCompile(`(?m) => bob\d@example\.net .* H=127\.0\.0\.1 \[127\.0\.0\.1\](\*?) K C="250 `).FindAllStringSubmatch(exim.MainLog(), -1)
	continued := 0
	for _, d := range deliveries {
		if d[1] == "*" {
			continued++
		}
	}
	if len(deliveries) != len(msgs) || continued != len(msgs)-1 {
		t.Errorf("Exim's log has %d deliveries with CHUNKING, %d of them down the connection already open; want %d and %d:\n%s",
			len(deliveries), continued, len(msgs), len(msgs)-1, exim.MainLog())
	}
	for _, got := range waitMessages(t, bob, len(msgs)) {
		want, ok := msgs[got.To[0]]
		if !ok || len(got.To) != 1 {
			t.Errorf("bob's server got a message for %v", got.To)
			continue
		}
		if body := withoutTrace(got.Data); !bytes.Equal(body, crlf(want)) {
			t.Errorf("%s got %d octets that differ from the %d Exim was given (first difference at %d)", got.To[0], len(body), len(crlf(want)), firstDifference(body, crlf(want)))
		}
	}
	accepted := regexp.MustCompile(`smtpd: message accepted" .* client=(127\.0\.0\.1:\d+) .*verb=BDAT`)
	org.waitFor("smimegate's log shows every queued message taken by BDAT", func() (bool, error) {
		return len(accepted.FindAllString(org.log.String(), -1)) == len(msgs), nil
	})
	ports := map[string]bool{}
	for _, m := range accepted.FindAllStringSubmatch(org.log.String(), -1) {
		ports[m[1]] = true
	}
	if len(ports) != 1 {
		t.Errorf("smimegate took the messages from %d connections (%v), want one", len(ports), ports)
	}
	if n, err := exim.QueueCount(); err != nil || n != 0 {
		t.Errorf("Exim's queue holds %d messages (%v), want none", n, err)
	}
}

// firstDifference returns the offset of the first octet where a and b
// differ, or the shorter length.
func firstDifference(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// sum returns the sum of ns.
func sum(ns []int) int {
	t := 0
	for _, n := range ns {
		t += n
	}
	return t
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}
