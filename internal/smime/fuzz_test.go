package smime

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"smimegate/internal/cms"
)

// FuzzOpen feeds arbitrary messages to the detection, decoding and
// unwrapping of Open, with a real key so that well-formed seeds reach the
// decryption and the unwrapping. Open must never panic, never modify its
// input, and keep its outcomes consistent.
//
// Most seeds are sealed to the P-256 key: ECDH costs a fraction of an RSA
// decryption, so the fuzzer gets many more runs through the MIME code.
func FuzzOpen(f *testing.F) {
	rsa := loadPair(f, "rsa")
	ec := loadPair(f, "ec")
	keys := []cms.KeyPair{rsa, ec}
	entity := "Content-Type: text/plain\r\n\r\nbody only\r\n"
	for _, shape := range []string{"plain text", "lf line ends", "no body"} {
		out := sealed(f, []byte(shapes[shape]), SealOptions{Recipients: []cms.Recipient{{Cert: ec.Cert}}, Cipher: cms.AES128GCM})
		f.Add(out)
		f.Add(bytes.ReplaceAll(out, []byte("\r\n"), []byte("\n")))
	}
	for _, pt := range []string{entity, "Content-Type: message/rfc822\r\n\r\n" + shapes["plain text"], "bare"} {
		f.Add(sealed(f, []byte("From: a@example.org\r\n\r\n"), SealOptions{Recipients: []cms.Recipient{{Cert: rsa.Cert}}, Cipher: cms.AES128CBC}))
		buf := []byte(pt)
		var der bytes.Buffer
		if err := cms.Encrypt(&der, buf, []cms.Recipient{{Cert: ec.Cert}}, cms.EncryptOptions{Cipher: cms.AES128CBC}); err != nil {
			f.Fatal(err)
		}
		f.Add([]byte("Content-Type: application/octet-stream; name=a.p7m\r\n\r\n" + der.String()))
		f.Add([]byte("To: x@example.org\nContent-Type: application/x-pkcs7-mime\nContent-Transfer-Encoding: base64\n\n" +
			base64.StdEncoding.EncodeToString(der.Bytes())))
	}
	f.Add([]byte(shapes["multipart with attachment"]))
	f.Add([]byte("Content-Type: application/pkcs7-mime; smime-type=signed-data\r\n\r\nMIAGCSqGSIb3DQEHAqCA\r\n"))
	f.Add([]byte("Content-Type: APPLICATION/PKCS7-MIME\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n0=80=06\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		orig := bytes.Clone(msg)
		r := Open(msg, keys, OpenOptions{MaxSize: 1 << 20})
		if !bytes.Equal(msg, orig) {
			t.Fatal("Open modified its input")
		}
		switch r.Outcome {
		case NotEncrypted:
			if r.Err != nil || r.Message != nil {
				t.Fatalf("not encrypted with %v", r.Err)
			}
		case NotForUs, Failed:
			if r.Err == nil || r.Message != nil {
				t.Fatalf("%v without a reason", r.Outcome)
			}
		case Opened:
			if r.Err != nil || r.Info == nil {
				t.Fatalf("opened with %v", r.Err)
			}
		default:
			t.Fatalf("outcome %v", r.Outcome)
		}
	})
}

// FuzzUnwrap checks the whole-message-or-entity rule on arbitrary
// plaintexts: never a panic, and an entity keeps all its bytes at the end.
func FuzzUnwrap(f *testing.F) {
	hdr, _ := splitHeader([]byte("Received: x\r\nFrom: a@example.net\r\nTo: b@example.org\r\nContent-Type: application/pkcs7-mime\r\n\r\n"))
	outer, err := readHeader(hdr)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(shapes["plain text"]))
	f.Add([]byte("Content-Type: message/rfc822\r\n\r\n" + shapes["plain text"]))
	f.Add([]byte("Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nRnJvbTog\r\n"))
	f.Add([]byte("Content-Type: text/plain\n\nx\n"))
	f.Add([]byte(" folded\r\n"))
	f.Fuzz(func(t *testing.T, pt []byte) {
		out, err := unwrap(pt, outer)
		if err != nil {
			return
		}
		if strings.Contains(string(out), "Content-Type: application/pkcs7-mime") {
			t.Fatal("an outer Content-* field was joined")
		}
	})
}

// FuzzDecodeBase64 compares the lenient decoder with encoding/base64 on
// the text with its line breaks removed.
func FuzzDecodeBase64(f *testing.F) {
	f.Add([]byte("SGVsbG8=\r\n"))
	f.Add([]byte("SGVs\nbG8"))
	f.Add([]byte("  \t\r\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		got, err := decodeBase64(text)
		clean := strings.NewReplacer("\r", "", "\n", "", " ", "", "\t", "").Replace(string(text))
		want, werr := base64.StdEncoding.DecodeString(clean)
		if werr == nil && len(want) > 0 && (err != nil || !bytes.Equal(got, want)) {
			t.Fatalf("decodeBase64(%q) = %q, %v; encoding/base64 says %q", text, got, err, want)
		}
		if err == nil && len(got) > len(text) {
			t.Fatalf("decoded %d bytes from %d", len(got), len(text))
		}
	})
}
