package certstore

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPrepareImport: usable partner certificates are accepted and written
// as PEM named after domain and fingerprint; expired, wrongly usable,
// nameless and key-bearing files are refused with the file and the reason.
func TestPrepareImport(t *testing.T) {
	t.Parallel()
	work := t.TempDir()
	own, partners := testDirs(t)
	opts := Options{OwnDir: own, PartnersDir: partners, Now: func() time.Time { return testNow }}
	good := makeCert(t, certSpec{key: rsaKey(t, 0), emails: []string{"smg_encryptor@example.net"}})
	goodFile := writeFile(t, work, "good.der", good.Raw)

	im, err := PrepareImport(opts, goodFile)
	if err != nil {
		t.Fatal(err)
	}
	if im.Exists || len(im.Certs) != 1 || im.Certs[0].Status != Valid {
		t.Fatalf("%+v", im)
	}
	wantDest := filepath.Join(partners, "example.net-"+im.Certs[0].Fingerprint[:16]+".pem")
	if im.Dest != wantDest {
		t.Errorf("dest %s, want %s", im.Dest, wantDest)
	}
	if err := im.Commit(); err != nil {
		t.Fatal(err)
	}
	if m := mustLoad(t, opts).Lookup("example.net"); len(m.Certs) != 1 {
		t.Fatalf("imported certificate not loaded: %+v", m)
	}
	again, err := PrepareImport(opts, goodFile)
	if err != nil || !again.Exists {
		t.Errorf("second import: %v %+v", err, again)
	}
	if entries, _ := os.ReadDir(partners); len(entries) != 1 {
		t.Errorf("partner directory holds %d files, want 1 (no temporary left behind)", len(entries))
	}

	refused := []struct {
		name string
		data []byte
		want string
	}{
		{"expired.pem", certPEM(makeCert(t, certSpec{key: rsaKey(t, 1), emails: []string{"smg_encryptor@old.example"}, notAfter: testNow.Add(-time.Hour)})), "is expired"},
		{"signonly.pem", certPEM(makeCert(t, certSpec{key: rsaKey(t, 1), emails: []string{"smg_encryptor@sig.example"}, usage: 1})), "wrong key usage"},
		{"nameless.pem", certPEM(makeCert(t, certSpec{key: rsaKey(t, 1), emails: []string{"alice@example.net"}})), "names no domain"},
		{"withkey.pem", append(certPEM(good), keyPEM(t, rsaKey(t, 0))...), "holds a private key"},
		{"junk.pem", []byte("hello"), "neither PEM nor"},
		{"half-bad.pem", certPEM(good, makeCert(t, certSpec{key: rsaKey(t, 1), emails: []string{"smg_encryptor@x.example"}, notAfter: testNow.Add(-time.Hour)})), "is expired"},
	}
	for _, r := range refused {
		p := writeFile(t, work, r.name, r.data)
		_, err := PrepareImport(opts, p)
		if err == nil || !strings.HasPrefix(err.Error(), p+": ") || !strings.Contains(err.Error(), r.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one line naming the file and %q", r.name, err, r.want)
		}
	}
	if _, err := PrepareImport(opts, filepath.Join(work, "missing.pem")); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Errorf("missing file: %v", err)
	}

	// With trust anchors configured, a certificate that does not chain to
	// one is refused too.
	trust := t.TempDir()
	writeFile(t, trust, "root.pem", certPEM(makeCert(t, certSpec{key: ecKey(t, 0), subject: mustName("Import Root"), isCA: true})))
	opts.TrustDir = trust
	if _, err := PrepareImport(opts, goodFile); err == nil || !strings.Contains(err.Error(), "is untrusted") || !strings.Contains(err.Error(), trust) {
		t.Errorf("untrusted import: %v", err)
	}
}

// TestWriteFileNoReplace: WriteFile without replace refuses an existing
// file and leaves it untouched; with replace it swaps it whole.
func TestWriteFileNoReplace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "k")
	if err := WriteFile(p, []byte("one"), 0o600, false); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("two"), 0o600, false); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("overwrote: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "one" {
		t.Fatalf("content %q", b)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	if err := WriteFile(p, []byte("three"), 0o644, true); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "three" {
		t.Fatalf("content %q", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d files, want 1", len(entries))
	}
}
