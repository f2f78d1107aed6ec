package e2e

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// Post-quantum domain encryption (issue 18): a partner whose certificate
// `keygen -key mlkem768-x25519` made receives a KEMRecipientInfo, opens it
// and gets the original byte for byte; during a migration every usable
// certificate gets a RecipientInfo; require_pq keeps only the post-quantum
// one, and holds the mail of a partner without one.

var (
	pqKeysOnce sync.Once
	pqKeysErr  error
)

// pqKeys makes, once, with the binary's keygen, the keys of pq.test: a
// composite ML-KEM-768 + X25519 key (keysDir/pq.test, so that keyFiles
// and gatewayOptions.own find it) and, for the migration, an RSA key of
// the same domain (keysDir/pq.test-rsa).
func pqKeys(t *testing.T) {
	t.Helper()
	pqKeysOnce.Do(func() {
		for _, k := range []struct{ dir, kind string }{{"pq.test", "mlkem768-x25519"}, {"pq.test-rsa", "rsa2048"}} {
			out, err := exec.Command(bin, "keygen", "-domain", "pq.test", "-key", k.kind, "-out", filepath.Join(keysDir, k.dir)).CombinedOutput()
			if err != nil {
				pqKeysErr = fmt.Errorf("keygen %s: %v\n%s", k.kind, err, out)
				return
			}
		}
	})
	if pqKeysErr != nil {
		t.Fatal(pqKeysErr)
	}
}

// recipientInfos returns the RecipientInfos of a sealed message as OpenSSL
// parses them (`openssl asn1parse`): one line per RecipientInfo, the tag
// followed by the OBJECT IDENTIFIERs inside it.
func recipientInfos(t *testing.T, sealed []byte) []string {
	t.Helper()
	_, body, ok := bytes.Cut(sealed, []byte("\r\n\r\n"))
	if !ok {
		t.Fatal("no body")
	}
	der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(body)), ""))
	if err != nil {
		t.Fatalf("the body is not base64: %v", err)
	}
	f := filepath.Join(t.TempDir(), "m.der")
	if err := os.WriteFile(f, der, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("openssl", "asn1parse", "-inform", "DER", "-in", f).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl asn1parse: %v\n%s", err, out)
	}
	// ContentInfo d=0, [0] d=1, the enveloped SEQUENCE d=2, its version
	// and recipientInfos SET d=3, each RecipientInfo d=4.
	line := regexp.MustCompile(`d=(\d+)\s+hl=\d+\s+l=\s*\d+\s+(?:cons|prim):\s+(.*)$`)
	var ris []string
	inSet := false
	for _, l := range strings.Split(string(out), "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		depth, what := m[1], strings.TrimSpace(m[2])
		switch {
		case depth == "3":
			inSet = strings.HasPrefix(what, "SET")
		case inSet && depth == "4":
			ris = append(ris, what)
		case inSet && strings.HasPrefix(what, "OBJECT") && len(ris) > 0:
			_, oid, _ := strings.Cut(what, ":")
			ris[len(ris)-1] += " " + oid
		}
	}
	return ris
}

func TestPostQuantumPartner(t *testing.T) {
	t.Parallel()
	pqKeys(t)
	transit, bob, orgInner := startSink(t), startSink(t), startSink(t)
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, outbound: transit.Addr, inbound: orgInner.Addr})
	pqgw := startGateway(t, gatewayOptions{domain: "pq.test", own: []string{"pq.test"}, partners: []string{"example.org"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]"})

	// The partner's KEM certificate is imported like any other.
	crt, _ := keyFiles("pq.test")
	if out, err := org.run("cert", "import", crt); err != nil || !strings.Contains(out, "mlkem768-x25519") {
		t.Fatalf("cert import: %v\n%s", err, out)
	}
	org.hupCerts(1)
	if out := org.mustRun("cert", "show", "pq.test"); !strings.Contains(out, "encrypted to 1 certificate(s) of pq.test") || !strings.Contains(out, "mlkem768-x25519") {
		t.Fatalf("the imported KEM certificate is not in use:\n%s", out)
	}

	msg := message("alice@example.org", "bob@pq.test", "Quantum-safe lab results")
	mustSend(t, org.smtp, "alice@example.org", []string{"bob@pq.test"}, msg)
	crossed := waitMessages(t, transit, 1)[0]
	if bytes.Contains(crossed.Data, []byte(secretLine)) {
		t.Fatal("the body crossed in the clear")
	}
	// On the wire: one RecipientInfo, an ori KEMRecipientInfo of
	// id-MLKEM768-X25519-SHA3-256, and nothing else.
	ris := recipientInfos(t, crossed.Data)
	if len(ris) != 1 || !strings.HasPrefix(ris[0], "cont [ 4 ]") ||
		!strings.Contains(ris[0], "1.2.840.113549.1.9.16.13.3") || !strings.Contains(ris[0], "1.3.6.1.5.5.7.6.58") {
		t.Fatalf("RecipientInfos on the wire: %q", ris)
	}
	// A copy whose kemct was changed is for pq.test (its RecipientInfo
	// names pq.test's certificate) but does not open: it is quarantined,
	// never relayed, as any undecryptable mail to us.
	mustSend(t, pqgw.smtp, crossed.From, crossed.To, string(tamperKEMCiphertext(t, crossed.Data)))
	pqgw.waitQuarantined(1)

	// The partner opens the real one and delivers the original byte for byte.
	mustSend(t, pqgw.smtp, crossed.From, crossed.To, string(crossed.Data))
	got := waitMessages(t, bob, 1)
	if len(got) != 1 || !bytes.Equal(withoutTrace(got[0].Data), []byte(msg)) {
		t.Errorf("bob received %d message(s), first\n%q\nwant\n%q", len(got), got[0].Data, msg)
	}
}

// tamperKEMCiphertext flips a byte inside the ML-KEM ciphertext of a
// sealed message (after the OID of id-MLKEM768-X25519-SHA3-256 and the
// header of the kemct OCTET STRING), leaving its structure intact.
func tamperKEMCiphertext(t *testing.T, sealed []byte) []byte {
	t.Helper()
	head, body, _ := bytes.Cut(sealed, []byte("\r\n\r\n"))
	der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(body)), ""))
	if err != nil {
		t.Fatal(err)
	}
	oid := []byte{0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x06, 0x3a}
	i := bytes.Index(der, oid)
	if i < 0 {
		t.Fatal("no id-MLKEM768-X25519-SHA3-256 in the message")
	}
	der[i+len(oid)+4+100] ^= 0x01 // OCTET STRING, 0x82 and two length octets, then the kemct
	enc := base64.StdEncoding.EncodeToString(der)
	var b bytes.Buffer
	b.Write(head)
	b.WriteString("\r\n\r\n")
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}

// TestPostQuantumMigration: a partner with an RSA and an ML-KEM
// certificate gets a RecipientInfo for each; with require_pq only the
// KEMRecipientInfo; and a require_pq partner with RSA alone is held, its
// mail never sealed to RSA nor sent in the clear.
func TestPostQuantumMigration(t *testing.T) {
	t.Parallel()
	pqKeys(t)
	rsaCrt := filepath.Join(keysDir, "pq.test-rsa", "pq.test.crt")
	transit, bob, inner := startSink(t), startSink(t), startSink(t)
	both := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"pq.test"}, outbound: transit.Addr, inbound: inner.Addr})
	copyFile(t, rsaCrt, filepath.Join(both.dir, "partners", "pq.test-rsa.crt"))
	both.hupCerts(1)
	if out := both.mustRun("cert", "show", "pq.test"); !strings.Contains(out, "encrypted to 2 certificate(s)") {
		t.Fatalf("the RSA certificate is not in use:\n%s", out)
	}

	pqgw := startGateway(t, gatewayOptions{domain: "pq.test", own: []string{"pq.test"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]"})

	msg := message("alice@example.org", "bob@pq.test", "migration")
	mustSend(t, both.smtp, "alice@example.org", []string{"bob@pq.test"}, msg)
	crossed := waitMessages(t, transit, 1)[0]
	ris := recipientInfos(t, crossed.Data)
	var kem, ktri int
	for _, ri := range ris {
		switch {
		case strings.HasPrefix(ri, "cont [ 4 ]") && strings.Contains(ri, "1.3.6.1.5.5.7.6.58"):
			kem++
		case strings.HasPrefix(ri, "SEQUENCE") && strings.Contains(ri, "rsaEncryption"):
			ktri++
		}
	}
	if len(ris) != 2 || kem != 1 || ktri != 1 {
		t.Fatalf("RecipientInfos during the migration: %q", ris)
	}
	// The RSA key alone opens it too (with OpenSSL), and the KEM gateway.
	rsaKey := filepath.Join(keysDir, "pq.test-rsa", "pq.test.key")
	in := filepath.Join(t.TempDir(), "in.eml")
	if err := os.WriteFile(in, crossed.Data, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("openssl", "cms", "-decrypt", "-binary", "-in", in, "-recip", rsaCrt, "-inkey", rsaKey).Output(); err != nil || !bytes.Equal(withoutTrace(out), []byte(msg)) {
		t.Errorf("openssl with the RSA key: %v", err)
	}
	mustSend(t, pqgw.smtp, crossed.From, crossed.To, string(crossed.Data))
	if got := waitMessages(t, bob, 1)[0]; !bytes.Equal(withoutTrace(got.Data), []byte(msg)) {
		t.Errorf("the KEM gateway delivered\n%q", got.Data)
	}

	// require_pq: the same two certificates, only the KEM one is used; and
	// a partner with RSA alone (example.net) is held.
	transit2 := startSink(t)
	pqOnly := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"pq.test", "example.net"}, outbound: transit2.Addr, inbound: inner.Addr,
		extra: "[policy.partners.\"pq.test\"]\nrequire_pq = true\n[policy.partners.\"example.net\"]\nrequire_pq = true\n"})
	copyFile(t, rsaCrt, filepath.Join(pqOnly.dir, "partners", "pq.test-rsa.crt"))
	pqOnly.hupCerts(1)
	if out := pqOnly.mustRun("cert", "show", "pq.test"); !strings.Contains(out, "encrypted to 1 certificate(s) of pq.test") || !strings.Contains(out, "not post-quantum") {
		t.Fatalf("require_pq does not narrow to the KEM certificate:\n%s", out)
	}
	mustSend(t, pqOnly.smtp, "alice@example.org", []string{"bob@pq.test"}, message("alice@example.org", "bob@pq.test", "pq only"))
	sealed := waitMessages(t, transit2, 1)[0]
	if ris := recipientInfos(t, sealed.Data); len(ris) != 1 || !strings.Contains(ris[0], "1.3.6.1.5.5.7.6.58") {
		t.Errorf("RecipientInfos under require_pq: %q", ris)
	}
	mustSend(t, pqOnly.smtp, "alice@example.org", []string{"carol@example.net"}, message("alice@example.org", "carol@example.net", "held"))
	pqOnly.waitRecipient("carol@example.net", "held", "")
	out := pqOnly.mustRun("queue", "list")
	if !strings.Contains(out, "carol@example.net (held)") {
		t.Errorf("queue list does not show the require_pq partner's mail as held:\n%s", out)
	}
	if n := transit2.Count(); n != 1 {
		t.Errorf("%d messages left; the one for example.net must be held:\n%s", n, out)
	}
	pqOnly.expectLog("partner requires post-quantum encryption")
}
