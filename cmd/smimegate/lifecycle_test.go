package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lifecycleTestConfig writes a configuration over own and partner
// directories in a fresh directory, plus extra TOML, and returns the
// directory.
func lifecycleTestConfig(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"own", "partners", "state"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	cfg := "state_dir = \"state\"\nlocal_domains = [\"example.org\"]\nlog_level = \"warn\"\n" +
		"[relay]\ninbound = \"127.0.0.1:2700\"\n[certs]\nown = \"own\"\npartners = \"partners\"\n" + extra
	if err := os.WriteFile(filepath.Join(dir, "smimegate.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestKeygenRotation: keygen for a domain that has a key writes the new
// pair beside the old; both open mail encrypted to them (the real
// decrypt command, mail encrypted by openssl), and `cert list` says
// which one partners should now be given.
func TestKeygenRotation(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	dir := lifecycleTestConfig(t, "")
	own := filepath.Join(dir, "own")
	var out bytes.Buffer
	for range 2 {
		if err := keygenCommand([]string{"-domain", "example.org", "-key", "p256", "-out", own}, &out); err != nil {
			t.Fatal(err)
		}
	}
	crts, _ := filepath.Glob(filepath.Join(own, "*.crt"))
	if len(crts) != 2 {
		t.Fatalf("%d certificates in the own directory, want 2:\n%s", len(crts), out.String())
	}
	msg := []byte("From: a@example.net\r\nTo: b@example.org\r\nSubject: rotation\r\n\r\nbody\r\n")
	for _, crt := range crts {
		sealed := cryptTestOpenSSL(t, msg, "cms", "-encrypt", "-binary", "-aes-256-gcm", crt)
		r := cryptTestRun(t, dir, crlf(sealed), "decrypt")
		if r.code != 0 || !bytes.Contains(r.stdout, []byte("Subject: rotation")) {
			t.Errorf("mail encrypted to %s: exit %d, %s", filepath.Base(crt), r.code, r.stderr)
		}
	}
	list, _, err := certTestRun(t, "list", "-config", filepath.Join(dir, "smimegate.toml"))
	if err != nil {
		t.Fatal(err)
	}
	var current, previous int
	for _, l := range strings.Split(list, "\n") {
		switch {
		case strings.Contains(l, "current: give this one to partners"):
			current++
		case strings.Contains(l, "previous: still decrypts"):
			previous++
		}
	}
	if current != 1 || previous != 1 {
		t.Errorf("cert list should mark one own certificate current and the other previous:\n%s", list)
	}
}

// crlf turns LF line ends into CRLF.
func crlf(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

// TestCertListUrgency: the most urgent certificates come first (not
// usable, then the soonest to expire), those within 30 days are marked,
// and why a certificate is unusable is said under the table.
func TestCertListUrgency(t *testing.T) {
	dir := lifecycleTestConfig(t, "")
	partners := filepath.Join(dir, "partners")
	certTestForeignCert(t, filepath.Join(partners, "later.pem"), []string{"smg_encryptor@later.example"}, time.Now().Add(300*24*time.Hour))
	certTestForeignCert(t, filepath.Join(partners, "soon.pem"), []string{"smg_encryptor@soon.example"}, time.Now().Add(10*24*time.Hour+time.Hour))
	certTestForeignCert(t, filepath.Join(partners, "gone.pem"), []string{"smg_encryptor@gone.example"}, time.Now().Add(-time.Hour))
	out, _, err := certTestRun(t, "list", "-config", filepath.Join(dir, "smimegate.toml"))
	if err != nil {
		t.Fatal(err)
	}
	gone, soon, later := strings.Index(out, "gone.example  "), strings.Index(out, "soon.example  "), strings.Index(out, "later.example  ")
	if gone < 0 || soon < 0 || later < 0 || !(gone < soon && soon < later) {
		t.Fatalf("not in order of urgency (expired, 10 days, 300 days):\n%s", out)
	}
	for _, want := range []string{"! expired", "! 10 ", "gone.example (sha256 ", "expired: expired on"} {
		if !strings.Contains(out, want) {
			t.Errorf("cert list lacks %q:\n%s", want, out)
		}
	}
	if line := out[later : later+strings.Index(out[later:], "\n")]; strings.Contains(line, "!") {
		t.Errorf("a certificate with 300 days to go is marked: %s", line)
	}
}

// TestCheckConfigWarnings: settings that validate but are likely mistakes
// are warned about.
func TestCheckConfigWarnings(t *testing.T) {
	// Off loopback the admin listener needs TLS (else the configuration
	// is refused); with it, it is still worth a warning.
	dir := lifecycleTestConfig(t, "[smtp]\ntrusted_networks = [\"0.0.0.0/0\", \"10.0.0.0/8\"]\n[admin]\nlisten = \"0.0.0.0:8025\"\ntls_cert = \"admin.crt\"\ntls_key = \"admin.key\"\n[discovery]\nsmimea = true\n")
	r := cryptTestRun(t, dir, nil, "check-config")
	stderr := string(r.stderr)
	for _, want := range []string{"admin.listen 0.0.0.0:8025 is not a loopback address", "smtp.trusted_networks 0.0.0.0/0 is wider than a /8",
		"with the system resolver", "no own domain certificate with its key"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("check-config does not warn %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "10.0.0.0/8 is wider") {
		t.Errorf("a /8 is not wider than a /8:\n%s", stderr)
	}
	quiet := lifecycleTestConfig(t, "")
	if r := cryptTestRun(t, quiet, nil, "check-config"); strings.Contains(string(r.stderr), "is not a loopback address") || strings.Contains(string(r.stderr), "is wider than") {
		t.Errorf("the defaults are warned about:\n%s", r.stderr)
	}
}
