package e2e

// Fail closed under hostile input: each test here is one way the gateway
// once relayed in the clear, relayed what it could not open, or answered
// differently when decryption failed, tried from outside as an attacker
// would.

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/smtp"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"smimegate/internal/certstore"
	"smimegate/internal/spool"
)

// TestInvalidDomainsAreRefusedAtRCPT: with a certificate for example.net,
// recipients in sub-domain names that do not canonicalise (an R-LDH label,
// a fake A-label, an underscore, an address literal) once left in the clear
// over example.net's route. They are refused at RCPT, even from a trusted
// client, and nothing leaves.
func TestInvalidDomainsAreRefusedAtRCPT(t *testing.T) {
	t.Parallel()
	transit, inner := startSink(t), startSink(t)
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"}, outbound: transit.Addr, inbound: inner.Addr})
	for _, rcpt := range []string{"bob@ab--cd.example.net", "bob@xn--zz.example.net", "bob@a_b.example.net", "bob@[192.0.2.1]"} {
		err := send(org.smtp, "alice@example.org", []string{rcpt}, message("alice@example.org", rcpt, "odd name"))
		if err == nil || !strings.Contains(err.Error(), "553") || !strings.Contains(err.Error(), "5.1.3") {
			t.Errorf("RCPT TO:<%s> from a trusted client: %v, want 553 5.1.3", rcpt, err)
		}
	}
	// The valid name under the same partner is sealed, as ever.
	mustSend(t, org.smtp, "alice@example.org", []string{"bob@sub2.example.net"}, message("alice@example.org", "bob@sub2.example.net", "valid name"))
	m := waitMessages(t, transit, 1)
	if len(m) != 1 || bytes.Contains(m[0].Data, []byte(secretLine)) {
		t.Fatalf("transit got %d message(s); the valid one must be sealed", len(m))
	}
	if _, err := opensslDecrypt(t, m[0].Data, "example.net"); err != nil {
		t.Errorf("the valid sub-domain's copy is not sealed to example.net: %v", err)
	}
}

// TestSpoofedLocalSenderIsStillOpened: an outsider who writes a local
// address in MAIL FROM once made the message "outbound", and undecryptable
// ciphertext for a local recipient was relayed inward as it came. Mail to a
// local domain that is encrypted to us is opened or quarantined whatever
// the sender says.
func TestSpoofedLocalSenderIsStillOpened(t *testing.T) {
	t.Parallel()
	transit, bob := startSink(t), startSink(t)
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]"})

	bad := tamper(opensslEncrypt(t, []byte(message("ceo@example.net", "bob@example.net", "spoofed")), "example.net", "-aes-256-gcm"))
	mustSend(t, netgw.smtp, "ceo@example.net", []string{"bob@example.net"}, string(bad))
	netgw.waitRun("quarantine list", func(out string) bool { return strings.Contains(out, "1 message(s)") }, "quarantine", "list")

	good := message("ceo@example.net", "bob@example.net", "spoofed but well formed")
	mustSend(t, netgw.smtp, "ceo@example.net", []string{"bob@example.net"}, string(opensslEncrypt(t, []byte(good), "example.net", "-aes-256-gcm")))
	got := waitMessages(t, bob, 1)
	if len(got) != 1 || !bytes.Equal(withoutTrace(got[0].Data), []byte(good)) {
		t.Fatalf("bob got %d message(s); want only the opened one:\n%.300s", len(got), got[0].Data)
	}
	if !strings.Contains(netgw.log.String(), "direction=inbound action=decrypt") {
		t.Errorf("mail from an untrusted client was not treated as inbound:\n%s", netgw.log.String())
	}
}

// TestHeldStaysHeldUntilReleasePlain: a message held because the partner's
// only certificate expired once went out in the clear as soon as the
// operator removed the expired file and flushed. A decision to encrypt is
// undone only by an explicit `queue release-plain ID`.
func TestHeldStaysHeldUntilReleasePlain(t *testing.T) {
	t.Parallel()
	transit, inner := startSink(t), startSink(t)
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, outbound: transit.Addr, inbound: inner.Addr})
	expired, err := certstore.Generate(certstore.KeygenOptions{Domains: []string{"stale.test"}, KeyType: "p256", Days: 30, Now: func() time.Time { return time.Now().Add(-90 * 24 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	crt := filepath.Join(org.dir, "partners", "stale.test.crt")
	if err := os.WriteFile(crt, expired.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	org.hup()
	org.waitRun("the expired certificate is not loaded", func(out string) bool { return strings.Contains(out, "stale.test") }, "cert", "list")

	mustSend(t, org.smtp, "alice@example.org", []string{"x@stale.test"}, message("alice@example.org", "x@stale.test", "must not leak"))
	out := org.waitRun("message not shown as held", func(out string) bool { return strings.Contains(out, "x@stale.test (held)") }, "queue", "list")
	id := strings.Fields(strings.SplitN(out, "\n", 3)[1])[0]

	// The operator removes the expired certificate and flushes: the domain
	// now has no certificate at all, which for new mail means "pass".
	if err := os.Remove(crt); err != nil {
		t.Fatal(err)
	}
	org.hup()
	org.waitRun("the expired certificate is still loaded", func(out string) bool { return !strings.Contains(out, "stale.test") }, "cert", "list")
	for range 3 {
		if out, err := org.run("queue", "flush"); err != nil {
			t.Fatalf("queue flush: %v\n%s", err, out)
		}
		org.waitLog("release-plain")
	}
	if n := transit.Count(); n != 0 {
		t.Fatalf("a message held for encryption left in the clear after the certificate was removed (%d at the next hop)", n)
	}
	if out, _ := org.run("queue", "list"); !strings.Contains(out, "x@stale.test (held)") {
		t.Fatalf("the message is no longer held:\n%s", out)
	}

	// Only the explicit release sends it in the clear.
	if out, err := org.run("queue", "release-plain", id); err != nil {
		t.Fatalf("queue release-plain %s: %v\n%s", id, err, out)
	}
	m := waitMessages(t, transit, 1)[0]
	if !bytes.Contains(m.Data, []byte(secretLine)) {
		t.Errorf("released message is not the original:\n%.300s", m.Data)
	}
	org.waitLog("released in the clear by the operator")
}

// TestRequiredHoldExpiresIntoBounce: at hold_lifetime a message for a
// require = true partner without a certificate is bounced, never sent in the
// clear (a mutant that sent it passed every test before this one).
func TestRequiredHoldExpiresIntoBounce(t *testing.T) {
	t.Parallel()
	transit, inner := startSink(t), startSink(t)
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, outbound: transit.Addr, inbound: inner.Addr,
		extra: "[queue]\nmin_backoff = \"1s\"\nmax_backoff = \"1s\"\nhold_lifetime = \"3s\"\n\n[policy.partners.\"secure.test\"]\nrequire = true\n"})
	mustSend(t, org.smtp, "alice@example.org", []string{"x@secure.test"}, message("alice@example.org", "x@secure.test", "required, expiring"))
	dsn := waitMessages(t, inner, 1)[0]
	d := string(dsn.Data)
	for _, want := range []string{"Action: failed", "Final-Recipient: rfc822; x@secure.test", "Status: 5.7.1", "requires encryption"} {
		if !strings.Contains(d, want) {
			t.Errorf("the hold expiry report lacks %q:\n%s", want, d)
		}
	}
	if strings.Contains(d, secretLine) {
		t.Error("the report carries the body of a message that had to be encrypted")
	}
	waitQueueEmpty(t, org)
	if n := transit.Count(); n != 0 {
		t.Fatalf("the expired hold went to the next hop (%d message(s)): it must only bounce", n)
	}
}

// TestRetFullFromOutsideReturnsHeadersOnly: RET=FULL from an untrusted
// client and a recipient refused after the 250 once sent the attacker's
// whole message to whatever address MAIL FROM named (backscatter).
func TestRetFullFromOutsideReturnsHeadersOnly(t *testing.T) {
	t.Parallel()
	transit, bob := startSink(t), startSink(t)
	bob.Reject(&gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"})
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]", spoolFirst: true})

	msg := message("victim@elsewhere.test", "nobody@example.net", "backscatter")
	c, err := smtp.Dial(netgw.smtp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("attacker.test"); err != nil {
		t.Fatal(err)
	}
	if id, code, err := rawCommand(c, "MAIL FROM:<victim@elsewhere.test> RET=FULL"); err != nil || code != 250 {
		t.Fatalf("MAIL RET=FULL: %d %v %v", code, id, err)
	}
	if err := c.Rcpt("nobody@example.net"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(w, msg)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()

	dsn := waitMessages(t, transit, 1)[0]
	if len(dsn.To) != 1 || dsn.To[0] != "victim@elsewhere.test" {
		t.Fatalf("report went to %v", dsn.To)
	}
	if !strings.Contains(string(dsn.Data), "Subject: backscatter") {
		t.Errorf("the report lacks the original header:\n%s", dsn.Data)
	}
	if strings.Contains(string(dsn.Data), secretLine) {
		t.Errorf("RET=FULL from an untrusted client returned the whole message to a third party:\n%s", dsn.Data)
	}
}

// rawCommand sends one command line and reads the reply.
func rawCommand(c *smtp.Client, line string) (string, int, error) {
	id, err := c.Text.Cmd("%s", line)
	if err != nil {
		return "", 0, err
	}
	c.Text.StartResponse(id)
	defer c.Text.EndResponse(id)
	code, msg, err := c.Text.ReadResponse(0)
	return msg, code, err
}

// TestRefusedDecryptedMailGivesNoOracle: from an outside client, a message
// encrypted to us for a recipient the internal server refuses. Once, valid
// padding was opened and relayed first, so the internal 550 reached the
// client, while bad padding was quarantined and the client got 250: a
// padding oracle (2,587 queries recovered a block in 15 s). Now both are
// committed before their 250, and neither produces a report: both end in
// the quarantine, each with its own reason for the operator.
func TestRefusedDecryptedMailGivesNoOracle(t *testing.T) {
	t.Parallel()
	transit, bob := startSink(t), startSink(t)
	bob.Reject(&gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"})
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]"})

	plain := message("eve@elsewhere.test", "nobody@example.net", "oracle probe")
	valid := opensslEncrypt(t, []byte(plain), "example.net", "-aes-256-cbc")
	invalid := tamperLastBlock(valid)
	replies := map[string]string{}
	for name, m := range map[string][]byte{"valid": valid, "invalid": invalid} {
		err := send(netgw.smtp, "eve@elsewhere.test", []string{"nobody@example.net"}, string(m))
		replies[name] = fmt.Sprint(err)
	}
	if replies["valid"] != "<nil>" || replies["invalid"] != "<nil>" {
		t.Fatalf("the client's replies differ with the padding: valid %s, invalid %s", replies["valid"], replies["invalid"])
	}
	out := netgw.waitRun("both messages quarantined", func(out string) bool { return strings.Contains(out, "2 message(s)") }, "quarantine", "list")
	if !strings.Contains(out, "no such user") {
		t.Errorf("the quarantine does not say the next hop refused the opened message:\n%s", out)
	}
	time.Sleep(time.Second) // a report, if one were queued, would go at once
	if n := transit.Count(); n != 0 {
		t.Fatalf("%d report(s) went to the sender: one outcome differs from the other", n)
	}
	if strings.Contains(netgw.log.String(), "relayed first") && regexp.MustCompile(`smtpd: message refused.*eve@elsewhere`).MatchString(netgw.log.String()) {
		t.Error("a message encrypted to us was refused to the client after decryption")
	}
}

// tamperLastBlock flips a bit in the next-to-last CBC block of a sealed
// EnvelopedData, which garbles the padding of the last one: the classic
// padding-oracle query. It works on the DER inside the base64 body.
func tamperLastBlock(sealed []byte) []byte {
	h, body, ok := bytes.Cut(bytes.Clone(sealed), []byte("\r\n\r\n"))
	if !ok {
		panic("no body")
	}
	der := decodeB64(body)
	// The encrypted content is at the end of the DER (an [0] IMPLICIT
	// OCTET STRING, no unprotectedAttrs after it from openssl): flipping
	// the last bit of the next-to-last block flips the last plaintext byte,
	// the padding length, into one that never checks out (RFC 5652 section
	// 6.3: p becomes p^1, and never p^1 bytes of value p^1 precede it).
	der[len(der)-17] ^= 0x01
	return append(append(bytes.Clone(h), "\r\n\r\n"...), encodeB64(der)...)
}

func decodeB64(body []byte) []byte {
	der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(body)), ""))
	if err != nil {
		panic(err)
	}
	return der
}

// encodeB64 writes base64 in lines of 76 characters with CRLF.
func encodeB64(der []byte) []byte {
	s := base64.StdEncoding.EncodeToString(der)
	var b bytes.Buffer
	for len(s) > 76 {
		b.WriteString(s[:76] + "\r\n")
		s = s[76:]
	}
	b.WriteString(s + "\r\n")
	return b.Bytes()
}

// TestPoisonMessageIsQuarantined: a message whose processing killed the
// gateway (out of memory, a crash in a parser) was replayed at every start,
// forever. Its work marker, left by the two passes that never ended, moves
// it to the quarantine at the next start instead.
func TestPoisonMessageIsQuarantined(t *testing.T) {
	t.Parallel()
	transit, bob := startSink(t), startSink(t)
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]"})
	netgw.stop()

	// What two crashed passes leave behind: a queued message and a work
	// marker that was begun twice and never ended.
	sp, err := spool.Open(filepath.Join(netgw.dir, "state"), nil)
	if err != nil {
		t.Fatal(err)
	}
	in, err := sp.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	msg := message("mallory@elsewhere.test", "bob@example.net", "poison")
	in.Write([]byte(msg))
	env := &spool.Envelope{ID: in.ID, Sender: "mallory@elsewhere.test", Recipients: []spool.Recipient{{Addr: "bob@example.net"}},
		Client: "192.0.2.66:4242", Arrival: time.Now().UTC(), Size: int64(len(msg)), Stage: spool.StageReceived}
	if err := in.Commit(env); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := sp.BeginWork(in.ID); err != nil {
			t.Fatal(err)
		}
	}
	sp.Close()

	netgw.start()
	out := netgw.waitRun("poison message quarantined", func(out string) bool { return strings.Contains(out, in.ID) }, "quarantine", "list")
	if !strings.Contains(out, "stopped the gateway") {
		t.Errorf("the quarantine does not say why:\n%s", out)
	}
	if bob.Count() != 0 {
		t.Error("the poison message was processed again")
	}
}

// TestOwnKeyUnreadableMakesMailWait: with our certificate loaded and its key
// unreadable, mail encrypted to that certificate was relayed still
// encrypted, as "not to one of our certificates". It waits in the queue now,
// loudly (an error at load, a gauge, a counter), and goes out decrypted once
// the key is readable again.
func TestOwnKeyUnreadableMakesMailWait(t *testing.T) {
	t.Parallel()
	transit, bob := startSink(t), startSink(t)
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]"})
	// The key file breaks (here: garbage; in the field: permissions, a
	// passphrase gone), and the gateway reloads.
	keyPath := filepath.Join(netgw.dir, "own", "example.net.key")
	if err := os.WriteFile(keyPath, []byte("-----BEGIN PRIVATE KEY-----\nQUFBQUFBQUFB\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	netgw.stop()
	netgw.start()
	netgw.waitLog("own domain certificate without a usable private key")

	msg := message("carol@example.org", "bob@example.net", "for the key we cannot read")
	mustSend(t, netgw.smtp, "carol@example.org", []string{"bob@example.net"}, string(opensslEncrypt(t, []byte(msg), "example.net", "-aes-256-gcm")))
	netgw.waitRun("the message is not waiting in the queue", func(out string) bool { return strings.Contains(out, "bob@example.net") }, "queue", "list")
	netgw.waitLog("whose private key is not loaded")
	if n := bob.Count(); n != 0 {
		t.Fatalf("mail encrypted to our certificate was relayed while its key could not be read (%d message(s))", n)
	}
	if out, _ := netgw.run("quarantine", "list"); !strings.Contains(out, "0 message(s)") {
		t.Errorf("the message went to the quarantine; it should wait for the key:\n%s", out)
	}
	metrics := httpGet(t, "http://"+netgw.admin+"/metrics")
	for _, want := range []string{"smimegate_own_certificates_without_key 1", "smimegate_own_key_unavailable_total 1"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// The key is readable again: reload, flush, and the message is opened.
	_, key := keyFiles("example.net")
	copyFile(t, key, keyPath)
	netgw.hup()
	netgw.waitLog("own_without_key=0")
	if out, err := netgw.run("queue", "flush"); err != nil {
		t.Fatalf("queue flush: %v\n%s", err, out)
	}
	got := waitMessages(t, bob, 1)[0]
	if !bytes.Equal(withoutTrace(got.Data), []byte(msg)) {
		t.Errorf("after the key came back bob got\n%.300s", got.Data)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestVerifyRecipientsRefusesUnknownBeforeContent: with
// smtp.verify_recipients, a recipient the internal server does not know is
// refused at RCPT, before any content (and so before anything is
// decrypted); the answers are cached.
func TestVerifyRecipientsRefusesUnknownBeforeContent(t *testing.T) {
	t.Parallel()
	transit, bob := startSink(t), startSink(t)
	bob.RejectRcpt(func(addr string) *gosmtp.SMTPError {
		if strings.HasPrefix(addr, "nobody@") {
			return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		}
		return nil
	})
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]",
		smtpExtra: "verify_recipients = true\n"})
	for range 2 {
		err := send(netgw.smtp, "eve@elsewhere.test", []string{"nobody@example.net"}, message("eve@elsewhere.test", "nobody@example.net", "unknown"))
		if err == nil || !strings.Contains(err.Error(), "550") || !strings.Contains(err.Error(), "5.1.1") || !strings.Contains(err.Error(), "no such user") {
			t.Fatalf("an unknown recipient: %v, want 550 5.1.1 at RCPT", err)
		}
	}
	if n := bob.RcptCount(); n != 1 {
		t.Errorf("the internal server was asked %d times about the same unknown address; the answer is cached", n)
	}
	msg := message("eve@elsewhere.test", "bob@example.net", "known")
	mustSend(t, netgw.smtp, "eve@elsewhere.test", []string{"bob@example.net"}, msg)
	if got := waitMessages(t, bob, 1)[0]; !bytes.Equal(withoutTrace(got.Data), []byte(msg)) {
		t.Errorf("bob got\n%.300s", got.Data)
	}
	if n := bob.Count(); n != 1 {
		t.Errorf("%d messages reached the internal server, want 1", n)
	}
}
