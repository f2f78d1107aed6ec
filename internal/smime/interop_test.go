package smime

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"smimegate/internal/cms"
)

// TestOpenSSLDecryptsSeal: what Seal writes is a standard S/MIME message,
// and `openssl cms -decrypt` with the partner's key gives back the original
// bytes, as the README promises operators.
func TestOpenSSLDecryptsSeal(t *testing.T) {
	t.Parallel()
	rsa := loadPair(t, "rsa")
	ec := loadPair(t, "ec")
	for _, c := range []struct {
		name   string
		cipher cms.ContentCipher
		rcpt   cms.Recipient
		key    string
	}{
		{"gcm rsa", cms.AES256GCM, cms.Recipient{Cert: rsa.Cert}, "rsa"},
		{"gcm128 rsa oaep ski", cms.AES128GCM, cms.Recipient{Cert: rsa.Cert, RSAPadding: cms.OAEP, UseSKI: true}, "rsa"},
		{"cbc rsa", cms.AES256CBC, cms.Recipient{Cert: rsa.Cert}, "rsa"},
		{"cbc192 ec", cms.AES192CBC, cms.Recipient{Cert: ec.Cert}, "ec"},
		{"gcm ec", cms.AES256GCM, cms.Recipient{Cert: ec.Cert}, "ec"},
	} {
		for _, shape := range []string{"8-bit utf-8", "multipart with attachment", "lf line ends"} {
			t.Run(c.name+"/"+shape, func(t *testing.T) {
				t.Parallel()
				msg := shapes[shape]
				out := sealed(t, []byte(msg), SealOptions{Recipients: []cms.Recipient{c.rcpt}, Cipher: c.cipher})
				f := filepath.Join(t.TempDir(), "sealed.eml")
				if err := os.WriteFile(f, out, 0o600); err != nil {
					t.Fatal(err)
				}
				got := runTool(t, nil, nil, "openssl", "cms", "-decrypt", "-binary", "-in", f,
					"-recip", fixture(c.key+".crt"), "-inkey", fixture(c.key+".key"))
				if !bytes.Equal(got, []byte(msg)) {
					t.Errorf("openssl gave\n%q\nwant\n%q", got, msg)
				}
			})
		}
	}
}

// TestOpenOpenSSLEncrypted opens what `openssl cms -encrypt` and
// `openssl smime -encrypt` write, in their own MIME shapes (LF line ends,
// x-pkcs7-mime from smime).
func TestOpenOpenSSLEncrypted(t *testing.T) {
	t.Parallel()
	keys := []cms.KeyPair{loadPair(t, "other"), loadPair(t, "rsa"), loadPair(t, "ec")}
	msg := shapes["multipart with 8-bit attachment"]
	for _, c := range []struct {
		name      string
		args      []string
		allow3DES bool
		want      Outcome
		cipher    string
	}{
		{"cms gcm", []string{"cms", "-encrypt", "-binary", "-aes-256-gcm", fixture("rsa.crt")}, false, Opened, "aes256-gcm"},
		{"cms gcm128 ec", []string{"cms", "-encrypt", "-binary", "-aes-128-gcm", fixture("ec.crt")}, false, Opened, "aes128-gcm"},
		{"cms cbc oaep", []string{"cms", "-encrypt", "-binary", "-aes-128-cbc", "-recip", fixture("rsa.crt"), "-keyopt", "rsa_padding_mode:oaep"}, false, Opened, "aes128-cbc"},
		{"cms cbc ski", []string{"cms", "-encrypt", "-binary", "-aes-192-cbc", "-keyid", fixture("rsa.crt")}, false, Opened, "aes192-cbc"},
		{"cms cbc ec", []string{"cms", "-encrypt", "-binary", "-aes-256-cbc", fixture("ec.crt")}, false, Opened, "aes256-cbc"},
		{"cms stream ber", []string{"cms", "-encrypt", "-binary", "-stream", "-aes-256-cbc", fixture("rsa.crt")}, false, Opened, "aes256-cbc"},
		{"smime", []string{"smime", "-encrypt", "-binary", "-aes256", fixture("rsa.crt")}, false, Opened, "aes256-cbc"},
		{"smime two recipients", []string{"smime", "-encrypt", "-binary", "-aes128", fixture("other.crt"), fixture("rsa.crt")}, false, Opened, "aes128-cbc"},
		{"3des refused", []string{"cms", "-encrypt", "-binary", "-des3", fixture("rsa.crt")}, false, Failed, ""},
		{"3des allowed", []string{"cms", "-encrypt", "-binary", "-des3", fixture("rsa.crt")}, true, Opened, "des-ede3-cbc"},
		{"not for us", []string{"cms", "-encrypt", "-binary", "-aes-256-gcm", "-recip", fixture("other.crt")}, false, NotForUs, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			keys := keys
			if c.want == NotForUs {
				keys = keys[1:]
			}
			out := runTool(t, nil, []byte(msg), "openssl", c.args...)
			r := Open(out, keys, OpenOptions{Allow3DES: c.allow3DES})
			if r.Outcome != c.want {
				t.Fatalf("%v, %v; want %v", r.Outcome, r.Err, c.want)
			}
			if c.want == Failed {
				var ua *cms.UnsupportedAlgorithmError
				if !errors.As(r.Err, &ua) {
					t.Errorf("3DES refused with %v, want an UnsupportedAlgorithmError", r.Err)
				}
			}
			if c.want != Opened {
				return
			}
			if string(r.Message) != msg {
				t.Errorf("opened\n%q\nwant\n%q", r.Message, msg)
			}
			if r.Info.Cipher != c.cipher {
				t.Errorf("cipher %q, want %q", r.Info.Cipher, c.cipher)
			}
		})
	}
}

// TestOpenEntityFromOpenSSL: a peer that encrypts only the body entity and
// puts the originator fields outside; the outer fields less Content-* are
// joined to the entity.
func TestOpenEntityFromOpenSSL(t *testing.T) {
	t.Parallel()
	entity := "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGrüße, nur der Text.\r\n"
	out := runTool(t, nil, []byte(entity), "openssl", "cms", "-encrypt", "-binary", "-aes-256-gcm",
		"-from", "alice@example.net", "-to", "bob@example.org", "-subject", "nur der Text", fixture("rsa.crt"))
	r := Open(out, []cms.KeyPair{loadPair(t, "rsa")}, OpenOptions{})
	if r.Outcome != Opened {
		t.Fatalf("%v, %v", r.Outcome, r.Err)
	}
	want := "To: bob@example.org\r\nFrom: alice@example.net\r\nSubject: nur der Text\r\nMIME-Version: 1.0\r\n" + entity
	if string(r.Message) != want {
		t.Errorf("got\n%q\nwant\n%q", r.Message, want)
	}
}

// TestOpenGPGSM opens what GnuPG's gpgsm encrypts (RSA PKCS #1 v1.5 and
// AES-128-CBC by default, docs/threats.md section 6), wrapped both
// as binary x-pkcs7-mime and as base64 in LF lines.
func TestOpenGPGSM(t *testing.T) {
	t.Parallel()
	// A short home directory: gpg-agent's socket path has a length limit.
	home, err := os.MkdirTemp("", "gpgsm")
	if err != nil {
		t.Fatal(err)
	}
	env := []string{"GNUPGHOME=" + home}
	t.Cleanup(func() {
		// Stop whatever gpgsm started for this home directory, and only that.
		exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run()
		os.RemoveAll(home)
	})
	fpr := runTool(t, nil, nil, "openssl", "x509", "-in", fixture("rsa.crt"), "-noout", "-fingerprint", "-sha1")
	_, hex, _ := strings.Cut(strings.TrimSpace(string(fpr)), "=")
	if err := os.WriteFile(filepath.Join(home, "trustlist.txt"), []byte(hex+" S relax\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	runTool(t, env, nil, "gpgsm", "--batch", "--disable-crl-checks", "--import", fixture("rsa.crt"))
	msg := shapes["8-bit utf-8"]
	der := runTool(t, env, []byte(msg), "gpgsm", "--batch", "--disable-crl-checks", "--encrypt", "-r", "0x"+strings.ReplaceAll(hex, ":", ""))
	b64 := runTool(t, env, []byte(msg), "gpgsm", "--batch", "--disable-crl-checks", "--base64", "--encrypt", "-r", "0x"+strings.ReplaceAll(hex, ":", ""))
	keys := []cms.KeyPair{loadPair(t, "rsa")}
	for name, m := range map[string]string{
		"binary":    "From: alice@example.org\r\nContent-Type: application/x-pkcs7-mime; name=smime.p7m\r\nContent-Transfer-Encoding: binary\r\n\r\n" + string(der),
		"base64 lf": "From: alice@example.org\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\nContent-Transfer-Encoding: base64\n\n" + string(b64),
	} {
		r := Open([]byte(m), keys, OpenOptions{})
		if r.Outcome != Opened || string(r.Message) != msg {
			t.Errorf("%s: %v, %v", name, r.Outcome, r.Err)
			continue
		}
		if r.Info.Cipher != "aes128-cbc" || r.Info.KeyTransport != "rsa-pkcs1v15" {
			t.Errorf("%s: gpgsm used %s with %s", name, r.Info.Cipher, r.Info.KeyTransport)
		}
	}
}

// TestSealSignedMessage: an S/MIME-signed message (multipart/signed, made by
// openssl) is sealed and opened, and its signature still verifies with
// `openssl smime -verify`: the gateway encapsulates it whole.
func TestSealSignedMessage(t *testing.T) {
	t.Parallel()
	rsa := loadPair(t, "rsa")
	entity := "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nUnterschrieben,  mit   Leerzeichen.\r\n"
	signed := runTool(t, nil, []byte(entity), "openssl", "smime", "-sign", "-signer", fixture("rsa.crt"), "-inkey", fixture("rsa.key"),
		"-from", "alice@example.org", "-to", "bob@example.net", "-subject", "signed")
	verify := func(name string, m []byte) {
		t.Helper()
		f := filepath.Join(t.TempDir(), "m.eml")
		if err := os.WriteFile(f, m, 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("openssl", "smime", "-verify", "-noverify", "-in", f)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: openssl smime -verify: %v\n%s", name, err, out)
		}
	}
	verify("before", signed)
	// The check is real: a changed body fails it.
	broken := bytes.Replace(signed, []byte("Unterschrieben"), []byte("Unterschrieben!"), 1)
	f := filepath.Join(t.TempDir(), "broken.eml")
	if err := os.WriteFile(f, broken, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("openssl", "smime", "-verify", "-noverify", "-in", f).Run(); err == nil {
		t.Fatal("a changed signed message still verifies")
	}
	out := sealed(t, signed, SealOptions{Recipients: []cms.Recipient{{Cert: rsa.Cert}}, Cipher: cms.AES256GCM})
	r := Open(out, []cms.KeyPair{rsa}, OpenOptions{})
	// openssl writes the outer MIME structure with LF line ends; Open
	// makes them CRLF, which S/MIME signatures are computed over anyway
	// (RFC 8551 section 3.1.1).
	want, _ := relayed(string(signed))
	if r.Outcome != Opened || string(r.Message) != want {
		t.Fatalf("%v, %v", r.Outcome, r.Err)
	}
	verify("after", r.Message)
}
