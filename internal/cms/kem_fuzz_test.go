package cms

import (
	"bytes"
	"errors"
	"testing"
)

// kemFuzzKeys are the KEM keys the fuzzers decrypt with: each kind of
// traditional half, and both ML-KEM parameter sets.
func kemFuzzKeys(tb testing.TB) []KeyPair {
	var keys []KeyPair
	for _, name := range []string{"mlkem768", "mlkem1024", "mlkem768-x25519", "mlkem768-p256", "mlkem768-rsa2048"} {
		keys = append(keys, kemFixture(tb, name))
	}
	return keys
}

// FuzzKEMDecrypt runs Decrypt and Addressed with KEM keys on mutated KEM
// messages (ours, CryptoNext's, the RFC examples) and checks that Decrypt
// fails only with documented errors and that the two agree on whether the
// message is for us.
func FuzzKEMDecrypt(f *testing.F) {
	keys := kemFuzzKeys(f)
	for i, k := range keys {
		c := []ContentCipher{AES256GCM, AES128CBC}[i%2]
		der := encryptTo(f, []byte("fuzz seed"), EncryptOptions{Cipher: c}, Recipient{Cert: k.Cert, UseSKI: i%2 == 0})
		f.Add(der)
		f.Add(berify(f, der, 5))
	}
	for _, v := range cryptoNextVectors(f) {
		if v.alg[:3] == "ML-" || bytes.Contains([]byte(v.name), []byte("ukm")) {
			f.Add(v.message)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		opts := DecryptOptions{MaxSize: 1 << 20}
		pt, info, err := Decrypt(bytes.Clone(b), keys, opts)
		if err == nil {
			if info == nil || info.Cert == nil || pt == nil && len(b) == 0 {
				t.Fatalf("success without info: %+v", info)
			}
		} else {
			var ue *UnsupportedAlgorithmError
			switch {
			case errors.Is(err, ErrMalformed), errors.Is(err, ErrDecrypt), errors.Is(err, ErrNotForUs),
				errors.Is(err, ErrTooLarge), errors.Is(err, ErrKeyUnavailable), errors.As(err, &ue):
			default:
				t.Fatalf("undocumented error: %v", err)
			}
		}
		checkAddressedAgrees(t, b, keys, opts)
	})
}

// FuzzKEMKeys feeds the key decoders arbitrary bytes under every KEM OID:
// the first byte picks the algorithm. They must fail cleanly, and a key
// they accept must be usable: its public key re-encodes to what was read,
// and an encapsulation to it decapsulates to the same secret.
func FuzzKEMKeys(f *testing.F) {
	for i, name := range KEMAlgorithms() {
		kp := kemFixture(f, name)
		priv := kp.Key.(*KEMPrivateKey)
		f.Add(append([]byte{byte(i)}, priv.PrivateKeyBytes()...))
		f.Add(append([]byte{byte(i)}, priv.pub.raw...))
		f.Add(append([]byte{byte(i)}, MarshalKEMPublicKey(priv.pub)...))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		alg := kemAlgs[int(b[0])%len(kemAlgs)]
		b = b[1:]
		if pub, err := ParseKEMPublicKey(b); err == nil {
			if !bytes.Equal(MarshalKEMPublicKey(pub), b) {
				t.Fatalf("SubjectPublicKeyInfo does not re-encode to what was read")
			}
		}
		if pub, err := NewKEMPublicKey(alg.oid, b); err == nil {
			if _, _, err := pub.encapsulate(); err != nil {
				t.Fatalf("accepted a %s public key that cannot be encapsulated to: %v", alg.name, err)
			}
		}
		priv, err := NewKEMPrivateKey(alg.oid, b)
		if err != nil {
			return
		}
		ss, ct, err := priv.pub.encapsulate()
		if err != nil {
			t.Fatalf("accepted a %s private key whose public key fails: %v", alg.name, err)
		}
		if got := priv.decapsulate(ct); !bytes.Equal(got, ss) {
			t.Fatalf("accepted a %s private key that does not decapsulate its own encapsulation", alg.name)
		}
		again, err := NewKEMPrivateKey(alg.oid, priv.PrivateKeyBytes())
		if err != nil || !again.pub.Equal(priv.pub) {
			t.Fatalf("a %s private key does not round-trip: %v", alg.name, err)
		}
	})
}
