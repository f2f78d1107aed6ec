package cms

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"testing"
	"time"
)

// signTime is the signing time of the tests: a fixed clock, never now.
var signTime = time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)

// ed25519Fixture makes an Ed25519 signer with a self-signed certificate:
// no outside tool here signs CMS with Ed25519 (OpenSSL 3.0 cannot), so the
// key is made in the test.
func ed25519Fixture(tb testing.TB) Signer {
	tb.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(25519),
		Subject:      pkix.Name{CommonName: "ed25519 signer"},
		NotBefore:    signTime.Add(-time.Hour),
		NotAfter:     signTime.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, priv)
	if err != nil {
		tb.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatal(err)
	}
	return Signer{Cert: cert, Key: priv}
}

func signerFixture(tb testing.TB, name string) Signer {
	tb.Helper()
	if name == "ed25519" {
		return ed25519Fixture(tb)
	}
	kp := fixture(tb, name)
	return Signer{Cert: kp.Cert, Key: kp.Key.(crypto.Signer)}
}

// TestSignVerifyRoundTrip: every key type and hash, attached and detached,
// verifies, and the attributes read back as written.
func TestSignVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	content := []byte("From: a@example.org\r\nSubject: signed\r\n\r\nbody\r\n")
	enc := fixture(t, "rsa-other").Cert
	for _, key := range []string{"rsa", "p256", "p384", "p521", "ed25519"} {
		for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384, crypto.SHA512} {
			for _, detached := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%v/detached=%v", key, h, detached), func(t *testing.T) {
					s := signerFixture(t, key)
					der, err := Sign(content, s, SignOptions{Hash: h, SigningTime: signTime, EncryptionCert: enc, Detached: detached})
					if err != nil {
						t.Fatal(err)
					}
					sd, err := ParseSignedData(der)
					if err != nil {
						t.Fatal(err)
					}
					if sd.HasContent == detached || (!detached && !bytes.Equal(sd.Content, content)) || !sd.IsData() {
						t.Fatalf("content %q (present %v), type %v", sd.Content, sd.HasContent, sd.ContentType)
					}
					if len(sd.Signers) != 1 || len(sd.Certificates) != 1 {
						t.Fatalf("%d signers, %d certificates", len(sd.Signers), len(sd.Certificates))
					}
					si := sd.Signers[0]
					cert := sd.Certificate(si, nil)
					if cert == nil || !cert.Equal(s.Cert) {
						t.Fatal("the signer's certificate is not found by its identifier")
					}
					var detachedContent []byte
					if detached {
						detachedContent = content
					}
					if err := sd.Verify(si, cert, detachedContent); err != nil {
						t.Fatalf("Verify: %v", err)
					}
					if !si.SigningTime.Equal(signTime) {
						t.Errorf("signing time %v", si.SigningTime)
					}
					if !si.EncryptionKeyPreference.Matches(enc) || si.EncryptionKeyPreference.Matches(s.Cert) {
						t.Errorf("key preference %v", si.EncryptionKeyPreference)
					}
					if len(si.Capabilities) != len(capabilities) || !si.Capabilities[0].Equal(oidAES256GCM) {
						t.Errorf("capabilities %v", si.Capabilities)
					}
					if key == "ed25519" && si.Digest != crypto.SHA512 {
						t.Errorf("Ed25519 with digest %v, RFC 8419 says SHA-512", si.Digest)
					}
				})
			}
		}
	}
}

// TestVerifyRejects: a changed content, signature, signed attribute or
// signer fails with ErrBadSignature; none of them verifies.
func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	content := []byte("Subject: original\r\n\r\nthe signed text\r\n")
	for _, key := range []string{"rsa", "p256", "ed25519"} {
		s := signerFixture(t, key)
		der, err := Sign(content, s, SignOptions{SigningTime: signTime})
		if err != nil {
			t.Fatal(err)
		}
		sd, err := ParseSignedData(der)
		if err != nil {
			t.Fatal(err)
		}
		si := sd.Signers[0]
		if err := sd.Verify(si, s.Cert, nil); err != nil {
			t.Fatalf("%s: the untouched signature fails: %v", key, err)
		}
		// The content, changed in the parsed structure: the digest check.
		tampered := *sd
		tampered.Content = bytes.Replace(bytes.Clone(content), []byte("signed"), []byte("forged"), 1)
		if err := tampered.Verify(si, s.Cert, nil); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: changed content: %v", key, err)
		}
		// The signature value.
		bad := *si
		bad.Signature = bytes.Clone(si.Signature)
		bad.Signature[len(bad.Signature)/2] ^= 1
		if err := sd.Verify(&bad, s.Cert, nil); !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: changed signature: %v", key, err)
		}
		// Another key's certificate.
		other := signerFixture(t, map[string]string{"rsa": "rsa-other", "p256": "p384", "ed25519": "ed25519"}[key])
		if err := sd.Verify(si, other.Cert, nil); err == nil {
			t.Errorf("%s: verified under another key", key)
		}
		// A signed attribute, changed in the encoding: the signing time
		// is inside what the signature covers.
		ut := []byte("261128100000Z")
		i := bytes.Index(der, ut)
		if i < 0 {
			t.Fatalf("%s: signing time not found in the encoding", key)
		}
		changed := bytes.Clone(der)
		changed[i+1] = '7' // 2027
		csd, err := ParseSignedData(changed)
		if err != nil {
			t.Fatal(err)
		}
		if err := csd.Verify(csd.Signers[0], s.Cert, nil); !errors.Is(err, ErrBadSignature) {
			t.Errorf("%s: changed signing time: %v", key, err)
		}
	}
}

// TestVerifyDetachedNeedsContent: a detached signature is never taken to
// cover nothing.
func TestVerifyDetachedNeedsContent(t *testing.T) {
	t.Parallel()
	s := signerFixture(t, "rsa")
	der, err := Sign([]byte("x"), s, SignOptions{Detached: true})
	if err != nil {
		t.Fatal(err)
	}
	sd, err := ParseSignedData(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := sd.Verify(sd.Signers[0], s.Cert, nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("no content: %v", err)
	}
	if err := sd.Verify(sd.Signers[0], s.Cert, []byte("y")); !errors.Is(err, ErrBadSignature) {
		t.Errorf("other content: %v", err)
	}
	if err := sd.Verify(sd.Signers[0], s.Cert, []byte("x")); err != nil {
		t.Errorf("the content: %v", err)
	}
}

// TestSignRefusesMismatchedKey: a key that is not the certificate's is
// refused before anything is signed.
func TestSignRefusesMismatchedKey(t *testing.T) {
	t.Parallel()
	s := signerFixture(t, "rsa")
	s.Cert = fixture(t, "rsa-other").Cert
	if _, err := Sign([]byte("x"), s, SignOptions{}); err == nil {
		t.Fatal("signed with a key that is not the certificate's")
	}
}
