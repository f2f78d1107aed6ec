package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The domain signature tests (issue 14: trust between domains). Gateway A
// (example.org) signs for B (example.net); B requires example.org's
// signature; real peers (openssl, gpgsm) sign and verify on either side.

// ourVerdict returns the Authentication-Results field with our hostname,
// unfolded, or "".
func ourVerdict(msg []byte, host string) string {
	h := header(msg)
	var out []string
	for _, f := range strings.Split(strings.ReplaceAll(strings.ReplaceAll(h, "\r\n\t", " "), "\r\n ", " "), "\r\n") {
		if strings.HasPrefix(strings.ToLower(f), "authentication-results:") {
			out = append(out, f)
		}
	}
	for _, f := range out {
		if strings.Contains(f, "Authentication-Results: "+host+";") {
			return f
		}
	}
	return ""
}

// countFields counts header fields of a name (case-insensitive) at the
// start of a line of the header.
func countFields(msg []byte, name string) int {
	return len(regexp.MustCompile(`(?im)^`+regexp.QuoteMeta(name)+`:`).FindAllIndex([]byte(header(msg)), -1))
}

// opensslSign signs a whole message as a partner's gateway on OpenSSL
// would: multipart/signed (detached), CRLF.
func opensslSign(t *testing.T, msg []byte, crt, key string, args ...string) []byte {
	t.Helper()
	in := filepath.Join(t.TempDir(), "in.eml")
	if err := os.WriteFile(in, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	cmdArgs := append([]string{"cms", "-sign", "-in", in, "-signer", crt, "-inkey", key}, args...)
	out, err := exec.Command("openssl", cmdArgs...).Output()
	if err != nil {
		t.Fatalf("openssl %v: %v", cmdArgs, err)
	}
	return crlf(out)
}

// multipartSigned wraps content and a DER signature as multipart/signed,
// under the given top header fields.
func multipartSigned(top string, content, sig []byte) []byte {
	var b bytes.Buffer
	b.WriteString(top)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"e2e-boundary\"\r\n\r\n")
	b.WriteString("--e2e-boundary\r\n")
	b.Write(content)
	b.WriteString("\r\n--e2e-boundary\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(sig)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--e2e-boundary--\r\n")
	return b.Bytes()
}

// splitSigned returns the first part and the decoded signature of a
// multipart/signed message, read independently of the gateway's code.
func splitSigned(t *testing.T, msg []byte) (content, sig []byte) {
	t.Helper()
	m := regexp.MustCompile(`boundary="([^"]+)"`).FindSubmatch([]byte(header(msg)))
	if m == nil {
		t.Fatalf("no boundary in %q", header(msg))
	}
	delim := []byte("--" + string(m[1]))
	i := bytes.Index(msg, delim)
	start := i + len(delim) + 2
	j := bytes.Index(msg[start:], append([]byte("\r\n"), delim...))
	content = msg[start : start+j]
	rest := msg[start+j+2+len(delim)+2:]
	_, b64, _ := strings.Cut(string(rest), "\r\n\r\n")
	b64, _, _ = strings.Cut(b64, "\r\n"+string(delim)+"--")
	sig, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(b64, "\r\n", ""))
	if err != nil {
		t.Fatalf("signature part: %v", err)
	}
	return content, sig
}

// TestDomainSignedBetweenGateways: A signs inside its encryption for B; a
// partner decrypting with OpenSSL finds a standard signed message that
// `openssl cms -verify` and gpgsm verify; B verifies it, says smime=pass,
// takes the layer off and delivers the original byte for byte. An outsider
// who encrypts to B with B's public certificate and writes From: ceo@
// example.org is quarantined; the same from a domain without
// require_signature is delivered with smime=none and without the verdict
// it forged.
func TestDomainSignedBetweenGateways(t *testing.T) {
	t.Parallel()
	transit, orgInner, bob := startSink(t), startSink(t), startSink(t)
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"}, outbound: transit.Addr, inbound: orgInner.Addr,
		extra: "[policy.partners.\"example.net\"]\nsign = true\n"})
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, partners: []string{"example.org"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]",
		extra: "[policy.partners.\"example.org\"]\nrequire_signature = true\n"})

	msg := message("alice@example.org", "bob@example.net", "Board minutes")
	mustSend(t, org.smtp, "alice@example.org", []string{"bob@example.net"}, msg)
	crossed := waitMessages(t, transit, 1)[0]
	if h := header(crossed.Data); !strings.Contains(h, "Subject: [...]") || strings.Contains(h, "Board minutes") {
		t.Errorf("the outer Subject is not protected:\n%s", h)
	}
	if !strings.Contains(org.log.String(), "signed with our certificate sha256:") {
		t.Errorf("A did not log its signature:\n%s", org.log.String())
	}

	// A partner on OpenSSL: decrypt, then verify with A's certificate.
	payload, err := opensslDecrypt(t, crossed.Data, "example.net")
	if err != nil {
		t.Fatal(err)
	}
	if ph := header(payload); !strings.Contains(ph, `hp="cipher"`) || !strings.Contains(ph, "HP-Outer: Subject: [...]") || !strings.Contains(ph, "multipart/signed") {
		t.Errorf("the payload is not an RFC 9788 signed payload:\n%s", ph)
	}
	orgCrt, _ := keyFiles("example.org")
	pf := filepath.Join(t.TempDir(), "payload.eml")
	os.WriteFile(pf, payload, 0o600)
	verified, err := exec.Command("openssl", "cms", "-verify", "-in", pf, "-CAfile", orgCrt).Output()
	if err != nil {
		t.Fatalf("openssl cms -verify: %v", err)
	}
	if !bytes.Equal(withoutTrace(verified), []byte(msg)) {
		t.Errorf("openssl cms -verify gave\n%q\nwant\n%q", verified, msg)
	}
	// gpgsm verifies the signature part over the first part.
	content, sig := splitSigned(t, payload)
	if out := gpgsmVerify(t, "example.org", sig, content); !strings.Contains(out, "[GNUPG:] GOODSIG") {
		t.Errorf("gpgsm does not verify A's domain signature:\n%s", out)
	}

	// B verifies and delivers the original.
	mustSend(t, netgw.smtp, crossed.From, crossed.To, string(crossed.Data))
	got := waitMessages(t, bob, 1)[0]
	v := ourVerdict(got.Data, "gw.example.net")
	for _, w := range []string{"smime=pass (domain signature of example.org over the whole message; arrived encrypted to our domain certificate sha256:", "body.smime-identifier=domain-signing-authority@example.org", "body.smime-serial=", "body.smime-issuer="} {
		if !strings.Contains(v, w) {
			t.Errorf("B's verdict lacks %q:\n%s", w, v)
		}
	}
	if countFields(got.Data, "Smimegate-Decrypted") != 1 {
		t.Errorf("no Smimegate-Decrypted field:\n%s", header(got.Data))
	}
	if !bytes.Equal(withoutTrace(got.Data), []byte(msg)) {
		t.Errorf("bob received\n%q\nwant\n%q", got.Data, msg)
	}

	// An outsider with B's public certificate, claiming example.org, and
	// forging B's verdict inside and out.
	forged := "Authentication-Results: gw.example.net; smime=pass body.smime-identifier=domain-signing-authority@example.org"
	ceo := message("ceo@example.org", "bob@example.net", "Wire the money today", forged, "Smimegate-Decrypted: gw.example.net; cert-sha256=00; cipher=aes256-gcm")
	sealed := opensslEncrypt(t, []byte(ceo), "example.net", "-aes-256-gcm")
	mustSend(t, netgw.smtp, "ceo@example.org", []string{"bob@example.net"}, forged+"\r\n"+string(sealed))
	netgw.waitQuarantined(1)
	out := netgw.mustRun("quarantine", "list")
	if !strings.Contains(out, "require_signature") || !strings.Contains(out, "unsigned") {
		t.Errorf("the quarantine does not say why:\n%s", out)
	}

	// The same from a domain without require_signature: delivered, with
	// our own verdict only.
	other := message("ceo@other.test", "bob@example.net", "Wire the money", forged, "Smimegate-Decrypted: forged")
	mustSend(t, netgw.smtp, "ceo@other.test", []string{"bob@example.net"}, forged+"\r\n"+string(opensslEncrypt(t, []byte(other), "example.net", "-aes-256-gcm")))
	got = waitMessages(t, bob, 2)[1]
	if v := ourVerdict(got.Data, "gw.example.net"); !strings.Contains(v, "smime=none (not signed; arrived encrypted") {
		t.Errorf("verdict %q", v)
	}
	if n := countFields(got.Data, "Authentication-Results"); n != 1 || bytes.Contains(got.Data, []byte("smime=pass")) {
		t.Errorf("%d Authentication-Results fields, or a forged pass survived:\n%s", n, header(got.Data))
	}
	if bytes.Contains(got.Data, []byte("Smimegate-Decrypted: forged")) || countFields(got.Data, "Smimegate-Decrypted") != 1 {
		t.Errorf("the forged field of ours survived:\n%s", header(got.Data))
	}
}

// gpgsmVerify runs gpgsm --verify on a detached signature in a home that
// trusts domain's certificate ("S relax", docs/threats.md section 6).
func gpgsmVerify(t *testing.T, domain string, sig, content []byte) string {
	t.Helper()
	home := gpgsmHomeFor(t, domain, false)
	dir := t.TempDir()
	sf, cf := filepath.Join(dir, "s.p7s"), filepath.Join(dir, "c.eml")
	os.WriteFile(sf, sig, 0o600)
	os.WriteFile(cf, content, 0o600)
	cmd := exec.Command("gpgsm", "--batch", "--disable-crl-checks", "--disable-policy-checks", "--status-fd", "1", "--verify", sf, cf)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
	out, _ := cmd.CombinedOutput()
	return string(out)
}

// gpgsmPass protects the keys imported into the tests' gpgsm homes.
const gpgsmPass = "e2e"

// gpgsmHomeFor makes a GnuPG home that trusts domain's certificate and,
// with secret, holds its key too (imported as PKCS#12 with the legacy PBE
// that gpgsm 2.2 reads).
func gpgsmHomeFor(t *testing.T, domain string, secret bool) string {
	t.Helper()
	if _, err := exec.LookPath("gpgsm"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("gpgsm is not installed")
		}
		t.Skip("gpgsm is not installed")
	}
	home, err := os.MkdirTemp("", "gpgsm-e2e")
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"GNUPGHOME=" + home}
	t.Cleanup(func() {
		exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run()
		os.RemoveAll(home)
	})
	crt, key := keyFiles(domain)
	fpr, err := exec.Command("openssl", "x509", "-in", crt, "-noout", "-fingerprint", "-sha1").Output()
	if err != nil {
		t.Fatal(err)
	}
	_, hex, _ := strings.Cut(strings.TrimSpace(string(fpr)), "=")
	os.WriteFile(filepath.Join(home, "trustlist.txt"), []byte(hex+" S relax\n"), 0o600)
	os.WriteFile(filepath.Join(home, "gpg-agent.conf"), []byte("allow-loopback-pinentry\n"), 0o600)
	run := func(stdin string, args ...string) {
		cmd := exec.Command("gpgsm", append([]string{"--batch", "--disable-crl-checks", "--disable-policy-checks", "--pinentry-mode", "loopback", "--passphrase-fd", "0"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdin = strings.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("gpgsm %v: %v\n%s", args, err, out)
		}
	}
	if !secret {
		run("", "--import", crt)
		return home
	}
	p12 := filepath.Join(home, "k.p12")
	if out, err := exec.Command("openssl", "pkcs12", "-export", "-in", crt, "-inkey", key, "-out", p12, "-passout", "pass:"+gpgsmPass,
		"-keypbe", "PBE-SHA1-3DES", "-certpbe", "PBE-SHA1-3DES", "-macalg", "sha1").CombinedOutput(); err != nil {
		t.Fatalf("openssl pkcs12: %v\n%s", err, out)
	}
	run(gpgsmPass+"\n", "--import", p12)
	return home
}

// gpgsmSign makes a detached signature of content with domain's key.
func gpgsmSign(t *testing.T, domain string, content []byte) []byte {
	t.Helper()
	home := gpgsmHomeFor(t, domain, true)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.eml"), filepath.Join(dir, "out.p7s")
	os.WriteFile(in, content, 0o600)
	crt, _ := keyFiles(domain)
	fpr, _ := exec.Command("openssl", "x509", "-in", crt, "-noout", "-fingerprint", "-sha1").Output()
	_, hex, _ := strings.Cut(strings.TrimSpace(string(fpr)), "=")
	cmd := exec.Command("gpgsm", "--batch", "--disable-crl-checks", "--disable-policy-checks", "--pinentry-mode", "loopback", "--passphrase-fd", "0",
		"--include-certs", "1", "-u", "0x"+strings.ReplaceAll(hex, ":", ""), "--detach-sign", "-o", out, in)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
	cmd.Stdin = strings.NewReader(gpgsmPass + "\n")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gpgsm --detach-sign: %v\n%s", err, b)
	}
	sig, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// TestPeerSignaturesAreVerified: B (requiring example.org's signature)
// passes a whole message that OpenSSL signed with example.org's domain
// certificate and encrypted, and one that gpgsm signed; every forgery
// gives its documented result and never smime=pass.
func TestPeerSignaturesAreVerified(t *testing.T) {
	t.Parallel()
	transit, bob := startSink(t), startSink(t)
	expiredDir := makeSigner(t, "example.org", time.Now().Add(-30*24*time.Hour), time.Now().Add(-24*time.Hour))
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, partners: []string{"example.org", "other.example.net"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]",
		extra: "[policy.partners.\"example.org\"]\nrequire_signature = true\n"})
	copyFile(t, filepath.Join(expiredDir, "signer.crt"), filepath.Join(netgw.dir, "partners", "expired-signer.crt"))
	netgw.hupConfig()
	orgCrt, orgKey := keyFiles("example.org")
	send := func(msg []byte) {
		t.Helper()
		mustSend(t, netgw.smtp, "alice@example.org", []string{"bob@example.net"}, string(opensslEncrypt(t, msg, "example.net", "-aes-256-gcm")))
	}

	// OpenSSL signs (S/MIME multipart/signed over the whole message).
	msg := []byte(message("alice@example.org", "bob@example.net", "signed by OpenSSL"))
	send(opensslSign(t, msg, orgCrt, orgKey))
	got := waitMessages(t, bob, 1)[0]
	if v := ourVerdict(got.Data, "gw.example.net"); !strings.Contains(v, "smime=pass (domain signature of example.org") {
		t.Errorf("OpenSSL's signature: verdict %q", v)
	}
	if !bytes.Equal(withoutTrace(got.Data), msg) {
		t.Errorf("OpenSSL's signed message arrived as\n%q", got.Data)
	}

	// gpgsm signs; the multipart/signed is built around it.
	msg2 := []byte(message("alice@example.org", "bob@example.net", "signed by gpgsm"))
	send(multipartSigned("From: <alice@example.org>\r\nTo: <bob@example.net>\r\n", msg2, gpgsmSign(t, "example.org", msg2)))
	got = waitMessages(t, bob, 2)[1]
	if v := ourVerdict(got.Data, "gw.example.net"); !strings.Contains(v, "smime=pass (domain signature of example.org") {
		t.Errorf("gpgsm's signature: verdict %q", v)
	}
	if !bytes.Equal(withoutTrace(got.Data), msg2) {
		t.Errorf("gpgsm's signed message arrived as\n%q", got.Data)
	}

	// The forgeries, each quarantined with its reason.
	signed := opensslSign(t, []byte(message("alice@example.org", "bob@example.net", "tampered")), orgCrt, orgKey)
	send(bytes.Replace(signed, []byte("Dear recipient"), []byte("Dear r3cipient"), 1))
	otherCrt, otherKey := keyFiles("other.example.net")
	send(opensslSign(t, []byte(message("alice@example.org", "bob@example.net", "wrong signer")), otherCrt, otherKey))
	// A certificate for example.org that nobody holds: anyone can make one.
	stranger := makeSigner(t, "example.org", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	send(opensslSign(t, []byte(message("alice@example.org", "bob@example.net", "untrusted")), filepath.Join(stranger, "signer.crt"), filepath.Join(stranger, "signer.key")))
	one, two := []byte(message("alice@example.org", "bob@example.net", "first")), []byte(message("alice@example.org", "bob@example.net", "second"))
	_, sigOfOne := splitSigned(t, opensslSign(t, one, orgCrt, orgKey))
	send(multipartSigned("From: <alice@example.org>\r\n", two, sigOfOne))
	send(opensslSign(t, []byte(message("alice@example.org", "bob@example.net", "expired")), filepath.Join(expiredDir, "signer.crt"), filepath.Join(expiredDir, "signer.key")))
	netgw.waitQuarantined(5)
	out := netgw.mustRun("quarantine", "list")
	for _, w := range []string{"bad signature", "wrong signer domain", "untrusted", "expired"} {
		if !strings.Contains(out, w) {
			t.Errorf("no quarantined message says %q:\n%s", w, out)
		}
	}
	if strings.Count(out, "bad signature") < 2 {
		t.Errorf("the tampered message and the signature over another message should both say bad signature:\n%s", out)
	}
	if n := len(waitMessages(t, bob, 2)); n != 2 {
		t.Errorf("bob got %d messages", n)
	}
}

// makeSigner makes a self-signed P-256 domain signing certificate for
// domain, valid from notBefore to notAfter (OpenSSL 3.0 cannot backdate
// one), with its key, in PEM files signer.crt and signer.key.
func makeSigner(t *testing.T, domain string, notBefore, notAfter time.Time) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:   big.NewInt(time.Now().UnixNano()),
		Subject:        pkix.Name{CommonName: domain + " signer"},
		NotBefore:      notBefore,
		NotAfter:       notAfter,
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		EmailAddresses: []string{"domain-signing-authority@" + domain},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "signer.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, "signer.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600)
	return dir
}

// TestForgedVerdictInPlainMail: plain inbound mail loses every
// Authentication-Results field for our host and every field of ours, and
// is otherwise relayed as it came; nothing of the kind passes through.
func TestForgedVerdictInPlainMail(t *testing.T) {
	t.Parallel()
	transit, bob := startSink(t), startSink(t)
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]"})
	msg := message("mallory@elsewhere.test", "bob@example.net", "plain",
		"Authentication-Results: (sneaky) GW.Example.NET; smime=pass",
		"Authentication-Results: mx.elsewhere.test; spf=pass",
		"SMIMEGATE-Decrypted: gw.example.net; cert-sha256=00")
	mustSend(t, netgw.smtp, "mallory@elsewhere.test", []string{"bob@example.net"}, msg)
	got := waitMessages(t, bob, 1)[0]
	if bytes.Contains(got.Data, []byte("smime=pass")) || bytes.Contains(bytes.ToLower(got.Data), []byte("smimegate-decrypted")) {
		t.Errorf("a forged field of ours survived:\n%s", header(got.Data))
	}
	if !bytes.Contains(got.Data, []byte("Authentication-Results: mx.elsewhere.test; spf=pass")) {
		t.Errorf("another host's verdict was removed:\n%s", header(got.Data))
	}
	want := strings.NewReplacer("Authentication-Results: (sneaky) GW.Example.NET; smime=pass\r\n", "", "SMIMEGATE-Decrypted: gw.example.net; cert-sha256=00\r\n", "").Replace(msg)
	if !bytes.Equal(withoutTrace(got.Data), []byte(want)) {
		t.Errorf("bob got\n%q\nwant\n%q", got.Data, want)
	}
}

// TestKeepDomainSignature: with keep_domain_signature the verified layer
// stays, and the recipient's own tools still verify it.
func TestKeepDomainSignature(t *testing.T) {
	t.Parallel()
	transit, bob := startSink(t), startSink(t)
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, partners: []string{"example.org"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]",
		extra: "[policy]\nkeep_domain_signature = true\n"})
	orgCrt, orgKey := keyFiles("example.org")
	msg := []byte(message("alice@example.org", "bob@example.net", "kept"))
	mustSend(t, netgw.smtp, "alice@example.org", []string{"bob@example.net"}, string(opensslEncrypt(t, opensslSign(t, msg, orgCrt, orgKey), "example.net", "-aes-256-gcm")))
	got := waitMessages(t, bob, 1)[0]
	if v := ourVerdict(got.Data, "gw.example.net"); !strings.Contains(v, "smime=pass") {
		t.Errorf("verdict %q", v)
	}
	if !strings.Contains(header(got.Data), "multipart/signed") || !strings.Contains(header(got.Data), "Subject: kept") {
		t.Fatalf("the layer was not kept:\n%s", header(got.Data))
	}
	f := filepath.Join(t.TempDir(), "kept.eml")
	os.WriteFile(f, got.Data, 0o600)
	verified, err := exec.Command("openssl", "cms", "-verify", "-in", f, "-CAfile", orgCrt).Output()
	if err != nil || !bytes.Equal(verified, msg) {
		t.Errorf("openssl cms -verify of the kept layer: %v\n%q", err, verified)
	}
}

// testCA is a CA made in the test, for certificates that chain to trust
// anchors.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "e2e partner CA"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key}
}

// issue writes a P-256 certificate (signed by ca, or self-signed when ca
// is nil) and its key as NAME.crt and NAME.key in dir.
func (ca *testCA) issue(t *testing.T, dir, name string, usage x509.KeyUsage, emails ...string) (crt, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: usage, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}, EmailAddresses: emails, BasicConstraintsValid: true}
	parent, parentKey := tmpl, k
	if ca != nil {
		parent, parentKey = ca.cert, ca.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &k.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := x509.MarshalPKCS8PrivateKey(k)
	crt, key = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	os.WriteFile(crt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600)
	return crt, key
}

// TestHarvestFromSignature: B trusts a CA (certs.trust_anchors) and holds no
// certificate of example.org. A message that example.org's CA-issued
// signing certificate signed carries a new encryption certificate of
// example.org and a self-signed one; B passes the signature, harvests the
// CA-issued certificate (listed as harvested by `cert list`), never the
// stranger, and mail from B to example.org is encrypted to it from then on.
func TestHarvestFromSignature(t *testing.T) {
	t.Parallel()
	transit, bob := startSink(t), startSink(t)
	ca := newTestCA(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}), 0o600)
	signerCrt, signerKey := ca.issue(t, dir, "org-signer", x509.KeyUsageDigitalSignature, "domain-signing-authority@example.org")
	encCrt, encKey := ca.issue(t, dir, "org-new-enc", x509.KeyUsageKeyAgreement, "smg_encryptor@example.org")
	strangerCrt, _ := (*testCA)(nil).issue(t, dir, "org-stranger", x509.KeyUsageKeyAgreement, "smg_encryptor@example.org")

	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, outbound: transit.Addr, inbound: bob.Addr})
	netgw.stop()
	anchors := filepath.Join(netgw.dir, "anchors")
	os.MkdirAll(anchors, 0o700)
	copyFile(t, filepath.Join(dir, "ca.crt"), filepath.Join(anchors, "ca.crt"))
	cfg, _ := os.ReadFile(netgw.cfgPath)
	// The test CA publishes no OCSP responder or CRL, which strict
	// revocation (the default with trust anchors) refuses for the signer
	// and the harvested certificate alike; soft takes them.
	os.WriteFile(netgw.cfgPath, bytes.Replace(cfg, []byte("partners = \"partners\"\n"), []byte("partners = \"partners\"\ntrust_anchors = \"anchors\"\nrevocation = \"soft\"\n"), 1), 0o600)
	netgw.start()

	extra := filepath.Join(dir, "extra.pem")
	a, _ := os.ReadFile(encCrt)
	b, _ := os.ReadFile(strangerCrt)
	os.WriteFile(extra, append(a, b...), 0o600)
	msg := []byte(message("alice@example.org", "bob@example.net", "our new key"))
	signed := opensslSign(t, msg, signerCrt, signerKey, "-certfile", extra)
	mustSend(t, netgw.smtp, "alice@example.org", []string{"bob@example.net"}, string(opensslEncrypt(t, signed, "example.net", "-aes-256-gcm")))
	got := waitMessages(t, bob, 1)[0]
	if v := ourVerdict(got.Data, "gw.example.net"); !strings.Contains(v, "smime=pass (domain signature of example.org") {
		t.Fatalf("verdict %q", v)
	}
	encFP := sha256Hex(t, encCrt)
	out := netgw.waitRun("the new certificate harvested", func(out string) bool { return strings.Contains(out, encFP) }, "cert", "list")
	line := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, encFP) {
			line = l
		}
	}
	if !strings.Contains(line, "harvested") || !strings.Contains(line, "example.org") {
		t.Errorf("cert list does not show the certificate as harvested:\n%s", out)
	}
	if strings.Contains(out, sha256Hex(t, strangerCrt)) {
		t.Errorf("the self-signed stranger was harvested:\n%s", out)
	}

	// Mail to example.org is now encrypted to the harvested certificate.
	mustSend(t, netgw.smtp, "bob@example.net", []string{"alice@example.org"}, message("bob@example.net", "alice@example.org", "thanks"))
	sealed := waitMessages(t, transit, 1)[0]
	in := filepath.Join(t.TempDir(), "sealed.eml")
	os.WriteFile(in, sealed.Data, 0o600)
	if out, err := exec.Command("openssl", "cms", "-decrypt", "-in", in, "-recip", encCrt, "-inkey", encKey).CombinedOutput(); err != nil || !bytes.Contains(out, []byte(secretLine)) {
		t.Errorf("mail to example.org is not encrypted to the harvested certificate: %v\n%.300s", err, out)
	}
}

func sha256Hex(t *testing.T, crtFile string) string {
	t.Helper()
	out, err := exec.Command("openssl", "x509", "-in", crtFile, "-noout", "-fingerprint", "-sha256").Output()
	if err != nil {
		t.Fatal(err)
	}
	_, fp, _ := strings.Cut(strings.TrimSpace(string(out)), "=")
	return strings.ToLower(strings.ReplaceAll(fp, ":", ""))
}

// TestRequireAEADKeyedOnFrom: a partner's require_aead is no longer
// bypassed by another MAIL FROM: CBC content whose From claims the partner
// is quarantined whatever the envelope says, and CBC from elsewhere is not.
func TestRequireAEADKeyedOnFrom(t *testing.T) {
	t.Parallel()
	transit, bob := startSink(t), startSink(t)
	netgw := startGateway(t, gatewayOptions{domain: "example.net", own: []string{"example.net"}, outbound: transit.Addr, inbound: bob.Addr, trusted: "[]",
		extra: "[policy.partners.\"example.org\"]\nrequire_aead = true\n"})
	claimed := message("carol@example.org", "bob@example.net", "cbc, From the partner, MAIL FROM elsewhere")
	mustSend(t, netgw.smtp, "bounce@elsewhere.test", []string{"bob@example.net"}, string(opensslEncrypt(t, []byte(claimed), "example.net", "-aes-256-cbc")))
	other := message("dave@elsewhere.test", "bob@example.net", "cbc from elsewhere")
	mustSend(t, netgw.smtp, "dave@elsewhere.test", []string{"bob@example.net"}, string(opensslEncrypt(t, []byte(other), "example.net", "-aes-256-cbc")))
	got := waitMessages(t, bob, 1)[0]
	if !bytes.Equal(withoutTrace(got.Data), []byte(other)) {
		t.Errorf("bob got\n%q", got.Data)
	}
	netgw.waitRun("the partner's CBC mail quarantined", func(out string) bool {
		return strings.Contains(out, "1 message(s)") && strings.Contains(out, "require_aead") && strings.Contains(out, "example.org")
	}, "quarantine", "list")
	if bob.Count() != 1 {
		t.Error("the partner's CBC message was relayed")
	}
}
