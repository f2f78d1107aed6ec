package certstore

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"smimegate/internal/cms"
)

// The KEM key types that the issue names for keygen; the others are made
// the same way, and RSA composites are slow to generate under -race.
var testKEMTypes = []string{"mlkem768", "mlkem1024", "mlkem768-x25519", "mlkem768-p256"}

var (
	kemGenOnce sync.Once
	kemGen     map[string]*GeneratedKEM
	kemGenErr  error
)

// generatedKEM returns a KEM domain key and certificate for example.net of
// each type in testKEMTypes, made once per run with its own issuer.
func generatedKEM(t testing.TB, kind string) *GeneratedKEM {
	t.Helper()
	kemGenOnce.Do(func() {
		kemGen = map[string]*GeneratedKEM{}
		for _, k := range testKEMTypes {
			g, err := GenerateKEM(KEMKeygenOptions{KeygenOptions: KeygenOptions{Domains: []string{"example.net"}, KeyType: k, Now: func() time.Time { return testNow }}})
			if err != nil {
				kemGenErr = err
				return
			}
			kemGen[k] = g
		}
	})
	if kemGenErr != nil {
		t.Fatal(kemGenErr)
	}
	return kemGen[kind]
}

// TestGenerateKEMShape: the certificate names the domain both ways, has
// keyEncipherment as its only key usage, emailProtection, its SKI from the
// KEM key, and verifies under the generated issuer, which is a P-256 CA
// with digitalSignature and keyCertSign that names no mailbox.
func TestGenerateKEMShape(t *testing.T) {
	t.Parallel()
	for _, kind := range testKEMTypes {
		g := generatedKEM(t, kind)
		c := g.Cert
		pub, ok := c.PublicKey.(*cms.KEMPublicKey)
		if !ok || pub.Algorithm() != kind {
			t.Fatalf("%s: PublicKey %T", kind, c.PublicKey)
		}
		if c.KeyUsage != x509.KeyUsageKeyEncipherment || len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageEmailProtection || c.IsCA {
			t.Errorf("%s: key usage %v, EKU %v, CA %v", kind, c.KeyUsage, c.ExtKeyUsage, c.IsCA)
		}
		want := []string{"smg_encryptor@example.net", "domain-confidentiality-authority@example.net"}
		if strings.Join(c.EmailAddresses, ",") != strings.Join(want, ",") {
			t.Errorf("%s: names %v", kind, c.EmailAddresses)
		}
		if err := c.CheckSignatureFrom(g.Issuer); err != nil {
			t.Errorf("%s: %v", kind, err)
		}
		if !bytes.Equal(c.AuthorityKeyId, g.Issuer.SubjectKeyId) || len(c.SubjectKeyId) != 20 {
			t.Errorf("%s: SKI %x AKI %x, issuer SKI %x", kind, c.SubjectKeyId, c.AuthorityKeyId, g.Issuer.SubjectKeyId)
		}
		is := g.Issuer
		if !is.IsCA || is.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageCertSign || is.PublicKeyAlgorithm != x509.ECDSA ||
			len(is.EmailAddresses) != 0 || is.Subject.CommonName != "example.net" || !is.MaxPathLenZero {
			t.Errorf("%s: issuer %v %v %v %v", kind, is.Subject, is.KeyUsage, is.PublicKeyAlgorithm, is.EmailAddresses)
		}
		if g.IssuerKeyPEM == nil || g.IssuerCertPEM == nil {
			t.Errorf("%s: the generated issuer's files are missing", kind)
		}
		// The TBSCertificate is well formed all the way: openssl-free check
		// by a second parse of the raw bytes.
		if _, err := x509.ParseCertificate(c.Raw); err != nil {
			t.Errorf("%s: %v", kind, err)
		}
	}
}

// TestKEMStore loads generated KEM keys as our own and their certificates
// as a partner's: the key pairs with its certificate, both are usable and
// post-quantum, and a message sealed to the partner certificate opens with
// the own key, through the objects the store loaded.
func TestKEMStore(t *testing.T) {
	t.Parallel()
	own, partners := testDirs(t)
	for _, kind := range testKEMTypes {
		g := generatedKEM(t, kind)
		writeFile(t, own, kind+".key", g.KeyPEM)
		writeFile(t, own, kind+".crt", g.CertPEM)
		writeFile(t, partners, kind+".pem", g.CertPEM)
	}
	s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners})
	if p := problemsText(s); p != "" {
		t.Fatalf("problems:\n%s", p)
	}
	m := s.Lookup("example.net")
	if len(m.Certs) != len(testKEMTypes) {
		t.Fatalf("lookup: %d usable, %d unusable: %s", len(m.Certs), len(m.Unusable), m.Rule)
	}
	ownCerts := s.Own()
	if len(ownCerts) != len(testKEMTypes) {
		t.Fatalf("%d own certificates", len(ownCerts))
	}
	var keys []cms.KeyPair
	for _, c := range ownCerts {
		if _, ok := c.Key.(*cms.KEMPrivateKey); !ok || c.Status != Valid || !c.PostQuantum() {
			t.Errorf("own %s: key %T status %v", c.KeyType(), c.Key, c.Status)
		}
		keys = append(keys, cms.KeyPair{Cert: c.X509, Key: c.Key})
	}
	for _, c := range m.Certs {
		if !c.PostQuantum() {
			t.Errorf("%s is not post-quantum", c.KeyType())
		}
		var out bytes.Buffer
		if err := cms.Encrypt(&out, []byte("sealed by the store"), []cms.Recipient{{Cert: c.X509}}, cms.EncryptOptions{}); err != nil {
			t.Fatal(err)
		}
		pt, info, err := cms.Decrypt(out.Bytes(), keys, cms.DecryptOptions{})
		if err != nil || string(pt) != "sealed by the store" || info.KeyTransport != c.KeyType()+"-hkdf-sha256" {
			t.Errorf("%s: %q %+v %v", c.KeyType(), pt, info, err)
		}
	}
}

// TestKEMEncryptedKey: a passphrase-protected KEM key (PBES2) loads.
func TestKEMEncryptedKey(t *testing.T) {
	t.Parallel()
	g, err := GenerateKEM(KEMKeygenOptions{KeygenOptions: KeygenOptions{Domains: []string{"example.org"}, KeyType: "mlkem768-x25519", Passphrase: []byte("secret"), Now: func() time.Time { return testNow }}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(g.KeyPEM, []byte("ENCRYPTED PRIVATE KEY")) || !bytes.Contains(g.IssuerKeyPEM, []byte("ENCRYPTED PRIVATE KEY")) {
		t.Fatal("keys not encrypted")
	}
	own, _ := testDirs(t)
	writeFile(t, own, "d.pem", append(bytes.Clone(g.KeyPEM), g.CertPEM...))
	s := mustLoad(t, Options{OwnDir: own, Passphrase: []byte("secret")})
	if o := s.Own(); len(o) != 1 || o[0].Key == nil {
		t.Fatalf("own: %v\n%s", o, problemsText(s))
	}
	s = mustLoad(t, Options{OwnDir: own, Passphrase: []byte("wrong")})
	if o := s.Own(); len(o) != 1 || o[0].Key != nil || o[0].Status != NoPrivateKey {
		t.Fatalf("wrong passphrase: %v", o)
	}
}

// TestRFC9935Keys reads the RFC's example keys: the seed and both forms
// load and agree with the certificate and public key; the expanded form
// alone is refused with an error that says why; a both form whose
// expanded key is another key's is refused as RFC 9935 section 8 asks.
func TestRFC9935Keys(t *testing.T) {
	t.Parallel()
	dir := filepath.Join("testdata", "rfc9935-example")
	block := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		p, _ := pem.Decode(b)
		return p.Bytes
	}
	for _, n := range []string{"768", "1024"} {
		cert, err := parseCertificate(block("ML-KEM-" + n + ".crt"))
		if err != nil {
			t.Fatal(err)
		}
		pub, ok := cert.PublicKey.(*cms.KEMPublicKey)
		if !ok || pub.Algorithm() != "mlkem"+n {
			t.Fatalf("ML-KEM-%s certificate key %T", n, cert.PublicKey)
		}
		spki, err := cms.ParseKEMPublicKey(block("ML-KEM-" + n + ".pub"))
		if err != nil || !spki.Equal(pub) {
			t.Fatalf("ML-KEM-%s.pub: %v", n, err)
		}
		for _, form := range []string{"seed", "both"} {
			k, err := parsePKCS8Key(block("ML-KEM-" + n + "-" + form + ".priv"))
			if err != nil {
				t.Fatalf("ML-KEM-%s %s: %v", n, form, err)
			}
			if !samePublicKey(publicKeyOf(k), cert.PublicKey) {
				t.Errorf("ML-KEM-%s %s: not the certificate's key", n, form)
			}
		}
		if _, err := parsePKCS8Key(block("ML-KEM-" + n + "-expanded.priv")); !errors.Is(err, cms.ErrExpandedKeyOnly) {
			t.Errorf("ML-KEM-%s expanded: %v, want ErrExpandedKeyOnly", n, err)
		}
		// Spoil the ek inside the expanded key of the both form.
		both := block("ML-KEM-" + n + "-both.priv")
		bad := bytes.Clone(both)
		bad[len(bad)-200] ^= 1
		if _, err := parsePKCS8Key(bad); err == nil || !strings.Contains(err.Error(), "different keys") {
			t.Errorf("ML-KEM-%s inconsistent both form: %v", n, err)
		}
	}
	// As a file of the own directory, the expanded form is a key error
	// that names the file and the reason; the certificate stays ours.
	own, _ := testDirs(t)
	b, _ := os.ReadFile(filepath.Join(dir, "ML-KEM-768-expanded.priv"))
	writeFile(t, own, "k.pem", b)
	c, _ := os.ReadFile(filepath.Join(dir, "ML-KEM-768.crt"))
	writeFile(t, own, "k.crt", c)
	s := mustLoad(t, Options{OwnDir: own})
	if o := s.Own(); len(o) != 1 || o[0].Key != nil || !strings.Contains(o[0].Reason, "only the expanded key") {
		t.Errorf("own with an expanded-only key: %+v\n%s", o, problemsText(s))
	}
}

// TestKEMPKCS8 covers the OneAsymmetricKey forms: version 1 with the
// key's own publicKey loads, another publicKey does not, and parameters
// on the algorithm are refused.
func TestKEMPKCS8(t *testing.T) {
	t.Parallel()
	g := generatedKEM(t, "mlkem768-p256")
	own := g.Key.Public().(*cms.KEMPublicKey).Bytes()
	other := generatedKEM(t, "mlkem768").Key.Public().(*cms.KEMPublicKey).Bytes()
	build := func(version int, params bool, pub []byte) []byte {
		var b cryptobyte.Builder
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(int64(version))
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(g.Key.OID())
				if params {
					b.AddASN1NULL()
				}
			})
			b.AddASN1OctetString(g.Key.PrivateKeyBytes())
			if pub != nil {
				b.AddASN1(cbasn1.Tag(1).ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddUint8(0)
					b.AddBytes(pub)
				})
			}
		})
		return b.BytesOrPanic()
	}
	if k, err := parsePKCS8Key(build(1, false, own)); err != nil || !samePublicKey(publicKeyOf(k), g.Key.Public()) {
		t.Errorf("v1 with its own publicKey: %v", err)
	}
	for name, der := range map[string][]byte{
		"another publicKey": build(1, false, other),
		"parameters":        build(0, true, nil),
		"publicKey in v0":   build(0, false, own),
		"version 2":         build(2, false, nil),
	} {
		if _, err := parsePKCS8Key(der); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Not a KEM at all: x509's own error is kept.
	if _, err := parsePKCS8Key([]byte{0x30, 0x03, 0x02, 0x01, 0x00}); err == nil || strings.Contains(err.Error(), "KEM") {
		t.Errorf("garbage: %v", err)
	}
}

// TestKEMKeyUsage: a KEM certificate whose key usage has more than
// keyEncipherment is refused (RFC 9935 section 5), as is one of a KEM we
// do not implement, with the reason.
func TestKEMKeyUsage(t *testing.T) {
	t.Parallel()
	g := generatedKEM(t, "mlkem768")
	pub := g.Key.Public().(*cms.KEMPublicKey)
	issue := func(usage x509.KeyUsage, spki []byte) *x509.Certificate {
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serialCounter.Add(1)), Subject: pkix.Name{CommonName: "example.com"},
			NotBefore: testNow.Add(-time.Hour), NotAfter: testNow.Add(24 * time.Hour),
			KeyUsage: usage, EmailAddresses: []string{"smg_encryptor@example.com"}, SubjectKeyId: []byte{1, 2, 3},
			BasicConstraintsValid: true,
		}
		der, err := createKEMCertificate(tmpl, g.Issuer, issuerKey(t, g), spki)
		if err != nil {
			t.Fatal(err)
		}
		c, err := parseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, c := range []struct {
		usage  x509.KeyUsage
		status Status
	}{
		{x509.KeyUsageKeyEncipherment, Valid},
		{0, Valid},
		{x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature, WrongKeyUsage},
		{x509.KeyUsageKeyAgreement, WrongKeyUsage},
	} {
		if s, why := checkKey(issue(c.usage, cms.MarshalKEMPublicKey(pub))); s != c.status {
			t.Errorf("usage %b: %v (%s), want %v", c.usage, s, why, c.status)
		}
	}
	// An ML-KEM-512 key (RFC 9936 defines it; Go has none).
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier([]int{2, 16, 840, 1, 101, 3, 4, 4, 1})
		})
		b.AddASN1BitString(make([]byte, 800))
	})
	if s, why := checkKey(issue(x509.KeyUsageKeyEncipherment, b.BytesOrPanic())); s != BadKey || !strings.Contains(why, "id-alg-ml-kem-512") {
		t.Errorf("ML-KEM-512: %v (%s)", s, why)
	}
}

// issuerKey reads back the key of a generated issuer.
func issuerKey(t testing.TB, g *GeneratedKEM) crypto.Signer {
	t.Helper()
	_, k, err := ParseKEMIssuer(g.IssuerCertPEM, g.IssuerKeyPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestGenerateKEMWithIssuer: a given issuer signs the certificate; one
// that is no CA, lacks keyCertSign, expires first or comes with another
// key is refused.
func TestGenerateKEMWithIssuer(t *testing.T) {
	t.Parallel()
	base := generatedKEM(t, "mlkem768")
	key := issuerKey(t, base)
	opts := func(c *x509.Certificate, k crypto.Signer) KEMKeygenOptions {
		return KEMKeygenOptions{KeygenOptions: KeygenOptions{Domains: []string{"example.net"}, KeyType: "mlkem1024", Now: func() time.Time { return testNow }}, IssuerCert: c, IssuerKey: k}
	}
	g, err := GenerateKEM(opts(base.Issuer, key))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Cert.CheckSignatureFrom(base.Issuer); err != nil || g.IssuerKeyPEM != nil {
		t.Errorf("signed by the given issuer: %v", err)
	}
	notCA := makeCert(t, certSpec{key: ecKey(t, 0), usage: x509.KeyUsageDigitalSignature})
	noSign := makeCert(t, certSpec{key: ecKey(t, 1), isCA: true, usage: x509.KeyUsageDigitalSignature})
	early := makeCert(t, certSpec{key: ecKey(t, 2), isCA: true, notAfter: testNow.Add(30 * 24 * time.Hour)})
	for name, c := range map[string]struct {
		cert *x509.Certificate
		key  crypto.Signer
		want string
	}{
		"not a CA":         {notCA, ecKey(t, 0), "not a CA"},
		"no keyCertSign":   {noSign, ecKey(t, 1), "keyCertSign"},
		"expires first":    {early, ecKey(t, 2), "expires on"},
		"another key":      {base.Issuer, ecKey(t, 0), "not the key"},
		"certificate only": {base.Issuer, nil, "both"},
	} {
		_, err := GenerateKEM(opts(c.cert, c.key))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A KEM key cannot be an issuer's key.
	if _, _, err := ParseKEMIssuer(base.IssuerCertPEM, base.KeyPEM, nil); err == nil {
		t.Error("a KEM key was taken as an issuer key")
	}
}

// TestKEMImportAndTrust: `cert import` takes a KEM certificate like any
// other; with trust anchors it is trusted only when its issuer is one.
func TestKEMImportAndTrust(t *testing.T) {
	t.Parallel()
	g := generatedKEM(t, "mlkem768-x25519")
	_, partners := testDirs(t)
	trust := t.TempDir()
	src := writeFile(t, t.TempDir(), "partner.crt", g.CertPEM)
	opts := Options{PartnersDir: partners, Now: func() time.Time { return testNow }}
	im, err := PrepareImport(opts, src)
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Certs) != 1 || !im.Certs[0].PostQuantum() || im.Certs[0].KeyType() != "mlkem768-x25519" {
		t.Fatalf("import: %+v", im.Certs)
	}
	writeFile(t, trust, "other.crt", certPEM(generatedKEM(t, "mlkem768").Issuer))
	opts.TrustDir = trust
	if _, err := PrepareImport(opts, src); err == nil || !strings.Contains(err.Error(), "untrusted") {
		t.Errorf("import under another issuer's trust: %v", err)
	}
	writeFile(t, trust, "issuer.crt", g.IssuerCertPEM)
	if _, err := PrepareImport(opts, src); err != nil {
		t.Errorf("import under its issuer's trust: %v", err)
	}
}

// TestPostQuantumOnly: require_pq keeps the KEM certificates and moves the
// others to Unusable with the reason; a domain without one keeps its name
// so that its mail is held.
func TestPostQuantumOnly(t *testing.T) {
	t.Parallel()
	_, partners := testDirs(t)
	rsaCert := makeCert(t, certSpec{key: rsaKey(t, 0), emails: []string{"smg_encryptor@example.net"}})
	writeFile(t, partners, "rsa.pem", certPEM(rsaCert))
	writeFile(t, partners, "kem.pem", generatedKEM(t, "mlkem768-p256").CertPEM)
	writeFile(t, partners, "only-rsa.pem", certPEM(makeCert(t, certSpec{key: rsaKey(t, 1), emails: []string{"smg_encryptor@example.org"}})))
	s := mustLoad(t, Options{PartnersDir: partners})
	m := s.Lookup("example.net")
	if len(m.Certs) != 2 {
		t.Fatalf("%d certificates", len(m.Certs))
	}
	pq := m.PostQuantumOnly()
	if len(pq.Certs) != 1 || !pq.Certs[0].PostQuantum() || len(pq.Unusable) != 1 || !strings.Contains(pq.Unusable[0].Reason, "rsa2048 key, not post-quantum") {
		t.Errorf("example.net: %+v", pq)
	}
	if len(m.Certs) != 2 {
		t.Error("PostQuantumOnly changed its receiver")
	}
	none := s.Lookup("example.org").PostQuantumOnly()
	if len(none.Certs) != 0 || none.Domain != "example.org" || !strings.Contains(none.Rule, "0 of its 1") {
		t.Errorf("example.org: %+v", none)
	}
}
