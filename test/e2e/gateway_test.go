package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"smimegate/internal/mailsink"
)

const secretLine = "This line must never cross the Internet in the clear."

func message(from, to, subject string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\n", from, to)
	for _, e := range extra {
		b.WriteString(e + "\r\n")
	}
	fmt.Fprintf(&b, "Subject: %s\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <%d@e2e.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nDear recipient,\r\n\r\n%s\r\nGrüße, 8-bit text.\r\n", subject, time.Now().UnixNano(), secretLine)
	return b.String()
}

func TestOutboundSealedThenOpenedByPartner(t *testing.T) {
	t.Parallel()
	transit, bob, orgInner := startSink(t), startSink(t), startSink(t)
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"}, outbound: transit.Addr, inbound: orgInner.Addr})
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, partners: []string{"example.org"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]"})

	msg := message("alice@example.org", "bob@example.net", "Lab results", "Bcc: <dave@example.net>")
	mustSend(t, org.smtp, "alice@example.org", []string{"bob@example.net", "dave@example.net"}, msg)
	crossed := waitMessages(t, transit, 1)[0]

	// What crossed: S/MIME, no readable body, no Bcc, envelope intact.
	h := header(crossed.Data)
	if !regexp.MustCompile(`(?i)Content-Type: application/pkcs7-mime;.*smime-type=authEnveloped-data`).MatchString(strings.ReplaceAll(h, "\r\n\t", " ")) {
		t.Errorf("crossed header is not AuthEnvelopedData S/MIME:\n%s", h)
	}
	if bytes.Contains(crossed.Data, []byte(secretLine)) || bytes.Contains(crossed.Data, []byte("Gr\xc3\xbc\xc3\x9fe")) {
		t.Error("the body crossed in the clear")
	}
	// A field name at the start of a line: the queue id in our Received
	// field is random base32 and may itself contain "bcc".
	if regexp.MustCompile(`(?im)^bcc:`).MatchString(h) || strings.Contains(h, "dave@") {
		t.Errorf("Bcc leaked into the outer header:\n%s", h)
	}
	if !strings.HasPrefix(h, "Received: ") || !strings.Contains(h, "by gw.example.org") {
		t.Errorf("the sealed copy carries no Received trace field of ours:\n%s", h)
	}
	if crossed.From != "alice@example.org" || len(crossed.To) != 2 {
		t.Errorf("envelope changed: from %q to %v", crossed.From, crossed.To)
	}

	// OpenSSL with the partner's key gives back the original.
	plain, err := opensslDecrypt(t, crossed.Data, "example.net")
	if err != nil {
		t.Fatal(err)
	}
	if got := withoutTrace(plain); !bytes.Equal(got, []byte(msg)) {
		t.Errorf("openssl decrypted something else:\n%q\nwant\n%q", got, msg)
	}
	if !bytes.HasPrefix(plain, []byte("Received: ")) {
		t.Errorf("the sealed original carries no Received trace field of ours:\n%.200s", plain)
	}

	// The partner gateway opens it and delivers the original byte for byte.
	mustSend(t, netgw.smtp, crossed.From, crossed.To, string(crossed.Data))
	got := waitMessages(t, bob, 1)[0]
	if !bytes.Equal(withoutTrace(got.Data), []byte(msg)) {
		t.Errorf("bob received\n%q\nwant\n%q", got.Data, msg)
	}
	if !bytes.Contains(got.Data[:len(got.Data)-len(msg)], []byte("gw.example.net")) {
		t.Errorf("the opened copy carries no Received field of the example.net gateway:\n%.300s", got.Data)
	}
}

func TestMostSpecificDomainCertificate(t *testing.T) {
	t.Parallel()
	transit, inner := startSink(t), startSink(t)
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net", "sub.example.net"}, outbound: transit.Addr, inbound: inner.Addr})

	mustSend(t, org.smtp, "alice@example.org", []string{"x@deep.sub.example.net"}, message("alice@example.org", "x@deep.sub.example.net", "deep"))
	deep := waitMessages(t, transit, 1)[0]
	if _, err := opensslDecrypt(t, deep.Data, "sub.example.net"); err != nil {
		t.Errorf("mail to deep.sub.example.net is not sealed to sub.example.net's certificate: %v", err)
	}
	if _, err := opensslDecrypt(t, deep.Data, "example.net"); err == nil {
		t.Error("mail to deep.sub.example.net is also readable with example.net's key: not the most specific certificate alone")
	}

	mustSend(t, org.smtp, "alice@example.org", []string{"y@other.example.net"}, message("alice@example.org", "y@other.example.net", "other"))
	other := waitMessages(t, transit, 2)[1]
	if _, err := opensslDecrypt(t, other.Data, "example.net"); err != nil {
		t.Errorf("mail to other.example.net is not sealed to example.net's certificate: %v", err)
	}

	out, err := org.run("cert", "show", "deep.sub.example.net")
	if err != nil || !strings.Contains(out, "sub.example.net") {
		t.Errorf("cert show deep.sub.example.net: %v\n%s", err, out)
	}
}

func TestMixedRecipientsSplit(t *testing.T) {
	t.Parallel()
	transit, inner := startSink(t), startSink(t)
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"}, outbound: transit.Addr, inbound: inner.Addr})
	msg := message("alice@example.org", "bob@example.net", "split", "Cc: <carol@plain.test>, <erin@example.org>")
	mustSend(t, org.smtp, "alice@example.org", []string{"bob@example.net", "carol@plain.test", "erin@example.org"}, msg)

	msgs := waitMessages(t, transit, 2)
	local := waitMessages(t, inner, 1)
	var sealed, plain int
	for _, m := range msgs {
		switch {
		case len(m.To) == 1 && m.To[0] == "bob@example.net":
			sealed++
			if bytes.Contains(m.Data, []byte(secretLine)) {
				t.Error("the copy for the secured domain is readable")
			}
		case len(m.To) == 1 && m.To[0] == "carol@plain.test":
			plain++
			if !bytes.Equal(withoutTrace(m.Data), []byte(msg)) {
				t.Error("the copy for the unsecured domain is not the original")
			}
		default:
			t.Errorf("unexpected copy for %v", m.To)
		}
	}
	if sealed != 1 || plain != 1 {
		t.Errorf("got %d sealed and %d plain copies, want 1 and 1", sealed, plain)
	}
	if len(local[0].To) != 1 || local[0].To[0] != "erin@example.org" || !bytes.Equal(withoutTrace(local[0].Data), []byte(msg)) {
		t.Errorf("local recipient got %v %q", local[0].To, local[0].Data)
	}
}

func TestMixedRecipientsReject(t *testing.T) {
	t.Parallel()
	transit, inner := startSink(t), startSink(t)
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"}, outbound: transit.Addr, inbound: inner.Addr,
		extra: "[policy]\nmixed_recipients = \"reject\"\n"})
	err := send(org.smtp, "alice@example.org", []string{"bob@example.net", "carol@plain.test"}, message("alice@example.org", "bob@example.net", "mixed"))
	if err == nil || !strings.Contains(err.Error(), "550") || !strings.Contains(err.Error(), "5.7.1") || !strings.Contains(err.Error(), "plain.test") {
		t.Fatalf("mixed message not refused with 550 5.7.1 naming the domains: %v", err)
	}
	out, qerr := org.run("queue", "list")
	if qerr != nil || !strings.Contains(out, "0 message(s)") {
		t.Errorf("the refused message is queued: %v\n%s", qerr, out)
	}
	// A message to the secured domain alone still goes, sealed.
	mustSend(t, org.smtp, "alice@example.org", []string{"bob@example.net"}, message("alice@example.org", "bob@example.net", "alone"))
	m := waitMessages(t, transit, 1)
	if len(m) != 1 || m[0].To[0] != "bob@example.net" || bytes.Contains(m[0].Data, []byte(secretLine)) {
		t.Errorf("unexpected delivery after the refusal: %v", m)
	}
}

func TestRequiredPartnerIsHeldNeverSentInClear(t *testing.T) {
	t.Parallel()
	transit, inner := startSink(t), startSink(t)
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, outbound: transit.Addr, inbound: inner.Addr,
		extra: "[policy.partners.\"secure.test\"]\nrequire = true\n"})
	mustSend(t, org.smtp, "alice@example.org", []string{"x@secure.test"}, message("alice@example.org", "x@secure.test", "required"))

	// The message is held: queued, marked held, nothing delivered.
	org.waitRecipient("x@secure.test", "held", "")
	if out := org.mustRun("queue", "list"); !strings.Contains(out, "x@secure.test (held)") {
		t.Errorf("queue list does not show the message as held:\n%s", out)
	}
	if n := transit.Count(); n != 0 {
		t.Fatalf("%d message(s) left for a required partner without a certificate", n)
	}

	// Import the certificate, reload: the held message goes, sealed.
	crt, _ := keyFiles("secure.test")
	if out, err := org.run("cert", "import", crt); err != nil {
		t.Fatalf("cert import: %v\n%s", err, out)
	}
	org.hupCerts(1) // the flush must find the certificate loaded
	if out, err := org.run("queue", "flush"); err != nil {
		t.Fatalf("queue flush: %v\n%s", err, out)
	}
	m := waitMessages(t, transit, 1)[0]
	if _, err := opensslDecrypt(t, m.Data, "secure.test"); err != nil {
		t.Errorf("held message not sealed to the imported certificate: %v", err)
	}
}

func TestPlainInboundPassesUnaltered(t *testing.T) {
	t.Parallel()
	transit, bob := startSink(t), startSink(t)
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]"})
	msg := message("someone@elsewhere.test", "bob@example.net", "plain inbound")
	mustSend(t, netgw.smtp, "someone@elsewhere.test", []string{"bob@example.net"}, msg)
	got := waitMessages(t, bob, 1)[0]
	if !bytes.Equal(withoutTrace(got.Data), []byte(msg)) {
		t.Errorf("plain inbound altered:\n%q\nwant\n%q", got.Data, msg)
	}
	// An untrusted client cannot relay to a foreign domain.
	if err := send(netgw.smtp, "someone@elsewhere.test", []string{"victim@foreign.test"}, msg); err == nil || !strings.Contains(err.Error(), "5.7.1") {
		t.Errorf("open relay: %v", err)
	}
}

func TestEndToEndSMIMEIsEncapsulatedAndComesBackIntact(t *testing.T) {
	t.Parallel()
	transit, bob, orgInner := startSink(t), startSink(t), startSink(t)
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"}, outbound: transit.Addr, inbound: orgInner.Addr})
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]"})

	// Alice encrypts end to end to Bob's personal certificate (played here
	// by other.example.net's), which neither gateway holds a key for.
	inner := message("alice@example.org", "bob@example.net", "personal")
	personal := opensslEncrypt(t, []byte(inner), "other.example.net", "-aes-256-cbc")
	// A mail client puts the transport header fields on its S/MIME message.
	personal = append([]byte("From: <alice@example.org>\r\nTo: <bob@example.net>\r\nSubject: personal\r\nMessage-ID: <personal@e2e.test>\r\n"), personal...)
	mustSend(t, org.smtp, "alice@example.org", []string{"bob@example.net"}, string(personal))
	crossed := waitMessages(t, transit, 1)[0]
	plain, err := opensslDecrypt(t, crossed.Data, "example.net")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(withoutTrace(plain), personal) {
		t.Error("the end-to-end S/MIME message was not encapsulated whole")
	}
	mustSend(t, netgw.smtp, crossed.From, crossed.To, string(crossed.Data))
	got := waitMessages(t, bob, 1)[0]
	if !bytes.Equal(withoutTrace(got.Data), personal) {
		t.Errorf("bob did not receive Alice's end-to-end message intact")
	}
	// It is still Alice's: Bob's key opens it.
	if out, err := opensslDecrypt(t, withoutTrace(got.Data), "other.example.net"); err != nil || !bytes.Equal(out, []byte(inner)) {
		t.Errorf("the inner S/MIME message no longer opens: %v", err)
	}
}

func TestUnopenableInboundIsQuarantinedThenReleased(t *testing.T) {
	t.Parallel()
	transit, bob := startSink(t), startSink(t)
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]"})

	// 1. Tampered ciphertext: quarantined, never relayed.
	msg := message("carol@example.org", "bob@example.net", "tampered")
	sealed := opensslEncrypt(t, []byte(msg), "example.net", "-aes-256-gcm")
	tampered := tamper(sealed)
	mustSend(t, netgw.smtp, "carol@example.org", []string{"bob@example.net"}, string(tampered))

	// 2. Legacy 3DES, refused by default: quarantined too.
	legacy := message("carol@example.org", "bob@example.net", "legacy 3des")
	mustSend(t, netgw.smtp, "carol@example.org", []string{"bob@example.net"}, string(opensslEncrypt(t, []byte(legacy), "example.net", "-des3")))

	netgw.waitQuarantined(2)
	out := netgw.mustRun("quarantine", "list")
	if bob.Count() != 0 {
		t.Fatal("an unopenable message was relayed")
	}
	if !strings.Contains(strings.ToLower(out), "decrypt") {
		t.Errorf("quarantine list gives no reason:\n%s", out)
	}
	var legacyID string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(strings.ToLower(line), "3des") || strings.Contains(strings.ToLower(line), "des-ede3") || strings.Contains(line, "1.2.840.113549.3.7") {
			legacyID = strings.Fields(line)[0]
		}
	}
	if legacyID == "" {
		t.Fatalf("no quarantined message names 3DES:\n%s", out)
	}

	// The operator allows 3DES for this legacy partner and releases it.
	cfg, err := os.ReadFile(netgw.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg = bytes.Replace(cfg, []byte("[admin]"), []byte("[policy]\nallow_3des = true\n\n[admin]"), 1)
	if err := os.WriteFile(netgw.cfgPath, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	netgw.hupConfig() // the reload lands before the release
	if out, err := netgw.run("quarantine", "release", legacyID); err != nil {
		t.Fatalf("release: %v\n%s", err, out)
	}
	got := waitMessages(t, bob, 1)[0]
	if !bytes.Equal(withoutTrace(got.Data), []byte(legacy)) {
		t.Errorf("released message delivered as\n%q", got.Data)
	}
	out, _ = netgw.run("quarantine", "list")
	if !strings.Contains(out, "1 message(s)") {
		t.Errorf("the tampered message should still be in quarantine:\n%s", out)
	}
}

// tamper flips a bit in the middle of the base64 body of a sealed message.
func tamper(sealed []byte) []byte {
	out := bytes.Clone(sealed)
	start := bytes.Index(out, []byte("\n\n"))
	if i := bytes.Index(out, []byte("\r\n\r\n")); i >= 0 && (start < 0 || i < start) {
		start = i
	}
	for i := start + (len(out)-start)*2/3; i < len(out); i++ {
		c := out[i]
		if c >= 'A' && c <= 'Y' {
			out[i] = c + 1
			return out
		}
	}
	panic("no base64 to tamper with")
}

func TestOpenSSLPartnerVariantsAreOpened(t *testing.T) {
	t.Parallel()
	transit, bob := startSink(t), startSink(t)
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]"})
	variants := [][]string{
		{"-aes-128-gcm"},
		{"-aes-256-cbc"},
		{"-aes-128-cbc", "-keyopt", "rsa_padding_mode:oaep"},
		{"-aes-256-gcm", "-keyid"},
	}
	var sent []string
	for i, v := range variants {
		msg := message("carol@example.org", "bob@example.net", fmt.Sprintf("variant %d %v", i, v))
		sent = append(sent, msg)
		mustSend(t, netgw.smtp, "carol@example.org", []string{"bob@example.net"}, string(opensslEncrypt(t, []byte(msg), "example.net", v...)))
	}
	got := waitMessages(t, bob, len(variants))
	for i, m := range got {
		if !bytes.Equal(withoutTrace(m.Data), []byte(sent[i])) && !containsMsg(got, sent[i]) {
			t.Errorf("variant %v not opened to the original", variants[i])
		}
	}
}

func containsMsg(got []mailsink.Message, msg string) bool {
	for _, m := range got {
		if bytes.Equal(withoutTrace(m.Data), []byte(msg)) {
			return true
		}
	}
	return false
}

// TestRequireAEADQuarantinesCBC: with require_aead (EFAIL: CBC content is
// malleable), an inbound CBC message is quarantined, a GCM one delivered.
func TestRequireAEADQuarantinesCBC(t *testing.T) {
	t.Parallel()
	transit, bob := startSink(t), startSink(t)
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]",
		extra: "[policy]\nrequire_aead = true\n"})
	cbc := message("carol@example.org", "bob@example.net", "cbc")
	gcm := message("carol@example.org", "bob@example.net", "gcm")
	mustSend(t, netgw.smtp, "carol@example.org", []string{"bob@example.net"}, string(opensslEncrypt(t, []byte(cbc), "example.net", "-aes-256-cbc")))
	mustSend(t, netgw.smtp, "carol@example.org", []string{"bob@example.net"}, string(opensslEncrypt(t, []byte(gcm), "example.net", "-aes-256-gcm")))
	got := waitMessages(t, bob, 1)[0]
	if !bytes.Equal(withoutTrace(got.Data), []byte(gcm)) {
		t.Errorf("the GCM message was not delivered as sent")
	}
	netgw.waitQuarantined(1)
	if out := netgw.mustRun("quarantine", "list"); !strings.Contains(out, "require_aead") {
		t.Errorf("the quarantine does not name require_aead:\n%s", out)
	}
	if bob.Count() != 1 {
		t.Error("the CBC message was relayed")
	}
}

// TestRequiredTLSBetweenGateways: relay.tls = "required" towards a partner
// gateway that offers STARTTLS (smtp.tls_cert/tls_key): the sealed message
// travels over TLS; towards a next hop without STARTTLS it waits.
func TestRequiredTLSBetweenGateways(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	crt, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	out, err := exec.Command("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=gw.example.net", "-addext", "subjectAltName=DNS:gw.example.net").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl req: %v\n%s", err, out)
	}
	bob, orgInner, plainHop := startSink(t), startSink(t), startSink(t)
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, outbound: plainHop.Addr, inbound: bob.Addr, trusted: "[]",
		smtpExtra: fmt.Sprintf("tls_cert = %q\ntls_key = %q\n", crt, key)})
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"}, outbound: plainHop.Addr, inbound: orgInner.Addr,
		relayTLS: "required", extra: fmt.Sprintf("[relay.routes]\n\"example.net\" = %q\n", netgw.smtp)})

	msg := message("alice@example.org", "bob@example.net", "over TLS")
	mustSend(t, org.smtp, "alice@example.org", []string{"bob@example.net"}, msg)
	got := waitMessages(t, bob, 1)[0]
	if !bytes.Equal(withoutTrace(got.Data), []byte(msg)) {
		t.Error("bob did not get the original")
	}
	// Relayed first, the sending gateway logs its attempt after the partner
	// answered, so a moment after bob has the message.
	overTLS := regexp.MustCompile(`delivery attempt.*bob@example\.net.*tls=TLS1\.[23]`)
	org.waitSample(`smimegate_delivery_attempts_total\{outcome="delivered"\} [1-9][0-9]*`)
	org.expectLog("delivery attempt")
	if !overTLS.MatchString(org.log.String()) {
		t.Errorf("the delivery to the partner gateway was not over TLS:\n%s", org.log.String())
	}

	// The other next hop offers no STARTTLS: the message waits, never in clear.
	mustSend(t, org.smtp, "alice@example.org", []string{"carol@plain.test"}, message("alice@example.org", "carol@plain.test", "no tls"))
	org.waitRecipient("carol@plain.test", "pending", "TLS is required")
	org.expectLog("TLS is required, but was not offered")
	if plainHop.Count() != 0 {
		t.Error("a message went in the clear although relay.tls = required")
	}
}
