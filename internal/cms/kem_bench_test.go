package cms

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io"
	"testing"
	"time"
)

// The KEM benchmarks put each KEM beside RSA-2048 key transport in the same
// run, call by call (see compare): the key establishment alone, and whole
// messages of 10 KB sealed and opened. They report both operation rates
// and "x_rsa2048", how many times faster than RSA-2048 ours is. P-256 ECDH
// is measured the same way, as the other traditional reference. Run them
// with
//
//	go test -run='^$' -bench='KEM' ./internal/cms/

// kemBenchKeys are the keys compared with RSA-2048.
var kemBenchKeys = []string{"p256", "mlkem768", "mlkem1024", "mlkem768-x25519", "mlkem768-p256", "mlkem1024-p384", "mlkem768-rsa2048"}

func benchPair(b *testing.B, name string) KeyPair {
	if name == "p256" || name == "rsa" {
		return fixture(b, name)
	}
	return kemFixture(b, name)
}

// compareOps runs ref and ours alternately b.N times each and reports the
// rate of each and how many times faster ours is.
func compareOps(b *testing.B, ref, ours func()) {
	b.Helper()
	b.ResetTimer()
	var tRef, tOurs time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		ref()
		t1 := time.Now()
		ours()
		tOurs += time.Since(t1)
		tRef += t1.Sub(t0)
	}
	b.ReportMetric(float64(b.N)/tRef.Seconds(), "rsa2048-ops/s")
	b.ReportMetric(float64(b.N)/tOurs.Seconds(), "ops/s")
	b.ReportMetric(float64(tRef)/float64(tOurs), "x_rsa2048")
}

// keyOps returns one sender-side and one recipient-side key-establishment
// operation for kp: RSA PKCS #1 v1.5 encryption and decryption of a
// 32-byte key, an ephemeral P-256 key pair and agreement against one
// agreement, or a KEM's encapsulation and decapsulation.
func keyOps(b *testing.B, kp KeyPair) (send, receive func()) {
	switch k := kp.Key.(type) {
	case *rsa.PrivateKey:
		cek := randomBytes(32)
		ct, err := rsa.EncryptPKCS1v15(rand.Reader, &k.PublicKey, cek)
		if err != nil {
			b.Fatal(err)
		}
		out := make([]byte, 32)
		return func() {
				if _, err := rsa.EncryptPKCS1v15(rand.Reader, &k.PublicKey, cek); err != nil {
					b.Fatal(err)
				}
			}, func() {
				if err := rsa.DecryptPKCS1v15SessionKey(nil, k, ct, out); err != nil {
					b.Fatal(err)
				}
			}
	case *ecdsa.PrivateKey:
		priv, err := k.ECDH()
		if err != nil {
			b.Fatal(err)
		}
		eph, _ := ecdh.P256().GenerateKey(rand.Reader)
		return func() {
				e, _ := ecdh.P256().GenerateKey(rand.Reader)
				if _, err := e.ECDH(priv.PublicKey()); err != nil {
					b.Fatal(err)
				}
			}, func() {
				if _, err := priv.ECDH(eph.PublicKey()); err != nil {
					b.Fatal(err)
				}
			}
	case *KEMPrivateKey:
		pub := k.Public().(*KEMPublicKey)
		_, ct, err := pub.Encapsulate()
		if err != nil {
			b.Fatal(err)
		}
		return func() {
				if _, _, err := pub.Encapsulate(); err != nil {
					b.Fatal(err)
				}
			}, func() {
				if _, err := k.Decapsulate(ct); err != nil {
					b.Fatal(err)
				}
			}
	}
	b.Fatalf("no key operations for %T", kp.Key)
	return nil, nil
}

// BenchmarkKEMKeyEstablishment: encapsulation (what a sender does per
// recipient) and decapsulation (what our gateway does per inbound
// message), each against RSA-2048's operation on the same side.
func BenchmarkKEMKeyEstablishment(b *testing.B) {
	rsaSend, rsaReceive := keyOps(b, fixture(b, "rsa"))
	for _, name := range kemBenchKeys {
		send, receive := keyOps(b, benchPair(b, name))
		b.Run("encapsulate/"+name, func(b *testing.B) { compareOps(b, rsaSend, send) })
		b.Run("decapsulate/"+name, func(b *testing.B) { compareOps(b, rsaReceive, receive) })
	}
}

// BenchmarkKEMMessage seals (Encrypt) and opens (Decrypt) whole 10 KB
// messages, AES-256-GCM, against the same to RSA-2048.
func BenchmarkKEMMessage(b *testing.B) {
	const n = 10 << 10
	rsaPair := fixture(b, "rsa")
	seal := func(kp KeyPair) func() {
		buf := make([]byte, n, n+16)
		return func() {
			if err := Encrypt(io.Discard, buf[:n], []Recipient{{Cert: kp.Cert}}, EncryptOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	}
	open := func(kp KeyPair) func() {
		msg := encryptTo(b, make([]byte, n), EncryptOptions{}, Recipient{Cert: kp.Cert})
		work := make([]byte, len(msg))
		keys := []KeyPair{kp}
		return func() {
			copy(work, msg) // Decrypt works in place
			if _, _, err := Decrypt(work, keys, DecryptOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, name := range kemBenchKeys {
		kp := benchPair(b, name)
		b.Run(fmt.Sprintf("seal/%s/10KB", name), func(b *testing.B) { compareOps(b, seal(rsaPair), seal(kp)) })
		b.Run(fmt.Sprintf("open/%s/10KB", name), func(b *testing.B) { compareOps(b, open(rsaPair), open(kp)) })
	}
}
