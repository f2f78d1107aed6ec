package certstore

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSignerDomains: a certificate speaks for the domains it names as a
// domain certificate or as RFC 3183's domain-signing-authority; a user's
// certificate and one that names a public suffix speak for none.
func TestSignerDomains(t *testing.T) {
	t.Parallel()
	own, partners := testDirs(t)
	s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners})
	for _, tc := range []struct {
		emails []string
		want   []string
	}{
		{[]string{"domain-signing-authority@Example.ORG"}, []string{"example.org"}},
		{[]string{"smg_encryptor@example.net", "domain-signing-authority@sub.example.net"}, []string{"example.net", "sub.example.net"}},
		{[]string{"alice@example.org"}, nil},
		{[]string{"domain-signing-authority@com"}, nil},
	} {
		c := makeCert(t, certSpec{key: ecKey(t, 0), emails: tc.emails, usage: x509.KeyUsageDigitalSignature})
		if got := s.SignerDomains(c); !slices.Equal(got, tc.want) {
			t.Errorf("%v: %v, want %v", tc.emails, got, tc.want)
		}
	}
}

// TestTrustSigner: without trust anchors only a certificate we hold for the
// domain may sign for it (a signing-only partner certificate included);
// with them, only one that chains.
func TestTrustSigner(t *testing.T) {
	t.Parallel()
	own, partners := testDirs(t)
	held := makeCert(t, certSpec{key: rsaKey(t, 0), emails: []string{"smg_encryptor@example.org"}, usage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment})
	signOnly := makeCert(t, certSpec{key: ecKey(t, 0), emails: []string{"domain-signing-authority@example.net"}, usage: x509.KeyUsageDigitalSignature})
	stranger := makeCert(t, certSpec{key: ecKey(t, 1), emails: []string{"domain-signing-authority@example.org"}, usage: x509.KeyUsageDigitalSignature})
	writeFile(t, partners, "org.pem", certPEM(held))
	writeFile(t, partners, "net-signer.pem", certPEM(signOnly))
	s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners})
	if len(s.Problems()) != 0 {
		t.Fatalf("problems: %s", problemsText(s))
	}
	if m := s.Lookup("example.net"); m.Domain != "" {
		t.Errorf("a signing-only certificate is used for encryption: %+v", m)
	}
	for _, tc := range []struct {
		cert   *x509.Certificate
		domain string
		ok     bool
	}{
		{held, "example.org", true},
		{signOnly, "example.net", true},
		{held, "example.net", false},
		{stranger, "example.org", false},
	} {
		err := s.TrustSigner(tc.cert, nil, tc.domain, testNow)
		if (err == nil) != tc.ok {
			t.Errorf("%s for %s: %v", tc.cert.Subject, tc.domain, err)
		}
	}
	if !slices.ContainsFunc(s.HeldCertificates(), signOnly.Equal) {
		t.Error("the signing-only certificate is not among the held ones")
	}

	// With trust anchors: the CA's leaf passes, a held self-signed one no
	// longer does.
	caKey := ecKey(t, 2)
	ca := makeCert(t, certSpec{key: caKey, isCA: true, subject: pkixName("test CA")})
	leaf := makeCert(t, certSpec{key: rsaKey(t, 1), emails: []string{"domain-signing-authority@example.org"}, usage: x509.KeyUsageDigitalSignature, parent: ca, parentKey: caKey})
	anchors := t.TempDir()
	writeFile(t, anchors, "ca.pem", certPEM(ca))
	s = mustLoad(t, Options{OwnDir: own, PartnersDir: partners, TrustDir: anchors})
	if err := s.TrustSigner(leaf, nil, "example.org", testNow); err != nil {
		t.Errorf("a leaf of the anchor: %v", err)
	}
	if err := s.TrustSigner(held, nil, "example.org", testNow); err == nil {
		t.Error("with trust anchors, a held certificate that does not chain is trusted")
	}
}

// TestOwnSigner: the own certificate of the most specific domain signs; one
// without digitalSignature, or with a key that cannot sign, never does, and
// says why.
func TestOwnSigner(t *testing.T) {
	t.Parallel()
	own, partners := testDirs(t)
	org := makeCert(t, certSpec{key: rsaKey(t, 2), emails: []string{"smg_encryptor@example.org", "domain-signing-authority@example.org"}, usage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment})
	sub := makeCert(t, certSpec{key: ecKey(t, 1), emails: []string{"domain-signing-authority@sub.example.org"}, usage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement})
	noSign := makeCert(t, certSpec{key: rsaKey(t, 3), emails: []string{"smg_encryptor@old.example"}})
	writeFile(t, own, "org.pem", append(certPEM(org), keyPEM(t, rsaKey(t, 2))...))
	writeFile(t, own, "sub.pem", append(certPEM(sub), keyPEM(t, ecKey(t, 1))...))
	writeFile(t, own, "old.pem", append(certPEM(noSign), keyPEM(t, rsaKey(t, 3))...))
	s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners})
	for _, tc := range []struct{ domain, want string }{
		{"example.org", org.Subject.String()},
		{"x.example.org", org.Subject.String()},
		{"deep.sub.example.org", sub.Subject.String()},
	} {
		sg, err := s.OwnSigner(tc.domain)
		if err != nil || sg.Cert.X509.Subject.String() != tc.want {
			t.Errorf("%s: %v, %v", tc.domain, sg, err)
		}
	}
	if _, err := s.OwnSigner("old.example"); err == nil || !strings.Contains(err.Error(), "digitalSignature") {
		t.Errorf("a certificate without digitalSignature signs: %v", err)
	}
	if _, err := s.OwnSigner("elsewhere.test"); err == nil {
		t.Error("a domain without an own certificate signs")
	}
	ps := s.OwnCannotSign()
	if len(ps) != 1 || !strings.Contains(ps[0].Reason, "digitalSignature") {
		t.Errorf("OwnCannotSign: %v", ps)
	}
}

// TestHarvest: a usable encryption certificate of the signer's domain that
// chains to the trust anchors, or is issued under a CA certificate the
// partner's file holds, is written to partners/harvested/ and loaded as
// harvested; a self-signed stranger, another domain's certificate and an
// expired one never are.
func TestHarvest(t *testing.T) {
	t.Parallel()
	caKey := ecKey(t, 2)
	ca := makeCert(t, certSpec{key: caKey, isCA: true, subject: pkixName("partner CA")})
	issued := func(key int, emails ...string) *x509.Certificate {
		return makeCert(t, certSpec{key: rsaKey(t, key), emails: emails, parent: ca, parentKey: caKey, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}})
	}
	fresh := issued(4, "smg_encryptor@example.org")
	otherDomain := issued(5, "smg_encryptor@example.com")
	selfSigned := makeCert(t, certSpec{key: rsaKey(t, 5), emails: []string{"smg_encryptor@example.org"}})
	expired := makeCert(t, certSpec{key: rsaKey(t, 4), emails: []string{"smg_encryptor@example.org"}, parent: ca, parentKey: caKey, notBefore: testNow.Add(-48 * time.Hour), notAfter: testNow.Add(-time.Hour)})

	for _, mode := range []string{"trust anchors", "partner CA"} {
		t.Run(mode, func(t *testing.T) {
			own, partners := testDirs(t)
			opts := Options{OwnDir: own, PartnersDir: partners}
			if mode == "trust anchors" {
				opts.TrustDir = t.TempDir()
				writeFile(t, opts.TrustDir, "ca.pem", certPEM(ca))
			} else {
				// The partner's current certificate with its CA, as
				// partners ship them.
				current := issued(3, "smg_encryptor@example.org")
				writeFile(t, partners, "org.pem", certPEM(current, ca))
			}
			s := mustLoad(t, opts)
			for _, tc := range []struct {
				name string
				cert *x509.Certificate
			}{{"self-signed", selfSigned}, {"another domain", otherDomain}, {"expired", expired}} {
				if path, err := s.Harvest(tc.cert, nil, "example.org", "test", testNow); !errors.Is(err, ErrHarvestRefused) || path != "" {
					t.Errorf("%s: harvested to %q (%v)", tc.name, path, err)
				}
			}
			path, err := s.Harvest(fresh, nil, "example.org", "message 0123", testNow)
			if err != nil || path == "" || filepath.Dir(path) != HarvestedDir(partners) {
				t.Fatalf("Harvest: %q, %v", path, err)
			}
			data, _ := os.ReadFile(path)
			if !strings.Contains(string(data), "from a verified domain signature of example.org (message 0123)") {
				t.Errorf("the harvested file does not say where it came from:\n%s", data)
			}
			s2, err := s.Reload()
			if err != nil {
				t.Fatal(err)
			}
			m := s2.Lookup("example.org")
			if !slices.ContainsFunc(m.Certs, func(c *Cert) bool { return c.X509.Equal(fresh) && c.Harvested() }) {
				t.Errorf("the harvested certificate is not used after a reload: %+v\n%s", m, problemsText(s2))
			}
			// Harvesting it again is a no-op.
			if path, err := s2.Harvest(fresh, nil, "example.org", "again", testNow); path != "" || err != nil {
				t.Errorf("second harvest: %q, %v", path, err)
			}
		})
	}
}

func pkixName(cn string) pkix.Name { return pkix.Name{CommonName: cn} }

// TestImportSigningCertificate: `cert import` takes a partner's
// signing-only certificate (held to verify its signatures, never encrypted
// to) and refuses one that is expired or may not sign.
func TestImportSigningCertificate(t *testing.T) {
	t.Parallel()
	own, partners := testDirs(t)
	opts := Options{OwnDir: own, PartnersDir: partners, Now: func() time.Time { return testNow }}
	src := t.TempDir()
	good := makeCert(t, certSpec{key: ecKey(t, 0), emails: []string{"domain-signing-authority@example.net"}, usage: x509.KeyUsageDigitalSignature})
	im, err := PrepareImport(opts, writeFile(t, src, "signer.pem", certPEM(good)))
	if err != nil || len(im.Signers) != 1 || len(im.Certs) != 0 {
		t.Fatalf("PrepareImport: %+v, %v", im, err)
	}
	if err := im.Commit(); err != nil {
		t.Fatal(err)
	}
	s := mustLoad(t, opts)
	if err := s.TrustSigner(good, nil, "example.net", testNow); err != nil {
		t.Errorf("the imported signing certificate is not trusted: %v", err)
	}
	if m := s.Lookup("example.net"); m.Domain != "" {
		t.Errorf("a signing certificate is encrypted to: %+v", m)
	}
	for name, c := range map[string]*x509.Certificate{
		"expired":             makeCert(t, certSpec{key: ecKey(t, 1), emails: []string{"domain-signing-authority@example.net"}, usage: x509.KeyUsageDigitalSignature, notBefore: testNow.Add(-48 * time.Hour), notAfter: testNow.Add(-time.Hour)}),
		"no digitalSignature": makeCert(t, certSpec{key: ecKey(t, 1), emails: []string{"domain-signing-authority@example.net"}, usage: x509.KeyUsageKeyAgreement}),
	} {
		if _, err := PrepareImport(opts, writeFile(t, src, "bad.pem", certPEM(c))); err == nil {
			t.Errorf("%s: imported", name)
		}
	}
}
