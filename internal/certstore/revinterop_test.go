package certstore

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"smimegate/test/pkitest"
)

// TestRevocationOpenSSL checks revocation against a real CA: certificates
// issued by `openssl ca`, answers signed by `openssl ocsp` with a
// delegated responder certificate, CRLs written by `openssl ca -gencrl`.
// The clock is the real one: OpenSSL dates its answers by it.
func TestRevocationOpenSSL(t *testing.T) {
	ca := pkitest.New(t, "OpenSSL Test CA")
	crt, _ := ca.Issue("example.net")
	ca.StartOCSP()
	own, part := testDirs(t)
	trust := filepath.Join(filepath.Dir(own), "anchors")
	os.Mkdir(trust, 0o700)
	data, _ := os.ReadFile(ca.CertFile)
	writeFile(t, trust, "ca.pem", data)
	data, _ = os.ReadFile(crt)
	writeFile(t, part, "example.net.pem", data)
	r := NewRevocation(RevocationOptions{Mode: RevocationStrict, Dir: t.TempDir()})
	s, err := Load(Options{OwnDir: own, PartnersDir: part, TrustDir: trust, Revocation: r})
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, want RevocationState, source string) *Cert {
		t.Helper()
		r.CheckNow(context.Background())
		c, _ := lookupOne(t, s, "example.net")
		if c.Revocation.State != want || !strings.HasPrefix(c.Revocation.Source, source) {
			t.Fatalf("%s: %s (%s); want %s from %s", what, c.Revocation.Summary(), c.Status, want, source)
		}
		return c
	}
	c := check("issued", RevGood, "OCSP "+ca.OCSPURL)
	if !c.Usable() {
		t.Fatalf("good: %s", c.Reason)
	}
	ca.Revoke(crt)
	if c := check("revoked", RevRevoked, "OCSP "+ca.OCSPURL); c.Status != Revoked {
		t.Fatalf("revoked by openssl ca: %s", c.Status)
	}
	// Without the responder, the CRL says the same.
	ca.StopOCSP()
	r2 := NewRevocation(RevocationOptions{Mode: RevocationStrict})
	s2, err := Load(Options{OwnDir: own, PartnersDir: part, TrustDir: trust, Revocation: r2})
	if err != nil {
		t.Fatal(err)
	}
	r2.CheckNow(context.Background())
	if c, _ := lookupOne(t, s2, "example.net"); c.Status != Revoked || !strings.HasPrefix(c.Revocation.Source, "CRL "+ca.CRLURL) {
		t.Fatalf("the CRL of openssl ca -gencrl: %s", c.Revocation.Summary())
	}
}
