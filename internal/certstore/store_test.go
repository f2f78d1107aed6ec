package certstore

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOwnPairsByPublicKey: keys and certificates are paired by public key,
// whatever the files are called and whichever encoding the key is in.
func TestOwnPairsByPublicKey(t *testing.T) {
	t.Parallel()
	own, partners := testDirs(t)
	k0, k1, k2 := rsaKey(t, 0), rsaKey(t, 1), ecKey(t, 0)
	c0 := makeCert(t, certSpec{key: k0, emails: []string{"smg_encryptor@example.org"}})
	c1 := makeCert(t, certSpec{key: k1, emails: []string{"smg_encryptor@example.com"}})
	c2 := makeCert(t, certSpec{key: k2, emails: []string{"smg_encryptor@ec.example.org"}})
	ecDER, err := x509.MarshalECPrivateKey(k2)
	if err != nil {
		t.Fatal(err)
	}
	// Names chosen to mislead: each key sits beside the wrong certificate.
	writeFile(t, own, "example.org.crt", certPEM(c0))
	writeFile(t, own, "example.org.key", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k1)}))
	writeFile(t, own, "example.com.pem", append(certPEM(c1), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})...))
	writeFile(t, own, "zz-keys.pem", keyPEM(t, k0))
	writeFile(t, own, "ec.der", c2.Raw)
	s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners})
	if p := s.Problems(); len(p) != 0 {
		t.Fatalf("problems: %v", p)
	}
	got := map[string]bool{}
	for _, c := range s.Own() {
		if !samePublicKey(publicKeyOf(c.Key), c.X509.PublicKey) {
			t.Errorf("%s paired with the wrong key", c.Domains)
		}
		got[c.Domains[0]] = true
	}
	if len(got) != 3 {
		t.Fatalf("own domains %v, want 3", got)
	}
	if m := s.Lookup("example.org"); m.Domain != "" {
		t.Errorf("own certificates must not be partner recipients: %+v", m)
	}
}

// TestOwnMismatchesAreProblems: a domain certificate without its key (kept
// as ours, without a key) and a key without a certificate are reported;
// the rest loads.
func TestOwnMismatchesAreProblems(t *testing.T) {
	t.Parallel()
	own, partners := testDirs(t)
	writeFile(t, own, "lonely.crt", certPEM(makeCert(t, certSpec{key: rsaKey(t, 0), emails: []string{"smg_encryptor@example.org"}})))
	writeFile(t, own, "stray.key", keyPEM(t, rsaKey(t, 1)))
	writeFile(t, own, "good.pem", append(certPEM(makeCert(t, certSpec{key: rsaKey(t, 2), emails: []string{"smg_encryptor@example.com"}})), keyPEM(t, rsaKey(t, 2))...))
	s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners})
	if len(s.Own()) != 2 {
		t.Fatalf("own = %v", s.Own())
	}
	if w := s.OwnWithoutKey(); len(w) != 1 || w[0].Domains[0] != "example.org" || w[0].Status != NoPrivateKey ||
		w[0].Reason != "no usable private key: no private key in the own directory matches it" {
		t.Fatalf("own without key = %+v", w)
	}
	probs := problemsText(s)
	for _, want := range []string{"lonely.crt: certificate", "is our certificate but has no usable private key: no private key in the own directory matches it: mail encrypted to it cannot be opened", "stray.key: private key matches no certificate"} {
		if !strings.Contains(probs, want) {
			t.Errorf("problems lack %q:\n%s", want, probs)
		}
	}
}

// TestOwnExpiredStillDecrypts: an expired own certificate stays in Own()
// with its key (mail in flight), marked expired and reported.
func TestOwnExpiredStillDecrypts(t *testing.T) {
	t.Parallel()
	own, partners := testDirs(t)
	k := rsaKey(t, 3)
	writeFile(t, own, "old.pem", append(certPEM(makeCert(t, certSpec{key: k, emails: []string{"smg_encryptor@example.org"}, notAfter: testNow.Add(-48 * time.Hour)})), keyPEM(t, k)...))
	s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners})
	o := s.Own()
	if len(o) != 1 || o[0].Key == nil || o[0].Status != Expired {
		t.Fatalf("own = %+v", o)
	}
	if !strings.Contains(problemsText(s), "still decrypts mail in flight") {
		t.Errorf("problems: %s", problemsText(s))
	}
}

// TestUnusableFilesReportedOnce: every unusable file is reported with its
// name and reason and logged once, the rest loads, and a reload with
// nothing changed logs nothing again.
func TestUnusableFilesReportedOnce(t *testing.T) {
	t.Parallel()
	own, partners := testDirs(t)
	writeFile(t, partners, "good.pem", certPEM(makeCert(t, certSpec{key: rsaKey(t, 0), emails: []string{"smg_encryptor@example.net"}})))
	writeFile(t, partners, "garbage.pem", []byte("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"))
	writeFile(t, partners, "empty.crt", nil)
	writeFile(t, partners, "noise.der", []byte{0x30, 0x03, 0x02, 0x01, 0x05})
	writeFile(t, partners, "personal.pem", certPEM(makeCert(t, certSpec{key: rsaKey(t, 1), emails: []string{"alice@example.net"}})))
	writeFile(t, partners, "expired.pem", certPEM(makeCert(t, certSpec{key: rsaKey(t, 2), emails: []string{"smg_encryptor@old.example"}, notAfter: testNow.Add(-time.Hour)})))
	writeFile(t, partners, "withkey.pem", append(certPEM(makeCert(t, certSpec{key: rsaKey(t, 3), emails: []string{"smg_encryptor@keyed.example"}})), keyPEM(t, rsaKey(t, 3))...))
	writeFile(t, partners, "a.p12", []byte("x"))
	writeFile(t, partners, ".hidden.pem", []byte("ignored"))
	if err := os.Mkdir(filepath.Join(partners, "subdir"), 0o700); err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners, Logger: logs.logger()})
	if m := s.Lookup("example.net"); len(m.Certs) != 1 {
		t.Fatalf("the good certificate did not load: %+v", m)
	}
	if m := s.Lookup("keyed.example"); len(m.Certs) != 1 {
		t.Fatalf("a partner file with a stray key still serves its certificate: %+v", m)
	}
	want := map[string]string{
		"garbage.pem":  "damaged PEM",
		"empty.crt":    "empty file",
		"noise.der":    "neither PEM nor a DER certificate",
		"personal.pem": "no domain certificate",
		"expired.pem":  "is expired",
		"withkey.pem":  "private key",
		"a.p12":        "PKCS#12 belongs in the own directory",
	}
	probs := s.Problems()
	for file, reason := range want {
		n := 0
		for _, p := range probs {
			if filepath.Base(p.File) == file && strings.Contains(p.Reason, reason) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s: %d problems saying %q, want 1:\n%s", file, n, reason, problemsText(s))
		}
		if c := strings.Count(logs.String(), filepath.Join(partners, file)); c != 1 {
			t.Errorf("%s logged %d times, want once:\n%s", file, c, logs.String())
		}
	}
	if len(probs) != len(want) {
		t.Errorf("%d problems, want %d:\n%s", len(probs), len(want), problemsText(s))
	}
	before := logs.String()
	if _, err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if strings.Count(logs.String(), "certificate file problem") != strings.Count(before, "certificate file problem") {
		t.Errorf("a reload with nothing changed logged the problems again:\n%s", strings.TrimPrefix(logs.String(), before))
	}
}

// TestReloadKeepsOldVersion: a file that a bad edit broke keeps its
// previous version, for partner certificates and for our own keys; a file
// that was removed is dropped, and a new file is picked up.
func TestReloadKeepsOldVersion(t *testing.T) {
	t.Parallel()
	own, partners := testDirs(t)
	k := rsaKey(t, 4)
	ownCrt := writeFile(t, own, "o.crt", certPEM(makeCert(t, certSpec{key: k, emails: []string{"smg_encryptor@example.org"}})))
	ownKey := writeFile(t, own, "o.key", keyPEM(t, k))
	p1 := writeFile(t, partners, "p1.pem", certPEM(makeCert(t, certSpec{key: rsaKey(t, 0), emails: []string{"smg_encryptor@one.example"}})))
	p2 := writeFile(t, partners, "p2.pem", certPEM(makeCert(t, certSpec{key: rsaKey(t, 1), emails: []string{"smg_encryptor@two.example"}})))
	var logs logBuffer
	s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners, Logger: logs.logger()})

	// Bad edits: a truncated partner file, a partner file that now holds
	// a personal certificate, a key file overwritten with junk.
	data, _ := os.ReadFile(p1)
	writeFile(t, partners, "p1.pem", data[:len(data)/2])
	writeFile(t, partners, "p2.pem", certPEM(makeCert(t, certSpec{key: rsaKey(t, 1), emails: []string{"bob@two.example"}})))
	writeFile(t, own, "o.key", []byte("oops"))
	writeFile(t, partners, "p3.pem", certPEM(makeCert(t, certSpec{key: rsaKey(t, 2), emails: []string{"smg_encryptor@three.example"}})))
	s2, err := s.Reload()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"one.example", "two.example", "three.example"} {
		if m := s2.Lookup(d); len(m.Certs) != 1 {
			t.Errorf("after the bad edit, %s has %+v", d, m)
		}
	}
	if o := s2.Own(); len(o) != 1 || o[0].Key == nil {
		t.Errorf("own key lost after a bad edit: %+v", o)
	}
	probs := problemsText(s2)
	for _, f := range []string{p1, p2, ownKey} {
		if !strings.Contains(probs, f+": ") || !strings.Contains(probs, "keeping the version loaded before") {
			t.Errorf("no problem reported for %s:\n%s", f, probs)
		}
	}
	if !strings.Contains(logs.String(), "keeping the version loaded before") {
		t.Errorf("the kept version was not logged:\n%s", logs.String())
	}

	// A reload from the reloaded store still keeps the old versions.
	s3, err := s2.Reload()
	if err != nil {
		t.Fatal(err)
	}
	if m := s3.Lookup("one.example"); len(m.Certs) != 1 {
		t.Errorf("second reload lost the kept version: %+v", m)
	}

	// Removing files drops what they held.
	os.Remove(p1)
	os.Remove(ownCrt)
	s4, err := s3.Reload()
	if err != nil {
		t.Fatal(err)
	}
	if m := s4.Lookup("one.example"); m.Domain != "" {
		t.Errorf("a removed file is still used: %+v", m)
	}
	if len(s4.Own()) != 0 {
		t.Errorf("own certificate of a removed file still loaded")
	}

	// A directory that cannot be read is an error; the caller keeps s4.
	os.RemoveAll(partners)
	if _, err := s4.Reload(); err == nil || !strings.Contains(err.Error(), partners) {
		t.Errorf("reload of a missing directory: %v", err)
	}
}

// TestTrustAnchors: with trust anchors configured, a partner certificate
// must chain to one (through intermediates shipped in the partner file);
// one that does not is untrusted and not used.
func TestTrustAnchors(t *testing.T) {
	t.Parallel()
	own, partners := testDirs(t)
	trust := t.TempDir()
	root := makeCert(t, certSpec{key: ecKey(t, 1), subject: mustName("Test Root"), isCA: true})
	inter := makeCert(t, certSpec{key: ecKey(t, 2), subject: mustName("Test Intermediate"), isCA: true, parent: root, parentKey: ecKey(t, 1)})
	leaf := makeCert(t, certSpec{key: rsaKey(t, 0), emails: []string{"smg_encryptor@trusted.example"}, eku: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		parent: inter, parentKey: ecKey(t, 2), notAfter: testNow.Add(400 * 24 * time.Hour)})
	writeFile(t, trust, "root.pem", certPEM(root))
	writeFile(t, partners, "trusted.pem", certPEM(leaf, inter))
	writeFile(t, partners, "selfsigned.pem", certPEM(makeCert(t, certSpec{key: rsaKey(t, 1), emails: []string{"smg_encryptor@untrusted.example"}})))
	s := mustLoad(t, Options{OwnDir: own, PartnersDir: partners, TrustDir: trust})
	if m := s.Lookup("trusted.example"); len(m.Certs) != 1 {
		t.Fatalf("chained certificate not used: %+v %s", m, problemsText(s))
	}
	m := s.Lookup("untrusted.example")
	if len(m.Certs) != 0 || len(m.Unusable) != 1 || m.Unusable[0].Status != Untrusted || !strings.Contains(m.Unusable[0].Reason, trust) {
		t.Fatalf("self-signed certificate with trust anchors: %+v", m)
	}
	// Without trust anchors, both are used (out-of-band exchange).
	s = mustLoad(t, Options{OwnDir: own, PartnersDir: partners})
	if m := s.Lookup("untrusted.example"); len(m.Certs) != 1 {
		t.Errorf("without trust anchors: %+v", m)
	}
	// The chain's own expiry counts, at each lookup: the leaf outlives
	// the intermediate.
	now := testNow
	s = mustLoad(t, Options{OwnDir: own, PartnersDir: partners, TrustDir: trust, Now: func() time.Time { return now }})
	now = testNow.Add(380 * 24 * time.Hour)
	if m := s.Lookup("trusted.example"); len(m.Certs) != 0 || len(m.Unusable) != 1 || m.Unusable[0].Status != Untrusted {
		t.Errorf("used after its intermediate expired: %+v", m)
	}
}

func mustName(cn string) pkix.Name { return pkix.Name{CommonName: cn} }
