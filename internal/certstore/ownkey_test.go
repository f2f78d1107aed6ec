package certstore

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"software.sslmate.com/src/go-pkcs12"
)

// encryptedKeyPEM is k as an encrypted PKCS#8 PEM block under pass.
func encryptedKeyPEM(t testing.TB, k crypto.PrivateKey, pass string) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := encryptPKCS8(der, []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: enc})
}

// wantKeyless checks that s knows exactly one own certificate without a
// key, for domain, whose reason names want (the file and why), and that the
// problems say so.
func wantKeyless(t *testing.T, s *Store, domain string, want ...string) {
	t.Helper()
	var found *Cert
	for _, c := range s.Own() {
		if c.Key == nil {
			if found != nil {
				t.Fatalf("more than one own certificate without a key: %v and %v", found.Domains, c.Domains)
			}
			found = c
		}
	}
	if found == nil {
		t.Fatalf("Own() has no certificate without a key; problems:\n%s", problemsText(s))
	}
	w := s.OwnWithoutKey()
	if len(w) != 1 || w[0].Fingerprint != found.Fingerprint {
		t.Fatalf("OwnWithoutKey() = %v, want the one of Own() without a key", w)
	}
	c := w[0]
	if !c.Own || len(c.Domains) != 1 || c.Domains[0] != domain || c.Status != NoPrivateKey || c.Usable() {
		t.Fatalf("own certificate without a key: own %v, domains %v, status %s", c.Own, c.Domains, c.Status)
	}
	for _, s := range append([]string{"no usable private key: "}, want...) {
		if !strings.Contains(c.Reason, s) {
			t.Errorf("reason %q lacks %q", c.Reason, s)
		}
	}
	probs := problemsText(s)
	if !strings.Contains(probs, c.File+": "+c.Describe()+" is our certificate but has no usable private key") {
		t.Errorf("no problem for the certificate without a key:\n%s", probs)
	}
}

// TestOwnKeyUnreadable: our certificate whose key cannot be read or
// decrypted stays ours, without a key, with the key file and the reason;
// before, it was dropped, and mail encrypted to it passed as not for us.
func TestOwnKeyUnreadable(t *testing.T) {
	t.Parallel()
	k := rsaKey(t, 0)
	cert := certPEM(makeCert(t, certSpec{key: k, emails: []string{"smg_encryptor@example.org"}}))
	const pass = "the right one"
	encKey := encryptedKeyPEM(t, k, pass)

	t.Run("no passphrase", func(t *testing.T) {
		t.Parallel()
		own, partners := testDirs(t)
		writeFile(t, own, "example.org.crt", cert)
		keyFile := writeFile(t, own, "example.org.key", encKey)
		s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners})
		wantKeyless(t, s, "example.org", keyFile+": ", "no passphrase is configured")
	})
	t.Run("wrong passphrase", func(t *testing.T) {
		t.Parallel()
		own, partners := testDirs(t)
		writeFile(t, own, "example.org.crt", cert)
		keyFile := writeFile(t, own, "example.org.key", encKey)
		s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners, Passphrase: []byte("wrong")})
		wantKeyless(t, s, "example.org", keyFile+": ", "wrong passphrase")
		// The control: with the right passphrase the key is there.
		s = mustLoad(t, Options{OwnDir: own, PartnersDir: partners, Passphrase: []byte(pass)})
		if len(s.Own()) != 1 || s.Own()[0].Key == nil || len(s.OwnWithoutKey()) != 0 {
			t.Fatalf("with the right passphrase: own %v, without key %v", s.Own(), s.OwnWithoutKey())
		}
	})
	t.Run("one file", func(t *testing.T) {
		t.Parallel()
		// Certificate and encrypted key in one PEM file: the certificate
		// loads although the key does not.
		own, partners := testDirs(t)
		file := writeFile(t, own, "example.org.pem", append(cert, encKey...))
		s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners})
		wantKeyless(t, s, "example.org", file+": PEM block 2 (ENCRYPTED PRIVATE KEY)", "no passphrase is configured")
	})
	t.Run("dangling symlink", func(t *testing.T) {
		t.Parallel()
		// A key on a volume that is not mounted: unreadable for root too.
		own, partners := testDirs(t)
		writeFile(t, own, "example.org.crt", cert)
		keyFile := filepath.Join(own, "example.org.key")
		if err := os.Symlink(filepath.Join(t.TempDir(), "gone", "example.org.key"), keyFile); err != nil {
			t.Fatal(err)
		}
		s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners})
		wantKeyless(t, s, "example.org", keyFile+": no such file or directory")
	})
	t.Run("chmod 000", func(t *testing.T) {
		t.Parallel()
		own, partners := testDirs(t)
		writeFile(t, own, "example.org.crt", cert)
		keyFile := writeFile(t, own, "example.org.key", keyPEM(t, k))
		if err := os.Chmod(keyFile, 0); err != nil {
			t.Fatal(err)
		}
		if f, err := os.Open(keyFile); err == nil {
			// Root reads it anyway: then the key must simply load. The
			// subtests above fail the same way without depending on it.
			f.Close()
			s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners})
			if len(s.Own()) != 1 || s.Own()[0].Key == nil {
				t.Fatalf("a key file this process can read did not load: %v", s.Own())
			}
			t.Log("running with the privilege to read a mode 000 file; checked that it loads instead")
			return
		}
		s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners})
		wantKeyless(t, s, "example.org", keyFile+": permission denied")
	})
}

// TestOwnKeyLossOnReloadKeepsKey: a key that loaded and then fails (a
// passphrase changed under a running gateway) keeps its old version, as
// any bad edit does, also when it shares its file with the certificate.
func TestOwnKeyLossOnReloadKeepsKey(t *testing.T) {
	t.Parallel()
	own, partners := testDirs(t)
	k := rsaKey(t, 1)
	cert := certPEM(makeCert(t, certSpec{key: k, emails: []string{"smg_encryptor@example.org"}}))
	file := writeFile(t, own, "example.org.pem", append(cert, keyPEM(t, k)...))
	s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners})
	if len(s.Own()) != 1 || s.Own()[0].Key == nil {
		t.Fatalf("own = %v", s.Own())
	}
	writeFile(t, own, "example.org.pem", append(cert, encryptedKeyPEM(t, k, "new")...))
	s2, err := s.Reload()
	if err != nil {
		t.Fatal(err)
	}
	if len(s2.Own()) != 1 || s2.Own()[0].Key == nil || len(s2.OwnWithoutKey()) != 0 {
		t.Fatalf("after the key broke, own %v, without key %v", s2.Own(), s2.OwnWithoutKey())
	}
	if p := problemsText(s2); !strings.Contains(p, file+": PEM block 2") || !strings.Contains(p, "keeping the version loaded before") {
		t.Fatalf("problems:\n%s", p)
	}
}

// TestOwnChainIsNotOurs: the CA certificates that come with ours (PKCS#12
// chain, or a CA file beside it) are not own certificates and no problem;
// a certificate without a key that is neither a CA nor names a domain is
// taken for ours, since it could be an own decrypt-only certificate.
func TestOwnChainIsNotOurs(t *testing.T) {
	t.Parallel()
	own, partners := testDirs(t)
	caKey, leafKey := ecKey(t, 1), rsaKey(t, 2)
	ca := makeCert(t, certSpec{key: caKey, subject: mustName("Our CA"), isCA: true})
	leaf := makeCert(t, certSpec{key: leafKey, emails: []string{"smg_encryptor@example.org"}, parent: ca, parentKey: caKey})
	const pass = "pkcs12 pass"
	p12, err := pkcs12.Modern.Encode(leafKey, leaf, []*x509.Certificate{ca}, pass)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, own, "ours.p12", p12)
	writeFile(t, own, "ca.pem", certPEM(ca))
	s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners, Passphrase: []byte(pass)})
	if p := s.Problems(); len(p) != 0 {
		t.Fatalf("problems:\n%s", problemsText(s))
	}
	if o := s.Own(); len(o) != 1 || o[0].Key == nil || o[0].Domains[0] != "example.org" {
		t.Fatalf("own = %v", o)
	}

	nameless := makeCert(t, certSpec{key: rsaKey(t, 3), emails: []string{"alice@example.org"}})
	writeFile(t, own, "nameless.pem", certPEM(nameless))
	s = mustLoad(t, Options{OwnDir: own, PartnersDir: partners, Passphrase: []byte(pass)})
	w := s.OwnWithoutKey()
	if len(w) != 1 || w[0].X509 != nil && !w[0].X509.Equal(nameless) || w[0].Status != NoPrivateKey {
		t.Fatalf("own without key = %v", w)
	}
}
