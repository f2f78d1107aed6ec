package cms

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
)

// The worked examples of RFC 9936 appendix C (ML-KEM-512) and
// draft-ietf-lamps-cms-composite-kem appendix B (id-MLKEM768-ECDH-P256),
// the composite draft's KEM combiner examples (appendix F) and its test
// vectors (appendix G); see testdata/*/README.md for where each file comes
// from.

// example is one of the two CMS worked examples, read from its directory.
type example struct {
	message                                  []byte // the DER ContentInfo
	ss, kemct, oriInfo, kek, cek, wrappedCEK []byte
	keyID                                    []byte
	plaintext                                []byte
	wrapOID                                  []byte // DER of the example's wrap AlgorithmIdentifier
	recipientInfo                            []byte // DER of its one RecipientInfo
	env                                      *envelope
	kem                                      *kemRecipientInfo
}

func loadExample(t *testing.T, dir, name string) *example {
	t.Helper()
	p := func(f string) string { return filepath.Join("testdata", dir, f) }
	e := &example{
		message:    readPEMBlock(t, p(name+".cms")),
		ss:         readHex(t, p("shared_secret.txt")),
		kemct:      readHex(t, p("ciphertext.txt")),
		oriInfo:    readHex(t, p("ori_info.txt")),
		kek:        readHex(t, p("kek.txt")),
		cek:        readHex(t, p("cek.txt")),
		wrappedCEK: readHex(t, p("encrypted_cek.txt")),
		keyID:      readHex(t, p(name+".keyid")),
	}
	var err error
	if e.plaintext, err = os.ReadFile(p("plaintext.txt")); err != nil {
		t.Fatal(err)
	}
	if e.env, err = parseContentInfo(bytes.Clone(e.message)); err != nil {
		t.Fatalf("parsing the example: %v", err)
	}
	if len(e.env.kem) != 1 {
		t.Fatalf("the example has %d KEMRecipientInfos", len(e.env.kem))
	}
	e.kem = e.env.kem[0]
	if e.wrapOID, err = toDER(e.kem.wrap.elem); err != nil {
		t.Fatal(err)
	}
	// The RecipientInfo as sent: the one element of the SET.
	top := newReader(e.message, 0)
	ci, _ := top.next()
	r, _ := ci.children()
	r.next() // contentType
	c0, _ := r.next()
	cr, _ := c0.children()
	body, _ := cr.next()
	br, _ := body.children()
	br.next() // version
	set, _ := br.next()
	sr, _ := set.children()
	ri, _ := sr.next()
	e.recipientInfo = ri.raw
	return e
}

// checkKDFAndWrap compares the steps after the KEM with the example:
// CMSORIforKEMOtherInfo, the KEK, the wrapped CEK both ways.
func (e *example) checkKDFAndWrap(t *testing.T, kekLen int) {
	t.Helper()
	if !bytes.Equal(e.kem.kemct, e.kemct) {
		t.Errorf("kemct differs from ciphertext.txt")
	}
	info := oriForKEMOtherInfo(e.wrapOID, kekLen, nil, false)
	if !bytes.Equal(info, e.oriInfo) {
		t.Errorf("CMSORIforKEMOtherInfo %x, example %x", info, e.oriInfo)
	}
	kek, err := kemKEK(crypto.SHA256, e.ss, info, kekLen)
	if err != nil || !bytes.Equal(kek, e.kek) {
		t.Errorf("KEK %x (%v), example %x", kek, err, e.kek)
	}
	wrapped, err := keyWrap(kek, e.cek)
	if err != nil || !bytes.Equal(wrapped, e.wrappedCEK) || !bytes.Equal(wrapped, e.kem.ref.encKey) {
		t.Errorf("wrapped CEK %x (%v), example %x", wrapped, err, e.wrappedCEK)
	}
	cek, err := keyUnwrap(kek, e.kem.ref.encKey)
	if err != nil || !bytes.Equal(cek, e.cek) {
		t.Errorf("unwrapped CEK %x (%v), example %x", cek, err, e.cek)
	}
}

// rebuild writes the example's RecipientInfo with our encoder, given the
// example's shared secret, KEM ciphertext and CEK: byte for byte what the
// example sent, if every field and the KDF and wrap agree.
func (e *example) rebuild(t *testing.T, pub *KEMPublicKey) {
	t.Helper()
	cert := &x509.Certificate{SubjectKeyId: e.keyID}
	b := cryptobyte.NewBuilder(nil)
	err := addKEMRecipient(b, Recipient{Cert: cert, UseSKI: true}, pub, e.cek, func() ([]byte, []byte, error) {
		return bytes.Clone(e.ss), e.kemct, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := b.BytesOrPanic(); !bytes.Equal(got, e.recipientInfo) {
		t.Errorf("our RecipientInfo differs from the example's:\n ours    %x\n example %x", got, e.recipientInfo)
	}
}

// TestRFC9936Example checks the ML-KEM-512 example of RFC 9936 appendix C
// against every intermediate value. Go has no ML-KEM-512, so the KEM step
// takes the example's shared secret; everything after it is ours: the
// KDF input, the KEK, the key wrap, the RecipientInfo's encoding, and the
// decryption of the content with the CEK that the RecipientInfo yields.
func TestRFC9936Example(t *testing.T) {
	e := loadExample(t, "rfc9936-example", "ML-KEM-512")
	if !e.kem.kem.oid.Equal(oidMLKEM512) || e.kem.kekLen != 16 {
		t.Fatalf("kem %v kekLength %d", e.kem.kem.oid, e.kem.kekLen)
	}
	e.checkKDFAndWrap(t, 16)
	e.rebuild(t, &KEMPublicKey{alg: &kemAlg{oid: oidMLKEM512, name: "mlkem512", mlkem: 512}})

	// The content, opened with the CEK from the RecipientInfo.
	kek, _ := kemKEK(crypto.SHA256, e.ss, oriForKEMOtherInfo(e.wrapOID, 16, nil, false), 16)
	cek, err := keyUnwrap(kek, e.kem.ref.encKey)
	if err != nil {
		t.Fatal(err)
	}
	if pt := openExampleContent(t, e.env, cek); !bytes.Equal(pt, e.plaintext) {
		t.Errorf("content %q, example %q", pt, e.plaintext)
	}
	// Decrypt itself refuses ML-KEM-512 by name rather than failing.
	_, _, err = Decrypt(bytes.Clone(e.message), []KeyPair{{Cert: &x509.Certificate{SubjectKeyId: e.keyID}, Key: &KEMPrivateKey{pub: &KEMPublicKey{alg: kemAlgs[0]}}}}, DecryptOptions{})
	if ue, ok := err.(*UnsupportedAlgorithmError); !ok || !ue.OID.Equal(oidMLKEM512) {
		t.Errorf("Decrypt of ML-KEM-512: %v, want an UnsupportedAlgorithmError", err)
	}
}

// openExampleContent decrypts env's content with cek as Decrypt would.
func openExampleContent(t *testing.T, env *envelope, cek []byte) []byte {
	t.Helper()
	alg, iv, err := env.checkContentAlg(DecryptOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ct, err := octets(env.content, false)
	if err != nil {
		t.Fatal(err)
	}
	var pt []byte
	var ok bool
	if alg.aead {
		aad, _ := env.additionalData()
		pt, ok = openGCM(alg, cek, iv, ct, env.mac, aad, false)
	} else {
		pt, ok = decryptCBC(alg, cek, iv, ct, false)
	}
	if !ok {
		t.Fatal("the example's content does not open with its CEK")
	}
	return pt
}

// TestCompositeCMSExample checks the id-MLKEM768-ECDH-P256-SHA3-256
// example of draft-ietf-lamps-cms-composite-kem appendix B: our
// decapsulation with the example's private key gives its shared secret,
// and the KDF, the wraps, the RecipientInfo and the whole decryption agree.
func TestCompositeCMSExample(t *testing.T) {
	const name = "MLKEM768-ECDH-P256-SHA3-256"
	e := loadExample(t, "composite-cms-example", name)
	dir := filepath.Join("testdata", "composite-cms-example")
	priv := parseKEMPKCS8(t, readPEMBlock(t, filepath.Join(dir, name+".priv")))
	pub, err := ParseKEMPublicKey(readPEMBlock(t, filepath.Join(dir, name+".pub")))
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(priv.Public()) {
		t.Fatal("the example's public key is not its private key's")
	}
	cert, err := x509.ParseCertificate(readPEMBlock(t, filepath.Join(dir, name+".pem")))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cert.SubjectKeyId, e.keyID) {
		t.Errorf("certificate SKI %x, keyid %x", cert.SubjectKeyId, e.keyID)
	}
	if ss := priv.decapsulate(e.kem.kemct); !bytes.Equal(ss, e.ss) {
		t.Errorf("decapsulated %x, example's shared secret %x", ss, e.ss)
	}
	e.checkKDFAndWrap(t, 32)
	e.rebuild(t, pub)

	pt, info, err := Decrypt(bytes.Clone(e.message), []KeyPair{{Cert: cert, Key: priv}}, DecryptOptions{})
	if err != nil || !bytes.Equal(pt, e.plaintext) {
		t.Fatalf("Decrypt: %q, %v", pt, err)
	}
	if info.KeyTransport != "mlkem768-p256-hkdf-sha256" || info.Cipher != "aes256-gcm" {
		t.Errorf("info %+v", info)
	}
}

// TestCompositeCombinerExamples reproduces the composite draft's KEM
// combiner examples (appendix F) from their inputs.
func TestCompositeCombinerExamples(t *testing.T) {
	for _, c := range []struct {
		file string
		oid  []int
	}{
		{"kemCombiner_MLKEM768_ECDH_P256_SHA3_256.md", oidMLKEM768P256},
		{"kemCombiner_MLKEM768_X25519_SHA3_256.md", oidMLKEM768X25519},
		{"kemCombiner_MLKEM1024_ECDH_P384_SHA3_256.md", oidMLKEM1024P384},
	} {
		fields := combinerExample(t, filepath.Join("testdata", "composite-kem-vectors", c.file))
		alg, err := kemAlgByOID(c.oid, "test")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(alg.label, fields["Label"]) {
			t.Errorf("%s: label %x, example %x", c.file, alg.label, fields["Label"])
		}
		ss := alg.combine(fields["mlkemSS"], fields["tradSS"], fields["tradCT"], fields["tradPK"])
		if !bytes.Equal(ss, fields["ss"]) {
			t.Errorf("%s: combined %x, example %x", c.file, ss, fields["ss"])
		}
	}
}

// combinerExample reads "name: hex" fields (the hex may run over lines)
// from one of the draft's combiner examples.
func combinerExample(t *testing.T, path string) map[string][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	var cur string
	var hexs strings.Builder
	flush := func() {
		if cur != "" && hexs.Len() > 0 {
			v, err := hexDecode(hexs.String())
			if err != nil {
				t.Fatalf("%s: %s: %v", path, cur, err)
			}
			out[cur] = v
		}
		cur = ""
		hexs.Reset()
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if name, rest, ok := strings.Cut(line, ":"); ok && isFieldName(name) {
			flush()
			cur = name
			line = strings.TrimSpace(rest)
		}
		switch {
		case strings.HasPrefix(line, "#") || line == "" && hexs.Len() > 0:
			flush()
			continue
		case cur == "" || line == "" || strings.HasPrefix(line, "("):
			continue
		}
		hexs.WriteString(line)
	}
	flush()
	for _, k := range []string{"mlkemSS", "tradSS", "tradCT", "tradPK", "Label", "ss"} {
		if out[k] == nil {
			t.Fatalf("%s: no %s", path, k)
		}
	}
	return out
}

// TestCompositeKEMTestVectors decapsulates the composite draft's test
// vectors (appendix G, made by its reference implementation) for every
// algorithm this package has: the key from its PKCS#8, the certificate's
// key, and the shared secret of the given ciphertext.
func TestCompositeKEMTestVectors(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "composite-kem-vectors", "testvectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var tv struct {
		Tests []struct {
			TcID    string `json:"tcId"`
			EK      string `json:"ek"`
			X5C     string `json:"x5c"`
			DKPKCS8 string `json:"dk_pkcs8"`
			C       string `json:"c"`
			K       string `json:"k"`
		} `json:"tests"`
	}
	if err := json.Unmarshal(raw, &tv); err != nil {
		t.Fatal(err)
	}
	b64 := func(s string) []byte {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	seen := map[string]bool{}
	for _, v := range tv.Tests {
		t.Run(v.TcID, func(t *testing.T) {
			priv := parseKEMPKCS8(t, b64(v.DKPKCS8))
			seen[priv.Algorithm()] = true
			if !bytes.Equal(priv.pub.raw, b64(v.EK)) {
				t.Errorf("the public key from the private key differs from ek")
			}
			cert, err := x509.ParseCertificate(b64(v.X5C))
			if err != nil {
				t.Fatal(err)
			}
			pub, err := ParseKEMPublicKey(cert.RawSubjectPublicKeyInfo)
			if err != nil || !pub.Equal(priv.Public()) {
				t.Errorf("certificate key: %v", err)
			}
			c := b64(v.C)
			if len(c) != priv.pub.alg.ciphertextSize() {
				t.Fatalf("ciphertext of %d bytes, want %d", len(c), priv.pub.alg.ciphertextSize())
			}
			if ss := priv.decapsulate(c); !bytes.Equal(ss, b64(v.K)) {
				t.Errorf("shared secret %x, want %x", ss, b64(v.K))
			}
		})
	}
	if len(seen) != len(kemAlgs) {
		t.Errorf("vectors for %d of our %d KEMs", len(seen), len(kemAlgs))
	}
}

func isFieldName(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return s != ""
}
