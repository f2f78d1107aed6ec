package cms

import (
	"bytes"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// gpgsmSigner is a GNUPGHOME in which gpgsm holds the rsa fixture's
// certificate and secret key, trusted as a root (a self-signed
// certificate needs a "relax" trust line: docs/threats.md section 6).
type gpgsmSigner struct {
	home, fpr string
	env       []string
}

// gpgsmPass protects the fixture key inside the test's own GnuPG home.
const gpgsmPass = "test"

func newGpgsmSigner(t *testing.T) *gpgsmSigner {
	t.Helper()
	requireTool(t, "gpgsm")
	requireTool(t, "openssl")
	home := t.TempDir()
	if err := os.Chmod(home, 0o700); err != nil {
		t.Fatal(err)
	}
	g := &gpgsmSigner{home: home, env: []string{"GNUPGHOME=" + home}}
	t.Cleanup(func() {
		if p, err := execLookPath("gpgconf"); err == nil {
			_ = runQuiet(g.env, p, "--kill", "all")
		}
	})
	if err := os.WriteFile(filepath.Join(home, "gpg-agent.conf"), []byte("allow-loopback-pinentry\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// gpgsm 2.2 reads PKCS#12 only with the legacy PBE that OpenSSL 3
	// still writes on request (3DES, SHA-1 MAC).
	p12 := filepath.Join(home, "key.p12")
	runTool(t, nil, "openssl", "pkcs12", "-export", "-in", fixturePath("rsa", ".crt"), "-inkey", fixturePath("rsa", ".key"),
		"-out", p12, "-passout", "pass:"+gpgsmPass, "-keypbe", "PBE-SHA1-3DES", "-certpbe", "PBE-SHA1-3DES", "-macalg", "sha1")
	g.run(t, gpgsmPass, "--import", p12)
	for _, line := range strings.Split(string(g.run(t, "", "--with-colons", "--list-secret-keys")), "\n") {
		if f := strings.Split(line, ":"); len(f) > 9 && f[0] == "fpr" {
			g.fpr = f[9]
			break
		}
	}
	if g.fpr == "" {
		t.Fatal("gpgsm lists no secret key after the import")
	}
	if err := os.WriteFile(filepath.Join(home, "trustlist.txt"), []byte(g.fpr+" S relax\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return g
}

// run runs gpgsm in the home, with the passphrase on its standard input
// when one is given.
func (g *gpgsmSigner) run(t *testing.T, pass string, args ...string) []byte {
	t.Helper()
	base := []string{"--batch", "--disable-crl-checks", "--disable-policy-checks"}
	if pass != "" {
		base = append(base, "--pinentry-mode", "loopback", "--passphrase-fd", "0")
	}
	return runToolInput(t, g.env, []byte(pass+"\n"), "gpgsm", append(base, args...)...)
}

// TestGpgsmSignatures: gpgsm 2.2 verifies what Sign writes (detached, as
// multipart/signed carries it), and we verify what gpgsm signs: detached
// without the signer's certificate (its default for a root: the verifier
// must hold it), detached with it, and attached.
func TestGpgsmSignatures(t *testing.T) {
	g := newGpgsmSigner(t)
	content := []byte("From: a@example.org\r\nSubject: gpgsm\r\n\r\nsigned by the domain\r\n")
	dir := t.TempDir()
	contentFile := filepath.Join(dir, "content")
	if err := os.WriteFile(contentFile, content, 0o600); err != nil {
		t.Fatal(err)
	}

	// gpgsm verifies ours.
	s := signerFixture(t, "rsa")
	der, err := Sign(content, s, SignOptions{SigningTime: signTime, EncryptionCert: s.Cert, Detached: true})
	if err != nil {
		t.Fatal(err)
	}
	sigFile := filepath.Join(dir, "ours.p7s")
	if err := os.WriteFile(sigFile, der, 0o600); err != nil {
		t.Fatal(err)
	}
	out := string(runToolCombined(t, g.env, "gpgsm", "--batch", "--disable-crl-checks", "--disable-policy-checks", "--status-fd", "1", "--verify", sigFile, contentFile))
	if !strings.Contains(out, "[GNUPG:] GOODSIG") || !strings.Contains(out, "[GNUPG:] VALIDSIG") {
		t.Fatalf("gpgsm does not verify our signature:\n%s", out)
	}
	// ... and not over other content.
	other := filepath.Join(dir, "other")
	os.WriteFile(other, append(bytes.Clone(content), '!'), 0o600)
	if out := string(runToolCombined(t, g.env, "gpgsm", "--batch", "--disable-crl-checks", "--status-fd", "1", "--verify", sigFile, other)); strings.Contains(out, "GOODSIG") {
		t.Fatalf("gpgsm verifies our signature over other content:\n%s", out)
	}

	// We verify gpgsm's.
	held := []*x509.Certificate{s.Cert}
	for _, tc := range []struct {
		name     string
		args     []string
		detached bool
		hasCert  bool
	}{
		{"detached, no certificate", []string{"--detach-sign"}, true, false},
		{"detached, with certificate", []string{"--include-certs", "1", "--detach-sign"}, true, true},
		{"attached", []string{"--include-certs", "1", "--sign"}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outFile := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".p7s")
			os.Remove(outFile)
			g.run(t, gpgsmPass, append(append([]string{"-u", g.fpr}, tc.args...), "-o", outFile, contentFile)...)
			der, err := os.ReadFile(outFile)
			if err != nil {
				t.Fatal(err)
			}
			sd, err := ParseSignedData(der)
			if err != nil {
				t.Fatalf("ParseSignedData: %v", err)
			}
			if got := len(sd.Certificates) > 0; got != tc.hasCert {
				t.Errorf("certificates included: %v, want %v", got, tc.hasCert)
			}
			si := sd.Signers[0]
			cert := sd.Certificate(si, held)
			if cert == nil {
				t.Fatal("no signer certificate")
			}
			var det []byte
			if tc.detached {
				det = content
			}
			if err := sd.Verify(si, cert, det); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if si.SigningTime.IsZero() {
				t.Error("gpgsm's signingTime was not read")
			}
			if tc.detached {
				if err := sd.Verify(si, cert, append(bytes.Clone(content), ' ')); err == nil {
					t.Error("gpgsm's signature verifies over other content")
				}
			}
		})
	}
}

// runToolInput is runTool with stdin.
func runToolInput(t *testing.T, env []string, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// runToolCombined runs a command whose failure is a result to look at
// (gpgsm --verify of a bad signature), returning its output and errors.
func runToolCombined(t *testing.T, env []string, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, _ := cmd.CombinedOutput()
	return out
}
