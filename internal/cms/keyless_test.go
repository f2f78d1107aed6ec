package cms

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// keyless is a key pair of ours whose private key could not be loaded.
func keyless(t *testing.T, name string) KeyPair {
	return KeyPair{Cert: fixture(t, name).Cert}
}

// wantKeyUnavailable checks that err wraps ErrKeyUnavailable and names the
// certificate of kp by subject and serial number.
func wantKeyUnavailable(t *testing.T, what string, err error, kp KeyPair) {
	t.Helper()
	if !errors.Is(err, ErrKeyUnavailable) {
		t.Fatalf("%s: err = %v, want ErrKeyUnavailable", what, err)
	}
	if errors.Is(err, ErrDecrypt) || errors.Is(err, ErrNotForUs) {
		t.Fatalf("%s: err = %v also claims ErrDecrypt or ErrNotForUs", what, err)
	}
	subject, serial := kp.Cert.Subject.String(), kp.Cert.SerialNumber.Text(16)
	if !strings.Contains(err.Error(), subject) || !strings.Contains(err.Error(), serial) {
		t.Fatalf("%s: err = %q does not name subject %q and serial %s", what, err, subject, serial)
	}
}

// TestKeyUnavailableOnly: a message for our certificate whose key is
// missing is not "not for us" (it would be relayed still encrypted) but
// ErrKeyUnavailable, whatever other keys we hold and whatever the message
// kind.
func TestKeyUnavailableOnly(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		r    Recipient
	}{
		{"rsa", Recipient{Cert: fixture(t, "rsa").Cert}},
		{"rsa", Recipient{Cert: fixture(t, "rsa").Cert, RSAPadding: OAEP, UseSKI: true}},
		{"p256", Recipient{Cert: fixture(t, "p256").Cert}},
		{"x25519", Recipient{Cert: fixture(t, "x25519").Cert, UseSKI: true}},
	} {
		for _, cipher := range []ContentCipher{AES256GCM, AES128CBC} {
			der := encryptTo(t, []byte("for the missing key"), EncryptOptions{Cipher: cipher}, c.r)
			keys := []KeyPair{fixture(t, "rsa-other"), keyless(t, c.name), fixture(t, "p384")}
			_, info, err := Decrypt(der, keys, DecryptOptions{})
			if info != nil {
				t.Fatalf("%s/%s: info %+v on failure", c.name, cipher, info)
			}
			wantKeyUnavailable(t, c.name+"/"+cipher.String(), err, keys[1])
		}
	}
	// A keyless certificate that the message does not name changes nothing.
	der := encryptTo(t, []byte("for someone else"), EncryptOptions{}, Recipient{Cert: fixture(t, "rsa-other").Cert})
	if _, _, err := Decrypt(der, []KeyPair{keyless(t, "rsa"), fixture(t, "p256")}, DecryptOptions{}); !errors.Is(err, ErrNotForUs) {
		t.Fatalf("unnamed keyless certificate: err = %v, want ErrNotForUs", err)
	}
}

// TestKeyUnavailableKeyedOpens: when a certificate with a key opens the
// message, a keyless one that it names too does not matter.
func TestKeyUnavailableKeyedOpens(t *testing.T) {
	t.Parallel()
	plain := []byte("two of our certificates, one key")
	for _, cipher := range []ContentCipher{AES256GCM, AES256CBC} {
		der := encryptTo(t, plain, EncryptOptions{Cipher: cipher},
			Recipient{Cert: fixture(t, "rsa").Cert}, Recipient{Cert: fixture(t, "p256").Cert})
		for _, keys := range [][]KeyPair{
			{keyless(t, "rsa"), fixture(t, "p256")},
			{fixture(t, "p256"), keyless(t, "rsa")},
		} {
			got, info, err := Decrypt(bytes.Clone(der), keys, DecryptOptions{})
			if err != nil || !bytes.Equal(got, plain) || info.Cert != fixture(t, "p256").Cert {
				t.Fatalf("%s: %q, %+v, %v", cipher, got, info, err)
			}
		}
	}
}

// TestKeyUnavailableWinsOverDecrypt: when the keyed candidates fail and a
// keyless certificate is named too, the message may be for the missing
// key: ErrKeyUnavailable (wait), not ErrDecrypt (quarantine).
func TestKeyUnavailableWinsOverDecrypt(t *testing.T) {
	t.Parallel()
	rsaKP, p256 := fixture(t, "rsa"), fixture(t, "p256")
	der := encryptTo(t, []byte("x"), EncryptOptions{}, Recipient{Cert: rsaKP.Cert}, Recipient{Cert: p256.Cert})

	// Our p256 certificate paired with the wrong key fails to unwrap.
	wrongKey := KeyPair{Cert: p256.Cert, Key: fixture(t, "p384").Key}
	if _, _, err := Decrypt(bytes.Clone(der), []KeyPair{wrongKey}, DecryptOptions{}); err != ErrDecrypt {
		t.Fatalf("control without the keyless certificate: err = %v, want ErrDecrypt", err)
	}
	_, _, err := Decrypt(bytes.Clone(der), []KeyPair{wrongKey, keyless(t, "rsa")}, DecryptOptions{})
	wantKeyUnavailable(t, "failed keyed candidate", err, keyless(t, "rsa"))

	// A key of a type that does not fit its RecipientInfo leaves no
	// attempt at all; the keyless certificate still wins.
	wrongType := KeyPair{Cert: p256.Cert, Key: rsaKP.Key}
	_, _, err = Decrypt(bytes.Clone(der), []KeyPair{keyless(t, "rsa"), wrongType}, DecryptOptions{})
	wantKeyUnavailable(t, "mismatched key type", err, keyless(t, "rsa"))
}

// TestKeyUnavailableAfterPublicChecks: what is wrong with the message for
// anyone is reported as such, keyless certificate or not, so that the
// outcome does not depend on whether the key is there.
func TestKeyUnavailableAfterPublicChecks(t *testing.T) {
	t.Parallel()
	h, _ := gcmMessage(t, []byte("downgraded"), 16)
	h.alg = cbcAlg(oidAES256CBC, randomBytes(16))
	var ue *UnsupportedAlgorithmError
	if _, _, err := Decrypt(h.der(), []KeyPair{keyless(t, "rsa")}, DecryptOptions{}); !errors.As(err, &ue) {
		t.Fatalf("AEAD downgrade to a keyless certificate: err = %v, want *UnsupportedAlgorithmError", err)
	}
}
