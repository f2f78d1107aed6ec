package smime

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-message/textproto"

	"smimegate/internal/cms"
)

// The key pairs under testdata/ were made once with openssl (RSA 2048 and
// P-256, self-signed, valid for a century) so that no test pays for RSA key
// generation, which is slow under -race.
//
//	rsa:   smg_encryptor@example.net, the partner we encrypt to and open as
//	ec:    the same domain with a P-256 key (key agreement)
//	other: smg_encryptor@example.com, someone else (not-for-us)
//	dkim:  the RSA key the DKIM test signs with
func loadPair(t testing.TB, name string) cms.KeyPair {
	t.Helper()
	key := loadKey(t, name)
	certPEM, err := os.ReadFile(filepath.Join("testdata", name+".crt"))
	if err != nil {
		t.Fatal(err)
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil {
		t.Fatalf("testdata/%s.crt: no PEM block", name)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cms.KeyPair{Cert: cert, Key: key}
}

func loadKey(t testing.TB, name string) crypto.PrivateKey {
	t.Helper()
	keyPEM, err := os.ReadFile(filepath.Join("testdata", name+".key"))
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		t.Fatalf("testdata/%s.key: no PEM block", name)
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func fixture(name string) string { return filepath.Join("testdata", name) }

// runTool runs a real peer (openssl, gpgsm) with stdin and returns its
// standard output; a failure stops the test with the tool's own message.
func runTool(t testing.TB, env []string, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Fatalf("%s is not installed (CI installs it): %v", name, err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, errb.String())
	}
	return out.Bytes()
}

// sealed seals a copy of msg (so the caller keeps the original) with the
// spare capacity Seal asks for.
func sealed(t testing.TB, msg []byte, opts SealOptions) []byte {
	t.Helper()
	buf := make([]byte, len(msg), len(msg)+SealSpare)
	copy(buf, msg)
	var out bytes.Buffer
	if err := Seal(&out, buf, opts); err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return out.Bytes()
}

// checkShape checks the outer message that Seal wrote against RFC 8551
// section 3.2 and 3.4 and the header protection list.
func checkShape(t testing.TB, out []byte, aead bool) {
	t.Helper()
	hdr, body := splitHeader(out)
	h, err := readHeader(hdr)
	if err != nil {
		t.Fatalf("outer header: %v", err)
	}
	st := "enveloped-data"
	if aead {
		st = "authEnveloped-data"
	}
	mt, params := mediaType(h.Get("Content-Type"))
	if mt != "application/pkcs7-mime" || params["smime-type"] != st || params["name"] != "smime.p7m" {
		t.Errorf("Content-Type %q", h.Get("Content-Type"))
	}
	if _, dp := mediaType(h.Get("Content-Disposition")); dp["filename"] != "smime.p7m" {
		t.Errorf("Content-Disposition %q", h.Get("Content-Disposition"))
	}
	if h.Get("Content-Transfer-Encoding") != "base64" || h.Get("Mime-Version") != "1.0" {
		t.Errorf("CTE %q, MIME-Version %q", h.Get("Content-Transfer-Encoding"), h.Get("Mime-Version"))
	}
	allowed := map[string]bool{"From": true, "To": true, "Cc": true, "Date": true, "Message-Id": true, "Subject": true,
		"Mime-Version": true, "Content-Type": true, "Content-Disposition": true, "Content-Transfer-Encoding": true}
	for fs := h.Fields(); fs.Next(); {
		if !allowed[fs.Key()] {
			t.Errorf("outer header carries %s", fs.Key())
		}
	}
	if !bytes.HasSuffix(body, []byte("\r\n")) {
		t.Error("body does not end in CRLF")
	}
	for i, l := range bytes.Split(bytes.TrimSuffix(body, []byte("\r\n")), []byte("\r\n")) {
		if len(l) > lineChars || bytes.ContainsAny(l, "\r\n") {
			t.Fatalf("body line %d: %d characters or a bare line end", i, len(l))
		}
	}
}

// relayed is what Open must hand on for a decrypted whole message msg, by
// the rules of checkContent written out independently: refused (false) with
// a NUL or a bare CR, else every bare LF made CRLF and a final CRLF added.
func relayed(msg string) (string, bool) {
	if strings.ContainsRune(msg, 0) || strings.Contains(strings.ReplaceAll(msg, "\r\n", ""), "\r") {
		return "", false
	}
	s := strings.ReplaceAll(strings.ReplaceAll(msg, "\r\n", "\n"), "\n", "\r\n")
	if !strings.HasSuffix(s, "\r\n") {
		s += "\r\n"
	}
	return s, true
}

// certsOnly is a certs-only SignedData (RFC 8551 section 3.6.2) that
// openssl makes from a certificate, in base64.
func certsOnly(t testing.TB) string {
	t.Helper()
	der := runTool(t, nil, nil, "openssl", "crl2pkcs7", "-nocrl", "-certfile", fixture("rsa.crt"), "-outform", "DER")
	return base64.StdEncoding.EncodeToString(der)
}

// readHeader parses a header section with go-message's textproto, an
// independent parser that the tests hold the package's own scanner to.
func readHeader(header []byte) (textproto.Header, error) {
	return textproto.ReadHeader(bufio.NewReader(bytes.NewReader(header)))
}

// String names an Outcome in test failures; the gateway and the commands
// switch on outcomes and never print one, so it lives here.
func (o Outcome) String() string {
	switch o {
	case NotEncrypted:
		return "not-encrypted"
	case NotForUs:
		return "not-for-us"
	case Opened:
		return "opened"
	case Failed:
		return "failed"
	case KeyUnavailable:
		return "key-unavailable"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}
