package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"smimegate/internal/certstore"
	"smimegate/internal/cms"
)

// TestKeygenKEM runs `keygen -key` for the four KEM types the issue names:
// the key (0600) and certificate, signed by a new domain issuer written to
// DIR/issuer; a second key signed by that issuer through -issuer-cert and
// -issuer-key; and the refusals (-csr, an issuer for an RSA key, one
// issuer flag alone, existing files, a KEM key as issuer key).
func TestKeygenKEM(t *testing.T) {
	dir := t.TempDir()
	pass := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(pass, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"mlkem768", "mlkem1024", "mlkem768-x25519", "mlkem768-p256"} {
		out := filepath.Join(dir, kind)
		var o bytes.Buffer
		if err := keygenCommand([]string{"-domain", "example.net", "-key", kind, "-out", out}, &o); err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		for _, f := range []struct {
			name string
			perm os.FileMode
		}{{"example.net.key", 0o600}, {"example.net.crt", 0o644}, {"issuer/example.net.key", 0o600}, {"issuer/example.net.crt", 0o644}} {
			fi, err := os.Stat(filepath.Join(out, f.name))
			if err != nil || fi.Mode().Perm() != f.perm {
				t.Errorf("%s: %s: %v %v", kind, f.name, fi, err)
			}
		}
		if !strings.Contains(o.String(), "keep issuer/example.net.key off the gateway") {
			t.Errorf("%s: output:\n%s", kind, o.String())
		}
		// The directory, as certs.own, holds one own certificate with its
		// KEM key: the issuer in the sub-directory is not read.
		s, err := certstore.Load(certstore.Options{OwnDir: out})
		if err != nil {
			t.Fatal(err)
		}
		own := s.Own()
		if len(own) != 1 || own[0].KeyType() != kind || len(s.Problems()) != 0 {
			t.Fatalf("%s: own %v, problems %v", kind, own, s.Problems())
		}
		if _, ok := own[0].Key.(*cms.KEMPrivateKey); !ok {
			t.Errorf("%s: own key %T", kind, own[0].Key)
		}
	}

	// A second domain's key under the first issuer, with an encrypted key.
	first := filepath.Join(dir, "mlkem768-x25519")
	second := filepath.Join(dir, "second")
	args := []string{"-domain", "example.com", "-key", "mlkem1024", "-issuer-cert", filepath.Join(first, "issuer", "example.net.crt"),
		"-issuer-key", filepath.Join(first, "issuer", "example.net.key"), "-passphrase-file", pass, "-out", second}
	var o bytes.Buffer
	if err := keygenCommand(args, &o); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(second, "issuer")); err == nil {
		t.Error("a given issuer was written again")
	}
	s, err := certstore.Load(certstore.Options{OwnDir: second, PartnersDir: t.TempDir(), TrustDir: filepath.Join(first, "issuer"), Passphrase: []byte("s3cret")})
	if err != nil {
		t.Fatal(err)
	}
	if own := s.Own(); len(own) != 1 || own[0].Key == nil {
		t.Fatalf("encrypted KEM key: %v %v", own, s.Problems())
	}
	issuerPEM, _ := os.ReadFile(filepath.Join(first, "issuer", "example.net.crt"))
	if err := s.Own()[0].X509.CheckSignatureFrom(mustParsePEM(t, issuerPEM)); err != nil {
		t.Errorf("not signed by the given issuer: %v", err)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-domain", "x.example", "-key", "mlkem768", "-csr", "-out", t.TempDir()}, "cannot sign a certificate signing request"},
		{[]string{"-domain", "x.example", "-key", "p256", "-issuer-cert", "a", "-issuer-key", "b", "-out", t.TempDir()}, "are for KEM keys"},
		{[]string{"-domain", "x.example", "-key", "mlkem768", "-issuer-cert", "a", "-out", t.TempDir()}, "go together"},
		{[]string{"-domain", "x.example", "-key", "mlkem512", "-out", t.TempDir()}, "is not one of"},
		{[]string{"-domain", "x.example", "-key", "mlkem768", "-issuer-cert", filepath.Join(first, "issuer", "example.net.crt"), "-issuer-key", filepath.Join(first, "example.net.key"), "-out", t.TempDir()}, "not a signing key"},
	} {
		var o bytes.Buffer
		err := keygenCommand(c.args, &o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}

// TestKeygenKEMRotation: a second KEM keygen for a domain writes its pair
// (and a new issuer) beside the first, which stays as it was: both decrypt
// while partners move to the new certificate.
func TestKeygenKEMRotation(t *testing.T) {
	out := t.TempDir()
	var o bytes.Buffer
	if err := keygenCommand([]string{"-domain", "example.net", "-key", "mlkem768", "-out", out}, &o); err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile(filepath.Join(out, "example.net.key"))
	if err != nil {
		t.Fatal(err)
	}
	o.Reset()
	if err := keygenCommand([]string{"-domain", "example.net", "-key", "mlkem768", "-out", out}, &o); err != nil {
		t.Fatalf("second keygen: %v", err)
	}
	if !strings.Contains(o.String(), "the new pair goes beside it") {
		t.Errorf("keygen does not say it rotated:\n%s", o.String())
	}
	if again, _ := os.ReadFile(filepath.Join(out, "example.net.key")); !bytes.Equal(again, old) {
		t.Error("the first key was overwritten")
	}
	keys, _ := filepath.Glob(filepath.Join(out, "example.net-*.key"))
	issuers, _ := filepath.Glob(filepath.Join(out, "issuer", "example.net-*.key"))
	if len(keys) != 1 || len(issuers) != 1 {
		t.Errorf("new pair %v, new issuer %v; want one of each beside the first", keys, issuers)
	}
}

func mustParsePEM(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	p, _ := pem.Decode(b)
	if p == nil {
		t.Fatal("no PEM")
	}
	c, err := x509.ParseCertificate(p.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCertKEM: `cert import`, `cert list` and `cert show` treat a KEM
// certificate like any other and name its key type; with require_pq,
// `cert show` says what the policy step does: only the post-quantum
// certificate is used, and a domain without one is held.
func TestCertKEM(t *testing.T) {
	dir := t.TempDir()
	work := filepath.Join(dir, "work")
	var o bytes.Buffer
	for _, c := range []struct{ domain, key string }{{"example.org", "mlkem768-x25519"}, {"partner.example", "mlkem768-p256"}, {"classic.example", "p256"}} {
		if err := keygenCommand([]string{"-domain", c.domain, "-key", c.key, "-out", filepath.Join(work, c.domain)}, &o); err != nil {
			t.Fatal(err)
		}
	}
	own, partners := filepath.Join(dir, "own"), filepath.Join(dir, "partners")
	for _, p := range []string{own, partners} {
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, ext := range []string{".key", ".crt"} {
		b, err := os.ReadFile(filepath.Join(work, "example.org", "example.org"+ext))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(own, "example.org"+ext), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(dir, "smimegate.toml")
	cfg := `hostname = "gw.example.org"
state_dir = "state"
local_domains = ["example.org"]
[relay]
inbound = "127.0.0.1:1"
[certs]
own = "own"
partners = "partners"
[policy.partners."partner.example"]
require_pq = true
[policy.partners."classic.example"]
require_pq = true
`
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := certTestRun(t, "import", "-config", cfgPath, filepath.Join(work, "partner.example", "partner.example.crt"), filepath.Join(work, "classic.example", "classic.example.crt"))
	if err != nil || !strings.Contains(out, "(mlkem768-p256, sha256") || !strings.Contains(out, "(p256, sha256") {
		t.Fatalf("import: %v\n%s", err, out)
	}
	out, _, err = certTestRun(t, "list", "-config", cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"KEY", "example.org      own      mlkem768-x25519", "partner.example  partner  mlkem768-p256", "classic.example  partner  p256"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	out, _, err = certTestRun(t, "show", "-config", cfgPath, "partner.example")
	if err != nil || !strings.Contains(out, "encrypted to 1 certificate(s) of partner.example") || !strings.Contains(out, "mlkem768-p256  sha256") {
		t.Errorf("show partner.example: %v\n%s", err, out)
	}
	out, _, err = certTestRun(t, "show", "-config", cfgPath, "classic.example")
	if err != nil || !strings.Contains(out, "is held: no usable post-quantum") || !strings.Contains(out, "skip") || !strings.Contains(out, "not post-quantum") {
		t.Errorf("show classic.example: %v\n%s", err, out)
	}
}

// TestEncryptRequirePQ: `smimegate encrypt` applies require_pq as the
// gateway does: sealed to the KEM certificate alone, and refused (nothing
// written) for a partner with none.
func TestEncryptRequirePQ(t *testing.T) {
	dir := t.TempDir()
	var o bytes.Buffer
	for _, c := range []struct{ domain, key, out string }{{"pq.example", "mlkem768", "pq"}, {"pq.example", "p256", "pq-ec"}, {"classic.example", "p256", "classic"}} {
		if err := keygenCommand([]string{"-domain", c.domain, "-key", c.key, "-out", filepath.Join(dir, c.out)}, &o); err != nil {
			t.Fatal(err)
		}
	}
	partners := filepath.Join(dir, "partners")
	for _, d := range []string{partners, filepath.Join(dir, "own")} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"pq/pq.example.crt", "pq-ec/pq.example.crt", "classic/classic.example.crt"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(partners, strings.ReplaceAll(f, "/", "-")), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(dir, "smimegate.toml")
	cfg := "local_domains = [\"example.org\"]\nstate_dir = \"state\"\n[relay]\ninbound = \"127.0.0.1:1\"\n[certs]\nown = \"own\"\npartners = \"partners\"\n" +
		"[policy.partners.\"pq.example\"]\nrequire_pq = true\n[policy.partners.\"classic.example\"]\nrequire_pq = true\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	msg := "From: a@example.org\r\nTo: b@pq.example\r\nSubject: x\r\n\r\nbody\r\n"
	var out, errOut bytes.Buffer
	if err := encryptCommand([]string{"-config", cfgPath, "-to", "pq.example"}, strings.NewReader(msg), &out, &errOut); err != nil {
		t.Fatalf("encrypt: %v\n%s", err, errOut.String())
	}
	if fps := regexp.MustCompile(`fingerprints=(\S+)`).FindStringSubmatch(errOut.String()); fps == nil || strings.Contains(fps[1], ",") {
		t.Errorf("sealed to more than the KEM certificate:\n%s", errOut.String())
	}
	out.Reset()
	err := encryptCommand([]string{"-config", cfgPath, "-to", "classic.example"}, strings.NewReader(msg), &out, &errOut)
	if err == nil || out.Len() != 0 || !strings.Contains(err.Error(), "not post-quantum") {
		t.Errorf("encrypt to a require_pq partner without a KEM certificate: %v, %d bytes written", err, out.Len())
	}
}
