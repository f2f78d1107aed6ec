package certstore

import (
	"bytes"
	"encoding/pem"
	"strings"
	"testing"
)

// TestKEMCertificateOpenSSL has OpenSSL check what GenerateKEM makes.
// OpenSSL 3.0 predates ML-KEM, so it cannot load the key, but it parses the
// certificate as strict DER, shows its extensions, and verifies the
// issuer's ECDSA signature over the TBSCertificate in which the KEM key
// took the placeholder's place.
func TestKEMCertificateOpenSSL(t *testing.T) {
	needTool(t, "openssl")
	for _, kind := range testKEMTypes {
		t.Run(kind, func(t *testing.T) {
			g := generatedKEM(t, kind)
			dir := t.TempDir()
			der := writeFile(t, dir, "c.der", g.Cert.Raw)
			run(t, nil, "openssl", "asn1parse", "-inform", "DER", "-in", der, "-noout")
			text := string(run(t, nil, "openssl", "x509", "-inform", "DER", "-in", der, "-noout", "-ext", "keyUsage,extendedKeyUsage,subjectAltName"))
			for _, want := range []string{"Key Encipherment", "E-mail Protection", "email:smg_encryptor@example.net"} {
				if !strings.Contains(text, want) {
					t.Errorf("openssl shows no %q:\n%s", want, text)
				}
			}
			if strings.Contains(text, "Digital Signature") {
				t.Errorf("a KEM certificate with digitalSignature:\n%s", text)
			}
			issuer := writeFile(t, dir, "issuer.crt", g.IssuerCertPEM)
			pub := run(t, nil, "openssl", "x509", "-in", issuer, "-pubkey", "-noout")
			pubFile := writeFile(t, dir, "issuer.pub", pub)
			tbs := writeFile(t, dir, "tbs.der", g.Cert.RawTBSCertificate)
			sig := writeFile(t, dir, "sig.der", g.Cert.Signature)
			if out := run(t, nil, "openssl", "dgst", "-sha256", "-verify", pubFile, "-signature", sig, tbs); !bytes.Contains(out, []byte("Verified OK")) {
				t.Errorf("openssl dgst -verify: %s", out)
			}
			// The private key file is PKCS#8 as OpenSSL reads the structure.
			p, _ := pem.Decode(g.KeyPEM)
			key := writeFile(t, dir, "k.der", p.Bytes)
			asn := string(run(t, nil, "openssl", "asn1parse", "-inform", "DER", "-in", key))
			if !strings.Contains(asn, "INTEGER           :00") || !strings.Contains(asn, "OCTET STRING") {
				t.Errorf("private key structure:\n%s", asn)
			}
		})
	}
}
