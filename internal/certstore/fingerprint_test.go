package certstore

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"strings"
	"testing"
)

// TestFingerprintIsOpenSSLs: the fingerprint the store, the gateway's log
// and the commands show is the one an operator gets from `openssl x509
// -fingerprint -sha256`, so that the two can be compared by eye.
func TestFingerprintIsOpenSSLs(t *testing.T) {
	needTool(t, "openssl")
	crt, _ := opensslCert(t, t.TempDir(), "fp", "rsa:2048", "email:smg_encryptor@fp.example", "keyEncipherment")
	raw, err := os.ReadFile(crt)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(raw)
	x, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	out := string(run(t, nil, "openssl", "x509", "-in", crt, "-noout", "-fingerprint", "-sha256"))
	_, want, _ := strings.Cut(strings.TrimSpace(out), "=")
	want = strings.ToLower(strings.ReplaceAll(want, ":", ""))
	if got := Fingerprint(x); got != want || newCert(x, crt, naming{}).Fingerprint != want {
		t.Errorf("Fingerprint = %s, the store's %s; openssl says %s", got, newCert(x, crt, naming{}).Fingerprint, want)
	}
	if Fingerprint(nil) != "" {
		t.Error("a nil certificate has a fingerprint")
	}
}
