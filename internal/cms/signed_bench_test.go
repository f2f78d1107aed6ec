package cms

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"testing"
	"time"
)

// BenchmarkSign and BenchmarkVerify put our SignedData next to the bare
// private-key (public-key) operation of the same key, timed alternately in
// the same run, and report both times and the ratio as "x_raw" (1.0 = the
// signature costs no more than the one key operation it needs). A 10 KB
// message, the relay benchmark's size.
//
//	go test -run='^$' -bench='Sign|Verify' ./internal/cms/
func BenchmarkSign(b *testing.B) {
	content := make([]byte, 10<<10)
	rand.Read(content)
	for _, key := range []string{"rsa", "p256"} {
		b.Run(key, func(b *testing.B) {
			s := signerFixture(b, key)
			digest := sha256.Sum256(content)
			compareSignOps(b, func() {
				if _, err := s.Key.Sign(rand.Reader, digest[:], crypto.SHA256); err != nil {
					b.Fatal(err)
				}
			}, func() {
				if _, err := Sign(content, s, SignOptions{SigningTime: signTime, EncryptionCert: s.Cert, Detached: true}); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	content := make([]byte, 10<<10)
	rand.Read(content)
	for _, key := range []string{"rsa", "p256"} {
		b.Run(key, func(b *testing.B) {
			s := signerFixture(b, key)
			der, err := Sign(content, s, SignOptions{SigningTime: signTime, EncryptionCert: s.Cert, Detached: true})
			if err != nil {
				b.Fatal(err)
			}
			digest := sha256.Sum256(content)
			sig, _ := s.Key.Sign(rand.Reader, digest[:], crypto.SHA256)
			compareSignOps(b, func() {
				switch pub := s.Cert.PublicKey.(type) {
				case *rsa.PublicKey:
					if rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) != nil {
						b.Fatal("raw verify")
					}
				case *ecdsa.PublicKey:
					if !ecdsa.VerifyASN1(pub, digest[:], sig) {
						b.Fatal("raw verify")
					}
				}
			}, func() {
				sd, err := ParseSignedData(der)
				if err != nil {
					b.Fatal(err)
				}
				if err := sd.Verify(sd.Signers[0], sd.Certificate(sd.Signers[0], nil), content); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// compareOps runs raw and ours alternately b.N times and reports the time
// of each and the ratio raw/ours.
func compareSignOps(b *testing.B, raw, ours func()) {
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
	b.ReportMetric(float64(tRaw.Microseconds())/float64(b.N), "raw-µs/op")
	b.ReportMetric(float64(tOurs.Microseconds())/float64(b.N), "cms-µs/op")
	b.ReportMetric(float64(tRaw)/float64(tOurs), "x_raw")
}
