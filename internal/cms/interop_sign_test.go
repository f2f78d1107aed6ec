package cms

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// signedContent is binary content with CR, LF and NUL, so that any
// canonicalisation by a peer would show.
func signedContent(tb testing.TB) []byte {
	tb.Helper()
	b := make([]byte, 5000)
	rand.Read(b)
	return append([]byte("From: a@example.org\r\n\r\n"), b...)
}

// TestOpenSSLVerifiesOurSignature: what Sign writes, attached and
// detached, is verified by `openssl cms -verify` against our certificate as
// its trust anchor, and OpenSSL gives back the content byte for byte.
func TestOpenSSLVerifiesOurSignature(t *testing.T) {
	requireTool(t, "openssl")
	content := signedContent(t)
	dir := t.TempDir()
	contentFile := filepath.Join(dir, "content")
	if err := os.WriteFile(contentFile, content, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"rsa", "p256", "p384", "p521"} {
		for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
			for _, detached := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%v/detached=%v", key, h, detached), func(t *testing.T) {
					s := signerFixture(t, key)
					der, err := Sign(content, s, SignOptions{Hash: h, SigningTime: signTime, EncryptionCert: s.Cert, Detached: detached})
					if err != nil {
						t.Fatal(err)
					}
					in := filepath.Join(dir, key+".der")
					if err := os.WriteFile(in, der, 0o600); err != nil {
						t.Fatal(err)
					}
					args := []string{"cms", "-verify", "-binary", "-inform", "DER", "-in", in, "-CAfile", fixturePath(key, ".crt")}
					if detached {
						args = append(args, "-content", contentFile)
					}
					got := runTool(t, nil, "openssl", args...)
					if !bytes.Equal(got, content) {
						t.Fatalf("openssl gave back %d bytes that differ from the %d signed", len(got), len(content))
					}
					// OpenSSL reads our attributes as we meant them.
					printed := string(runTool(t, nil, "openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", in))
					for _, w := range []string{"signingTime", "messageDigest", "id-smime-aa-encrypKeyPref", "S/MIME Capabilities"} {
						if !strings.Contains(printed, w) {
							t.Errorf("openssl's print lacks %q", w)
						}
					}
				})
			}
		}
	}
}

// TestWeVerifyOpenSSL: every form `openssl cms -sign` writes is parsed and
// verified: key types, hashes, RSASSA-PSS, attached and detached, BER
// (-stream), without signed attributes (-noattr) and without the signer's
// certificate (-nocerts, which the verifier then holds). A changed content
// fails each of them.
func TestWeVerifyOpenSSL(t *testing.T) {
	requireTool(t, "openssl")
	content := signedContent(t)
	dir := t.TempDir()
	contentFile := filepath.Join(dir, "content")
	if err := os.WriteFile(contentFile, content, 0o600); err != nil {
		t.Fatal(err)
	}
	type variant struct {
		key, md string
		args    []string
		alg     string
	}
	variants := []variant{
		{"rsa", "sha256", nil, "rsa-pkcs1v15-sha256"},
		{"rsa", "sha384", nil, "rsa-pkcs1v15-sha384"},
		{"rsa", "sha512", nil, "rsa-pkcs1v15-sha512"},
		{"rsa", "sha256", []string{"-keyopt", "rsa_padding_mode:pss"}, "rsassa-pss-sha256"},
		{"rsa", "sha512", []string{"-keyopt", "rsa_padding_mode:pss", "-keyopt", "rsa_pss_saltlen:32"}, "rsassa-pss-sha512"},
		{"p256", "sha256", nil, "ecdsa-sha256"},
		{"p384", "sha384", nil, "ecdsa-sha384"},
		{"p521", "sha512", nil, "ecdsa-sha512"},
		{"rsa", "sha256", []string{"-stream"}, "rsa-pkcs1v15-sha256"},
		{"p256", "sha256", []string{"-noattr"}, "ecdsa-sha256"},
		{"rsa", "sha256", []string{"-nocerts"}, "rsa-pkcs1v15-sha256"},
	}
	for i, v := range variants {
		for _, detached := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/%s/%v/detached=%v", v.key, v.md, v.args, detached), func(t *testing.T) {
				out := filepath.Join(dir, fmt.Sprintf("%d-%v.der", i, detached))
				args := []string{"cms", "-sign", "-binary", "-md", v.md, "-in", contentFile, "-signer", fixturePath(v.key, ".crt"),
					"-inkey", fixturePath(v.key, ".key"), "-outform", "DER", "-out", out}
				if !detached {
					args = append(args, "-nodetach")
				}
				// -keyopt applies to the -signer before it.
				args = append(args, v.args...)
				runTool(t, nil, "openssl", args...)
				der, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				sd, err := ParseSignedData(der)
				if err != nil {
					t.Fatalf("ParseSignedData: %v", err)
				}
				if len(sd.Signers) != 1 {
					t.Fatalf("%d signers", len(sd.Signers))
				}
				si := sd.Signers[0]
				held := []*x509.Certificate{fixture(t, v.key).Cert}
				cert := sd.Certificate(si, held)
				if cert == nil {
					t.Fatal("no signer certificate")
				}
				var det []byte
				if detached {
					det = content
				} else if !bytes.Equal(sd.Content, content) {
					t.Fatal("the encapsulated content differs")
				}
				if err := sd.Verify(si, cert, det); err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if si.Algorithm() != v.alg {
					t.Errorf("algorithm %s, want %s", si.Algorithm(), v.alg)
				}
				changed := bytes.Clone(content)
				changed[len(changed)-1] ^= 0x20
				if detached {
					err = sd.Verify(si, cert, changed)
				} else {
					sd.Content = changed
					err = sd.Verify(si, cert, nil)
				}
				if err == nil {
					t.Error("a changed content verifies")
				}
			})
		}
	}
}
