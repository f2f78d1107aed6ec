package smime

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"smimegate/internal/cms"
)

// signNow is the clock of the signature tests.
var signNow = time.Date(2027, 1, 15, 10, 0, 0, 0, time.UTC)

// signedMsg is the message the tests sign: from the example.net domain,
// whose fixture certificate (rsa) signs.
const signedMsg = "Received: from client by gw.example.net; Sat, 28 Nov 2026 10:00:00 +0000\r\n" +
	"From: Alice <alice@example.net>\r\nTo: bob@example.com\r\nSubject: the real subject\r\n" +
	"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <signed@example.net>\r\nBcc: hidden@example.com\r\n" +
	"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
	"Grüße, signed by the domain.\r\n"

// domainNames are the local parts of a domain certificate in these tests.
var domainNames = []string{"smg_encryptor", "domain-confidentiality-authority", "domain-signing-authority"}

// testDomains is the gateway's Domains, over the fixtures' mailboxes.
func testDomains(c *x509.Certificate) []string {
	var out []string
	for _, e := range c.EmailAddresses {
		local, d, ok := strings.Cut(e, "@")
		if ok && slices.Contains(domainNames, local) && !slices.Contains(out, strings.ToLower(d)) {
			out = append(out, strings.ToLower(d))
		}
	}
	return out
}

func testCanonical(addr string) (string, bool) {
	i := strings.LastIndexByte(addr, '@')
	if i < 0 || i == len(addr)-1 {
		return "", false
	}
	return strings.ToLower(addr[i+1:]), true
}

// trustOnly trusts exactly the given certificates, for the domains they name.
func trustOnly(certs ...*x509.Certificate) func(*x509.Certificate, []*x509.Certificate, string, time.Time) error {
	return func(c *x509.Certificate, _ []*x509.Certificate, domain string, _ time.Time) error {
		for _, t := range certs {
			if t.Equal(c) && slices.Contains(testDomains(t), domain) {
				return nil
			}
		}
		return errors.New("neither held for the domain nor chained to a trust anchor")
	}
}

func signerOf(t testing.TB, name string) cms.Signer {
	kp := loadPair(t, name)
	return cms.Signer{Cert: kp.Cert, Key: kp.Key.(crypto.Signer)}
}

func check(envelope string, trusted ...*x509.Certificate) DomainCheck {
	return DomainCheck{Canonical: testCanonical, EnvelopeSender: envelope, Domains: testDomains, Trust: trustOnly(trusted...), Held: trusted, Now: signNow}
}

// signedPayload is what Seal encrypts for msg when it signs: the payload,
// as a partner's gateway finds it after decryption.
func signedPayload(t testing.TB, msg string, s cms.Signer) []byte {
	t.Helper()
	opts := SealOptions{ProtectSubject: true, Sign: &SignOptions{Signer: s, EncryptionCert: s.Cert, Time: signNow}}
	prefix, k, suffix, err := payloadParts([]byte(msg), &opts)
	if err != nil {
		t.Fatal(err)
	}
	return splice([]byte(msg), prefix, k, suffix)
}

// TestSealSignedRoundTrip: a message signed and sealed opens as an RFC 9788
// payload (hp="cipher", HP-Outer, the protected header copied) that Open
// restores to a plain multipart/signed; its domain signature passes, and
// taking the layer off gives the original byte for byte.
func TestSealSignedRoundTrip(t *testing.T) {
	t.Parallel()
	s := signerOf(t, "rsa")
	other := loadPair(t, "other")
	for _, c := range []cms.ContentCipher{cms.AES256GCM, cms.AES128CBC} {
		out := sealed(t, []byte(signedMsg), SealOptions{Recipients: []cms.Recipient{{Cert: other.Cert}}, Cipher: c, ProtectSubject: true,
			Sign: &SignOptions{Signer: s, EncryptionCert: s.Cert, Time: signNow}})
		if h := header(out); !strings.Contains(h, "Subject: [...]\r\n") || strings.Contains(h, "real subject") {
			t.Fatalf("%v: outer header %q", c, h)
		}
		// The payload as the partner decrypts it, before restoration.
		r := Open(out, []cms.KeyPair{other}, OpenOptions{})
		if r.Outcome != Opened {
			t.Fatalf("%v: %v %v", c, r.Outcome, r.Err)
		}
		h := header(r.Message)
		if strings.Contains(h, "HP-Outer") || strings.Contains(h, "hp=") {
			t.Errorf("%v: Open left the header protection markings: %q", c, h)
		}
		if !strings.Contains(h, "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256;") ||
			!strings.Contains(h, "Subject: the real subject\r\n") || strings.Contains(h, "Received:") {
			t.Errorf("%v: payload header %q", c, h)
		}
		res := VerifyDomainSignature(r.Message, check("alice@example.net", s.Cert))
		if res.Verdict != VerdictPass || res.Domain != "example.net" || !res.DomainLayer || !res.Signer.Equal(s.Cert) {
			t.Fatalf("%v: %+v", c, res)
		}
		if !res.SignerInfo.EncryptionKeyPreference.Matches(s.Cert) || !res.SignerInfo.SigningTime.Equal(signNow) {
			t.Errorf("%v: attributes %+v", c, res.SignerInfo)
		}
		got, trace, err := RemoveSignatureLayer(r.Message, res.Signature, OpenOptions{})
		if err != nil || !bytes.Equal(got, []byte(signedMsg)) || len(trace) != 0 {
			t.Errorf("%v: without the layer (%v, trace %q):\n%q", c, err, trace, got)
		}
	}
}

// TestSignedPayloadMarkings: the payload carries RFC 9788's markings for
// the outer fields Seal wrote, and they are exactly the outer ones.
func TestSignedPayloadMarkings(t *testing.T) {
	t.Parallel()
	p := signedPayload(t, signedMsg, signerOf(t, "rsa"))
	h := header(p)
	for _, w := range []string{"HP-Outer: From: Alice <alice@example.net>\r\n", "HP-Outer: To: bob@example.com\r\n", "HP-Outer: Subject: [...]\r\n",
		"HP-Outer: Date: ", "HP-Outer: Message-ID: <signed@example.net>\r\n", `hp="cipher"`, "Bcc: hidden@example.com\r\n"} {
		if !strings.Contains(h, w) {
			t.Errorf("payload header lacks %q:\n%s", w, h)
		}
	}
	if strings.Contains(h, "HP-Outer: Bcc") || strings.Contains(h, "HP-Outer: Received") {
		t.Errorf("HP-Outer names a field that never stood outside:\n%s", h)
	}
	// On input, an hp payload is a whole message even without a From.
	noFrom := []byte("Content-Type: text/plain; hp=\"cipher\"\r\nSubject: inner\r\n\r\nbody\r\n")
	out, err := unwrap(noFrom, []byte("From: outer@example.org\r\nSubject: outer\r\n\r\n"), DefaultMaxHeaderBytes)
	if err != nil || !bytes.Equal(out, noFrom) {
		t.Errorf("an hp payload was joined to the outer header: %q, %v", out, err)
	}
}

// TestDomainSignatureVerdicts: every way a domain signature can fail gives
// its documented verdict and reason, and none gives a pass.
func TestDomainSignatureVerdicts(t *testing.T) {
	t.Parallel()
	s := signerOf(t, "rsa") // example.net
	ec := signerOf(t, "ec") // example.net too, another key
	good := signedPayload(t, signedMsg, s)
	otherMsg := strings.Replace(signedMsg, "signed by the domain", "a different text", 1)
	other := signedPayload(t, otherMsg, s)
	// A signature over another message: the first part of one, the
	// signature part of the other.
	i, j := bytes.Index(good, []byte("Grüße, signed")), bytes.Index(other, []byte("Grüße, a different"))
	swapped := append(bytes.Clone(other[:j]), good[i:i+len("Grüße, signed by the domain.")]...)
	swapped = append(swapped, other[j+len("Grüße, a different text."):]...)

	noUsage := noSignUsageSigner(t)
	tests := []struct {
		name    string
		msg     []byte
		check   DomainCheck
		verdict Verdict
		reason  string
	}{
		{"valid", good, check("alice@example.net", s.Cert), VerdictPass, ""},
		{"sub-domain envelope", good, check("bounce@mail.example.net", s.Cert), VerdictPass, ""},
		{"tampered content", bytes.Replace(good, []byte("signed by the domain"), []byte("signed by the d0main"), 1), check("alice@example.net", s.Cert), VerdictFail, ReasonBadSignature},
		{"tampered signed header", replaceLast(good, "Subject: the real subject", "Subject: the fake subject"), check("alice@example.net", s.Cert), VerdictFail, ReasonBadSignature},
		{"signature over a different message", swapped, check("alice@example.net", s.Cert), VerdictFail, ReasonBadSignature},
		{"untrusted signer", good, check("alice@example.net", ec.Cert), VerdictFail, ReasonUntrusted},
		{"expired signer", good, func() DomainCheck {
			c := check("alice@example.net", s.Cert)
			c.Now = s.Cert.NotAfter.Add(time.Hour)
			return c
		}(), VerdictFail, ReasonExpired},
		{"wrong signer domain", signedPayload(t, strings.ReplaceAll(signedMsg, "alice@example.net", "ceo@example.org"), s), check("ceo@example.org", s.Cert), VerdictNeutral, ReasonWrongDomain},
		{"envelope outside the domain", good, check("attacker@evil.example", s.Cert), VerdictNeutral, ReasonEnvelope},
		{"null envelope sender", good, check("", s.Cert), VerdictNeutral, ReasonEnvelope},
		{"display name claims another domain", signedPayload(t, strings.Replace(signedMsg, "Alice <alice", "\"ceo@example.org\" <alice", 1), s), check("alice@example.net", s.Cert), VerdictNeutral, ReasonAmbiguousSender},
		{"two From fields", signedPayload(t, strings.Replace(signedMsg, "To: ", "From: ceo@example.org\r\nTo: ", 1), s), check("alice@example.net", s.Cert), VerdictNeutral, ReasonAmbiguousSender},
		{"wrapper From differs from the signed one", bytes.Replace(good, []byte("From: Alice <alice@example.net>\r\nTo"), []byte("From: ceo@example.org\r\nTo"), 1), check("alice@example.net", s.Cert), VerdictNeutral, ReasonAmbiguousSender},
		{"no digitalSignature", signedPayload(t, signedMsg, noUsage), check("alice@example.net", noUsage.Cert), VerdictFail, ReasonKeyUsage},
		{"unsigned", []byte(signedMsg), check("alice@example.net", s.Cert), VerdictNone, ReasonUnsigned},
		{"malformed signature part", bytes.Replace(good, []byte("\r\n\r\nMII"), []byte("\r\n\r\n!!!"), 1), check("alice@example.net", s.Cert), VerdictPermError, ReasonMalformed},
	}
	for _, tc := range tests {
		res := VerifyDomainSignature(tc.msg, tc.check)
		if res.Verdict != tc.verdict || res.Reason != tc.reason {
			t.Errorf("%s: %s (%s: %s), want %s (%s)", tc.name, res.Verdict, res.Reason, res.Detail, tc.verdict, tc.reason)
		}
	}
}

// TestUserSignatureIsNoDomainLayer: a signature by a certificate that names
// no domain signer (a user's) is never a domain signature, and its layer is
// never marked for removal.
func TestUserSignatureIsNoDomainLayer(t *testing.T) {
	t.Parallel()
	s := signerOf(t, "rsa")
	c := check("alice@example.net", s.Cert)
	c.Domains = func(*x509.Certificate) []string { return nil }
	res := VerifyDomainSignature(signedPayload(t, signedMsg, s), c)
	if res.Verdict == VerdictPass || res.DomainLayer || res.Reason != ReasonWrongDomain {
		t.Fatalf("%+v", res)
	}
}

// noSignUsageSigner is a P-256 certificate for example.net whose key usage
// is keyAgreement alone: it may not sign.
func noSignUsageSigner(t testing.TB) cms.Signer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:   big.NewInt(7),
		Subject:        pkix.Name{CommonName: "example.net"},
		NotBefore:      signNow.Add(-time.Hour),
		NotAfter:       signNow.Add(365 * 24 * time.Hour),
		KeyUsage:       x509.KeyUsageKeyAgreement,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		EmailAddresses: []string{"domain-signing-authority@example.net"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cms.Signer{Cert: cert, Key: key}
}

// TestOpenSSLVerifiesSealedSignature: what a partner decrypts with
// `openssl cms -decrypt` is a standard signed message: `openssl cms
// -verify` with our certificate gives back the original byte for byte,
// and gpgsm verifies its signature part over its first part.
func TestOpenSSLVerifiesSealedSignature(t *testing.T) {
	t.Parallel()
	s := signerOf(t, "rsa")
	other := loadPair(t, "other")
	dir := t.TempDir()
	out := sealed(t, []byte(signedMsg), SealOptions{Recipients: []cms.Recipient{{Cert: other.Cert}}, Cipher: cms.AES256GCM, ProtectSubject: true,
		Sign: &SignOptions{Signer: s, EncryptionCert: s.Cert, Time: signNow}})
	sealedFile := filepath.Join(dir, "sealed.eml")
	os.WriteFile(sealedFile, out, 0o600)
	payload := runTool(t, nil, nil, "openssl", "cms", "-decrypt", "-binary", "-in", sealedFile, "-recip", fixture("other.crt"), "-inkey", fixture("other.key"))
	if !strings.Contains(string(payload), `hp="cipher"`) {
		t.Fatalf("the payload is not marked: %q", header(payload))
	}
	payloadFile := filepath.Join(dir, "payload.eml")
	os.WriteFile(payloadFile, payload, 0o600)
	// The payload is CRLF mail: OpenSSL reads it in its default text mode,
	// or with -binary -crlfeol (its -binary alone assumes LF framing and
	// keeps the CR before each delimiter as content).
	for _, mode := range [][]string{nil, {"-binary", "-crlfeol"}} {
		args := append(append([]string{"cms", "-verify"}, mode...), "-in", payloadFile, "-CAfile", fixture("rsa.crt"))
		if got := runTool(t, nil, nil, "openssl", args...); !bytes.Equal(got, []byte(signedMsg)) {
			t.Fatalf("openssl %v gave\n%q\nwant\n%q", args, got, signedMsg)
		}
	}
	// A changed first part fails OpenSSL's verification too.
	tampered := filepath.Join(dir, "tampered.eml")
	os.WriteFile(tampered, bytes.Replace(payload, []byte("signed by the domain"), []byte("signed by the d0main"), 1), 0o600)
	if err := runToolErr(nil, "openssl", "cms", "-verify", "-in", tampered, "-CAfile", fixture("rsa.crt")); err == nil {
		t.Fatal("openssl verifies a changed message")
	}

	// gpgsm reads no MIME: it gets the signature part and the first part.
	sig, err := FindSignature(RestoreHeaderProtection(bytes.Clone(payload)), OpenOptions{})
	if err != nil || sig == nil {
		t.Fatalf("FindSignature: %v", err)
	}
	home := gpgsmHome(t, "rsa.crt")
	p7s, content := filepath.Join(dir, "smime.p7s"), filepath.Join(dir, "content")
	os.WriteFile(p7s, sigDER(t, sig), 0o600)
	os.WriteFile(content, sig.Detached, 0o600)
	status := runToolCombined(t, home, "gpgsm", "--batch", "--disable-crl-checks", "--disable-policy-checks", "--status-fd", "1", "--verify", p7s, content)
	if !strings.Contains(status, "[GNUPG:] GOODSIG") || !strings.Contains(status, "[GNUPG:] VALIDSIG") {
		t.Fatalf("gpgsm does not verify the domain signature:\n%s", status)
	}
}

// header returns the header section of a message.
func header(msg []byte) string {
	h, _ := splitHeader(msg)
	return string(h)
}

func sigDER(t testing.TB, s *Signature) []byte { return s.DER }

// runToolErr runs a peer whose failure is the expected result.
func runToolErr(env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	return cmd.Run()
}

// runToolCombined runs a peer and returns its output and errors together.
func runToolCombined(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, _ := cmd.CombinedOutput()
	return string(out)
}

// gpgsmHome is a short-lived GNUPGHOME that trusts the fixture certificate
// as a root ("S relax", docs/threats.md section 6), and its environment.
func gpgsmHome(t testing.TB, crt string) []string {
	t.Helper()
	home, err := os.MkdirTemp("", "gpgsm")
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"GNUPGHOME=" + home}
	t.Cleanup(func() {
		exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run()
		os.RemoveAll(home)
	})
	fpr := runTool(t, nil, nil, "openssl", "x509", "-in", fixture(crt), "-noout", "-fingerprint", "-sha1")
	_, hex, _ := strings.Cut(strings.TrimSpace(string(fpr)), "=")
	if err := os.WriteFile(filepath.Join(home, "trustlist.txt"), []byte(hex+" S relax\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runTool(t, env, nil, "gpgsm", "--batch", "--disable-crl-checks", "--import", fixture(crt))
	return env
}

// replaceLast replaces the last occurrence of old in b: in a signed
// payload, the one inside the signed part rather than the copy above it.
func replaceLast(b []byte, old, new string) []byte {
	i := bytes.LastIndex(b, []byte(old))
	if i < 0 {
		panic("replaceLast: " + old + " not found")
	}
	return append(append(bytes.Clone(b[:i]), new...), b[i+len(old):]...)
}

// TestUserSignatureBesideDomainSignature: a layer signed by the domain and
// by a user (two SignerInfos, as `openssl cms -sign` writes with two
// signers) passes for the domain, but is never marked for removal: taking
// it off would take the user's own signature with it.
func TestUserSignatureBesideDomainSignature(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(11), Subject: pkix.Name{CommonName: "Alice"}, NotBefore: signNow.Add(-time.Hour), NotAfter: signNow.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}, EmailAddresses: []string{"alice@example.net"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := x509.MarshalPKCS8PrivateKey(key)
	userCrt, userKey := filepath.Join(dir, "user.crt"), filepath.Join(dir, "user.key")
	os.WriteFile(userCrt, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(userKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600)
	in := filepath.Join(dir, "msg.eml")
	os.WriteFile(in, []byte(signedMsg), 0o600)
	signed := runTool(t, nil, nil, "openssl", "cms", "-sign", "-in", in, "-signer", fixture("rsa.crt"), "-inkey", fixture("rsa.key"), "-signer", userCrt, "-inkey", userKey)
	signed = bytes.ReplaceAll(bytes.ReplaceAll(signed, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
	s := signerOf(t, "rsa")
	c := check("alice@example.net", s.Cert)
	c.Now = time.Now() // OpenSSL signs at its own clock
	res := VerifyDomainSignature(signed, c)
	if res.Verdict != VerdictPass || len(res.Signature.Data.Signers) != 2 {
		t.Fatalf("%+v", res)
	}
	if res.DomainLayer {
		t.Error("a layer with a user's signature is marked for removal")
	}
}

// TestEntitySignatureCoversNoHeader: a domain signature over a body entity
// (as mail clients sign) passes, and says that the header around it is not
// covered; ours, over the whole message, says it is.
func TestEntitySignatureCoversNoHeader(t *testing.T) {
	t.Parallel()
	s := signerOf(t, "rsa")
	entity := []byte("Content-Type: text/plain; charset=us-ascii\r\n\r\nthe body alone is signed\r\n")
	der, err := cms.Sign(entity, s, cms.SignOptions{SigningTime: signNow, Detached: true})
	if err != nil {
		t.Fatal(err)
	}
	b64 := wrapBase64(base64.StdEncoding.EncodeToString(der))
	msg := "From: alice@example.net\r\nTo: bob@example.com\r\nSubject: not covered\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"b\"\r\n\r\n" +
		"--b\r\n" + string(entity) + "\r\n--b\r\nContent-Type: application/pkcs7-signature\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64 + "--b--\r\n"
	res := VerifyDomainSignature([]byte(msg), check("alice@example.net", s.Cert))
	if res.Verdict != VerdictPass || res.WholeMessage {
		t.Fatalf("%+v", res)
	}
	out, _, err := RemoveSignatureLayer([]byte(msg), res.Signature, OpenOptions{})
	if err != nil || !strings.HasPrefix(string(out), "From: alice@example.net\r\nTo: bob@example.com\r\nSubject: not covered\r\nMIME-Version: 1.0\r\nContent-Type: text/plain") {
		t.Errorf("without the layer: %v\n%q", err, out)
	}
	if r := VerifyDomainSignature(signedPayload(t, signedMsg, s), check("alice@example.net", s.Cert)); !r.WholeMessage {
		t.Error("our signature over the whole message is not marked as covering the header")
	}
}
