package certstore

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestGenerateShape: the certificate names both conventions for every
// domain and RFC 3183's signing name, has digitalSignature and the key
// usage that fits its key, emailProtection, a
// subject key identifier, and the requested validity; the CSR asks for the
// same; the store loads key and certificate as a usable own pair.
func TestGenerateShape(t *testing.T) {
	t.Parallel()
	rsaGen, ecGen := keygenFixtures(t)
	tests := []struct {
		g       *Generated
		domains []string
		usage   x509.KeyUsage
		check   func(any) bool
	}{
		{rsaGen, []string{"gw.example.org", "example.com"}, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
			func(k any) bool { r, ok := k.(*rsa.PublicKey); return ok && r.N.BitLen() == 3072 }},
		{ecGen, []string{"ec.example.org"}, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement,
			func(k any) bool { e, ok := k.(*ecdsa.PublicKey); return ok && e.Curve == elliptic.P256() }},
	}
	for _, tc := range tests {
		c := tc.g.Cert
		var want []string
		for _, d := range tc.domains {
			want = append(want, "smg_encryptor@"+d, "domain-confidentiality-authority@"+d, "domain-signing-authority@"+d)
		}
		if !slices.Equal(c.EmailAddresses, want) {
			t.Errorf("SAN %v, want %v", c.EmailAddresses, want)
		}
		if c.KeyUsage != tc.usage {
			t.Errorf("%s: key usage %v, want %v", tc.g.Domain, c.KeyUsage, tc.usage)
		}
		if !tc.check(c.PublicKey) {
			t.Errorf("%s: wrong key %T", tc.g.Domain, c.PublicKey)
		}
		if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}) || c.IsCA || len(c.SubjectKeyId) != 20 {
			t.Errorf("%s: EKU %v, CA %v, SKI %x", tc.g.Domain, c.ExtKeyUsage, c.IsCA, c.SubjectKeyId)
		}
		if d := c.NotAfter.Sub(c.NotBefore); d != DefaultValidityDays*24*time.Hour+backdate {
			t.Errorf("%s: validity %v", tc.g.Domain, d)
		}
		if c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) != nil {
			t.Errorf("%s: not self-signed", tc.g.Domain)
		}

		block, _ := pem.Decode(tc.g.CSRPEM)
		csr, err := x509.ParseCertificateRequest(block.Bytes)
		if err != nil || csr.CheckSignature() != nil {
			t.Fatalf("CSR: %v", err)
		}
		if !slices.Equal(csr.EmailAddresses, want) {
			t.Errorf("CSR names %v", csr.EmailAddresses)
		}
		var ku asn1.BitString
		for _, e := range csr.Extensions {
			if e.Id.Equal(oidKeyUsage) {
				asn1.Unmarshal(e.Value, &ku)
			}
		}
		if got := x509.KeyUsage(keyUsageBits(ku)); got != tc.usage {
			t.Errorf("CSR key usage %v, want %v", got, tc.usage)
		}

		own, partners := testDirs(t)
		writeFile(t, own, tc.g.Domain+".crt", tc.g.CertPEM)
		writeFile(t, own, tc.g.Domain+".key", tc.g.KeyPEM)
		s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners, Now: time.Now})
		o := s.Own()
		if len(o) != 1 || o[0].Status != Valid || o[0].Key == nil || !slices.Equal(o[0].Domains, slices.Sorted(slices.Values(tc.domains))) {
			t.Errorf("%s: loaded as %+v, problems %v", tc.g.Domain, o, s.Problems())
		}
	}
}

func keyUsageBits(b asn1.BitString) int {
	n := 0
	for i := range b.BitLength {
		if b.At(i) == 1 {
			n |= 1 << i
		}
	}
	return n
}

// TestGenerateOptions: every key type, validity bounds, IDN domains and
// refusals of bad input.
func TestGenerateOptions(t *testing.T) {
	t.Parallel()
	g, err := Generate(KeygenOptions{Domains: []string{"bücher.example"}, KeyType: "p384", Days: 10})
	if err != nil {
		t.Fatal(err)
	}
	if g.Domain != "xn--bcher-kva.example" || g.Cert.EmailAddresses[0] != "smg_encryptor@xn--bcher-kva.example" {
		t.Errorf("IDN: %s %v", g.Domain, g.Cert.EmailAddresses)
	}
	if e, ok := g.Cert.PublicKey.(*ecdsa.PublicKey); !ok || e.Curve != elliptic.P384() {
		t.Errorf("p384: %T", g.Cert.PublicKey)
	}
	if d := g.Cert.NotAfter.Sub(g.Cert.NotBefore); d != 10*24*time.Hour+backdate {
		t.Errorf("validity %v", d)
	}
	for _, tc := range []struct {
		opts KeygenOptions
		want string
	}{
		{KeygenOptions{}, "at least one domain"},
		{KeygenOptions{Domains: []string{"a..b"}}, "empty label"},
		{KeygenOptions{Domains: []string{"x@y"}}, "disallowed rune"},
		{KeygenOptions{Domains: []string{"example.org"}, KeyType: "rsa1024"}, "key type must be one of"},
		{KeygenOptions{Domains: []string{"example.org"}, Days: 5000}, "validity"},
		{KeygenOptions{Domains: []string{"example.org"}, Days: -1}, "validity"},
	} {
		if _, err := Generate(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Generate(%+v) = %v, want %q", tc.opts, err, tc.want)
		}
	}
}

// TestGenerateEncryptedKey: a key written with a passphrase is encrypted
// PKCS#8 that OpenSSL decrypts, and that the store loads with the same
// passphrase.
func TestGenerateEncryptedKey(t *testing.T) {
	t.Parallel()
	needTool(t, "openssl")
	const pass = "s3cret passphrase"
	g, err := Generate(KeygenOptions{Domains: []string{"enc.example"}, KeyType: "p256", Passphrase: []byte(pass)})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(g.KeyPEM, []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----")) {
		t.Fatalf("key is not encrypted:\n%s", g.KeyPEM[:40])
	}
	own, partners := testDirs(t)
	key := writeFile(t, own, "enc.key", g.KeyPEM)
	writeFile(t, own, "enc.crt", g.CertPEM)
	pub := run(t, nil, "openssl", "pkey", "-in", key, "-passin", "pass:"+pass, "-pubout")
	want, _ := x509.MarshalPKIXPublicKey(g.Cert.PublicKey)
	if !bytes.Equal(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: want})) {
		t.Errorf("openssl reads a different key:\n%s", pub)
	}
	s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners, Passphrase: []byte(pass), Now: time.Now})
	if len(s.Own()) != 1 {
		t.Fatalf("not loaded: %s", problemsText(s))
	}
}
