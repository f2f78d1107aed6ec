package cms

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// These tests run the openssl command (OpenSSL 3.0 in CI) as the peer: it
// must read what we write byte for byte, and we must read what it writes
// in every form a sender can choose (ciphers, paddings, KDF digests,
// -keyid, -stream BER).

func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed; the interop tests need it (.ci/run installs it)", name)
	}
	return p
}

func runTool(t *testing.T, env []string, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func fixturePath(name, ext string) string { return filepath.Join("testdata", name+ext) }

// TestOpenSSLDecryptsOurs: we encrypt, openssl cms -decrypt recovers the
// exact bytes, for every cipher, key type, padding and identifier form.
func TestOpenSSLDecryptsOurs(t *testing.T) {
	requireTool(t, "openssl")
	dir := t.TempDir()
	type rcase struct {
		key     string
		padding RSAPadding
	}
	keys := []rcase{{"rsa", PKCS1v15}, {"rsa", OAEP}, {"p256", 0}, {"p384", 0}, {"p521", 0}}
	for _, c := range []ContentCipher{AES256GCM, AES128GCM, AES128CBC, AES192CBC, AES256CBC} {
		for _, k := range keys {
			for _, ski := range []bool{false, true} {
				name := fmt.Sprintf("%s/%s/%s/ski=%v", c, k.key, k.padding, ski)
				t.Run(name, func(t *testing.T) {
					// Binary content with CR, LF and NUL: -binary must keep it.
					plain := make([]byte, 3000)
					rand.Read(plain)
					kp := fixture(t, k.key)
					der := encryptTo(t, plain, EncryptOptions{Cipher: c}, Recipient{Cert: kp.Cert, RSAPadding: k.padding, UseSKI: ski})
					in := filepath.Join(dir, "in.p7m")
					if err := os.WriteFile(in, der, 0o600); err != nil {
						t.Fatal(err)
					}
					got := runTool(t, nil, "openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in", in,
						"-recip", fixturePath(k.key, ".crt"), "-inkey", fixturePath(k.key, ".key"))
					if !bytes.Equal(got, plain) {
						t.Fatalf("openssl recovered %d bytes that differ from the %d we encrypted", len(got), len(plain))
					}
				})
			}
		}
	}
}

// TestOpenSSLFieldsWeWrite checks the encoding details that openssl shows:
// OAEP parameters written out in full, a 16-byte GCM tag length, and the
// ECDH scheme with a key wrap sized to the content key.
func TestOpenSSLFieldsWeWrite(t *testing.T) {
	requireTool(t, "openssl")
	dir := t.TempDir()
	print := func(der []byte) string {
		in := filepath.Join(dir, "p.p7m")
		if err := os.WriteFile(in, der, 0o600); err != nil {
			t.Fatal(err)
		}
		return string(runTool(t, nil, "openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", in))
	}
	out := print(encryptTo(t, []byte("x"), EncryptOptions{}, Recipient{Cert: fixture(t, "rsa").Cert, RSAPadding: OAEP}))
	// GCMParameters: a 12-byte nonce and aes-ICVlen 16 (printed in hex).
	for _, want := range []string{"rsaesOaep", ":sha256", ":mgf1", "aes-256-gcm", "INTEGER           :10", "version: 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("OAEP/GCM output lacks %q:\n%s", want, out)
		}
	}
	out = print(encryptTo(t, []byte("x"), EncryptOptions{Cipher: AES128CBC}, Recipient{Cert: fixture(t, "p384").Cert, UseSKI: true}))
	for _, want := range []string{"dhSinglePass-stdDH-sha256kdf-scheme", "id-aes128-wrap", "aes-128-cbc", "d.rKeyId"} {
		if !strings.Contains(out, want) {
			t.Errorf("ECDH/CBC output lacks %q:\n%s", want, out)
		}
	}
}

// TestWeDecryptOpenSSL: openssl cms -encrypt in every form, we decrypt.
func TestWeDecryptOpenSSL(t *testing.T) {
	requireTool(t, "openssl")
	dir := t.TempDir()
	type kcase struct {
		key       string
		keyopts   []string
		transport string
	}
	keys := []kcase{
		{"rsa", nil, "rsa-pkcs1v15"},
		{"rsa", []string{"rsa_padding_mode:oaep"}, "rsa-oaep-sha1"},
		{"rsa", []string{"rsa_padding_mode:oaep", "rsa_oaep_md:sha256", "rsa_mgf1_md:sha256"}, "rsa-oaep-sha256"},
		{"rsa", []string{"rsa_padding_mode:oaep", "rsa_oaep_md:sha512"}, "rsa-oaep-sha512"},
		{"p256", nil, "ecdh-p256-sha1kdf"}, // OpenSSL's default for EC
		{"p256", []string{"ecdh_kdf_md:sha224"}, "ecdh-p256-sha224kdf"},
		{"p256", []string{"ecdh_kdf_md:sha256"}, "ecdh-p256-sha256kdf"},
		{"p384", []string{"ecdh_kdf_md:sha384"}, "ecdh-p384-sha384kdf"},
		{"p521", []string{"ecdh_kdf_md:sha512"}, "ecdh-p521-sha512kdf"},
	}
	ciphers := []struct{ flag, name string }{
		{"-aes-256-gcm", "aes256-gcm"}, {"-aes-128-gcm", "aes128-gcm"},
		{"-aes-128-cbc", "aes128-cbc"}, {"-aes-192-cbc", "aes192-cbc"}, {"-aes-256-cbc", "aes256-cbc"},
	}
	plain := make([]byte, 5000)
	rand.Read(plain)
	in := filepath.Join(dir, "plain")
	if err := os.WriteFile(in, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range ciphers {
		for _, k := range keys {
			for _, keyid := range []bool{false, true} {
				for _, stream := range []bool{false, true} {
					name := fmt.Sprintf("%s/%s/%s/keyid=%v/stream=%v", c.name, k.key, k.transport, keyid, stream)
					t.Run(name, func(t *testing.T) {
						args := []string{"cms", "-encrypt", "-binary", "-outform", "DER", "-in", in, c.flag}
						if keyid {
							args = append(args, "-keyid")
						}
						if stream {
							args = append(args, "-stream")
						}
						args = append(args, "-recip", fixturePath(k.key, ".crt"))
						for _, o := range k.keyopts {
							args = append(args, "-keyopt", o)
						}
						der := runTool(t, nil, "openssl", args...)
						if stream && der[1] != 0x80 {
							t.Fatalf("openssl -stream did not write an indefinite length (byte %#x)", der[1])
						}
						got, info, err := Decrypt(der, []KeyPair{fixture(t, "rsa-other"), fixture(t, k.key)}, DecryptOptions{})
						if err != nil {
							t.Fatalf("Decrypt: %v", err)
						}
						if !bytes.Equal(got, plain) {
							t.Fatal("plaintext differs")
						}
						if info.Cipher != c.name || info.KeyTransport != k.transport {
							t.Fatalf("info = %+v, want cipher %s, transport %s", info, c.name, k.transport)
						}
					})
				}
			}
		}
	}
}

// TestWeDecryptOpenSSL3DES: des-ede3-cbc opens only behind Allow3DES.
func TestWeDecryptOpenSSL3DES(t *testing.T) {
	requireTool(t, "openssl")
	dir := t.TempDir()
	in := filepath.Join(dir, "plain")
	plain := []byte("legacy S/MIME v3 client\r\n")
	if err := os.WriteFile(in, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	der := runTool(t, nil, "openssl", "cms", "-encrypt", "-binary", "-outform", "DER", "-in", in, "-des-ede3-cbc", fixturePath("rsa", ".crt"))
	_, _, err := Decrypt(bytes.Clone(der), []KeyPair{fixture(t, "rsa")}, DecryptOptions{})
	var ue *UnsupportedAlgorithmError
	if !errors.As(err, &ue) || !ue.OID.Equal(oidDESEDE3CBC) || !strings.Contains(err.Error(), "des-ede3-cbc") {
		t.Fatalf("without Allow3DES: err = %v, want UnsupportedAlgorithmError for des-ede3-cbc", err)
	}
	got, info, err := Decrypt(der, []KeyPair{fixture(t, "rsa")}, DecryptOptions{Allow3DES: true})
	if err != nil || !bytes.Equal(got, plain) || info.Cipher != "des-ede3-cbc" {
		t.Fatalf("with Allow3DES: %q, %+v, %v", got, info, err)
	}
}

// TestWeDecryptOpenSSLLarge: a 3 MB -stream message, whose ciphertext
// openssl splits into many segments of a constructed OCTET STRING, is
// joined in place and decrypted.
func TestWeDecryptOpenSSLLarge(t *testing.T) {
	requireTool(t, "openssl")
	dir := t.TempDir()
	plain := make([]byte, 3<<20+7)
	rand.Read(plain)
	in := filepath.Join(dir, "plain")
	if err := os.WriteFile(in, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"-aes-256-gcm", "-aes-256-cbc"} {
		der := runTool(t, nil, "openssl", "cms", "-encrypt", "-binary", "-stream", "-outform", "DER", "-in", in, c, fixturePath("p256", ".crt"))
		got, _, err := Decrypt(der, []KeyPair{fixture(t, "p256")}, DecryptOptions{})
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%s: err %v, equal %v", c, err, bytes.Equal(got, plain))
		}
	}
}

func execLookPath(name string) (string, error) { return exec.LookPath(name) }

// runQuiet runs a command for cleanup, where a failure is not a test
// failure.
func runQuiet(env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	return cmd.Run()
}

// TestOpenSSLManyRecipients: a message openssl encrypts to an RSA and an EC
// certificate opens with either key, and tells a gateway holding neither
// that it is not for us, naming the recipients.
func TestOpenSSLManyRecipients(t *testing.T) {
	requireTool(t, "openssl")
	dir := t.TempDir()
	in := filepath.Join(dir, "plain")
	plain := []byte("to two domains at once\r\n")
	if err := os.WriteFile(in, plain, 0o600); err != nil {
		t.Fatal(err)
	}
	der := runTool(t, nil, "openssl", "cms", "-encrypt", "-binary", "-outform", "DER", "-in", in, "-aes-128-gcm",
		fixturePath("rsa-other", ".crt"), fixturePath("p384", ".crt"))
	for _, k := range []string{"rsa-other", "p384"} {
		got, info, err := Decrypt(bytes.Clone(der), []KeyPair{fixture(t, k)}, DecryptOptions{})
		if err != nil || !bytes.Equal(got, plain) || info.Cert != fixture(t, k).Cert {
			t.Fatalf("%s: %q, %+v, %v", k, got, info, err)
		}
	}
	_, _, err := Decrypt(bytes.Clone(der), []KeyPair{fixture(t, "rsa"), fixture(t, "p256")}, DecryptOptions{})
	if !errors.Is(err, ErrNotForUs) || !strings.Contains(err.Error(), "cms test rsa-other") || !strings.Contains(err.Error(), "cms test p384") {
		t.Fatalf("not for us: %v", err)
	}
}
