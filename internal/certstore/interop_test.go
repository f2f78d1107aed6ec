package certstore

import (
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// keygenOnce makes the keygen certificates the interop tests share: RSA
// key generation is slow under -race.
var (
	keygenOnce sync.Once
	keygenRSA  *Generated
	keygenEC   *Generated
	keygenErr  error
)

func keygenFixtures(t *testing.T) (rsaGen, ecGen *Generated) {
	t.Helper()
	keygenOnce.Do(func() {
		keygenRSA, keygenErr = Generate(KeygenOptions{Domains: []string{"gw.example.org", "example.com"}})
		if keygenErr != nil {
			return
		}
		keygenEC, keygenErr = Generate(KeygenOptions{Domains: []string{"ec.example.org"}, KeyType: "p256"})
	})
	if keygenErr != nil {
		t.Fatal(keygenErr)
	}
	return keygenRSA, keygenEC
}

// crlf is the message the interop tests encrypt: CRLF line ends, because
// `openssl cms -encrypt` converts LF to CRLF without -binary.
var interopMessage = []byte("From: a@example.com\r\nTo: b@gw.example.org\r\nSubject: interop\r\n\r\nhello from the interop test\r\n")

// TestKeygenOpenSSLEncrypt: `openssl cms -encrypt` accepts the certificate
// that Generate makes, and `openssl cms -decrypt` with the generated key (as
// smimegate writes it) gives the message back.
func TestKeygenOpenSSLEncrypt(t *testing.T) {
	needTool(t, "openssl")
	rsaGen, ecGen := keygenFixtures(t)
	for _, g := range []*Generated{rsaGen, ecGen} {
		t.Run(g.Domain, func(t *testing.T) {
			dir := t.TempDir()
			crt := writeFile(t, dir, "d.crt", g.CertPEM)
			key := writeFile(t, dir, "d.key", g.KeyPEM)
			for _, cipher := range []string{"-aes-256-cbc", "-aes-128-gcm"} {
				sealed := run(t, interopMessage, "openssl", "cms", "-encrypt", "-binary", cipher, "-outform", "DER", crt)
				plain := run(t, sealed, "openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-inkey", key, "-recip", crt)
				if !bytes.Equal(plain, interopMessage) {
					t.Fatalf("%s: openssl round trip gave %q", cipher, plain)
				}
			}
		})
	}
}

// TestKeygenGpgsm: gpgsm imports the generated (RSA) certificate and
// encrypts to it; openssl decrypts the result with the generated key.
// gpgsm 2.2 cannot encrypt to EC keys at all (see Generate).
func TestKeygenGpgsm(t *testing.T) {
	needTool(t, "gpgsm")
	needTool(t, "openssl")
	rsaGen, _ := keygenFixtures(t)
	for _, g := range []*Generated{rsaGen} {
		t.Run(g.Domain, func(t *testing.T) {
			home := shortTempDir(t)
			dir := t.TempDir()
			crt := writeFile(t, dir, "d.crt", g.CertPEM)
			key := writeFile(t, dir, "d.key", g.KeyPEM)
			fp := sha1.Sum(g.Cert.Raw)
			fpHex := strings.ToUpper(hex.EncodeToString(fp[:]))
			// A self-signed certificate is its own root: gpgsm needs it
			// in the trust list, "relax" because it is not a CA.
			writeFile(t, home, "trustlist.txt", []byte(fpHex+" S relax\n"))
			writeFile(t, home, "gpgsm.conf", []byte("disable-crl-checks\ndisable-policy-checks\n"))
			gpgsm := func(stdin []byte, args ...string) []byte {
				t.Helper()
				cmd := exec.Command("gpgsm", append([]string{"--batch", "--no-tty"}, args...)...)
				cmd.Env = append(os.Environ(), "GNUPGHOME="+home)
				cmd.Stdin = bytes.NewReader(stdin)
				var stderr bytes.Buffer
				cmd.Stderr = &stderr
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("gpgsm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
				}
				return out
			}
			t.Cleanup(func() {
				c := exec.Command("gpgconf", "--kill", "all")
				c.Env = append(os.Environ(), "GNUPGHOME="+home)
				c.Run()
			})
			gpgsm(nil, "--import", crt)
			listing := string(gpgsm(nil, "--with-colons", "--list-keys", "0x"+fpHex))
			if !strings.Contains(listing, "smg_encryptor@"+g.Domain) {
				t.Fatalf("gpgsm does not list the domain mailbox:\n%s", listing)
			}
			sealed := gpgsm(interopMessage, "--encrypt", "--recipient", "0x"+fpHex)
			plain := run(t, sealed, "openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-inkey", key, "-recip", crt)
			if !bytes.Equal(plain, interopMessage) {
				t.Fatalf("gpgsm → openssl gave %q", plain)
			}
		})
	}
}

// shortTempDir returns a temporary directory with a short path: gpg-agent's
// socket path must fit in sun_path (108 bytes), which t.TempDir often exceeds.
func shortTempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "smg-gpgsm-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(d, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return filepath.Clean(d)
}
