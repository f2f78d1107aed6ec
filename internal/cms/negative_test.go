package cms

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"errors"
	"math/big"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// handMade builds ContentInfo structures field by field, so that the
// negative tests can set every field to what an attacker would.
type handMade struct {
	auth     bool
	ris      []byte // DER SET OF RecipientInfo
	alg      []byte // DER contentEncryptionAlgorithm
	ct       []byte
	mac      []byte
	authAttr []byte // DER [1] authAttrs, optional
}

func (h handMade) der() []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		if h.auth {
			b.AddASN1ObjectIdentifier(oidAuthEnvelopedData)
		} else {
			b.AddASN1ObjectIdentifier(oidEnvelopedData)
		}
		b.AddASN1(casn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(0)
				b.AddBytes(h.ris)
				b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidData)
					b.AddBytes(h.alg)
					b.AddASN1(casn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(h.ct) })
				})
				if h.auth {
					b.AddBytes(h.authAttr)
					b.AddASN1OctetString(h.mac)
				}
			})
		})
	})
	return b.BytesOrPanic()
}

func gcmAlg(oid asn1.ObjectIdentifier, nonce []byte, icvLen int) []byte {
	b := cryptobyte.NewBuilder(nil)
	addAlgID(b, oid, func(b *cryptobyte.Builder) {
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1OctetString(nonce)
			if icvLen >= 0 {
				b.AddASN1Int64(int64(icvLen))
			}
		})
	})
	return b.BytesOrPanic()
}

func cbcAlg(oid asn1.ObjectIdentifier, iv []byte) []byte {
	b := cryptobyte.NewBuilder(nil)
	addAlgID(b, oid, func(b *cryptobyte.Builder) { b.AddASN1OctetString(iv) })
	return b.BytesOrPanic()
}

// gcmMessage returns a valid hand-made AES-256-GCM message to rsa, with
// its parts, for the tests to spoil.
func gcmMessage(t *testing.T, plain []byte, tagLen int) (handMade, []byte) {
	t.Helper()
	cek := randomBytes(32)
	ris, _, err := recipientInfos([]Recipient{{Cert: fixture(t, "rsa").Cert}}, cek)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := aes.NewCipher(cek)
	aead, _ := cipher.NewGCMWithTagSize(block, tagLen)
	nonce := randomBytes(12)
	sealed := aead.Seal(nil, nonce, plain, nil)
	n := len(plain)
	return handMade{auth: true, ris: ris, alg: gcmAlg(oidAES256GCM, nonce, tagLen), ct: sealed[:n], mac: sealed[n:]}, cek
}

func rsaKeys(t *testing.T) []KeyPair { return []KeyPair{fixture(t, "rsa")} }

func TestHandMadeIsValid(t *testing.T) {
	t.Parallel()
	h, _ := gcmMessage(t, []byte("control"), 16)
	got, _, err := Decrypt(h.der(), rsaKeys(t), DecryptOptions{})
	if err != nil || string(got) != "control" {
		t.Fatalf("the unspoilt hand-made message does not open: %q, %v", got, err)
	}
}

func TestTamperedGCM(t *testing.T) {
	t.Parallel()
	plain := []byte("an authenticated message body")
	for _, where := range []string{"ciphertext", "tag", "nonce"} {
		h, _ := gcmMessage(t, plain, 16)
		switch where {
		case "ciphertext":
			h.ct[3] ^= 0x40
		case "tag":
			h.mac[15] ^= 0x01
		case "nonce":
			h.alg[len(h.alg)-5] ^= 0x01 // inside the 12-byte nonce, before INTEGER 16
		}
		_, _, err := Decrypt(h.der(), rsaKeys(t), DecryptOptions{})
		if err != ErrDecrypt {
			t.Errorf("tampered %s: err = %v, want exactly ErrDecrypt", where, err)
		}
	}
}

// TestAEADDowngrade: AuthEnvelopedData must be AES-GCM with a 16-byte tag.
func TestAEADDowngrade(t *testing.T) {
	t.Parallel()
	plain := []byte("downgrade me")
	var ue *UnsupportedAlgorithmError

	// A swapped OID: the same bytes claimed as AES-256-CBC.
	h, _ := gcmMessage(t, plain, 16)
	h.alg = cbcAlg(oidAES256CBC, randomBytes(16))
	_, _, err := Decrypt(h.der(), rsaKeys(t), DecryptOptions{})
	if !errors.As(err, &ue) || !ue.OID.Equal(oidAES256CBC) || !strings.Contains(err.Error(), "only AES-GCM") {
		t.Errorf("CBC inside AuthEnvelopedData: %v", err)
	}

	// A 12-byte tag, declared and real.
	h, _ = gcmMessage(t, plain, 12)
	_, _, err = Decrypt(h.der(), rsaKeys(t), DecryptOptions{})
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "12-byte tag") {
		t.Errorf("12-byte tag: %v", err)
	}

	// aes-ICVlen absent means its DEFAULT, 12.
	h, _ = gcmMessage(t, plain, 16)
	h.alg = gcmAlg(oidAES256GCM, randomBytes(12), -1)
	_, _, err = Decrypt(h.der(), rsaKeys(t), DecryptOptions{})
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "12-byte tag") {
		t.Errorf("default aes-ICVlen: %v", err)
	}

	// ICVlen 16 but a truncated mac.
	h, _ = gcmMessage(t, plain, 16)
	h.mac = h.mac[:12]
	if _, _, err = Decrypt(h.der(), rsaKeys(t), DecryptOptions{}); !errors.Is(err, ErrMalformed) {
		t.Errorf("short mac: %v", err)
	}

	// GCM inside EnvelopedData, which has no mac to hold its tag.
	h, _ = gcmMessage(t, plain, 16)
	h.auth = false
	if _, _, err = Decrypt(h.der(), rsaKeys(t), DecryptOptions{}); !errors.As(err, &ue) {
		t.Errorf("GCM in EnvelopedData: %v", err)
	}
}

// TestRefusedAlgorithms: RC2 and unknown OIDs are named in the error.
func TestRefusedAlgorithms(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		oid  asn1.ObjectIdentifier
		want string
	}{
		{oidRC2CBC, "1.2.840.113549.3.2 (rc2-cbc)"},
		{asn1.ObjectIdentifier{1, 2, 3, 4, 5}, "1.2.3.4.5"},
	} {
		cek := randomBytes(16)
		ris, _, _ := recipientInfos([]Recipient{{Cert: fixture(t, "rsa").Cert}}, cek)
		h := handMade{ris: ris, alg: cbcAlg(c.oid, randomBytes(8)), ct: randomBytes(32)}
		_, _, err := Decrypt(h.der(), rsaKeys(t), DecryptOptions{Allow3DES: true})
		var ue *UnsupportedAlgorithmError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to name %s", c.oid, err, c.want)
		}
	}
}

// rawRSA encrypts m without padding, to make key-transport blocks that a
// correct sender never would.
func rawRSA(pub *rsa.PublicKey, m []byte) []byte {
	c := new(big.Int).Exp(new(big.Int).SetBytes(m), big.NewInt(int64(pub.E)), pub.N)
	return c.FillBytes(make([]byte, pub.Size()))
}

func ktri(t *testing.T, named KeyPair, encKey []byte) []byte {
	t.Helper()
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(casn1.SET, func(b *cryptobyte.Builder) {
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(0)
			addIssuerAndSerial(b, named.Cert)
			addAlgID(b, oidRSAEncryption, addNull)
			b.AddASN1OctetString(encKey)
		})
	})
	return b.BytesOrPanic()
}

// TestPKCS1v15FailuresLookAlike: a bad padding, a key encrypted to another
// RSA key, a key of the wrong length and a garbage-length block all end in
// the same ErrDecrypt, after the same steps: unwrap returns a key of the
// right length (a random one), and content decryption fails.
func TestPKCS1v15FailuresLookAlike(t *testing.T) {
	t.Parallel()
	rsaKP := fixture(t, "rsa")
	pub := rsaKP.Cert.PublicKey.(*rsa.PublicKey)
	otherPub := fixture(t, "rsa-other").Cert.PublicKey.(*rsa.PublicKey)
	cek := randomBytes(32)

	badPadding := make([]byte, pub.Size())
	rand.Read(badPadding[2:])
	badPadding[1] = 0x01 // block type 1 (signatures), not 2
	wrongKey, _ := rsa.EncryptPKCS1v15(rand.Reader, otherPub, cek)
	wrongLen, _ := rsa.EncryptPKCS1v15(rand.Reader, pub, cek[:16])
	good, _ := rsa.EncryptPKCS1v15(rand.Reader, pub, cek)

	cases := map[string][]byte{
		"bad padding":    rawRSA(pub, badPadding),
		"other key":      wrongKey,
		"wrong length":   wrongLen,
		"short block":    good[:100],
		"all zero block": make([]byte, pub.Size()),
	}
	block, _ := aes.NewCipher(cek)
	aead, _ := cipher.NewGCM(block)
	nonce := randomBytes(12)
	plain := []byte("key transport oracle test")
	sealed := aead.Seal(nil, nonce, plain, nil)

	kt, err := readRSAKeyTransport(algID{oid: oidRSAEncryption})
	if err != nil {
		t.Fatal(err)
	}
	if got := kt.unwrap(rsaKP.Key.(*rsa.PrivateKey), good, 32); !bytes.Equal(got, cek) {
		t.Fatal("unwrap of a valid block does not return the key")
	}
	var msgs []string
	for name, encKey := range cases {
		got := kt.unwrap(rsaKP.Key.(*rsa.PrivateKey), encKey, 32)
		if len(got) != 32 || bytes.Equal(got, cek) {
			t.Errorf("%s: unwrap returned %d bytes (equal to the key: %v); want a synthetic 32-byte key", name, len(got), bytes.Equal(got, cek))
		}
		h := handMade{auth: true, ris: ktri(t, rsaKP, encKey), alg: gcmAlg(oidAES256GCM, nonce, 16),
			ct: bytes.Clone(sealed[:len(plain)]), mac: sealed[len(plain):]}
		_, info, err := Decrypt(h.der(), rsaKeys(t), DecryptOptions{})
		if err != ErrDecrypt || info != nil {
			t.Errorf("%s: err = %v, want exactly ErrDecrypt", name, err)
		}
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	for _, m := range msgs {
		if m != msgs[0] {
			t.Fatalf("failure messages differ: %q vs %q", m, msgs[0])
		}
	}
	// And the control: the same message with the good block opens.
	h := handMade{auth: true, ris: ktri(t, rsaKP, good), alg: gcmAlg(oidAES256GCM, nonce, 16),
		ct: bytes.Clone(sealed[:len(plain)]), mac: sealed[len(plain):]}
	if got, _, err := Decrypt(h.der(), rsaKeys(t), DecryptOptions{}); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("control: %q, %v", got, err)
	}
}

func TestTamperedCBCPadding(t *testing.T) {
	t.Parallel()
	kp := fixture(t, "p256")
	der := encryptTo(t, []byte("sixteen bytes!!!"), EncryptOptions{Cipher: AES128CBC}, Recipient{Cert: kp.Cert})
	// The last ciphertext block is all padding (16 x 0x10); changing the
	// previous block's last byte changes the last padding byte.
	der[len(der)-17] ^= 0x03
	if _, _, err := Decrypt(der, []KeyPair{kp}, DecryptOptions{}); err != ErrDecrypt {
		t.Fatalf("bad CBC padding: err = %v, want ErrDecrypt", err)
	}
}

func TestWrongKeys(t *testing.T) {
	t.Parallel()
	rsaKP, other := fixture(t, "rsa"), fixture(t, "rsa-other")
	der := encryptTo(t, []byte("for someone else"), EncryptOptions{}, Recipient{Cert: other.Cert})
	_, _, err := Decrypt(bytes.Clone(der), []KeyPair{rsaKP, fixture(t, "p256")}, DecryptOptions{})
	if !errors.Is(err, ErrNotForUs) || !strings.Contains(err.Error(), "cms test rsa-other") {
		t.Fatalf("not for us: err = %v", err)
	}
	// Our certificate with the wrong private key (a broken key store).
	_, _, err = Decrypt(bytes.Clone(der), []KeyPair{{Cert: other.Cert, Key: rsaKP.Key}}, DecryptOptions{})
	if err != ErrDecrypt {
		t.Fatalf("mismatched key: err = %v, want ErrDecrypt", err)
	}
	// Same for ECDH: the unwrap integrity check fails.
	p256 := fixture(t, "p256")
	der = encryptTo(t, []byte("ec"), EncryptOptions{}, Recipient{Cert: p256.Cert})
	ecOther := fixture(t, "p384")
	_, _, err = Decrypt(bytes.Clone(der), []KeyPair{{Cert: p256.Cert, Key: ecOther.Key}}, DecryptOptions{})
	if !errors.Is(err, ErrDecrypt) {
		t.Fatalf("EC with wrong key: err = %v", err)
	}
	// An RSA key named in a key-agreement RecipientInfo.
	_, _, err = Decrypt(bytes.Clone(der), []KeyPair{{Cert: p256.Cert, Key: rsaKP.Key}}, DecryptOptions{})
	if !errors.Is(err, ErrDecrypt) || !strings.Contains(err.Error(), "key-agreement") {
		t.Fatalf("RSA key for ECDH: err = %v", err)
	}
}

func TestTruncatedAndGarbage(t *testing.T) {
	t.Parallel()
	kp := fixture(t, "rsa")
	der := encryptTo(t, []byte("truncate me at every length"), EncryptOptions{}, Recipient{Cert: kp.Cert})
	for n := 0; n < len(der); n++ {
		_, _, err := Decrypt(bytes.Clone(der[:n]), []KeyPair{kp}, DecryptOptions{})
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("truncated to %d of %d bytes: err = %v, want ErrMalformed", n, len(der), err)
		}
	}
	if _, _, err := Decrypt(append(bytes.Clone(der), 0), []KeyPair{kp}, DecryptOptions{}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("trailing byte: %v", err)
	}
	// A SignedData ContentInfo is not something we decrypt.
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2})
		b.AddASN1(casn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {})
		})
	})
	if _, _, err := Decrypt(b.BytesOrPanic(), []KeyPair{kp}, DecryptOptions{}); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "1.2.840.113549.1.7.2") {
		t.Fatalf("SignedData: %v", err)
	}
}

func TestDepthAndSizeLimits(t *testing.T) {
	t.Parallel()
	// 100,000 nested indefinite-length SEQUENCEs.
	deep := bytes.Repeat([]byte{0x30, 0x80}, 100000)
	deep = append(deep, bytes.Repeat([]byte{0, 0}, 100000)...)
	if _, _, err := Decrypt(deep, nil, DecryptOptions{}); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "nesting") {
		t.Fatalf("deep nesting: %v", err)
	}
	// A length that claims more than there is.
	if _, _, err := Decrypt([]byte{0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x06}, nil, DecryptOptions{}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("huge length: %v", err)
	}
	der := encryptTo(t, make([]byte, 1000), EncryptOptions{}, Recipient{Cert: fixture(t, "rsa").Cert})
	if _, _, err := Decrypt(der, rsaKeys(t), DecryptOptions{MaxSize: 500}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("MaxSize: %v", err)
	}
}

// TestAuthAttrs: authenticated attributes are additional data (RFC 5083
// section 2.2): with them the tag verifies, and changing them breaks it.
func TestAuthAttrs(t *testing.T) {
	t.Parallel()
	cek := randomBytes(32)
	ris, _, _ := recipientInfos([]Recipient{{Cert: fixture(t, "rsa").Cert}}, cek)
	attrs := cryptobyte.NewBuilder(nil)
	attrs.AddASN1(casn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}) // contentType
			b.AddASN1(casn1.SET, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidData) })
		})
	})
	attrDER := attrs.BytesOrPanic()
	aad := bytes.Clone(attrDER)
	aad[0] = 0x31
	block, _ := aes.NewCipher(cek)
	aead, _ := cipher.NewGCM(block)
	nonce := randomBytes(12)
	plain := []byte("with attributes")
	sealed := aead.Seal(nil, nonce, plain, aad)
	h := handMade{auth: true, ris: ris, alg: gcmAlg(oidAES256GCM, nonce, 16), ct: sealed[:len(plain)], mac: sealed[len(plain):], authAttr: attrDER}
	if got, _, err := Decrypt(h.der(), rsaKeys(t), DecryptOptions{}); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("with authAttrs: %q, %v", got, err)
	}
	h.authAttr = bytes.Clone(attrDER)
	h.authAttr[len(h.authAttr)-1] ^= 1
	h.ct = sealed[:len(plain)]
	sealed = aead.Seal(nil, nonce, plain, aad)
	h.ct, h.mac = sealed[:len(plain)], sealed[len(plain):]
	if _, _, err := Decrypt(h.der(), rsaKeys(t), DecryptOptions{}); err != ErrDecrypt {
		t.Fatalf("changed authAttrs: %v", err)
	}
}

// TestKeyTransportAlgorithms: a key-transport algorithm we do not know is
// named; broken OAEP parameters are malformed, not a decryption failure.
func TestKeyTransportAlgorithms(t *testing.T) {
	t.Parallel()
	kp := fixture(t, "rsa")
	build := func(alg func(b *cryptobyte.Builder)) []byte {
		b := cryptobyte.NewBuilder(nil)
		b.AddASN1(casn1.SET, func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(0)
				addIssuerAndSerial(b, kp.Cert)
				alg(b)
				b.AddASN1OctetString(make([]byte, 256))
			})
		})
		h, _ := gcmMessage(t, []byte("x"), 16)
		h.ris = b.BytesOrPanic()
		return h.der()
	}
	rsaKEM := asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 3, 14}
	_, _, err := Decrypt(build(func(b *cryptobyte.Builder) { addAlgID(b, rsaKEM, nil) }), rsaKeys(t), DecryptOptions{})
	var ue *UnsupportedAlgorithmError
	if !errors.As(err, &ue) || !ue.OID.Equal(rsaKEM) {
		t.Errorf("RSA-KEM: %v", err)
	}
	_, _, err = Decrypt(build(func(b *cryptobyte.Builder) {
		addAlgID(b, oidRSAESOAEP, func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1Int64(1) })
		})
	}), rsaKeys(t), DecryptOptions{})
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "OAEP") {
		t.Errorf("broken OAEP parameters: %v", err)
	}
	_, _, err = Decrypt(build(func(b *cryptobyte.Builder) {
		addAlgID(b, oidRSAESOAEP, func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1(casn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
					addAlgID(b, asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 5}, addNull) // MD5
				})
			})
		})
	}), rsaKeys(t), DecryptOptions{})
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "1.2.840.113549.2.5") {
		t.Errorf("OAEP with MD5: %v", err)
	}
}
