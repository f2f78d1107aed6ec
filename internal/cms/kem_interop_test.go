package cms

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// parseKEMPKCS8 reads a PKCS#8 OneAsymmetricKey (RFC 5958) just far
// enough for the tests: certstore has the real reader.
func parseKEMPKCS8(tb testing.TB, der []byte) *KEMPrivateKey {
	tb.Helper()
	in := cryptobyte.String(der)
	var oak, alg cryptobyte.String
	var version int
	var oid asn1.ObjectIdentifier
	var priv []byte
	if !in.ReadASN1(&oak, casn1.SEQUENCE) || !oak.ReadASN1Integer(&version) ||
		!oak.ReadASN1(&alg, casn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) ||
		!oak.ReadASN1Bytes(&priv, casn1.OCTET_STRING) {
		tb.Fatal("malformed PKCS#8")
	}
	k, err := NewKEMPrivateKey(oid, priv)
	if err != nil {
		tb.Fatalf("NewKEMPrivateKey: %v", err)
	}
	return k
}

// cryptoNextVector is one message of the IETF PQC hackathon's CMS
// artifacts (testdata/pqc-cryptonext, README there), with its recipient.
type cryptoNextVector struct {
	name    string // the file
	alg     string // the prefix naming the algorithm
	message []byte
	pair    KeyPair
}

func cryptoNextVectors(tb testing.TB) []cryptoNextVector {
	tb.Helper()
	dir := filepath.Join("testdata", "pqc-cryptonext")
	files, err := filepath.Glob(filepath.Join(dir, "*_kemri_*.der"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no CryptoNext vectors in %s: %v", dir, err)
	}
	var out []cryptoNextVector
	for _, f := range files {
		base := filepath.Base(f)
		alg := base[:strings.Index(base, "_kemri_")]
		certDER, err := os.ReadFile(filepath.Join(dir, alg+"_ee.der"))
		if err != nil {
			tb.Fatal(err)
		}
		cert, err := x509.ParseCertificate(certDER)
		if err != nil {
			tb.Fatalf("%s: %v", alg, err)
		}
		keyFile := filepath.Join(dir, alg+"_priv.der")
		if _, err := os.Stat(keyFile); err != nil {
			// Pure ML-KEM: named "expandedkey" but in the seed form.
			keyFile = filepath.Join(dir, alg+"_expandedkey_priv.der")
		}
		keyDER, err := os.ReadFile(keyFile)
		if err != nil {
			tb.Fatal(err)
		}
		msg, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, cryptoNextVector{name: base, alg: alg, message: msg, pair: KeyPair{Cert: cert, Key: parseKEMPKCS8(tb, keyDER)}})
	}
	return out
}

// TestCryptoNextVectors decrypts every message that CryptoNext's
// independent implementation made for the hackathon: ML-KEM-768 and -1024
// and nine composites, EnvelopedData (AES-256-CBC) and AuthEnvelopedData
// (AES-256-GCM), with and without ukm, HKDF-SHA256 throughout.
func TestCryptoNextVectors(t *testing.T) {
	want, err := os.ReadFile(filepath.Join("testdata", "pqc-cryptonext", "expected_plaintext.txt"))
	if err != nil {
		t.Fatal(err)
	}
	vs := cryptoNextVectors(t)
	if len(vs) != 33 {
		t.Fatalf("%d vectors, want 33 (11 algorithms, 3 messages each)", len(vs))
	}
	for _, v := range vs {
		t.Run(v.name, func(t *testing.T) {
			pt, info, err := Decrypt(bytes.Clone(v.message), []KeyPair{v.pair}, DecryptOptions{})
			if err != nil {
				t.Fatalf("Decrypt: %v", err)
			}
			if !bytes.Equal(pt, want) {
				t.Fatalf("plaintext %q, want %q", pt, want)
			}
			auth := strings.Contains(v.name, "_auth")
			if info.AEAD != auth || info.Cert != v.pair.Cert {
				t.Errorf("info %+v", info)
			}
			k := v.pair.Key.(*KEMPrivateKey)
			if info.KeyTransport != k.Algorithm()+"-hkdf-sha256" {
				t.Errorf("KeyTransport %q for %s", info.KeyTransport, k.Algorithm())
			}
			// The certificate's key is the one the private key gives.
			pub, err := ParseKEMPublicKey(v.pair.Cert.RawSubjectPublicKeyInfo)
			if err != nil {
				t.Fatalf("ParseKEMPublicKey: %v", err)
			}
			if !pub.Equal(k.Public()) {
				t.Errorf("the certificate's public key is not the private key's")
			}
		})
	}
}

// TestEncryptToCryptoNextKeys encrypts to the hackathon certificates, whose
// keys another implementation made, and opens the result with their
// private keys: our encapsulation against their key material. Both the
// issuerAndSerialNumber and the subjectKeyIdentifier forms are used.
func TestEncryptToCryptoNextKeys(t *testing.T) {
	seen := map[string]bool{}
	for _, v := range cryptoNextVectors(t) {
		if seen[v.alg] {
			continue
		}
		seen[v.alg] = true
		for _, ski := range []bool{false, true} {
			for _, c := range []ContentCipher{AES256GCM, AES128CBC} {
				plain := []byte("post-quantum domain mail for " + v.alg)
				der := encryptTo(t, bytes.Clone(plain), EncryptOptions{Cipher: c}, Recipient{Cert: v.pair.Cert, UseSKI: ski})
				env, err := parseContentInfo(bytes.Clone(der))
				if err != nil {
					t.Fatal(err)
				}
				if len(env.kem) != 1 || len(env.keyTrans)+len(env.keyAgree)+env.otherKinds != 0 {
					t.Fatalf("%s: want exactly one KEMRecipientInfo", v.alg)
				}
				pt, _, err := Decrypt(der, []KeyPair{v.pair}, DecryptOptions{})
				if err != nil || !bytes.Equal(pt, plain) {
					t.Fatalf("%s ski=%v %v: %q, %v", v.alg, ski, c, pt, err)
				}
			}
		}
	}
	if len(seen) != 11 {
		t.Fatalf("%d algorithms, want 11", len(seen))
	}
}

func readHex(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	s := strings.Join(strings.Fields(string(b)), "")
	out, err := hexDecode(s)
	if err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
	return out
}

func hexDecode(s string) ([]byte, error) {
	if len(s)%2 != 0 {
		return nil, errors.New("odd length")
	}
	out := make([]byte, len(s)/2)
	for i := range out {
		var v byte
		for _, c := range s[2*i : 2*i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			case c >= 'a' && c <= 'f':
				v |= byte(c - 'a' + 10)
			case c >= 'A' && c <= 'F':
				v |= byte(c - 'A' + 10)
			default:
				return nil, errors.New("not hex")
			}
		}
		out[i] = v
	}
	return out, nil
}

func readPEMBlock(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	p, _ := pem.Decode(b)
	if p == nil {
		tb.Fatalf("%s: no PEM", path)
	}
	return p.Bytes
}
