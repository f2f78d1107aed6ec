package smime

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"smimegate/internal/cms"
)

// Message shapes that must come out of Seal and Open byte for byte.
var shapes = map[string]string{
	"plain text": "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: plain\r\n" +
		"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <plain@example.org>\r\n\r\nHello Bob.\r\n",
	"8-bit utf-8": "From: Jörg <jörg@example.org>\r\nTo: bob@example.net\r\nSubject: Grüße\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
		"Grüße aus Köln, 東京 and \xf0\x9f\x93\xa7.\r\n",
	"smtputf8 addresses": "From: 用户@例子.example\r\nTo: bob@bücher.example\r\nSubject: SMTPUTF8\r\n\r\nbody\r\n",
	"multipart with attachment": "From: alice@example.org\r\nTo: bob@example.net\r\nBcc: hidden@example.net\r\nSubject: report\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\nContent-Type: text/plain\r\n\r\nSee attachment.\r\n" +
		"--b1\r\nContent-Type: application/octet-stream; name=data.bin\r\nContent-Transfer-Encoding: binary\r\n\r\n" +
		"\x00\x01\x02\xff\xfe\r\n\r\n.\r\n\x00\r\n--b1--\r\n",
	// No NUL and no bare CR: what Open relays byte for byte.
	"multipart with 8-bit attachment": "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: report\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n" +
		"--b1\r\nContent-Type: text/plain\r\n\r\nSee attachment.\r\n" +
		"--b1\r\nContent-Type: application/octet-stream; name=data.bin\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
		"\x01\x02\xff\xfe\r\n\r\n.\r\n\x7f\r\n--b1--\r\n",
	"lf line ends":     "From: alice@example.org\nTo: bob@example.net\nSubject: lf\n\nline one\nline two\n",
	"no body":          "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: empty\r\n",
	"no final newline": "From: alice@example.org\r\nTo: bob@example.net\r\n\r\nno newline at the end",
}

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	rsa := loadPair(t, "rsa")
	ec := loadPair(t, "ec")
	keys := []cms.KeyPair{loadPair(t, "other"), rsa, ec}
	for _, c := range []struct {
		cipher cms.ContentCipher
		rcpt   cms.Recipient
	}{
		{cms.AES256GCM, cms.Recipient{Cert: rsa.Cert}},
		{cms.AES128GCM, cms.Recipient{Cert: rsa.Cert, RSAPadding: cms.OAEP, UseSKI: true}},
		{cms.AES256CBC, cms.Recipient{Cert: rsa.Cert}},
		{cms.AES128CBC, cms.Recipient{Cert: ec.Cert}},
	} {
		for name, msg := range shapes {
			t.Run(fmt.Sprintf("%v/%s", c.cipher, name), func(t *testing.T) {
				t.Parallel()
				out := sealed(t, []byte(msg), SealOptions{Recipients: []cms.Recipient{c.rcpt}, Cipher: c.cipher})
				checkShape(t, out, c.cipher.AEAD())
				if bytes.Contains(out, []byte("hidden@")) {
					t.Error("Bcc appears outside")
				}
				r := Open(out, keys, OpenOptions{})
				want, ok := relayed(msg)
				if !ok {
					// The binary attachment's NUL: refused, naming its offset.
					if r.Outcome != Failed || !strings.Contains(r.Err.Error(), "NUL byte at offset") || r.Info == nil {
						t.Fatalf("Open: %v, %v; want a NUL refused", r.Outcome, r.Err)
					}
					return
				}
				if r.Outcome != Opened || r.Err != nil {
					t.Fatalf("Open: %v, %v", r.Outcome, r.Err)
				}
				if string(r.Message) != want {
					t.Errorf("opened message differs:\n%q\nwant\n%q", r.Message, want)
				}
				if r.Info == nil || r.Info.AEAD != c.cipher.AEAD() || r.Info.Cipher != c.cipher.String() {
					t.Errorf("Info %+v for %v", r.Info, c.cipher)
				}
			})
		}
	}
}

// TestSealAlreadyEncrypted seals an end-to-end S/MIME message to the
// partner gateway: the partner opens it back to the user's encrypted
// message, which it then relays as not-for-us.
func TestSealAlreadyEncrypted(t *testing.T) {
	t.Parallel()
	user := loadPair(t, "other")
	gw := loadPair(t, "rsa")
	inner := sealed(t, []byte(shapes["plain text"]), SealOptions{Recipients: []cms.Recipient{{Cert: user.Cert}}, Cipher: cms.AES256GCM})
	outer := sealed(t, inner, SealOptions{Recipients: []cms.Recipient{{Cert: gw.Cert}}, Cipher: cms.AES256GCM})
	r := Open(outer, []cms.KeyPair{gw}, OpenOptions{})
	if r.Outcome != Opened || !bytes.Equal(r.Message, inner) {
		t.Fatalf("gateway: %v, %v; equal %v", r.Outcome, r.Err, bytes.Equal(r.Message, inner))
	}
	if r2 := Open(r.Message, []cms.KeyPair{gw}, OpenOptions{}); r2.Outcome != NotForUs {
		t.Errorf("the user's message at the gateway: %v, %v", r2.Outcome, r2.Err)
	}
	if r3 := Open(r.Message, []cms.KeyPair{user}, OpenOptions{}); r3.Outcome != Opened || string(r3.Message) != shapes["plain text"] {
		t.Errorf("the user: %v, %v", r3.Outcome, r3.Err)
	}
}

func TestSealProtectSubject(t *testing.T) {
	t.Parallel()
	rsa := loadPair(t, "rsa")
	msg := shapes["plain text"]
	out := sealed(t, []byte(msg), SealOptions{Recipients: []cms.Recipient{{Cert: rsa.Cert}}, Cipher: cms.AES256GCM, ProtectSubject: true})
	hdr, _ := splitHeader(out)
	if !bytes.Contains(hdr, []byte("\r\nSubject: [...]\r\n")) || bytes.Contains(out, []byte("Subject: plain")) {
		t.Errorf("outer header:\n%s", hdr)
	}
	if r := Open(out, []cms.KeyPair{rsa}, OpenOptions{}); string(r.Message) != msg {
		t.Errorf("Open: %v, %v", r.Outcome, r.Err)
	}
}

func TestSealErrors(t *testing.T) {
	t.Parallel()
	rsa := loadPair(t, "rsa")
	var out bytes.Buffer
	if err := Seal(&out, []byte(shapes["plain text"]), SealOptions{Cipher: cms.AES256GCM}); err == nil || !strings.Contains(err.Error(), "no recipient") {
		t.Errorf("no recipients: %v", err)
	}
	if out.Len() != 0 {
		t.Errorf("a failed Seal wrote %d bytes", out.Len())
	}
	// A write error is reported, not swallowed.
	err := Seal(failingWriter{}, []byte(shapes["plain text"]), SealOptions{Recipients: []cms.Recipient{{Cert: rsa.Cert}}})
	if !errors.Is(err, errDiskFull) {
		t.Errorf("write error: %v", err)
	}
}

// TestSealJunkHeaderLines: lines that are not header fields neither stop
// the encryption nor appear outside; they travel inside with the rest.
func TestSealJunkHeaderLines(t *testing.T) {
	t.Parallel()
	rsa := loadPair(t, "rsa")
	msg := "From alice@example.org Sat Nov 28 10:00:00 2026\r\n From: folded junk\r\nFrom: alice@example.org\r\n" +
		"secret line without colon\r\nTo: bob@example.net\r\n\r\nbody\r\n"
	out := sealed(t, []byte(msg), SealOptions{Recipients: []cms.Recipient{{Cert: rsa.Cert}}, Cipher: cms.AES256GCM})
	checkShape(t, out, true)
	hdr, _ := splitHeader(out)
	if !bytes.HasPrefix(hdr, []byte("From: alice@example.org\r\nTo: bob@example.net\r\nMIME-Version")) || bytes.Contains(out, []byte("secret")) {
		t.Errorf("outer header:\n%s", hdr)
	}
	if r := Open(out, []cms.KeyPair{rsa}, OpenOptions{}); r.Outcome != Opened || string(r.Message) != msg {
		t.Errorf("Open: %v, %v", r.Outcome, r.Err)
	}
}

var errDiskFull = errors.New("disk full")

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errDiskFull }

// TestSealOpenLarge is the 20 MB round trip: the message is sealed in
// place and opened again, and the result is compared byte for byte.
func TestSealOpenLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("20 MB round trip")
	}
	t.Parallel()
	rsa := loadPair(t, "rsa")
	msg := largeMessage(t, 20<<20)
	orig := bytes.Clone(msg)
	var out bytes.Buffer
	if err := Seal(&out, msg, SealOptions{Recipients: []cms.Recipient{{Cert: rsa.Cert}}, Cipher: cms.AES256GCM}); err != nil {
		t.Fatal(err)
	}
	checkShape(t, out.Bytes(), true)
	r := Open(out.Bytes(), []cms.KeyPair{rsa}, OpenOptions{})
	if r.Outcome != Opened || !bytes.Equal(r.Message, orig) {
		t.Fatalf("20 MB: %v, %v, equal %v", r.Outcome, r.Err, bytes.Equal(r.Message, orig))
	}
	r = Open(out.Bytes(), []cms.KeyPair{rsa}, OpenOptions{MaxSize: 20 << 20})
	if r.Outcome != Failed || !errors.Is(r.Err, ErrTooLarge) {
		t.Errorf("over the limit: %v, %v", r.Outcome, r.Err)
	}
}

// largeMessage returns a multipart message of about size bytes with a
// base64 attachment of random bytes, with SealSpare bytes of spare capacity.
func largeMessage(t testing.TB, size int) []byte {
	t.Helper()
	var b bytes.Buffer
	b.Grow(size + 4096)
	b.WriteString("From: alice@example.org\r\nTo: bob@example.net\r\nSubject: large\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/octet-stream\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n")
	enc := newLineEncoder(&b)
	if _, err := io.CopyN(enc, rand.Reader, int64(size/4*3)); err != nil {
		t.Fatal(err)
	}
	if err := enc.Close(); err != nil {
		t.Fatal(err)
	}
	b.WriteString("--b--\r\n")
	msg := make([]byte, b.Len(), b.Len()+SealSpare)
	copy(msg, b.Bytes())
	return msg
}
