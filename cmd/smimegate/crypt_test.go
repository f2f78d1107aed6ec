package main

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"smimegate/internal/certstore"
)

// The encrypt and decrypt commands are tested as operators and scripts use
// them: a separate process, a configuration file, certificate directories,
// standard input and output, the exit status, and openssl as the peer.

// cryptTestRunMain makes this test binary the smimegate command when it is
// started with it set, so that the tests run the real dispatcher, flags,
// standard input and output and exit status (with -race instrumentation)
// without building a second binary.
const cryptTestRunMain = "SMIMEGATE_CRYPT_TEST_RUN_MAIN"

func init() {
	if os.Getenv(cryptTestRunMain) == "1" {
		os.Exit(run(os.Args[1:], os.Stderr))
	}
}

// The key pairs of internal/smime/testdata, made once with openssl:
// rsa and ec for example.net, other for example.com.
func cryptTestdata(name string) string {
	return filepath.Join("..", "..", "internal", "smime", "testdata", name)
}

// gatewayDir writes a configuration whose own certificate and partner
// certificate are both the example.net RSA pair (the gateway encrypts to
// itself), plus extra TOML.
func cryptTestGateway(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"own", "partners", "state"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	cryptTestCopy(t, cryptTestdata("rsa.key"), filepath.Join(dir, "own", "example.net.key"))
	cryptTestCopy(t, cryptTestdata("rsa.crt"), filepath.Join(dir, "own", "example.net.crt"))
	cryptTestCopy(t, cryptTestdata("rsa.crt"), filepath.Join(dir, "partners", "example.net.crt"))
	cfg := "state_dir = \"state\"\nlocal_domains = [\"example.org\"]\nlog_level = \"warn\"\n" +
		"[relay]\ninbound = \"127.0.0.1:2700\"\n[certs]\nown = \"own\"\npartners = \"partners\"\n" + extra
	if err := os.WriteFile(filepath.Join(dir, "smimegate.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func cryptTestCopy(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

type cryptTestResult struct {
	stdout, stderr []byte
	code           int
}

func cryptTestRun(t *testing.T, dir string, stdin []byte, args ...string) cryptTestResult {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, args...)
	cmd.Env = append(os.Environ(), cryptTestRunMain+"=1")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return cryptTestResult{out.Bytes(), errb.Bytes(), cmd.ProcessState.ExitCode()}
}

// oneLineError checks a failure: non-zero status, nothing on standard
// output, one line on standard error that says what.
func cryptTestOneLineError(t *testing.T, r cryptTestResult, code int, want string) {
	t.Helper()
	if r.code != code || len(r.stdout) != 0 {
		t.Errorf("exit %d with %d bytes of output, want exit %d and none", r.code, len(r.stdout), code)
	}
	lines := strings.Split(strings.TrimSuffix(string(r.stderr), "\n"), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], want) {
		t.Errorf("standard error %q, want one line with %q", r.stderr, want)
	}
}

func cryptTestOpenSSL(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out
}

const cryptMsg = "From: alice@example.org\r\nTo: bob@sub.example.net\r\nBcc: carol@example.net\r\n" +
	"Subject: Quartalszahlen\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n\r\nGrüße.\r\n"

func TestEncryptDecryptCommands(t *testing.T) {
	t.Parallel()
	dir := cryptTestGateway(t, "")
	// A sub-domain without a certificate of its own uses its parent's
	// (draft-ramsdell section 4, most specific first).
	enc := cryptTestRun(t, dir, []byte(cryptMsg), "encrypt", "-to", "sub.example.net")
	if enc.code != 0 {
		t.Fatalf("encrypt: exit %d: %s", enc.code, enc.stderr)
	}
	if len(enc.stderr) != 0 {
		t.Errorf("encrypt wrote to standard error at log_level warn: %s", enc.stderr)
	}
	hdr, _, _ := bytes.Cut(enc.stdout, []byte("\r\n\r\n"))
	// policy.protect_subject is on by default (RFC 9788): the real
	// Subject travels only inside.
	if !bytes.Contains(hdr, []byte("smime-type=authEnveloped-data")) || bytes.Contains(enc.stdout, []byte("carol")) ||
		!bytes.Contains(hdr, []byte("Subject: [...]")) || bytes.Contains(hdr, []byte("Quartalszahlen")) {
		t.Errorf("outer header:\n%s", hdr)
	}
	sealedFile := filepath.Join(t.TempDir(), "sealed.eml")
	if err := os.WriteFile(sealedFile, enc.stdout, 0o600); err != nil {
		t.Fatal(err)
	}
	got := cryptTestOpenSSL(t, nil, "cms", "-decrypt", "-binary", "-in", sealedFile, "-recip", cryptTestdata("rsa.crt"), "-inkey", cryptTestdata("rsa.key"))
	if string(got) != cryptMsg {
		t.Errorf("openssl cms -decrypt gave %q", got)
	}
	dec := cryptTestRun(t, dir, enc.stdout, "decrypt")
	if dec.code != 0 || cryptTestInside(t, dec.stdout) != cryptMsg {
		t.Errorf("decrypt: exit %d, %q, %s", dec.code, dec.stdout, dec.stderr)
	}
}

func TestEncryptPartnerPolicy(t *testing.T) {
	t.Parallel()
	dir := cryptTestGateway(t, "[policy]\nprotect_subject = false\n"+
		"[policy.partners.\"example.net\"]\ncipher = \"aes128-cbc\"\nrsa_padding = \"oaep\"\nkey_id = \"ski\"\n")
	enc := cryptTestRun(t, dir, []byte(cryptMsg), "encrypt", "-to", "bob@EXAMPLE.net")
	if enc.code != 0 {
		t.Fatalf("encrypt: exit %d: %s", enc.code, enc.stderr)
	}
	if !bytes.Contains(enc.stdout, []byte("smime-type=enveloped-data")) || !bytes.Contains(enc.stdout, []byte("\r\nSubject: Quartalszahlen\r\n")) {
		t.Errorf("outer header:\n%.600s", enc.stdout)
	}
	f := filepath.Join(t.TempDir(), "sealed.eml")
	if err := os.WriteFile(f, enc.stdout, 0o600); err != nil {
		t.Fatal(err)
	}
	structure := string(cryptTestOpenSSL(t, nil, "cms", "-cmsout", "-print", "-in", f))
	for _, want := range []string{"aes-128-cbc", "rsaesOaep", "subjectKeyIdentifier"} {
		if !strings.Contains(structure, want) {
			t.Errorf("openssl cms -print does not show %s", want)
		}
	}
	if dec := cryptTestRun(t, dir, enc.stdout, "decrypt"); dec.code != 0 || cryptTestInside(t, dec.stdout) != cryptMsg {
		t.Errorf("decrypt: exit %d, %s", dec.code, dec.stderr)
	}
}

func TestEncryptRefuses(t *testing.T) {
	t.Parallel()
	dir := cryptTestGateway(t, "[smtp]\nmax_message_bytes = 4096\n")
	cryptTestOneLineError(t, cryptTestRun(t, dir, []byte(cryptMsg), "encrypt", "-to", "example.com"), 1, "no partner certificate for example.com")
	cryptTestOneLineError(t, cryptTestRun(t, dir, []byte(cryptMsg), "encrypt"), 2, "-to DOMAIN is required")
	cryptTestOneLineError(t, cryptTestRun(t, dir, []byte(cryptMsg), "encrypt", "-to", "example.net", "extra"), 2, "unexpected argument")
	cryptTestOneLineError(t, cryptTestRun(t, dir, []byte(cryptMsg), "encrypt", "-to", "exa mple.net"), 1, "not a valid domain")
	cryptTestOneLineError(t, cryptTestRun(t, dir, nil, "encrypt", "-to", "example.net"), 1, "standard input is empty")
	big := []byte(cryptMsg + strings.Repeat("x", 5000))
	cryptTestOneLineError(t, cryptTestRun(t, dir, big, "encrypt", "-to", "example.net"), 1, "larger than smtp.max_message_bytes")
	// An unknown flag: the usage text, and exit status 2.
	if r := cryptTestRun(t, dir, []byte(cryptMsg), "encrypt", "-to", "example.net", "-cipher", "des"); r.code != 2 || len(r.stdout) != 0 ||
		!bytes.Contains(r.stderr, []byte("usage: smimegate encrypt")) {
		t.Errorf("unknown flag: exit %d, %s", r.code, r.stderr)
	}

	// An expired partner certificate is never used.
	exp := cryptTestGateway(t, "")
	cryptTestExpiredCert(t, filepath.Join(exp, "partners", "example.net.crt"))
	r := cryptTestRun(t, exp, []byte(cryptMsg), "encrypt", "-to", "example.net")
	// The store warns about the file first; the error is the last line.
	lines := strings.Split(strings.TrimSpace(string(r.stderr)), "\n")
	if r.code != 1 || len(r.stdout) != 0 || !strings.Contains(lines[len(lines)-1], "no usable partner certificate for example.net (") ||
		!strings.Contains(lines[len(lines)-1], "expired") {
		t.Errorf("expired partner certificate: exit %d, %d bytes out, %s", r.code, len(r.stdout), r.stderr)
	}
}

func TestDecryptOutcomes(t *testing.T) {
	t.Parallel()
	dir := cryptTestGateway(t, "")
	legacy := cryptTestGateway(t, "[policy]\nallow_3des = true\n")
	strict := cryptTestGateway(t, "[policy]\nrequire_aead = true\n")
	plain := []byte(cryptMsg)
	toOther := cryptTestOpenSSL(t, plain, "cms", "-encrypt", "-binary", "-aes-256-gcm", cryptTestdata("other.crt"))
	des := cryptTestOpenSSL(t, plain, "smime", "-encrypt", "-binary", "-des3", cryptTestdata("rsa.crt"))
	cbc := cryptTestOpenSSL(t, plain, "smime", "-encrypt", "-binary", "-aes256", cryptTestdata("rsa.crt"))
	gcm := cryptTestOpenSSL(t, plain, "cms", "-encrypt", "-binary", "-aes-256-gcm", cryptTestdata("rsa.crt"))
	// Flip a byte of the GCM tag: the message is to us but cannot be opened.
	tampered := cryptTestTamper(t, gcm)

	cryptTestOneLineError(t, cryptTestRun(t, dir, plain, "decrypt"), 1, "not encrypted")
	cryptTestOneLineError(t, cryptTestRun(t, dir, toOther, "decrypt"), 1, "not for us")
	cryptTestOneLineError(t, cryptTestRun(t, dir, tampered, "decrypt"), 1, "failed: the message is encrypted but cannot be opened")
	cryptTestOneLineError(t, cryptTestRun(t, dir, des, "decrypt"), 1, "unsupported algorithm")
	cryptTestOneLineError(t, cryptTestRun(t, strict, cbc, "decrypt"), 1, "require_aead")
	cryptTestOneLineError(t, cryptTestRun(t, dir, gcm, "decrypt", "extra"), 2, "unexpected argument")
	for name, c := range map[string]struct {
		dir string
		in  []byte
	}{"3des allowed": {legacy, des}, "smime cbc": {dir, cbc}, "cms gcm": {dir, gcm}, "gcm, require_aead": {strict, gcm}} {
		r := cryptTestRun(t, c.dir, c.in, "decrypt")
		if r.code != 0 || cryptTestInside(t, r.stdout) != cryptMsg {
			t.Errorf("%s: exit %d, %q, %s", name, r.code, r.stdout, r.stderr)
		}
	}
}

// writeExpiredCert writes a domain certificate for example.net, with the
// test RSA key, that expired in 2021.
func cryptTestExpiredCert(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(cryptTestdata("rsa.key"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	key, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	signer := key.(crypto.Signer)
	tmpl := &x509.Certificate{
		SerialNumber:   big.NewInt(7),
		Subject:        pkix.Name{CommonName: "smg_encryptor@example.net"},
		EmailAddresses: []string{"smg_encryptor@example.net"},
		NotBefore:      time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:       time.Date(2021, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:       x509.KeyUsageKeyEncipherment,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// tamperLastBase64 changes the last full base64 line of an S/MIME message,
// which holds the end of the GCM tag.
func cryptTestTamper(t *testing.T, msg []byte) []byte {
	t.Helper()
	lines := strings.Split(strings.TrimRight(string(msg), "\n"), "\n")
	last := []byte(lines[len(lines)-2])
	if last[10] == 'A' {
		last[10] = 'B'
	} else {
		last[10] = 'A'
	}
	lines[len(lines)-2] = string(last)
	return []byte(strings.Join(lines, "\n") + "\n")
}

// TestDecryptGPGSM: what gpgsm --encrypt makes (RSA PKCS #1 v1.5 with
// AES-128-CBC), sent as a mail client sends it, is opened by
// `smimegate decrypt`.
func TestDecryptGPGSM(t *testing.T) {
	t.Parallel()
	// A short home directory: gpg-agent's socket path has a length limit.
	home, err := os.MkdirTemp("", "gpgsm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Stop whatever gpgsm started for this home directory, and only that.
		exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run()
		os.RemoveAll(home)
	})
	fpr := cryptTestOpenSSL(t, nil, "x509", "-in", cryptTestdata("rsa.crt"), "-noout", "-fingerprint", "-sha1")
	_, hex, _ := strings.Cut(strings.TrimSpace(string(fpr)), "=")
	if err := os.WriteFile(filepath.Join(home, "trustlist.txt"), []byte(hex+" S relax\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	gpgsm := func(stdin []byte, args ...string) []byte {
		cmd := exec.Command("gpgsm", append([]string{"--batch", "--disable-crl-checks"}, args...)...)
		cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
		cmd.Stdin = bytes.NewReader(stdin)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("gpgsm %s: %v\n%s", strings.Join(args, " "), err, errb.String())
		}
		return out
	}
	gpgsm(nil, "--import", cryptTestdata("rsa.crt"))
	b64 := gpgsm([]byte(cryptMsg), "--base64", "--encrypt", "-r", "0x"+strings.ReplaceAll(hex, ":", ""))
	mail := "From: alice@example.net\nTo: bob@example.org\nMIME-Version: 1.0\n" +
		"Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\n" +
		"Content-Transfer-Encoding: base64\n\n" + string(b64)
	r := cryptTestRun(t, cryptTestGateway(t, ""), []byte(mail), "decrypt")
	if r.code != 0 || cryptTestInside(t, r.stdout) != cryptMsg {
		t.Errorf("decrypt: exit %d, %q, %s", r.code, r.stdout, r.stderr)
	}
}

// TestDecryptKeepsTrace: `decrypt` writes the outer message's trace fields
// above the decrypted message, as the gateway does (RFC 5321 section 4.4).
func TestDecryptKeepsTrace(t *testing.T) {
	t.Parallel()
	dir := cryptTestGateway(t, "")
	enc := cryptTestRun(t, dir, []byte(cryptMsg), "encrypt", "-to", "sub.example.net")
	if enc.code != 0 {
		t.Fatalf("encrypt: exit %d: %s", enc.code, enc.stderr)
	}
	trace := "Received: from gw.example.org ([192.0.2.7]) by mx.example.net; Tue, 1 Dec 2026 10:00:00 +0000\r\nReturn-Path: <a@example.net>\r\n"
	sealed := enc.stdout
	if bytes.HasPrefix(sealed, []byte("Received:")) {
		t.Fatalf("encrypt wrote a trace field of its own:\n%.200s", sealed)
	}
	dec := cryptTestRun(t, dir, append([]byte(trace), sealed...), "decrypt")
	if dec.code != 0 || cryptTestInside(t, dec.stdout) != trace+cryptMsg {
		t.Errorf("decrypt: exit %d, %q, %s\nwant %q", dec.code, dec.stdout, dec.stderr, trace+cryptMsg)
	}
}

// TestEncryptSigns: with sign = true for the partner, `smimegate encrypt`
// signs with our certificate of the From domain, as the gateway does, and
// openssl decrypts and verifies the result back to the original; without
// a certificate that can sign for the From domain it writes nothing.
func TestEncryptSigns(t *testing.T) {
	t.Parallel()
	dir := cryptTestGateway(t, "[policy.partners.\"example.net\"]\nsign = true\n")
	refused := cryptTestRun(t, dir, []byte(cryptMsg), "encrypt", "-to", "example.net")
	if refused.code == 0 || len(refused.stdout) != 0 || !strings.Contains(string(refused.stderr), "wants our domain signature") {
		t.Fatalf("without a signing certificate for example.org: exit %d, %d bytes out: %s", refused.code, len(refused.stdout), refused.stderr)
	}
	g, err := certstore.Generate(certstore.KeygenOptions{Domains: []string{"example.org"}, KeyType: "p256"})
	if err != nil {
		t.Fatal(err)
	}
	orgCrt := filepath.Join(dir, "own", "example.org.crt")
	os.WriteFile(orgCrt, g.CertPEM, 0o600)
	os.WriteFile(filepath.Join(dir, "own", "example.org.key"), g.KeyPEM, 0o600)
	enc := cryptTestRun(t, dir, []byte(cryptMsg), "encrypt", "-to", "example.net")
	if enc.code != 0 {
		t.Fatalf("encrypt: exit %d: %s", enc.code, enc.stderr)
	}
	f := filepath.Join(t.TempDir(), "sealed.eml")
	if err := os.WriteFile(f, enc.stdout, 0o600); err != nil {
		t.Fatal(err)
	}
	payload := cryptTestOpenSSL(t, nil, "cms", "-decrypt", "-binary", "-in", f, "-recip", cryptTestdata("rsa.crt"), "-inkey", cryptTestdata("rsa.key"))
	if !bytes.Contains(payload, []byte(`hp="cipher"`)) || !bytes.Contains(payload, []byte("multipart/signed")) {
		t.Fatalf("not a signed payload:\n%.400s", payload)
	}
	pf := filepath.Join(t.TempDir(), "payload.eml")
	os.WriteFile(pf, payload, 0o600)
	if got := cryptTestOpenSSL(t, nil, "cms", "-verify", "-in", pf, "-CAfile", orgCrt); string(got) != cryptMsg {
		t.Errorf("openssl cms -verify gave %q", got)
	}
}

// cryptTestInside returns what `decrypt` wrote below the fields the
// gateway puts on every copy it opened (our Received field, our
// Authentication-Results and Smimegate-Decrypted fields), and fails the
// test if they are not there, in that order.
func cryptTestInside(t *testing.T, out []byte) string {
	t.Helper()
	rest := string(out)
	for _, name := range []string{"Received: by ", "Authentication-Results: ", "Smimegate-Decrypted: "} {
		if !strings.HasPrefix(rest, name) {
			t.Errorf("decrypt output does not start with our %q field:\n%.300s", name, rest)
			return rest
		}
		// The field and its continuation lines (RFC 5322 section 2.2.3).
		end := strings.Index(rest, "\r\n")
		for end >= 0 && end+2 < len(rest) && (rest[end+2] == ' ' || rest[end+2] == '\t') {
			next := strings.Index(rest[end+2:], "\r\n")
			if next < 0 {
				end = -1
				break
			}
			end += 2 + next
		}
		if end < 0 {
			t.Errorf("decrypt output ends inside our %q field", name)
			return ""
		}
		rest = rest[end+2:]
	}
	return rest
}
