package cms

import (
	"bytes"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/binary"
	"runtime"
	"testing"
	"weak"
)

// badBlocks returns key-transport blocks for the fixture "rsa" that do not
// carry a 32-byte key in valid PKCS #1 v1.5 padding, each different.
func badBlocks(t *testing.T) map[string][]byte {
	t.Helper()
	pub := fixture(t, "rsa").Cert.PublicKey.(*rsa.PublicKey)
	otherPub := fixture(t, "rsa-other").Cert.PublicKey.(*rsa.PublicKey)
	cek := randomBytes(32)
	badPadding := make([]byte, pub.Size())
	rand.Read(badPadding[2:])
	badPadding[1] = 0x01
	otherKey, _ := rsa.EncryptPKCS1v15(rand.Reader, otherPub, cek)
	wrongLen, _ := rsa.EncryptPKCS1v15(rand.Reader, pub, cek[:16])
	oaep, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, cek, nil)
	short, _ := rsa.EncryptPKCS1v15(rand.Reader, pub, cek)
	return map[string][]byte{
		"bad padding":    rawRSA(pub, badPadding),
		"other key":      otherKey,
		"wrong length":   wrongLen,
		"OAEP block":     oaep,
		"short block":    short[:100],
		"all zero block": make([]byte, pub.Size()),
		"one":            append(make([]byte, pub.Size()-1), 1),
	}
}

var (
	pkcs1Transport = rsaKeyTransport{name: "rsa-pkcs1v15"}
	oaepTransport  = rsaKeyTransport{oaep: true, params: oaepParams{hash: crypto.SHA256, mgfHash: crypto.SHA256, name: "sha256"}, name: "rsa-oaep-sha256"}
)

// TestImplicitRejectionDeterministic: the key that a non-conformant block
// yields is the same every time, through both paddings, and is never a
// constant: it differs with the block, with the private key and with the
// key length.
func TestImplicitRejectionDeterministic(t *testing.T) {
	t.Parallel()
	priv := fixture(t, "rsa").Key.(*rsa.PrivateKey)
	other := fixture(t, "rsa-other").Key.(*rsa.PrivateKey)
	seen := map[string]string{}
	for name, block := range badBlocks(t) {
		for _, kt := range []rsaKeyTransport{pkcs1Transport, oaepTransport} {
			if kt.oaep && name == "OAEP block" {
				continue // that one is conformant for OAEP
			}
			k1 := kt.unwrap(priv, block, 32)
			k2 := kt.unwrap(priv, bytes.Clone(block), 32)
			if len(k1) != 32 || !bytes.Equal(k1, k2) {
				t.Fatalf("%s, %s: two unwraps of the same block differ (%x, %x)", name, kt.name, k1, k2)
			}
			if bytes.Equal(k1, make([]byte, 32)) {
				t.Fatalf("%s, %s: the synthetic key is all zero", name, kt.name)
			}
			if kt.oaep {
				// Both paddings derive the same synthetic key.
				if prev := seen[name]; prev != string(k1) {
					t.Fatalf("%s: OAEP and PKCS #1 v1.5 synthetic keys differ", name)
				}
				continue
			}
			for prevName, prev := range seen {
				if prev == string(k1) {
					t.Fatalf("%s and %s give the same synthetic key", name, prevName)
				}
			}
			seen[name] = string(k1)
			if o := kt.unwrap(other, block, 32); bytes.Equal(o, k1) {
				t.Fatalf("%s: another private key gives the same synthetic key", name)
			}
			if k16 := kt.unwrap(priv, block, 16); len(k16) != 16 || bytes.Equal(k16, k1[:16]) {
				t.Fatalf("%s: the 16-byte synthetic key is a prefix of the 32-byte one", name)
			}
		}
	}
}

// TestSyntheticKeyConstruction recomputes the synthetic key as the comment
// on syntheticKey describes it, independently of its code, for a short and
// a full-length block.
func TestSyntheticKeyConstruction(t *testing.T) {
	t.Parallel()
	priv := fixture(t, "rsa").Key.(*rsa.PrivateKey)
	k := priv.Size()
	for _, block := range [][]byte{{0x01, 0x02, 0x03}, bytes.Repeat([]byte{0xa5}, k)} {
		d := priv.D.FillBytes(make([]byte, k))
		secret := sha256.Sum256(d)
		padded := append(make([]byte, k-len(block)), block...)
		m := hmac.New(sha256.New, secret[:])
		m.Write(padded)
		kdk := m.Sum(nil)
		var want []byte
		for i := 0; len(want) < 48; i++ {
			p := hmac.New(sha256.New, kdk)
			p.Write(binary.BigEndian.AppendUint16(nil, uint16(i)))
			p.Write([]byte(syntheticLabel))
			p.Write(binary.BigEndian.AppendUint16(nil, 48*8))
			want = p.Sum(want)
		}
		if got := syntheticKey(priv, block, 48); !bytes.Equal(got, want[:48]) {
			t.Fatalf("%d-byte block: synthetic key %x, want %x", len(block), got, want[:48])
		}
	}
}

// TestImplicitRejectionNoOracle: a CBC message whose key-transport block is
// not conformant fails the same way on every one of many tries. With a
// random key per try it would open (to garbage) about one time in 256, and
// a conformant block with the wrong key would not: Bleichenbacher's oracle.
func TestImplicitRejectionNoOracle(t *testing.T) {
	t.Parallel()
	kp := fixture(t, "rsa")
	priv := kp.Key.(*rsa.PrivateKey)
	pub := kp.Cert.PublicKey.(*rsa.PublicKey)
	badPadding := make([]byte, pub.Size())
	rand.Read(badPadding[2:])
	badPadding[1] = 0x01
	encKey := rawRSA(pub, badPadding)

	// Pick a ciphertext whose padding the synthetic key does not accept,
	// so that the right answer is ErrDecrypt every time.
	alg := aes256cbcAlg(t)
	iv, ct := randomBytes(16), randomBytes(32)
	synthetic := pkcs1Transport.unwrap(priv, encKey, 32)
	for {
		if _, ok := decryptCBC(alg, synthetic, iv, ct, false); !ok {
			break
		}
		ct[15]++
	}
	h := handMade{ris: ktri(t, kp, encKey), alg: cbcAlg(oidAES256CBC, iv), ct: ct}
	msg := h.der()
	const tries = 2000
	opened := 0
	for range tries {
		if _, _, err := Decrypt(bytes.Clone(msg), []KeyPair{kp}, DecryptOptions{}); err == nil {
			opened++
		} else if err != ErrDecrypt {
			t.Fatalf("err = %v, want ErrDecrypt", err)
		}
	}
	if opened != 0 {
		t.Fatalf("a non-conformant block opened the message %d times in %d: the outcome depends on chance", opened, tries)
	}
}

func aes256cbcAlg(t *testing.T) *contentAlg {
	t.Helper()
	for _, a := range decryptAlgs {
		if a.oid.Equal(oidAES256CBC) {
			return a
		}
	}
	t.Fatal("no AES-256-CBC")
	return nil
}

// TestImplicitRejectionValidStillOpens: the synthetic key never replaces a
// valid one, through either padding.
func TestImplicitRejectionValidStillOpens(t *testing.T) {
	t.Parallel()
	kp := fixture(t, "rsa")
	priv := kp.Key.(*rsa.PrivateKey)
	pub := kp.Cert.PublicKey.(*rsa.PublicKey)
	cek := randomBytes(32)
	v15, _ := rsa.EncryptPKCS1v15(rand.Reader, pub, cek)
	oaep, _ := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, cek, nil)
	if got := pkcs1Transport.unwrap(priv, v15, 32); !bytes.Equal(got, cek) {
		t.Fatal("PKCS #1 v1.5: a valid block does not give its key")
	}
	if got := oaepTransport.unwrap(priv, oaep, 32); !bytes.Equal(got, cek) {
		t.Fatal("OAEP: a valid block does not give its key")
	}
	// And the message level: a valid CBC message still opens.
	block, _ := aes.NewCipher(cek)
	iv := randomBytes(16)
	plain := append([]byte("sixteen bytes!!!"), bytes.Repeat([]byte{16}, 16)...)
	ct := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, plain)
	h := handMade{ris: ktri(t, kp, v15), alg: cbcAlg(oidAES256CBC, iv), ct: ct}
	if got, _, err := Decrypt(h.der(), []KeyPair{kp}, DecryptOptions{}); err != nil || string(got) != "sixteen bytes!!!" {
		t.Fatalf("valid CBC message: %q, %v", got, err)
	}
}

// TestRejectionSecretForgotten: the cache of per-key secrets holds its keys
// weakly, so a key that is dropped (a certificate store reload) does not
// stay in memory with its secret.
func TestRejectionSecretForgotten(t *testing.T) {
	fixed := fixture(t, "rsa").Key.(*rsa.PrivateKey)
	copied := *fixed
	priv := &copied
	want := rejectionSecret(fixed)
	if got := rejectionSecret(priv); got != want {
		t.Fatal("the same exponent gives another secret")
	}
	wp := weak.Make(priv)
	priv = nil
	for i := 0; ; i++ {
		runtime.GC()
		rejectionSecrets.Lock()
		_, held := rejectionSecrets.m[wp]
		rejectionSecrets.Unlock()
		if !held {
			break
		}
		if i == 1000 {
			t.Fatal("the secret of a collected key is still cached after 1000 collections")
		}
		runtime.Gosched()
	}
}
