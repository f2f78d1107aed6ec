package cms

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWeDecryptGpgsm: GnuPG's gpgsm encrypts to our RSA certificate (with
// its defaults, PKCS #1 v1.5 and AES-128-CBC, streamed as BER) and we
// decrypt. gpgsm runs in a temporary GNUPGHOME; encryption needs no agent.
func TestWeDecryptGpgsm(t *testing.T) {
	requireTool(t, "gpgsm")
	home := t.TempDir()
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	env := []string{"GNUPGHOME=" + home}
	// Stop any daemon gpgsm may have started for this home.
	t.Cleanup(func() {
		if p, err := execLookPath("gpgconf"); err == nil {
			_ = runQuiet(env, p, "--kill", "all")
		}
	})
	crt, err := filepath.Abs(fixturePath("rsa", ".crt"))
	if err != nil {
		t.Fatal(err)
	}
	runTool(t, env, "gpgsm", "--batch", "--import", crt)
	fpr := ""
	for _, line := range strings.Split(string(runTool(t, env, "gpgsm", "--batch", "--with-colons", "--list-keys")), "\n") {
		if f := strings.Split(line, ":"); len(f) > 9 && f[0] == "fpr" {
			fpr = f[9]
			break
		}
	}
	if fpr == "" {
		t.Fatal("gpgsm lists no fingerprint for the imported certificate")
	}
	// A self-signed certificate is its own root: trust it, relaxed.
	if err := os.WriteFile(filepath.Join(home, "trustlist.txt"), []byte(fpr+" S relax\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{0, 1, 100, 70000} {
		plain := make([]byte, size)
		rand.Read(plain)
		in := filepath.Join(home, "plain")
		out := filepath.Join(home, "out.p7m")
		os.Remove(out)
		if err := os.WriteFile(in, plain, 0o600); err != nil {
			t.Fatal(err)
		}
		runTool(t, env, "gpgsm", "--batch", "--disable-crl-checks", "--disable-policy-checks", "-r", fpr, "--encrypt", "-o", out, in)
		der, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		got, info, err := Decrypt(der, []KeyPair{fixture(t, "p256"), fixture(t, "rsa")}, DecryptOptions{})
		if err != nil {
			t.Fatalf("%d bytes: Decrypt: %v", size, err)
		}
		if !bytes.Equal(got, plain) {
			t.Fatalf("%d bytes: plaintext differs", size)
		}
		if info.KeyTransport != "rsa-pkcs1v15" || info.Cipher != "aes128-cbc" || info.ContentType != "envelopedData" {
			t.Fatalf("%d bytes: info = %+v", size, info)
		}
	}
}
