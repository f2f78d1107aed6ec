package cms

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rsa"
	"fmt"
	"io"
	"testing"
	"time"
)

// The benchmarks put Encrypt and Decrypt next to the bare cipher on the
// same data in the same run: cipher.AEAD.Seal and Open for AES-256-GCM,
// and CBC CryptBlocks for AES-256-CBC. They report both throughputs and
// their ratio as "x_raw" (1.0 = as fast as the bare cipher). The two are
// timed alternately, call by call, so that the load of a shared machine
// falls on both alike. Run them with
//
//	go test -run='^$' -bench=. -benchmem ./internal/cms/
var benchSizes = []int{10 << 10, 1 << 20, 10 << 20}

func sizeName(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMB", n>>20)
	}
	return fmt.Sprintf("%dKB", n>>10)
}

// compare runs raw and ours alternately b.N times each and reports their
// throughputs for n bytes and the ratio. The standard ns/op and B/op cover
// both together and are not meaningful alone.
func compare(b *testing.B, n int, raw, ours func()) {
	b.Helper()
	b.ReportAllocs()
	b.ResetTimer()
	var tRaw, tOurs time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		raw()
		t1 := time.Now()
		ours()
		tOurs += time.Since(t1)
		tRaw += t1.Sub(t0)
	}
	rawNs := float64(tRaw) / float64(b.N)
	oursNs := float64(tOurs) / float64(b.N)
	b.ReportMetric(float64(n)/rawNs*1e3, "raw-MB/s")
	b.ReportMetric(float64(n)/oursNs*1e3, "cms-MB/s")
	b.ReportMetric(rawNs/oursNs, "x_raw")
}

// rawCipher returns the bare cipher for c: an AEAD for GCM, or the block
// cipher for CBC, with a fixed key.
func rawCipher(b *testing.B) (cipher.AEAD, cipher.Block) {
	block, err := aes.NewCipher(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		b.Fatal(err)
	}
	return aead, block
}

func BenchmarkEncrypt(b *testing.B) {
	rs := []Recipient{{Cert: fixture(b, "rsa").Cert}}
	for _, c := range []ContentCipher{AES256GCM, AES256CBC} {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/%s", c, sizeName(n)), func(b *testing.B) {
				aead, block := rawCipher(b)
				nonce, iv := make([]byte, 12), make([]byte, 16)
				// The caller's buffer, with room for the tag: Encrypt works
				// in place, like the raw cipher it is compared with.
				buf := make([]byte, n, n+16)
				rawBuf := make([]byte, n, n+16)
				raw := func() { aead.Seal(rawBuf[:0], nonce, rawBuf, nil) }
				if !c.AEAD() {
					raw = func() { cipher.NewCBCEncrypter(block, iv).CryptBlocks(rawBuf[:n&^15], rawBuf[:n&^15]) }
				}
				compare(b, n, raw, func() {
					if err := Encrypt(io.Discard, buf[:n], rs, EncryptOptions{Cipher: c}); err != nil {
						b.Fatal(err)
					}
				})
			})
		}
	}
}

// BenchmarkDecrypt measures RSA key transport (whose private-key operation
// is a fixed cost of a few milliseconds per message) and ECDH P-256 (a
// fraction of a millisecond), so the ratio at 10 MB shows the content path.
func BenchmarkDecrypt(b *testing.B) {
	type kc struct {
		key string
		c   ContentCipher
	}
	for _, k := range []kc{{"rsa", AES256GCM}, {"rsa", AES256CBC}, {"p256", AES256GCM}} {
		kp := fixture(b, k.key)
		keys := []KeyPair{kp}
		c := k.c
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s/%s/%s", k.key, c, sizeName(n)), func(b *testing.B) {
				aead, block := rawCipher(b)
				nonce, iv := make([]byte, 12), make([]byte, 16)
				sealed := aead.Seal(nil, nonce, make([]byte, n), nil)
				msg := encryptTo(b, make([]byte, n), EncryptOptions{Cipher: c}, Recipient{Cert: kp.Cert})
				// Both decrypt in place and destroy their input, so each call
				// first restores it: both sides pay for one copy of the
				// message, and the ratio compares like with like.
				work := make([]byte, len(msg))
				rawWork := make([]byte, len(sealed))
				raw := func() {
					copy(rawWork, sealed)
					if _, err := aead.Open(rawWork[:0], nonce, rawWork, nil); err != nil {
						b.Fatal(err)
					}
				}
				if !c.AEAD() {
					raw = func() {
						copy(rawWork, sealed)
						cipher.NewCBCDecrypter(block, iv).CryptBlocks(rawWork[:n], rawWork[:n])
					}
				}
				compare(b, n, raw, func() {
					copy(work, msg)
					if _, _, err := Decrypt(work, keys, DecryptOptions{}); err != nil {
						b.Fatal(err)
					}
				})
			})
		}
	}
}

// BenchmarkDecryptSmall is the fixed cost per message, which the private-key
// operation dominates.
func BenchmarkDecryptSmall(b *testing.B) {
	for _, key := range []string{"rsa", "p256", "x25519"} {
		b.Run(key, func(b *testing.B) {
			kp := fixture(b, key)
			msg := encryptTo(b, []byte("short"), EncryptOptions{}, Recipient{Cert: kp.Cert})
			work := make([]byte, len(msg))
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				copy(work, msg)
				if _, _, err := Decrypt(work, []KeyPair{kp}, DecryptOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUnwrapPKCS1v15 puts the key-transport step, synthetic key
// included, next to the bare rsa.DecryptPKCS1v15SessionKey on the same
// block; x_raw is the share of the cost that the private-key operation
// leaves to everything else.
func BenchmarkUnwrapPKCS1v15(b *testing.B) {
	kp := fixture(b, "rsa")
	priv := kp.Key.(*rsa.PrivateKey)
	cek := make([]byte, 32)
	for name, block := range map[string][]byte{
		"valid":   mustEncryptPKCS1(b, kp, cek),
		"invalid": make([]byte, priv.Size()),
	} {
		b.Run(name, func(b *testing.B) {
			kt := rsaKeyTransport{name: "rsa-pkcs1v15"}
			out := make([]byte, 32)
			compare(b, len(block), func() {
				_ = rsa.DecryptPKCS1v15SessionKey(nil, priv, block, out)
			}, func() {
				kt.unwrap(priv, block, 32)
			})
		})
	}
}
