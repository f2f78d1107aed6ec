package certstore

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"sync"
	"testing"

	"smimegate/internal/cms"
)

// fuzzSeeds are valid inputs of each format, built once, for the corpora.
var fuzzSeeds = sync.OnceValues(func() ([]byte, []byte) {
	g, err := Generate(KeygenOptions{Domains: []string{"seed.example"}, KeyType: "p256"})
	if err != nil {
		panic(err)
	}
	enc, err := encryptPKCS8Fast(g)
	if err != nil {
		panic(err)
	}
	return g.Cert.Raw, enc
})

// encryptPKCS8Fast makes an encrypted PKCS#8 seed; its iteration count is
// what the parser sees, so the fuzzer can vary it.
func encryptPKCS8Fast(g *Generated) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(g.Key)
	if err != nil {
		return nil, err
	}
	return encryptPKCS8(der, []byte("pw"))
}

// p7Seed is a certs-only PKCS#7 with one certificate, built by hand from
// RFC 5652 section 5.1 so that the seed needs no external tool.
func p7Seed(cert []byte) []byte {
	// SignedData: version 1, no digest algorithms, encapContentInfo id-data,
	// [0] certificates, no signerInfos.
	var sd []byte
	sd = append(sd, 0x02, 0x01, 0x01)                                                             // version
	sd = append(sd, 0x31, 0x00)                                                                   // digestAlgorithms
	sd = append(sd, 0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01) // id-data
	sd = append(sd, derTLV(0xa0, cert)...)                                                        // certificates
	sd = append(sd, 0x31, 0x00)                                                                   // signerInfos
	oid := []byte{0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02}               // id-signedData
	return derTLV(0x30, append(oid, derTLV(0xa0, derTLV(0x30, sd))...))
}

func derTLV(tag byte, content []byte) []byte {
	n := len(content)
	switch {
	case n < 0x80:
		return append([]byte{tag, byte(n)}, content...)
	case n < 0x100:
		return append([]byte{tag, 0x81, byte(n)}, content...)
	default:
		return append([]byte{tag, 0x82, byte(n >> 8), byte(n)}, content...)
	}
}

// FuzzParseFile: no file content makes the loader panic, and whatever it
// accepts is well formed. Partner and own kinds both run, since they take
// different paths.
func FuzzParseFile(f *testing.F) {
	cert, enc := fuzzSeeds()
	f.Add("a.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert}))
	f.Add("a.der", cert)
	f.Add("a.p7b", p7Seed(cert))
	f.Add("a.pem", pem.EncodeToMemory(&pem.Block{Type: "PKCS7", Bytes: p7Seed(cert)}))
	f.Add("k.pem", pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: enc}))
	f.Add("k.der", enc)
	f.Add("x.p12", []byte{0x30, 0x80, 0x00, 0x00})
	f.Add("x.pem", []byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	// A certificate beside a key that cannot be decrypted (no passphrase):
	// the certificate loads, the key is a keyError.
	f.Add("both.pem", append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert}), pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: enc})...))
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		for _, kind := range []fileKind{partnerFile, ownFile} {
			fc, err := parseFile(name, data, kind, nil) // no passphrase: no key derivation, which would only slow the fuzzer
			if err != nil {
				if err.Error() == "" {
					t.Fatal("empty error message")
				}
				continue
			}
			for _, c := range fc.certs {
				nc := newCert(c, name, naming{names: DefaultNames, hosts: true})
				for _, d := range nc.Domains {
					if d != strings.ToLower(d) || d == "" {
						t.Fatalf("domain %q not canonical", d)
					}
				}
			}
			if kind == partnerFile && len(fc.keys) > 0 {
				t.Fatal("a partner file yielded a private key")
			}
			if len(fc.keys)+len(fc.keyErrors) > maxKeysPerFile {
				t.Fatalf("%d keys and %d failed keys in one file (limit %d)", len(fc.keys), len(fc.keyErrors), maxKeysPerFile)
			}
			if len(fc.keyErrors) > 0 && (kind != ownFile || len(fc.certs)+len(fc.keys) == 0) {
				t.Fatalf("failed keys in a %v file with %d certificates and %d keys", kind, len(fc.certs), len(fc.keys))
			}
		}
	})
}

// FuzzPKCS7 targets the hand-written PKCS#7 reader directly.
func FuzzPKCS7(f *testing.F) {
	cert, _ := fuzzSeeds()
	f.Add(p7Seed(cert))
	f.Add(p7Seed(nil))
	f.Add([]byte{0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02, 0xa0, 0x80, 0x30, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := parsePKCS7Certs(data)
		if err == nil && len(certs) == 0 {
			t.Fatal("success without a certificate")
		}
	})
}

// FuzzEncryptedPKCS8 targets the PBES2 parameter parser: it must refuse
// iteration counts beyond the bound and sizes that do not fit the cipher
// before any key derivation runs.
func FuzzEncryptedPKCS8(f *testing.F) {
	_, enc := fuzzSeeds()
	f.Add(enc)
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := parseEncryptedPKCS8(data)
		if err != nil {
			return
		}
		keyLen, block := cipherSizes(p.cipher)
		if p.iterations < 1 || p.iterations > maxPBKDF2Iterations || keyLen == 0 || len(p.iv) != block || len(p.ciphertext)%block != 0 {
			t.Fatalf("accepted bad parameters: %+v", p)
		}
	})
}

// FuzzBERToDER: the BER re-encoder never panics, and what it returns it
// returns unchanged when given again, so no indefinite length is left.
func FuzzBERToDER(f *testing.F) {
	cert, _ := fuzzSeeds()
	f.Add(p7Seed(cert))
	f.Add([]byte{0x30, 0x80, 0x04, 0x01, 0x41, 0xa0, 0x80, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00})
	f.Add([]byte{0x3f, 0x81, 0x01, 0x80, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := cms.BERToDER(data)
		if err != nil {
			return
		}
		again, err := cms.BERToDER(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not stable: % x -> % x -> % x (%v)", data, out, again, err)
		}
	})
}
