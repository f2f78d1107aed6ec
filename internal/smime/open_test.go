package smime

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"smimegate/internal/cms"
)

func TestOpenOutcomes(t *testing.T) {
	t.Parallel()
	rsa := loadPair(t, "rsa")
	other := loadPair(t, "other")
	msg := shapes["plain text"]
	toUs := sealed(t, []byte(msg), SealOptions{Recipients: []cms.Recipient{{Cert: rsa.Cert}}, Cipher: cms.AES256GCM})
	toOther := sealed(t, []byte(msg), SealOptions{Recipients: []cms.Recipient{{Cert: other.Cert}}, Cipher: cms.AES256GCM})
	cbc := sealed(t, []byte(msg), SealOptions{Recipients: []cms.Recipient{{Cert: rsa.Cert}}, Cipher: cms.AES128CBC})
	keys := []cms.KeyPair{rsa}

	t.Run("not encrypted", func(t *testing.T) {
		for _, m := range []string{msg, shapes["multipart with attachment"], "", "no header at all",
			// A certs-only message (RFC 8551 section 3.6): a SignedData
			// with no encapsulated content, which is looked into and
			// found empty.
			"Content-Type: application/pkcs7-mime; smime-type=certs-only\r\n\r\n" + certsOnly(t) + "\r\n"} {
			if r := Open([]byte(m), keys, OpenOptions{}); r.Outcome != NotEncrypted || r.Err != nil || r.Message != nil {
				t.Errorf("%.40q: %v, %v", m, r.Outcome, r.Err)
			}
		}
	})
	t.Run("opened", func(t *testing.T) {
		if r := Open(toUs, keys, OpenOptions{}); r.Outcome != Opened || string(r.Message) != msg {
			t.Errorf("%v, %v", r.Outcome, r.Err)
		}
	})
	t.Run("not for us", func(t *testing.T) {
		orig := bytes.Clone(toOther)
		r := Open(toOther, keys, OpenOptions{})
		if r.Outcome != NotForUs || !errors.Is(r.Err, cms.ErrNotForUs) || r.Message != nil {
			t.Errorf("%v, %v", r.Outcome, r.Err)
		}
		if !bytes.Equal(toOther, orig) {
			t.Error("Open modified a message it did not open")
		}
		// Without any key of ours, everything encrypted is not for us.
		if r := Open(toUs, nil, OpenOptions{}); r.Outcome != NotForUs {
			t.Errorf("no keys: %v, %v", r.Outcome, r.Err)
		}
	})
	t.Run("failed", func(t *testing.T) {
		tampered := tamper(t, toUs)
		orig := bytes.Clone(tampered)
		r := Open(tampered, keys, OpenOptions{})
		if r.Outcome != Failed || !errors.Is(r.Err, cms.ErrDecrypt) || r.Message != nil {
			t.Errorf("tampered: %v, %v", r.Outcome, r.Err)
		}
		if !bytes.Equal(tampered, orig) {
			t.Error("Open modified a message it could not open")
		}
		garbage := "Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAAAAAA\r\n"
		if r := Open([]byte(garbage), keys, OpenOptions{}); r.Outcome != Failed || !errors.Is(r.Err, cms.ErrMalformed) {
			t.Errorf("garbage: %v, %v", r.Outcome, r.Err)
		}
		badB64 := "Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\nMIA*\r\n"
		if r := Open([]byte(badB64), keys, OpenOptions{}); r.Outcome != Failed || !strings.Contains(r.Err.Error(), "base64 body: illegal data at character 3") {
			t.Errorf("bad base64: %v, %v", r.Outcome, r.Err)
		}
		if r := Open(toUs, keys, OpenOptions{MaxSize: int64(len(toUs) / 2)}); r.Outcome != Failed || !errors.Is(r.Err, ErrTooLarge) {
			t.Errorf("too large: %v, %v", r.Outcome, r.Err)
		}
		// A signed message whose SignedData is cut short cannot be
		// looked into: it could hide anything.
		truncated := "Content-Type: application/pkcs7-mime; smime-type=signed-data\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n"
		if r := Open([]byte(truncated), keys, OpenOptions{}); r.Outcome != Failed || !strings.Contains(r.Err.Error(), "malformed BER") {
			t.Errorf("truncated signed-data: %v, %v", r.Outcome, r.Err)
		}
		// require_aead is the gateway's (it depends on who the message
		// is from, which only the opened message says): Open reports
		// the cipher and opens CBC.
		if r := Open(cbc, keys, OpenOptions{}); r.Outcome != Opened || r.Info.AEAD {
			t.Errorf("CBC: %v, %v", r.Outcome, r.Err)
		}
	})
	t.Run("octet-stream that is no CMS is an ordinary attachment", func(t *testing.T) {
		m := "Content-Type: application/octet-stream; name=notes.p7m\r\n\r\njust text\r\n"
		if r := Open([]byte(m), keys, OpenOptions{}); r.Outcome != NotEncrypted {
			t.Errorf("%v, %v", r.Outcome, r.Err)
		}
	})
}

// tamper flips one byte of the GCM tag (the last bytes of the DER) of a
// sealed message and encodes it again.
func tamper(t *testing.T, sealedMsg []byte) []byte {
	t.Helper()
	hdr, body := splitHeader(sealedMsg)
	der, err := decodeBase64(body)
	if err != nil {
		t.Fatal(err)
	}
	der[len(der)-3] ^= 0x40
	var b bytes.Buffer
	b.Write(hdr)
	enc := newLineEncoder(&b)
	enc.Write(der)
	enc.Close()
	return b.Bytes()
}

// mangle rewrites the outer message of a sealed one the ways clients and
// MTAs do; every form must still open.
func TestOpenMangled(t *testing.T) {
	t.Parallel()
	rsa := loadPair(t, "rsa")
	msg := shapes["8-bit utf-8"]
	out := sealed(t, []byte(msg), SealOptions{Recipients: []cms.Recipient{{Cert: rsa.Cert}}, Cipher: cms.AES256GCM})
	hdr, body := splitHeader(out)
	der, err := decodeBase64(body)
	if err != nil {
		t.Fatal(err)
	}
	lf := func(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") }
	b64 := string(body)
	b64Long := base64.StdEncoding.EncodeToString(der) + "\n"
	from := "From: alice@example.org\r\nTo: bob@example.net\r\n"
	for name, m := range map[string]string{
		"as sealed":        string(out),
		"upper case":       strings.ToUpper(from) + "CONTENT-TYPE: APPLICATION/PKCS7-MIME; SMIME-TYPE=AUTHENVELOPED-DATA; NAME=SMIME.P7M\r\nCONTENT-TRANSFER-ENCODING: BASE64\r\n\r\n" + b64,
		"x-pkcs7-mime":     from + "Content-Type: application/x-pkcs7-mime; smime-type=authEnveloped-data; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64,
		"no smime-type":    from + "Content-Type: application/pkcs7-mime; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64,
		"octet-stream":     from + "Content-Type: application/octet-stream; name=\"smime.p7m\"\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64,
		"octet-stream cd":  from + "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64,
		"lf line ends":     lf(string(out)),
		"one long line":    from + "Content-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64Long,
		"binary":           from + "Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data\r\nContent-Transfer-Encoding: binary\r\n\r\n" + string(der),
		"binary, crlf end": from + "Content-Type: application/x-pkcs7-mime\r\n\r\n" + string(der) + "\r\n",
		"no cte, base64":   from + "Content-Type: application/pkcs7-mime\r\n\r\n" + b64,
		"lf, octet-stream": lf(from + "Content-Type: application/octet-stream; name=SMIME.P7M\r\nContent-Transfer-Encoding: Base64\r\n\r\n" + b64),
		"header mangled":   string(hdr[:len(hdr)-2]) + "X-Junk: \xff\xfe\r\n\r\n" + b64,
		"mbox From line":   "From alice@example.org Sat Nov 28 10:00:00 2026\n" + lf(string(out)),
		"junk line":        "no colon here\r\n" + string(out),
	} {
		r := Open([]byte(m), []cms.KeyPair{rsa}, OpenOptions{})
		if r.Outcome != Opened || string(r.Message) != msg {
			t.Errorf("%s: %v, %v", name, r.Outcome, r.Err)
		}
	}
}
