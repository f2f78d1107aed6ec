package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"smimegate/internal/certstore"
)

// TestCheckConfigSigning: an own certificate without digitalSignature is
// listed as never used to sign; with policy.sign on and no certificate
// that can sign for a local domain, check-config fails and says so; a
// keygen certificate signs.
func TestCheckConfigSigning(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	own := filepath.Join(dir, "own")
	os.MkdirAll(own, 0o700)
	os.MkdirAll(filepath.Join(dir, "partners"), 0o700)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "old example.org"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageKeyAgreement, EmailAddresses: []string{"smg_encryptor@example.org"}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	pk, _ := x509.MarshalPKCS8PrivateKey(k)
	os.WriteFile(filepath.Join(own, "old.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(own, "old.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600)
	cfgPath := filepath.Join(dir, "smimegate.toml")
	os.WriteFile(cfgPath, []byte("state_dir = \"state\"\nlocal_domains = [\"example.org\"]\n[relay]\ninbound = \"127.0.0.1:1\"\n[certs]\nown = \"own\"\npartners = \"partners\"\n[policy]\nsign = true\n"), 0o600)
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var report bytes.Buffer
	err = checkCerts(cfg, &report)
	if err == nil || !strings.Contains(err.Error(), "without a certificate that can sign") {
		t.Errorf("check-config with no signing certificate: %v", err)
	}
	for _, w := range []string{"is never used to sign: its key usage lacks digitalSignature", "example.org: mail from it to partners with sign = true cannot be signed"} {
		if !strings.Contains(report.String(), w) {
			t.Errorf("the report lacks %q:\n%s", w, report.String())
		}
	}

	g, err := certstore.Generate(certstore.KeygenOptions{Domains: []string{"example.org"}, KeyType: "p256"})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(own, "example.org.crt"), g.CertPEM, 0o600)
	os.WriteFile(filepath.Join(own, "example.org.key"), g.KeyPEM, 0o600)
	report.Reset()
	if err := checkCerts(cfg, &report); err != nil {
		t.Errorf("check-config with a keygen certificate: %v\n%s", err, report.String())
	}
}
