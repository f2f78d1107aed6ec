package cms

import (
	"bytes"
	"crypto/x509"
	"errors"
	"testing"
)

func certsOf(keys []KeyPair) []*x509.Certificate {
	out := make([]*x509.Certificate, len(keys))
	for i, k := range keys {
		out[i] = k.Cert
	}
	return out
}

// TestAddressed: every recipient form we write (issuer and serial or key
// identifier, key transport or key agreement, in DER and in BER) is found
// for its certificate and not for others.
func TestAddressed(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"rsa", "p256", "p521", "x25519"} {
		for _, ski := range []bool{false, true} {
			kp := fixture(t, name)
			der := encryptTo(t, []byte("addressed?"), EncryptOptions{}, Recipient{Cert: kp.Cert, UseSKI: ski, RSAPadding: OAEP})
			for form, in := range map[string][]byte{"DER": der, "BER": berify(t, der, 3)} {
				saved := bytes.Clone(in)
				got, err := Addressed(in, []*x509.Certificate{fixture(t, "rsa-other").Cert, nil, kp.Cert}, DecryptOptions{})
				if err != nil || !got {
					t.Fatalf("%s ski=%v %s: Addressed = %v, %v; want true", name, ski, form, got, err)
				}
				if !bytes.Equal(in, saved) {
					t.Fatalf("%s ski=%v %s: Addressed modified its input", name, ski, form)
				}
				got, err = Addressed(in, []*x509.Certificate{fixture(t, "rsa-other").Cert, fixture(t, "p384").Cert}, DecryptOptions{})
				if err != nil || got {
					t.Fatalf("%s ski=%v %s: for other certificates Addressed = %v, %v; want false", name, ski, form, got, err)
				}
			}
		}
	}
	if got, err := Addressed(encryptTo(t, nil, EncryptOptions{}, Recipient{Cert: fixture(t, "rsa").Cert}), nil, DecryptOptions{}); got || err != nil {
		t.Fatalf("no certificates: %v, %v", got, err)
	}
}

// TestAddressedErrors: what is not an enveloped ContentInfo, is broken or
// is too large is an error, the same one Decrypt gives.
func TestAddressedErrors(t *testing.T) {
	t.Parallel()
	kp := fixture(t, "rsa")
	certs := []*x509.Certificate{kp.Cert}
	der := encryptTo(t, []byte("truncate me"), EncryptOptions{}, Recipient{Cert: kp.Cert})
	for n := 0; n < len(der); n++ {
		if got, err := Addressed(der[:n], certs, DecryptOptions{}); got || !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated to %d of %d: %v, %v; want ErrMalformed", n, len(der), got, err)
		}
	}
	if _, err := Addressed(der, certs, DecryptOptions{MaxSize: int64(len(der) - 1)}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("MaxSize: %v", err)
	}
	if got, err := Addressed(der, certs, DecryptOptions{MaxSize: int64(len(der))}); !got || err != nil {
		t.Fatalf("at MaxSize: %v, %v", got, err)
	}
}

// checkAddressedAgrees is the contract between Addressed and Decrypt, for
// the tests and the fuzzer: with key pairs for certs, Decrypt says
// ErrNotForUs exactly when Addressed says false, and both fail alike on
// what does not parse.
func checkAddressedAgrees(t *testing.T, in []byte, keys []KeyPair, opts DecryptOptions) {
	t.Helper()
	saved := bytes.Clone(in)
	forUs, aerr := Addressed(in, certsOf(keys), opts)
	if !bytes.Equal(in, saved) {
		t.Fatal("Addressed modified its input")
	}
	_, _, derr := Decrypt(bytes.Clone(in), keys, opts)
	switch {
	case aerr != nil:
		var ue *UnsupportedAlgorithmError
		if !errors.Is(aerr, ErrMalformed) && !errors.Is(aerr, ErrTooLarge) && !errors.As(aerr, &ue) {
			t.Fatalf("Addressed: undocumented error %v", aerr)
		}
		if derr == nil || derr.Error() != aerr.Error() {
			t.Fatalf("Addressed failed with %v but Decrypt with %v", aerr, derr)
		}
	case !forUs:
		if !errors.Is(derr, ErrNotForUs) {
			t.Fatalf("Addressed says not for us, Decrypt says %v", derr)
		}
	default:
		if errors.Is(derr, ErrNotForUs) {
			t.Fatalf("Addressed says for us, Decrypt says %v", derr)
		}
	}
}

// TestAddressedAgreesWithDecrypt: over messages to every fixture, to
// several, to none of ours, and over the peer samples.
func TestAddressedAgreesWithDecrypt(t *testing.T) {
	t.Parallel()
	ours := []KeyPair{fixture(t, "rsa"), fixture(t, "p256"), fixture(t, "x25519")}
	var inputs [][]byte
	for _, name := range fixtureNames {
		der := encryptTo(t, []byte("agree"), EncryptOptions{Cipher: AES128CBC}, Recipient{Cert: fixture(t, name).Cert, UseSKI: name == "p256"})
		inputs = append(inputs, der, berify(t, der, 4))
	}
	inputs = append(inputs, encryptTo(t, []byte("both"), EncryptOptions{}, Recipient{Cert: fixture(t, "p384").Cert}, Recipient{Cert: fixture(t, "x25519").Cert}))
	for _, s := range samples {
		inputs = append(inputs, readSample(t, s.file))
	}
	for _, in := range inputs {
		checkAddressedAgrees(t, in, ours, DecryptOptions{Allow3DES: true})
		checkAddressedAgrees(t, in, ours, DecryptOptions{MaxSize: 200})
	}
}
