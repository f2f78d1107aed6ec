package certstore

import (
	"bytes"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"smimegate/internal/cms"
)

// FuzzKEMPKCS8 feeds the PKCS#8 reader arbitrary keys: it must fail
// cleanly, and a KEM key it accepts must encode back to a PKCS#8 that
// reads as the same key.
func FuzzKEMPKCS8(f *testing.F) {
	for _, kind := range testKEMTypes {
		f.Add(marshalKEMPKCS8(generatedKEM(f, kind).Key))
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "rfc9935-example", "*.priv"))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		if p, _ := pem.Decode(b); p != nil {
			f.Add(p.Bytes)
		}
	}
	f.Fuzz(func(t *testing.T, der []byte) {
		k, err := parsePKCS8Key(der)
		if err != nil {
			return
		}
		kk, ok := k.(*cms.KEMPrivateKey)
		if !ok {
			return
		}
		again, err := parsePKCS8Key(marshalKEMPKCS8(kk))
		if err != nil || !samePublicKey(publicKeyOf(again), kk.Public()) {
			t.Fatalf("a KEM key does not round-trip through PKCS#8: %v", err)
		}
		if !bytes.Equal(again.(*cms.KEMPrivateKey).PrivateKeyBytes(), kk.PrivateKeyBytes()) {
			t.Fatal("the private key changed on the round trip")
		}
	})
}
