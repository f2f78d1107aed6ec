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
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"smimegate/internal/config"
)

// certTestEnv holds keygen-made keys and certificates for our domain
// example.org and for partner domains.
type certTestEnv struct {
	work string // keygen output, one directory per domain
}

// certTestSetup runs the real keygen command for the test domains. It is
// called once, by TestCertCommands, whose subtests share the result: RSA
// key generation is slow under -race.
func certTestSetup(t *testing.T) certTestEnv {
	t.Helper()
	env := certTestEnv{work: t.TempDir()}
	for _, d := range []string{"example.org", "partner.example", "sub.partner.example"} {
		var out bytes.Buffer
		if err := keygenCommand([]string{"-domain", d, "-key", "rsa2048", "-out", filepath.Join(env.work, d)}, &out); err != nil {
			t.Fatal(err)
		}
	}
	return env
}

// certTestConfig writes a configuration whose own directory holds our
// example.org pair and whose partner directory is empty; it returns the
// configuration path and the partner directory.
func certTestConfig(t *testing.T, env certTestEnv, extra string) (cfgPath, partners string) {
	t.Helper()
	dir := t.TempDir()
	own := filepath.Join(dir, "own")
	partners = filepath.Join(dir, "partners")
	for _, p := range []string{own, partners} {
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, ext := range []string{".crt", ".key"} {
		data, err := os.ReadFile(filepath.Join(env.work, "example.org", "example.org"+ext))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(own, "example.org"+ext), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath = filepath.Join(dir, "smimegate.toml")
	cfg := `hostname = "gw.example.org"
state_dir = "state"
local_domains = ["example.org"]
[relay]
inbound = "127.0.0.1:1"
[certs]
own = "own"
partners = "partners"
` + extra
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, partners
}

func (e certTestEnv) crt(domain string) string {
	return filepath.Join(e.work, domain, domain+".crt")
}

// certTestRun runs the real cert command and returns its output.
func certTestRun(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	err = certCommand(args, &o, &e)
	return o.String(), e.String(), err
}

// certTestExit runs a whole command line through the dispatcher, as the
// binary would, and returns its exit status and stderr.
func certTestExit(args ...string) (int, string) {
	var e bytes.Buffer
	code := run(args, &e)
	return code, e.String()
}

// certTestForeignCert writes a certificate for domain (EC, fast to make)
// with the given validity and names.
func certTestForeignCert(t *testing.T, path string, emails []string, notAfter time.Time) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "foreign"},
		NotBefore: time.Now().Add(-400 * 24 * time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageKeyAgreement, EmailAddresses: emails,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCertCommands(t *testing.T) {
	env := certTestSetup(t)
	t.Run("import-list-show", func(t *testing.T) { testCertImportListShow(t, env) })
	t.Run("unusable-require", func(t *testing.T) { testCertShowUnusableAndRequire(t, env) })
	t.Run("own-without-key", func(t *testing.T) { testCertOwnWithoutKey(t, env) })
	t.Run("public-suffix", func(t *testing.T) { testCertPublicSuffix(t, env) })
}

// testCertOwnWithoutKey: our certificate whose key cannot be decrypted is
// listed as ours with status "no private key", said loudly by cert list
// and check-config, and check-config fails; with the key readable it
// passes.
func testCertOwnWithoutKey(t *testing.T, env certTestEnv) {
	cfgPath, _ := certTestConfig(t, env, "")
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	var report bytes.Buffer
	if err := checkCerts(cfg, &report); err != nil {
		t.Fatalf("check with a readable key: %v\n%s", err, report.String())
	}
	keyFile := filepath.Join(filepath.Dir(cfgPath), "own", "example.org.key")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{0x30, 0x00}}), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := certTestRun(t, "list", "-config", cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range strings.Split(out, "\n") {
		if ok, _ := certTestMatchLine("example.org  +own  +CN=example.org", l); ok && strings.HasSuffix(strings.TrimSpace(l), "no private key") {
			found = true
		}
	}
	if !found || !strings.Contains(out, "1 own certificate(s) WITHOUT A USABLE PRIVATE KEY") || !strings.Contains(out, keyFile+": ") || !strings.Contains(out, "no passphrase is configured") {
		t.Errorf("cert list does not show the own certificate without its key:\n%s", out)
	}
	report.Reset()
	err = checkCerts(cfg, &report)
	if err == nil || !strings.Contains(err.Error(), "1 own certificate(s) without a usable private key") {
		t.Errorf("check-config: err = %v", err)
	}
	if !strings.Contains(report.String(), "WITHOUT A USABLE PRIVATE KEY") || !strings.Contains(report.String(), keyFile+": ") {
		t.Errorf("check-config report:\n%s", report.String())
	}
}

// testCertPublicSuffix: cert import refuses a certificate for a public
// suffix unless certs.allow_public_suffix lists it.
func testCertPublicSuffix(t *testing.T, env certTestEnv) {
	cert := filepath.Join(t.TempDir(), "couk.pem")
	certTestForeignCert(t, cert, []string{"smg_encryptor@co.uk"}, time.Now().Add(100*24*time.Hour))
	cfg, _ := certTestConfig(t, env, "")
	code, stderr := certTestExit("cert", "import", "-config", cfg, cert)
	if code != 1 || !strings.Contains(stderr, cert+": ") || !strings.Contains(stderr, "names co.uk") || !strings.Contains(stderr, "certs.allow_public_suffix") {
		t.Errorf("import of a co.uk certificate: exit %d, %q", code, stderr)
	}
	cfg, _ = certTestConfig(t, env, "allow_public_suffix = [\"CO.UK\"]\n")
	if out, _, err := certTestRun(t, "import", "-config", cfg, cert); err != nil || !strings.Contains(out, "imported CN=foreign for co.uk") {
		t.Errorf("import with co.uk allowed: %v\n%s", err, out)
	}
}

func testCertImportListShow(t *testing.T, env certTestEnv) {
	cfg, partners := certTestConfig(t, env, "")
	work := t.TempDir()

	// import: two good files in one go.
	out, _, err := certTestRun(t, "import", "-config", cfg, env.crt("partner.example"), env.crt("sub.partner.example"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"imported CN=partner.example", "for partner.example", "imported CN=sub.partner.example", "SIGHUP"} {
		if !strings.Contains(out, want) {
			t.Errorf("import output lacks %q:\n%s", want, out)
		}
	}
	entries, _ := os.ReadDir(partners)
	if len(entries) != 2 {
		t.Fatalf("partner directory has %d files, want 2", len(entries))
	}

	// import refusals: one clear line, non-zero exit, nothing copied.
	expired := filepath.Join(work, "expired.pem")
	certTestForeignCert(t, expired, []string{"smg_encryptor@old.example"}, time.Now().Add(-time.Hour))
	nameless := filepath.Join(work, "alice.pem")
	certTestForeignCert(t, nameless, []string{"alice@old.example"}, time.Now().Add(100*24*time.Hour))
	for _, tc := range []struct {
		file, want string
	}{
		{expired, "is expired"},
		{nameless, "names no domain"},
		{filepath.Join(env.work, "example.org", "example.org.key"), "holds a private key"},
		{filepath.Join(work, "missing.pem"), "no such file"},
	} {
		code, stderr := certTestExit("cert", "import", "-config", cfg, tc.file)
		if code != 1 || !strings.Contains(stderr, tc.file) || !strings.Contains(stderr, tc.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("import %s: exit %d, stderr %q; want 1 and one line saying %q", filepath.Base(tc.file), code, stderr, tc.want)
		}
	}
	code, stderr := certTestExit("cert", "import", "-config", cfg, env.crt("partner.example"), expired)
	if code != 1 || !strings.Contains(stderr, "nothing imported") {
		t.Errorf("mixed import: exit %d, %q", code, stderr)
	}
	if entries, _ := os.ReadDir(partners); len(entries) != 2 {
		t.Errorf("a refused import changed the partner directory: %d files", len(entries))
	}

	// list: own and partners with status, and the problems of a bad file.
	if err := os.WriteFile(filepath.Join(partners, "broken.pem"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err = certTestRun(t, "list", "-config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "DOMAINS") || !strings.Contains(lines[0], "SHA-256") || !strings.Contains(lines[0], "NOT AFTER") {
		t.Errorf("header: %q", lines[0])
	}
	for _, re := range []string{"example.org  +own  +CN=example.org", "partner.example  +partner", "sub.partner.example  +partner"} {
		found := false
		for _, l := range lines {
			if ok, _ := certTestMatchLine(re, l); ok && strings.HasSuffix(strings.TrimSpace(l), "valid") {
				found = true
			}
		}
		if !found {
			t.Errorf("list has no valid line like %q:\n%s", re, out)
		}
	}
	if !strings.Contains(out, "1 problem(s):") || !strings.Contains(out, "broken.pem: ") {
		t.Errorf("list does not show the broken file:\n%s", out)
	}

	// show: most specific first, local domains, unknown domains.
	for _, tc := range []struct {
		domain string
		want   []string
	}{
		{"deep.sub.partner.example", []string{"encrypted to 1 certificate(s) of sub.partner.example", "most specific parent domain with one is sub.partner.example", "use   CN=sub.partner.example"}},
		{"Partner.Example", []string{"encrypted to 1 certificate(s) of partner.example", "names partner.example itself", "subjectAltName rfc822Name smg_encryptor@partner.example"}},
		{"example.org", []string{"own certificate for example.org", "is a local domain"}},
		{"nobody.example", []string{"mail to nobody.example is not encrypted"}},
	} {
		out, _, err := certTestRun(t, "show", "-config", cfg, tc.domain)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("show %s lacks %q:\n%s", tc.domain, w, out)
			}
		}
	}

	// Usage errors exit 2.
	for _, args := range [][]string{{"cert"}, {"cert", "frobnicate"}, {"cert", "show", "-config", cfg}, {"cert", "import", "-config", cfg}, {"cert", "list", "-config", cfg, "extra"}} {
		if code, stderr := certTestExit(args...); code != 2 || stderr == "" {
			t.Errorf("%v: exit %d %q, want 2", args, code, stderr)
		}
	}
}

// certTestMatchLine reports whether l contains the space-padded pattern: words
// separated by "  +" meaning two or more spaces (tabwriter columns).
func certTestMatchLine(pattern, l string) (bool, error) {
	parts := strings.Split(pattern, "  +")
	rest := l
	for _, p := range parts {
		i := strings.Index(rest, p)
		if i < 0 {
			return false, nil
		}
		rest = rest[i+len(p):]
	}
	return true, nil
}

// testCertShowUnusableAndRequire: a domain whose only certificate is
// expired is reported as having no usable certificate (and held when the
// partner policy requires encryption), with the reason.
func testCertShowUnusableAndRequire(t *testing.T, env certTestEnv) {
	cfg, partners := certTestConfig(t, env, "[policy.partners.\"old.example\"]\nrequire = true\n")
	certTestForeignCert(t, filepath.Join(partners, "old.pem"), []string{"smg_encryptor@old.example"}, time.Now().Add(-time.Hour))
	out, _, err := certTestRun(t, "show", "-config", cfg, "old.example")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"is held", "none of its certificates is usable", "skip  CN=foreign", "expired on"} {
		if !strings.Contains(out, w) {
			t.Errorf("show lacks %q:\n%s", w, out)
		}
	}
}

func TestKeygenCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	var out bytes.Buffer
	if err := keygenCommand([]string{"-domain", "Example.NET", "-domain", "example.com", "-key", "rsa2048", "-days", "90", "-csr", "-out", dir}, &out); err != nil {
		t.Fatal(err)
	}
	key, crt, csr := filepath.Join(dir, "example.net.key"), filepath.Join(dir, "example.net.crt"), filepath.Join(dir, "example.net.csr")
	for path, mode := range map[string]os.FileMode{key: 0o600, crt: 0o644, csr: 0o644} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %04o, want %04o", path, fi.Mode().Perm(), mode)
		}
	}
	for _, w := range []string{"wrote " + key, "smg_encryptor@example.net, domain-confidentiality-authority@example.net, domain-signing-authority@example.net, smg_encryptor@example.com", "sha256 fingerprint: "} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}

	// Real peers: openssl reads the CSR and encrypts to the certificate,
	// and decrypts with the key as keygen wrote it.
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	req := certTestOpenSSL(t, nil, "req", "-in", csr, "-noout", "-verify", "-text")
	for _, w := range []string{"Digital Signature, Key Encipherment", "E-mail Protection", "email:smg_encryptor@example.com", "email:domain-signing-authority@example.com"} {
		if !strings.Contains(string(req), w) {
			t.Errorf("CSR lacks %q:\n%s", w, req)
		}
	}
	msg := []byte("Subject: keygen\r\n\r\nbody\r\n")
	sealed := certTestOpenSSL(t, msg, "cms", "-encrypt", "-binary", "-aes-256-gcm", "-outform", "DER", crt)
	plain := certTestOpenSSL(t, sealed, "cms", "-decrypt", "-binary", "-inform", "DER", "-inkey", key)
	if !bytes.Equal(plain, msg) {
		t.Errorf("openssl round trip: %q", plain)
	}

	// Never overwrite a key: a second keygen for the domain writes its
	// pair beside the first (a rotation), and a third beside both.
	before, _ := os.ReadFile(key)
	for i, want := range []string{"example.net-" + time.Now().UTC().Format("20060102") + ".key", "example.net-" + time.Now().UTC().Format("20060102") + "-2.key"} {
		out.Reset()
		if err := keygenCommand([]string{"-domain", "example.net", "-key", "p256", "-out", dir}, &out); err != nil {
			t.Fatalf("keygen %d for a domain with a key: %v", i+2, err)
		}
		if _, err := os.Stat(filepath.Join(dir, want)); err != nil || !strings.Contains(out.String(), "the new pair goes beside it") || !strings.Contains(out.String(), "give "+strings.TrimSuffix(want, ".key")+".crt to partners") {
			t.Errorf("keygen %d: %v\n%s", i+2, err, out.String())
		}
	}
	if after, _ := os.ReadFile(key); !bytes.Equal(before, after) {
		t.Error("the key was overwritten")
	}

	// -csr-only writes no certificate.
	d2 := t.TempDir()
	if err := keygenCommand([]string{"-domain", "csr.example", "-key", "p256", "-csr-only", "-out", d2}, &out); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d2, "csr.example.crt")); err == nil {
		t.Error("-csr-only wrote a certificate")
	}
	if _, err := os.Stat(filepath.Join(d2, "csr.example.csr")); err != nil {
		t.Error(err)
	}

	for _, args := range [][]string{
		{"keygen", "-out", dir},
		{"keygen", "-domain", "x.example"},
		{"keygen", "-domain", "x.example", "-key", "rsa1024", "-out", dir},
		{"keygen", "-domain", "x.example", "-days", "0", "-out", dir},
		{"keygen", "-domain", "x.example", "-out", dir, "stray"},
	} {
		if code, stderr := certTestExit(args...); code != 2 || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: exit %d %q, want 2 and one line", args, code, stderr)
		}
	}
	if code, stderr := certTestExit("keygen", "-domain", "bad..example", "-out", t.TempDir()); code != 1 || !strings.Contains(stderr, "empty label") {
		t.Errorf("bad domain: exit %d %q", code, stderr)
	}
}

func certTestOpenSSL(t *testing.T, stdin []byte, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// TestCertOptionsPassphrase: the passphrase comes from the first line of
// the file or from the named environment variable; conflicts and gaps are
// errors that name the key.
func TestCertOptionsPassphrase(t *testing.T) {
	dir := t.TempDir()
	pf := filepath.Join(dir, "pass")
	if err := os.WriteFile(pf, []byte("file secret\r\nsecond line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SMG_TEST_PASSPHRASE", "env secret")
	cases := []struct {
		file, env, want, err string
	}{
		{pf, "", "file secret", ""},
		{"", "SMG_TEST_PASSPHRASE", "env secret", ""},
		{pf, "SMG_TEST_PASSPHRASE", "", "only one of"},
		{"", "SMG_TEST_UNSET_VARIABLE", "", "SMG_TEST_UNSET_VARIABLE, which is not set"},
		{filepath.Join(dir, "missing"), "", "", "certs.key_passphrase_file"},
		{"", "", "", ""},
	}
	for _, tc := range cases {
		cfg := config.Default()
		cfg.Certs.KeyPassphraseFile, cfg.Certs.KeyPassphraseEnv = tc.file, tc.env
		opts, err := certOptions(cfg, nil)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%+v: error %v, want %q", tc, err, tc.err)
			}
			continue
		}
		if err != nil || string(opts.Passphrase) != tc.want || opts.OwnDir != cfg.Certs.Own || opts.Now == nil {
			t.Errorf("%+v: %q %v", tc, opts.Passphrase, err)
		}
	}
}
