package e2e

// Fail closed under hostile input: each test here is one way the gateway
// once relayed in the clear, relayed what it could not open, or answered
// differently when decryption failed, tried from outside as an attacker
// would.

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
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
	netgw.waitQuarantined(1)

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
	org.hupCerts(1)

	mustSend(t, org.smtp, "alice@example.org", []string{"x@stale.test"}, message("alice@example.org", "x@stale.test", "must not leak"))
	id := org.waitRecipient("x@stale.test", "held", "").ID
	if out := org.mustRun("queue", "list"); !strings.Contains(out, "x@stale.test (held)") {
		t.Fatalf("queue list does not show the message as held:\n%s", out)
	}

	// The operator removes the expired certificate and flushes: the domain
	// now has no certificate at all, which for new mail means "pass".
	if err := os.Remove(crt); err != nil {
		t.Fatal(err)
	}
	org.hupCerts(-1)
	for range 3 {
		// Each flush looks at the held message again (and counts it).
		before := org.waitRecipient("x@stale.test", "held", "").attempts("x@stale.test")
		if out, err := org.run("queue", "flush"); err != nil {
			t.Fatalf("queue flush: %v\n%s", err, out)
		}
		org.waitQueue("the flush did not look at the held message again", func(q []queued) bool {
			return len(q) == 1 && q[0].attempts("x@stale.test") > before
		})
	}
	org.expectLog("release-plain")
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
	org.expectLog("released in the clear by the operator")
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
	netgw.waitQuarantined(2)
	out := netgw.mustRun("quarantine", "list")
	if !strings.Contains(out, "no such user") {
		t.Errorf("the quarantine does not say the next hop refused the opened message:\n%s", out)
	}
	// Both are in the quarantine, so a report, had one been made, would be
	// in the queue or at the next hop by now.
	netgw.waitQueue("a report to the sender is queued", func(q []queued) bool { return len(q) == 0 })
	if n := transit.Count(); n != 0 {
		t.Fatalf("%d report(s) went to the sender: one outcome differs from the other", n)
	}
	// Both were committed before their 250 and opened from the queue,
	// never relayed first (which decrypts while the client waits).
	if m := httpGet(t, "http://"+netgw.admin+"/metrics"); !strings.Contains(m, `smimegate_relay_first_total{outcome="encrypted_to_us"} 2`) {
		t.Errorf("mail encrypted to us was not committed before its 250:\n%s", grepLines(m, "relay_first"))
	}
}

// grepLines returns the lines of s that contain substr.
func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
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
	netgw.waitQuarantine("the poison message is not quarantined", func(q []queued) bool { return len(q) == 1 && q[0].ID == in.ID })
	out := netgw.mustRun("quarantine", "list")
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
	netgw.waitSample("smimegate_own_certificates_without_key 1")
	netgw.expectLog("own domain certificate without a usable private key")

	msg := message("carol@example.org", "bob@example.net", "for the key we cannot read")
	mustSend(t, netgw.smtp, "carol@example.org", []string{"bob@example.net"}, string(opensslEncrypt(t, []byte(msg), "example.net", "-aes-256-gcm")))
	netgw.waitRecipient("bob@example.net", "waiting", "private key is not loaded")
	netgw.expectLog("whose private key is not loaded")
	if n := bob.Count(); n != 0 {
		t.Fatalf("mail encrypted to our certificate was relayed while its key could not be read (%d message(s))", n)
	}
	if out, _ := netgw.run("quarantine", "list"); !strings.Contains(out, "0 message(s)") {
		t.Errorf("the message went to the quarantine; it should wait for the key:\n%s", out)
	}
	metrics := httpGet(t, "http://"+netgw.admin+"/metrics")
	for _, want := range []string{`(?m)^smimegate_own_certificates_without_key 1$`, `(?m)^smimegate_own_key_unavailable_total [1-9]`} {
		if !regexp.MustCompile(want).MatchString(metrics) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// The key is readable again: reload, flush, and the message is opened.
	_, key := keyFiles("example.net")
	copyFile(t, key, keyPath)
	netgw.hup()
	netgw.waitSample("smimegate_own_certificates_without_key 0")
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

// TestQuarantineQuotaRefusesAtDATA: outsiders once filled the disk with
// undecryptable mail until every message got 452. Past the quarantine's
// quota, new mail that may need it (anything encrypted to us, whatever it
// decrypts to) is refused at DATA with 452 4.3.1, while other mail flows.
func TestQuarantineQuotaRefusesAtDATA(t *testing.T) {
	t.Parallel()
	transit, bob := startSink(t), startSink(t)
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]",
		extra: "[quarantine]\nmax_messages = 1\n"})
	bad := tamper(opensslEncrypt(t, []byte(message("eve@elsewhere.test", "bob@example.net", "fills the quarantine")), "example.net", "-aes-256-gcm"))
	mustSend(t, netgw.smtp, "eve@elsewhere.test", []string{"bob@example.net"}, string(bad))
	netgw.waitQuarantined(1)

	good := message("carol@example.org", "bob@example.net", "well formed, but the quarantine is full")
	for name, m := range map[string][]byte{"undecryptable": bad, "decryptable": opensslEncrypt(t, []byte(good), "example.net", "-aes-256-gcm")} {
		err := send(netgw.smtp, "eve@elsewhere.test", []string{"bob@example.net"}, string(m))
		if err == nil || !strings.Contains(err.Error(), "452") || !strings.Contains(err.Error(), "4.3.1") {
			t.Errorf("%s mail encrypted to us with the quarantine full: %v, want 452 4.3.1", name, err)
		}
	}
	plain := message("carol@example.org", "bob@example.net", "plain mail still flows")
	mustSend(t, netgw.smtp, "carol@example.org", []string{"bob@example.net"}, plain)
	if got := waitMessages(t, bob, 1); len(got) != 1 || !bytes.Equal(withoutTrace(got[0].Data), []byte(plain)) {
		t.Fatalf("bob got %d message(s)", len(got))
	}
	if out, _ := netgw.run("quarantine", "list"); !strings.Contains(out, "1 message(s)") {
		t.Errorf("the quarantine went past its quota:\n%s", out)
	}
}

// TestHiddenCiphertextIsOpened: EnvelopedData to our certificate behind a
// signed-data label, or as the signed part of multipart/signed, was relayed
// still encrypted. Ciphertext is found by its content: opened where it is
// the message, quarantined where it is buried.
func TestHiddenCiphertextIsOpened(t *testing.T) {
	t.Parallel()
	transit, bob := startSink(t), startSink(t)
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]"})

	mislabelled := message("carol@example.org", "bob@example.net", "labelled signed-data")
	sealed := opensslEncrypt(t, []byte(mislabelled), "example.net", "-aes-256-cbc")
	sealed = bytes.Replace(sealed, []byte("smime-type=enveloped-data"), []byte("smime-type=signed-data"), 1)
	if !bytes.Contains(sealed, []byte("smime-type=signed-data")) {
		t.Fatalf("openssl's header changed:\n%.300s", sealed)
	}
	mustSend(t, netgw.smtp, "carol@example.org", []string{"bob@example.net"}, string(sealed))

	inSigned := message("carol@example.org", "bob@example.net", "encrypted, then signed")
	part := opensslEncrypt(t, []byte(inSigned), "example.net", "-aes-256-cbc")
	part = part[bytes.Index(part, []byte("Content-")):] // the entity: its Content-* fields and body
	signed := "From: <carol@example.org>\r\nTo: <bob@example.net>\r\nSubject: signed\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\n" + string(part) + "\r\n--b1\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\nContent-Transfer-Encoding: base64\r\n\r\nMIIB\r\n--b1--\r\n"
	mustSend(t, netgw.smtp, "carol@example.org", []string{"bob@example.net"}, signed)

	got := waitMessages(t, bob, 2)
	opened := map[string]bool{}
	for _, m := range got {
		if bytes.Contains(m.Data, []byte("application/pkcs7-mime")) {
			t.Errorf("ciphertext to our certificate was relayed still encrypted:\n%.400s", m.Data)
		}
		for _, want := range []string{mislabelled, inSigned} {
			if bytes.Equal(withoutTrace(m.Data), []byte(want)) {
				opened[want] = true
			}
		}
	}
	if len(opened) != 2 {
		t.Errorf("opened %d of the 2 hidden messages", len(opened))
	}

	// Buried in an attachment, it is neither relayed nor opened.
	buried := "From: <carol@example.org>\r\nTo: <bob@example.net>\r\nSubject: attachment\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b2\"\r\n\r\n--b2\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n" +
		"--b2\r\nContent-Type: application/octet-stream; name=data.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
		string(sealed[bytes.Index(sealed, []byte("\r\n\r\n"))+4:]) + "--b2--\r\n"
	mustSend(t, netgw.smtp, "carol@example.org", []string{"bob@example.net"}, buried)
	netgw.waitQuarantined(1)
	out := netgw.mustRun("quarantine", "list")
	if !strings.Contains(out, "part 2") {
		t.Errorf("the quarantine does not name the part:\n%s", out)
	}
	if n := bob.Count(); n != 2 {
		t.Errorf("bob has %d messages; the buried ciphertext must not reach him", n)
	}
}

// TestDecryptedContentIsChecked: decrypted content never passed the strict
// DATA reader; bare CR and NUL reached the internal server raw, and a
// "\r.\r\n" look-alike with a second MAIL/RCPT/DATA after it could split
// the message in two there. Such content is quarantined; LF-only content
// is normalised to CRLF.
func TestDecryptedContentIsChecked(t *testing.T) {
	t.Parallel()
	transit, bob := startSink(t), startSink(t)
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]"})

	smuggle := "From: <eve@elsewhere.test>\r\nTo: <bob@example.net>\r\nSubject: smuggle\r\n\r\nhello\r.\rMAIL FROM:<ceo@example.net>\rRCPT TO:<bob@example.net>\rDATA\r\n"
	nul := "From: <eve@elsewhere.test>\r\nTo: <bob@example.net>\r\nSubject: nul\r\n\r\nhello\x00\r\n.\r\n"
	for _, m := range []string{smuggle, nul} {
		mustSend(t, netgw.smtp, "eve@elsewhere.test", []string{"bob@example.net"}, string(opensslEncrypt(t, []byte(m), "example.net", "-aes-256-gcm")))
	}
	netgw.waitQuarantined(2)
	out := netgw.mustRun("quarantine", "list")
	for _, want := range []string{"CR", "NUL"} {
		if !strings.Contains(out, want) {
			t.Errorf("the quarantine's reasons do not mention %s:\n%s", want, out)
		}
	}

	lf := "From: <carol@example.org>\nTo: <bob@example.net>\nSubject: LF only\n\nline one\nline two\n"
	mustSend(t, netgw.smtp, "carol@example.org", []string{"bob@example.net"}, string(opensslEncrypt(t, []byte(lf), "example.net", "-aes-256-gcm")))
	got := waitMessages(t, bob, 1)
	if len(got) != 1 {
		t.Fatalf("bob got %d messages", len(got))
	}
	if want := strings.ReplaceAll(lf, "\n", "\r\n"); !bytes.Equal(withoutTrace(got[0].Data), []byte(want)) {
		t.Errorf("LF-only content arrived as\n%q\nwant\n%q", got[0].Data, want)
	}
}

// TestTraceFieldsSurviveDecryption: decrypting dropped the outer header,
// our own Received field with the client's address among it (RFC 5321
// section 4.4 forbids deleting trace fields).
func TestTraceFieldsSurviveDecryption(t *testing.T) {
	t.Parallel()
	transit, bob := startSink(t), startSink(t)
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]"})
	msg := message("carol@example.org", "bob@example.net", "traced")
	partner := "Received: from gw.example.org (gw.example.org [192.0.2.7])\r\n\tby mx.example.net; Tue, 1 Dec 2026 10:00:00 +0000\r\n"
	mustSend(t, netgw.smtp, "carol@example.org", []string{"bob@example.net"}, partner+string(opensslEncrypt(t, []byte(msg), "example.net", "-aes-256-gcm")))
	got := waitMessages(t, bob, 1)[0].Data
	if !bytes.HasSuffix(got, []byte(msg)) {
		t.Fatalf("the inner message is not what was sent:\n%.500s", got)
	}
	trace := string(got[:len(got)-len(msg)])
	iOurs, iClient, iPartner := strings.Index(trace, "(smimegate, decrypted)"), strings.Index(trace, "[127.0.0.1]"), strings.Index(trace, "[192.0.2.7]")
	if iOurs < 0 || iClient < 0 || iPartner < 0 || !(iOurs < iClient && iClient < iPartner) {
		t.Errorf("the trace above the decrypted message is not ours (decrypted), ours (received, with the client), the partner's, in that order:\n%s", trace)
	}
}

// TestNULInDataIsRefused: NUL in DATA was accepted and relayed, and
// "\r\n\x00.\r\n" was not even dot-stuffed on the way out.
func TestNULInDataIsRefused(t *testing.T) {
	t.Parallel()
	transit, bob := startSink(t), startSink(t)
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]"})
	err := send(netgw.smtp, "eve@elsewhere.test", []string{"bob@example.net"}, "Subject: nul\r\n\r\nbefore\r\n\x00.\r\nMAIL FROM:<x@y>\r\n")
	if err == nil || !strings.Contains(err.Error(), "550") || !strings.Contains(err.Error(), "5.6.0") {
		t.Fatalf("NUL in DATA: %v, want 550 5.6.0", err)
	}
	netgw.waitEmptyQueue()
	if bob.Count() != 0 {
		t.Error("a message with NUL reached the internal server")
	}
}

// TestRelayFirstDribblingNextHopIsCut: a next hop that dribbles its reply to
// the final dot held a relay-first client 48 s against relay_first_timeout
// = 10s. The whole attempt has a deadline now: the client gets its 250 while
// the next hop is still dribbling, and the message is delivered from the
// queue (the next hop may then have it twice; it never has it not at all).
func TestRelayFirstDribblingNextHopIsCut(t *testing.T) {
	t.Parallel()
	hop := startDribbler(t)
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, outbound: hop.addr, inbound: hop.addr,
		extra: "[queue]\nmin_backoff = \"1s\"\nmax_backoff = \"1s\"\nrelay_first_timeout = \"1s\"\n"})
	mustSend(t, org.smtp, "alice@example.org", []string{"carol@plain.test"}, message("alice@example.org", "carol@plain.test", "dribbled"))
	answered := time.Now()
	select {
	case done := <-hop.dribbleDone:
		t.Fatalf("the client got its answer only once the next hop had dribbled its whole reply (%s after it)", answered.Sub(done))
	default:
	}
	// The cut is logged before the client's 250 (the queue may deliver
	// the message again within a second, so its queued state is no event
	// to wait for).
	org.expectLog("did not answer in time")
	// The queue delivers it again, to a next hop that now answers at once.
	deadline := time.Now().Add(waitTimeout)
	for hop.received() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the message was not delivered from the queue after the cut attempt:\n%s", org.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitQueueEmpty(t, org)
}

// dribbler is an SMTP server whose first reply to a final dot comes one
// byte every 400 ms; later ones come at once.
type dribbler struct {
	addr        string
	dribbleDone chan time.Time
	mu          sync.Mutex
	n           int
}

func (d *dribbler) received() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

func startDribbler(t *testing.T) *dribbler {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	d := &dribbler{addr: l.Addr().String(), dribbleDone: make(chan time.Time, 1)}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go d.serve(c)
		}
	}()
	return d
}

func (d *dribbler) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	fmt.Fprint(c, "220 dribbler ESMTP\r\n")
	inData := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		if inData {
			if line != ".\r\n" {
				continue
			}
			inData = false
			d.mu.Lock()
			d.n++
			first := d.n == 1
			d.mu.Unlock()
			if !first {
				fmt.Fprint(c, "250 2.0.0 ok\r\n")
				continue
			}
			reply := []byte("250 2.0.0 ok, slowly\r\n")
			for _, b := range reply[:len(reply)-1] {
				if _, err := c.Write([]byte{b}); err != nil {
					break
				}
				time.Sleep(400 * time.Millisecond)
			}
			// Said before the last byte goes: a client answered after
			// this waited for the whole dribble.
			d.dribbleDone <- time.Now()
			c.Write(reply[len(reply)-1:])
			continue
		}
		switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
		case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
			fmt.Fprint(c, "250-dribbler\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
		case cmd == "DATA":
			inData = true
			fmt.Fprint(c, "354 go ahead\r\n")
		case cmd == "QUIT":
			fmt.Fprint(c, "221 bye\r\n")
			return
		default:
			fmt.Fprint(c, "250 2.0.0 ok\r\n")
		}
	}
}
