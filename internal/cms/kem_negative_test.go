package cms

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

var (
	kemFixturesOnce sync.Once
	kemFixtureMap   map[string]KeyPair
)

// kemFixture returns the hackathon certificate and key of the named KEM
// (testdata/pqc-cryptonext), one per algorithm this package has.
func kemFixture(tb testing.TB, name string) KeyPair {
	tb.Helper()
	kemFixturesOnce.Do(func() {
		kemFixtureMap = map[string]KeyPair{}
		for _, v := range cryptoNextVectors(tb) {
			kemFixtureMap[v.pair.Key.(*KEMPrivateKey).Algorithm()] = v.pair
		}
	})
	kp, ok := kemFixtureMap[name]
	if !ok {
		tb.Fatalf("no KEM fixture %q", name)
	}
	return kp
}

// kemSpec describes a KEMRecipientInfo to build by hand, so that the
// negative tests can set each field to what an attacker would. The zero
// value is a valid one: HKDF-SHA256, AES-256 key wrap, no ukm.
type kemSpec struct {
	version   int
	kemOID    asn1.ObjectIdentifier // default: the key's
	kdfOID    asn1.ObjectIdentifier // default: HKDF-SHA256
	kdfHash   crypto.Hash           // the hash the KEK is really derived with
	kdfNull   bool                  // NULL parameters on the kdf
	kekLength int                   // the field: 0 means 32, -1 means 0
	ukm       []byte
	infoNoUKM bool // derive the KEK as if there were no ukm
	wrapOID   asn1.ObjectIdentifier
	spoilCT   func(ct []byte) []byte
	spoilKey  func(k []byte) []byte
	other     bool // put a non-KEM ori before it
	useSKI    bool
}

// kemMessage returns an AuthEnvelopedData whose one (or, with other, two)
// RecipientInfo is the KEMRecipientInfo of s for kp, and its CEK.
func kemMessage(t *testing.T, kp KeyPair, s kemSpec, plain []byte) ([]byte, []byte) {
	t.Helper()
	pub := kp.Key.(*KEMPrivateKey).pub
	cek := randomBytes(32)
	ss, ct, err := pub.encapsulate()
	if err != nil {
		t.Fatal(err)
	}
	if s.kemOID == nil {
		s.kemOID = pub.alg.oid
	}
	if s.kdfOID == nil {
		s.kdfOID = oidHKDFSHA256
	}
	if s.kdfHash == 0 {
		s.kdfHash = crypto.SHA256
	}
	switch s.kekLength {
	case 0:
		s.kekLength = 32
	case -1:
		s.kekLength = 0
	}
	if s.wrapOID == nil {
		s.wrapOID = oidAES256Wrap
	}
	wb := cryptobyte.NewBuilder(nil)
	addAlgID(wb, s.wrapOID, nil)
	wrapDER := wb.BytesOrPanic()
	info := oriForKEMOtherInfo(wrapDER, s.kekLength, s.ukm, s.ukm != nil && !s.infoNoUKM)
	kek, err := hkdf.Key(s.kdfHash.New, ss, nil, string(info), 32)
	if err != nil {
		t.Fatal(err)
	}
	wrapped, err := keyWrap(kek, cek)
	if err != nil {
		t.Fatal(err)
	}
	if s.spoilCT != nil {
		ct = s.spoilCT(bytes.Clone(ct))
	}
	if s.spoilKey != nil {
		wrapped = s.spoilKey(wrapped)
	}
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(casn1.SET, func(b *cryptobyte.Builder) {
		if s.other {
			b.AddASN1(casn1.Tag(4).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{1, 2, 3, 4})
				b.AddASN1OctetString([]byte("something else"))
			})
		}
		b.AddASN1(casn1.Tag(4).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidORIKEM)
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(int64(s.version))
				if s.useSKI {
					b.AddASN1(casn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(kp.Cert.SubjectKeyId) })
				} else {
					addIssuerAndSerial(b, kp.Cert)
				}
				addAlgID(b, s.kemOID, nil)
				b.AddASN1OctetString(ct)
				addAlgID(b, s.kdfOID, func(b *cryptobyte.Builder) {
					if s.kdfNull {
						b.AddASN1NULL()
					}
				})
				b.AddASN1Int64(int64(s.kekLength))
				if s.ukm != nil {
					b.AddASN1(casn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) { b.AddASN1OctetString(s.ukm) })
				}
				b.AddBytes(wrapDER)
				b.AddASN1OctetString(wrapped)
			})
		})
	})
	block, _ := aes.NewCipher(cek)
	aead, _ := cipher.NewGCM(block)
	nonce := randomBytes(12)
	sealed := aead.Seal(nil, nonce, plain, nil)
	n := len(plain)
	h := handMade{auth: true, ris: b.BytesOrPanic(), alg: gcmAlg(oidAES256GCM, nonce, 16), ct: sealed[:n], mac: sealed[n:]}
	return h.der(), cek
}

// TestKEMRecipientInfoVariants opens what a sender may send: the other
// KDFs of RFC 8619, a ukm, either identifier, beside an ori we do not know.
func TestKEMRecipientInfoVariants(t *testing.T) {
	t.Parallel()
	plain := []byte("variants")
	for _, c := range []struct {
		name string
		key  string
		spec kemSpec
		want string
	}{
		{"hkdf-sha256", "mlkem768", kemSpec{}, "mlkem768-hkdf-sha256"},
		{"hkdf-sha384", "mlkem1024", kemSpec{kdfOID: oidHKDFSHA384, kdfHash: crypto.SHA384}, "mlkem1024-hkdf-sha384"},
		{"hkdf-sha512+ukm", "mlkem768-x25519", kemSpec{kdfOID: oidHKDFSHA512, kdfHash: crypto.SHA512, ukm: []byte("nonce 1234")}, "mlkem768-x25519-hkdf-sha512"},
		{"ski+other ori", "mlkem768-rsa2048", kemSpec{useSKI: true, other: true}, "mlkem768-rsa2048-hkdf-sha256"},
		{"empty ukm", "mlkem1024-p521", kemSpec{ukm: []byte{}}, "mlkem1024-p521-hkdf-sha256"},
	} {
		kp := kemFixture(t, c.key)
		der, _ := kemMessage(t, kp, c.spec, plain)
		pt, info, err := Decrypt(der, []KeyPair{fixture(t, "rsa"), kp}, DecryptOptions{})
		if err != nil || !bytes.Equal(pt, plain) {
			t.Errorf("%s: %q, %v", c.name, pt, err)
			continue
		}
		if info.KeyTransport != c.want {
			t.Errorf("%s: KeyTransport %q, want %q", c.name, info.KeyTransport, c.want)
		}
	}
}

// TestKEMTampered: a changed kemct (either half of a composite), a changed
// encryptedKey, or a KEK derived without the ukm the message carries all
// fail with exactly ErrDecrypt, as a changed GCM tag does: ML-KEM's implicit
// rejection, the stand-in for a failed traditional half and the fallback
// content key leave nothing to tell them apart.
func TestKEMTampered(t *testing.T) {
	t.Parallel()
	plain := []byte("tamper with me")
	flip := func(i int) func([]byte) []byte {
		return func(b []byte) []byte {
			if i < 0 {
				i += len(b)
			}
			b[i] ^= 0x20
			return b
		}
	}
	for _, c := range []struct {
		name string
		key  string
		spec kemSpec
	}{
		{"ML-KEM-768 kemct", "mlkem768", kemSpec{spoilCT: flip(100)}},
		{"ML-KEM-1024 kemct", "mlkem1024", kemSpec{spoilCT: flip(-1)}},
		{"composite ML-KEM half", "mlkem768-x25519", kemSpec{spoilCT: flip(5)}},
		{"composite X25519 half", "mlkem768-x25519", kemSpec{spoilCT: flip(-3)}},
		{"composite P-256 point off the curve", "mlkem768-p256", kemSpec{spoilCT: flip(-1)}},
		{"composite P-256 point not uncompressed", "mlkem768-p256", kemSpec{spoilCT: func(b []byte) []byte { b[1088] = 0x05; return b }}},
		{"composite RSA-OAEP half", "mlkem768-rsa2048", kemSpec{spoilCT: flip(-7)}},
		{"composite RSA ciphertext above the modulus", "mlkem1024-rsa3072", kemSpec{spoilCT: func(b []byte) []byte {
			for i := 1568; i < len(b); i++ {
				b[i] = 0xff
			}
			return b
		}}},
		{"encryptedKey", "mlkem768-p384", kemSpec{spoilKey: flip(9)}},
		{"ukm left out of the KDF", "mlkem1024-p384", kemSpec{ukm: []byte("context"), infoNoUKM: true}},
	} {
		kp := kemFixture(t, c.key)
		der, _ := kemMessage(t, kp, c.spec, plain)
		if _, _, err := Decrypt(der, []KeyPair{kp}, DecryptOptions{}); err != ErrDecrypt {
			t.Errorf("%s: err = %v, want exactly ErrDecrypt", c.name, err)
		}
	}
	// A KEMRecipientInfo that names our ML-KEM-768 certificate but another
	// KEM (its kemct padded to that KEM's length) is no key for it.
	kp := kemFixture(t, "mlkem768")
	der, _ := kemMessage(t, kp, kemSpec{kemOID: oidMLKEM1024, spoilCT: func(b []byte) []byte { return append(b, make([]byte, 1568-1088)...) }}, plain)
	if _, _, err := Decrypt(der, []KeyPair{kp}, DecryptOptions{}); !errors.Is(err, ErrDecrypt) || !strings.Contains(err.Error(), "uses mlkem1024 but our key is mlkem768") {
		t.Errorf("another parameter set: %v", err)
	}
}

// TestKEMFallbackIsStable: a KEMRecipientInfo whose key does not unwrap
// yields the same wrong key every time, so that repeating a message
// tells nothing, and not the real one.
func TestKEMFallbackIsStable(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"mlkem768", "mlkem768-rsa2048", "mlkem768-p256"} {
		kp := kemFixture(t, name)
		der, cek := kemMessage(t, kp, kemSpec{spoilCT: func(b []byte) []byte { b[len(b)-1] ^= 1; return b }}, []byte("x"))
		env, err := parseContentInfo(der)
		if err != nil {
			t.Fatal(err)
		}
		priv := kp.Key.(*KEMPrivateKey)
		k1, _, err1 := env.kem[0].unwrap(priv, 32)
		k2, _, err2 := env.kem[0].unwrap(priv, 32)
		if err1 != nil || err2 != nil || !bytes.Equal(k1, k2) || bytes.Equal(k1, cek) {
			t.Errorf("%s: fallback %x then %x (%v, %v); real %x", name, k1, k2, err1, err2, cek)
		}
	}
}

// TestKEMRefused: fields that the message shows anyone to be wrong, or
// algorithms we do not have, are refused by name before any key is used.
func TestKEMRefused(t *testing.T) {
	t.Parallel()
	kp := kemFixture(t, "mlkem768-x25519")
	var ue *UnsupportedAlgorithmError
	for _, c := range []struct {
		name      string
		spec      kemSpec
		malformed bool
		want      string
	}{
		{"kekLength that does not fit the wrap", kemSpec{kekLength: 16}, true, "kekLength 16 does not fit aes256-wrap"},
		{"kekLength 0", kemSpec{kekLength: -1}, true, "kekLength"},
		{"kekLength past 65535", kemSpec{kekLength: 65536}, true, "kekLength 65536"},
		{"unknown KDF", kemSpec{kdfOID: asn1.ObjectIdentifier{1, 2, 3, 4, 5}}, false, "1.2.3.4.5 in KEMRecipientInfo kdf"},
		{"KMAC", kemSpec{kdfOID: oidKMAC128}, false, "id-kmac128"},
		{"KDF with parameters", kemSpec{kdfNull: true}, true, "must be absent"},
		{"unknown wrap", kemSpec{wrapOID: oidAES128CBC}, false, "KEMRecipientInfo wrap"},
		{"version 1", kemSpec{version: 1}, true, "version 1"},
		{"truncated kemct", kemSpec{spoilCT: func(b []byte) []byte { return b[:len(b)-1] }}, true, "kemct of 1119 bytes"},
		{"ML-KEM-512", kemSpec{kemOID: oidMLKEM512}, false, "id-alg-ml-kem-512"},
		{"X448 composite", kemSpec{kemOID: oidMLKEM1024X448}, false, "id-MLKEM1024-X448-SHA3-256"},
		{"unknown KEM", kemSpec{kemOID: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 6, 99}}, false, "1.3.6.1.5.5.7.6.99"},
	} {
		der, _ := kemMessage(t, kp, c.spec, []byte("refused"))
		_, _, err := Decrypt(der, []KeyPair{kp}, DecryptOptions{})
		switch {
		case err == nil:
			t.Errorf("%s: opened", c.name)
		case c.malformed && !errors.Is(err, ErrMalformed):
			t.Errorf("%s: %v, want ErrMalformed", c.name, err)
		case !c.malformed && !errors.As(err, &ue):
			t.Errorf("%s: %v, want an UnsupportedAlgorithmError", c.name, err)
		case !strings.Contains(err.Error(), c.want):
			t.Errorf("%s: %q does not say %q", c.name, err, c.want)
		}
	}
}

// TestKEMTruncated cuts a KEM message at every length: each is refused
// with an error, none panics or opens.
func TestKEMTruncated(t *testing.T) {
	t.Parallel()
	kp := kemFixture(t, "mlkem768-p256")
	der := encryptTo(t, []byte("cut me short"), EncryptOptions{}, Recipient{Cert: kp.Cert})
	for n := range len(der) {
		if _, _, err := Decrypt(bytes.Clone(der[:n]), []KeyPair{kp}, DecryptOptions{}); err == nil {
			t.Fatalf("opened at %d of %d bytes", n, len(der))
		}
	}
}

// TestKEMAddressedAgrees: Addressed finds a KEMRecipientInfo by either
// identifier exactly when Decrypt would try it, and a missing key makes
// the message wait (ErrKeyUnavailable) rather than pass as not for us.
func TestKEMAddressedAgrees(t *testing.T) {
	t.Parallel()
	kp := kemFixture(t, "mlkem1024")
	other := kemFixture(t, "mlkem768")
	for _, ski := range []bool{false, true} {
		der := encryptTo(t, []byte("addressed"), EncryptOptions{}, Recipient{Cert: kp.Cert, UseSKI: ski})
		if ok, err := Addressed(der, []*x509.Certificate{kp.Cert}, DecryptOptions{}); !ok || err != nil {
			t.Errorf("ski=%v: Addressed(ours) = %v, %v", ski, ok, err)
		}
		if ok, err := Addressed(der, []*x509.Certificate{other.Cert}, DecryptOptions{}); ok || err != nil {
			t.Errorf("ski=%v: Addressed(other) = %v, %v", ski, ok, err)
		}
		if _, _, err := Decrypt(bytes.Clone(der), []KeyPair{other}, DecryptOptions{}); !errors.Is(err, ErrNotForUs) {
			t.Errorf("ski=%v: Decrypt(other) = %v", ski, err)
		}
		if _, _, err := Decrypt(bytes.Clone(der), []KeyPair{{Cert: kp.Cert}}, DecryptOptions{}); !errors.Is(err, ErrKeyUnavailable) {
			t.Errorf("ski=%v: Decrypt without the key = %v", ski, err)
		}
		// A key of another type for the named certificate is no key for it.
		if _, _, err := Decrypt(bytes.Clone(der), []KeyPair{{Cert: kp.Cert, Key: fixture(t, "rsa").Key}}, DecryptOptions{}); !errors.Is(err, ErrDecrypt) {
			t.Errorf("ski=%v: Decrypt with an RSA key = %v", ski, err)
		}
	}
}

// TestKEMVersions: EnvelopedData with a KEMRecipientInfo is version 3
// (RFC 5652 section 6.1: ori present); AuthEnvelopedData stays 0.
func TestKEMVersions(t *testing.T) {
	t.Parallel()
	kp := kemFixture(t, "mlkem768")
	for _, c := range []struct {
		cipher ContentCipher
		rs     []Recipient
		want   byte
	}{
		{AES256CBC, []Recipient{{Cert: kp.Cert}}, 3},
		{AES256CBC, []Recipient{{Cert: fixture(t, "rsa").Cert}, {Cert: kp.Cert}}, 3},
		{AES256CBC, []Recipient{{Cert: fixture(t, "rsa").Cert}}, 0},
		{AES256GCM, []Recipient{{Cert: kp.Cert}}, 0},
	} {
		der := encryptTo(t, []byte("v"), EncryptOptions{Cipher: c.cipher}, c.rs...)
		i := bytes.Index(der, []byte{0x02, 0x01})
		if i < 0 || der[i+2] != c.want {
			t.Errorf("%v to %d recipient(s): version %d, want %d", c.cipher, len(c.rs), der[i+2], c.want)
		}
	}
}

// TestKEMRoundTripAll encrypts to every KEM with every cipher, beside an
// RSA recipient, and opens it with the KEM key alone.
func TestKEMRoundTripAll(t *testing.T) {
	t.Parallel()
	for _, name := range KEMAlgorithms() {
		kp := kemFixture(t, name)
		for _, c := range []ContentCipher{AES256GCM, AES128GCM, AES128CBC, AES256CBC} {
			plain := []byte(name + " " + c.String())
			der := encryptTo(t, bytes.Clone(plain), EncryptOptions{Cipher: c}, Recipient{Cert: fixture(t, "rsa").Cert}, Recipient{Cert: kp.Cert})
			pt, info, err := Decrypt(der, []KeyPair{kp}, DecryptOptions{})
			if err != nil || !bytes.Equal(pt, plain) || info.KeyTransport != name+"-hkdf-sha256" {
				t.Errorf("%s %v: %q, %+v, %v", name, c, pt, info, err)
			}
		}
	}
}

// TestKEMStandInIsSecret: when the traditional half of a composite fails
// (RSA-OAEP padding, an invalid point), the secret that takes its place
// is one the sender cannot compute. The sender of a forged kemct knows
// the ML-KEM half's secret (it made it); were the stand-in public (zeros,
// say), such a message would open exactly when the traditional half
// failed: an oracle on RSA-OAEP decryption (Manger's attack).
func TestKEMStandInIsSecret(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"mlkem768-rsa2048", "mlkem768-p256", "mlkem768-x25519"} {
		kp := kemFixture(t, name)
		pub := kp.Key.(*KEMPrivateKey).pub
		alg := pub.alg
		mss, mct := pub.ek768.Encapsulate()
		tct := make([]byte, alg.tradCiphertextSize())
		tct[0] = 0x04 // an uncompressed point that is not on the curve; all zeros for X25519 would be low-order
		for _, guess := range [][]byte{
			make([]byte, 32), make([]byte, ecdhSecretSize(alg.curve)), nil,
		} {
			if alg.trad == tradRSA && len(guess) != 0 && len(guess) != 32 {
				continue
			}
			ss := alg.combine(mss, guess, tct, pub.tradPK())
			cek := randomBytes(32)
			b := cryptobyte.NewBuilder(nil)
			b.AddASN1(casn1.SET, func(b *cryptobyte.Builder) {
				if err := addKEMRecipient(b, Recipient{Cert: kp.Cert}, pub, cek, func() ([]byte, []byte, error) {
					return ss, append(bytes.Clone(mct), tct...), nil
				}); err != nil {
					t.Fatal(err)
				}
			})
			block, _ := aes.NewCipher(cek)
			aead, _ := cipher.NewGCM(block)
			nonce := randomBytes(12)
			sealed := aead.Seal(nil, nonce, []byte("forged"), nil)
			h := handMade{auth: true, ris: b.BytesOrPanic(), alg: gcmAlg(oidAES256GCM, nonce, 16), ct: sealed[:6], mac: sealed[6:]}
			if _, _, err := Decrypt(h.der(), []KeyPair{kp}, DecryptOptions{}); err != ErrDecrypt {
				t.Errorf("%s: a kemct with a failing traditional half and a %d-byte guessed secret: %v, want ErrDecrypt", name, len(guess), err)
			}
		}
	}
}
