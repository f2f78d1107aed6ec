package cms

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

func encryptTo(t testing.TB, plain []byte, opts EncryptOptions, rs ...Recipient) []byte {
	t.Helper()
	buf := append(make([]byte, 0, len(plain)+16), plain...)
	var out bytes.Buffer
	if err := Encrypt(&out, buf, rs, opts); err != nil {
		t.Fatalf("Encrypt: %v", err)
	}
	return out.Bytes()
}

// TestRoundTrip encrypts with every cipher to every key type, padding and
// identifier form, and decrypts with the matching key among others.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	ciphers := []ContentCipher{AES256GCM, AES128GCM, AES128CBC, AES192CBC, AES256CBC}
	type rcase struct {
		key     string
		padding RSAPadding
		ski     bool
		want    string
	}
	var cases []rcase
	for _, ski := range []bool{false, true} {
		cases = append(cases,
			rcase{"rsa", PKCS1v15, ski, "rsa-pkcs1v15"},
			rcase{"rsa", OAEP, ski, "rsa-oaep-sha256"},
			rcase{"p256", 0, ski, "ecdh-p256-sha256kdf"},
			rcase{"p384", 0, ski, "ecdh-p384-sha256kdf"},
			rcase{"p521", 0, ski, "ecdh-p521-sha256kdf"},
			rcase{"x25519", 0, ski, "ecdh-x25519-hkdf-sha256"},
		)
	}
	for _, c := range ciphers {
		for _, rc := range cases {
			for _, size := range []int{0, 1, 15, 16, 17, 1000} {
				name := fmt.Sprintf("%s/%s/%s/ski=%v/%d", c, rc.key, rc.padding, rc.ski, size)
				t.Run(name, func(t *testing.T) {
					kp := fixture(t, rc.key)
					plain := make([]byte, size)
					rand.Read(plain)
					der := encryptTo(t, plain, EncryptOptions{Cipher: c}, Recipient{Cert: kp.Cert, RSAPadding: rc.padding, UseSKI: rc.ski})
					keys := []KeyPair{fixture(t, "rsa-other"), kp}
					got, info, err := Decrypt(der, keys, DecryptOptions{})
					if err != nil {
						t.Fatalf("Decrypt: %v", err)
					}
					if !bytes.Equal(got, plain) {
						t.Fatalf("plaintext differs")
					}
					if info.Cipher != c.String() || info.AEAD != c.AEAD() || info.KeyTransport != rc.want || info.Cert != kp.Cert {
						t.Fatalf("info = %+v", info)
					}
					wantType := "envelopedData"
					if c.AEAD() {
						wantType = "authEnvelopedData"
					}
					if info.ContentType != wantType {
						t.Fatalf("content type %q, want %q", info.ContentType, wantType)
					}
				})
			}
		}
	}
}

// TestManyRecipients encrypts once to several key types; each key alone
// opens the message.
func TestManyRecipients(t *testing.T) {
	t.Parallel()
	names := []string{"rsa", "p256", "x25519", "p521"}
	var rs []Recipient
	for i, n := range names {
		rs = append(rs, Recipient{Cert: fixture(t, n).Cert, RSAPadding: OAEP, UseSKI: i%2 == 1})
	}
	plain := []byte("one message, four recipients\r\n")
	der := encryptTo(t, plain, EncryptOptions{}, rs...)
	for _, n := range names {
		in := bytes.Clone(der)
		got, info, err := Decrypt(in, []KeyPair{fixture(t, n)}, DecryptOptions{})
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("%s: Decrypt = %q, %v", n, got, err)
		}
		if info.Cert != fixture(t, n).Cert {
			t.Fatalf("%s: matched the wrong certificate", n)
		}
	}
}

// TestKeyTypes checks that both private key forms for EC work, as
// certstore may hand either.
func TestKeyTypes(t *testing.T) {
	t.Parallel()
	kp := fixture(t, "p384")
	ek, err := kp.Key.(*ecdsa.PrivateKey).ECDH()
	if err != nil {
		t.Fatal(err)
	}
	der := encryptTo(t, []byte("hello"), EncryptOptions{Cipher: AES128CBC}, Recipient{Cert: kp.Cert})
	got, _, err := Decrypt(der, []KeyPair{{Cert: kp.Cert, Key: ek}}, DecryptOptions{})
	if err != nil || string(got) != "hello" {
		t.Fatalf("Decrypt with *ecdh.PrivateKey = %q, %v", got, err)
	}
	if _, ok := fixture(t, "x25519").Key.(*ecdh.PrivateKey); !ok {
		t.Fatalf("x25519 fixture parsed as %T", fixture(t, "x25519").Key)
	}
	if _, ok := fixture(t, "rsa").Key.(*rsa.PrivateKey); !ok {
		t.Fatalf("rsa fixture parsed as %T", fixture(t, "rsa").Key)
	}
}

// TestOutputIsDER walks what Encrypt writes with cryptobyte, which accepts
// only definite, minimal DER lengths.
func TestOutputIsDER(t *testing.T) {
	t.Parallel()
	var walkDER func(s cryptobyte.String, depth int)
	walkDER = func(s cryptobyte.String, depth int) {
		for !s.Empty() {
			var body cryptobyte.String
			var tag casn1.Tag
			if !s.ReadAnyASN1(&body, &tag) {
				t.Fatalf("not DER at depth %d", depth)
			}
			if tag&0x20 != 0 {
				walkDER(body, depth+1)
			}
		}
	}
	for _, c := range []ContentCipher{AES256GCM, AES192CBC} {
		der := encryptTo(t, make([]byte, 70000), EncryptOptions{Cipher: c},
			Recipient{Cert: fixture(t, "rsa").Cert, RSAPadding: OAEP},
			Recipient{Cert: fixture(t, "p521").Cert, UseSKI: true},
			Recipient{Cert: fixture(t, "x25519").Cert})
		walkDER(cryptobyte.String(der), 0)
	}
}

// TestKeyRotation: with several of our keys named, a first candidate whose
// key transport fails (a garbage RSA block) does not spoil the content for
// the next one, because every attempt but the last works on a copy.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	rsaKP, ecKP := fixture(t, "rsa"), fixture(t, "p256")
	cek := randomBytes(32)
	body := func(set []byte) []byte {
		e, _, err := parseElement(set, 0)
		if err != nil {
			t.Fatal(err)
		}
		return e.body
	}
	kari, _, err := recipientInfos([]Recipient{{Cert: ecKP.Cert}}, cek)
	if err != nil {
		t.Fatal(err)
	}
	garbage := ktri(t, rsaKP, randomBytes(256))
	inner := append(bytes.Clone(body(garbage)), body(kari)...)
	set := appendHeader(nil, classUniversal, tagSet, true, len(inner), inner)

	block, _ := aes.NewCipher(cek)
	aead, _ := cipher.NewGCM(block)
	nonce := randomBytes(12)
	plain := []byte("rotated keys")
	sealed := aead.Seal(nil, nonce, plain, nil)
	h := handMade{auth: true, ris: set, alg: gcmAlg(oidAES256GCM, nonce, 16), ct: sealed[:len(plain)], mac: sealed[len(plain):]}
	got, info, err := Decrypt(h.der(), []KeyPair{rsaKP, ecKP}, DecryptOptions{})
	if err != nil || !bytes.Equal(got, plain) || info.Cert != ecKP.Cert {
		t.Fatalf("Decrypt = %q, %+v, %v", got, info, err)
	}
	// A repeated RecipientInfo for the same key is tried once: the first.
	inner = append(bytes.Clone(body(garbage)), body(ktri(t, rsaKP, mustEncryptPKCS1(t, rsaKP, cek)))...)
	h.ris = appendHeader(nil, classUniversal, tagSet, true, len(inner), inner)
	if _, _, err := Decrypt(h.der(), []KeyPair{rsaKP}, DecryptOptions{}); err != ErrDecrypt {
		t.Fatalf("repeated RecipientInfo: err = %v, want ErrDecrypt from the first", err)
	}
}

func mustEncryptPKCS1(t testing.TB, kp KeyPair, key []byte) []byte {
	t.Helper()
	c, err := rsa.EncryptPKCS1v15(rand.Reader, kp.Cert.PublicKey.(*rsa.PublicKey), key)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
