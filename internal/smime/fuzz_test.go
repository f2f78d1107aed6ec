package smime

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"errors"
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
		case KeyUnavailable:
			if r.Err == nil || r.Message != nil {
				t.Fatal("key unavailable without a reason")
			}
		case Opened:
			if r.Err != nil || r.Info == nil {
				t.Fatalf("opened with %v", r.Err)
			}
			checkRelayable(t, r.Message)
			if r.Trace != nil {
				checkRelayable(t, r.Trace)
			}
		default:
			t.Fatalf("outcome %v", r.Outcome)
		}
	})
}

// FuzzUnwrap checks the whole-message-or-entity rule on arbitrary
// plaintexts: never a panic, and an entity keeps all its bytes at the end.
func FuzzUnwrap(f *testing.F) {
	outer, _ := splitHeader([]byte("Received: x\r\nFrom: a@example.net\r\nTo: b@example.org\r\nContent-Type: application/pkcs7-mime\r\n\r\n"))
	f.Add([]byte(shapes["plain text"]))
	f.Add([]byte("Content-Type: message/rfc822\r\n\r\n" + shapes["plain text"]))
	f.Add([]byte("Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nRnJvbTog\r\n"))
	f.Add([]byte("Content-Type: text/plain\n\nx\n"))
	f.Add([]byte(" folded\r\n"))
	f.Fuzz(func(t *testing.T, pt []byte) {
		out, err := unwrap(pt, outer, 4096)
		if err != nil {
			return
		}
		if strings.Contains(string(out), "Content-Type: application/pkcs7-mime") {
			t.Fatal("an outer Content-* field was joined")
		}
		if strings.HasPrefix(string(out), "Received: x") && !strings.HasPrefix(string(pt), "Received: x") {
			t.Fatal("an outer trace field was joined")
		}
		if !bytes.Contains(bytes.ToLower(pt), []byte("message/rfc822")) && !bytes.HasSuffix(out, pt) {
			t.Fatal("the result is neither the plaintext, a part of it, nor the plaintext under outer fields")
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

// checkRelayable fails unless b keeps the rules of checkContent: no NUL, no
// bare CR or LF, a final CRLF.
func checkRelayable(t *testing.T, b []byte) {
	t.Helper()
	if _, ok := relayed(string(b)); !ok || !bytes.HasSuffix(b, []byte("\r\n")) ||
		strings.Count(string(b), "\n") != strings.Count(string(b), "\r\n") {
		t.Fatalf("relayed content breaks the DATA rules: %q", b)
	}
}

// FuzzInspect holds Inspect and Open to their contract (see Inspect) on
// arbitrary messages: what Inspect, without a private key, calls not
// encrypted or not for us, Open neither opens nor fails, and the other way
// round. One certificate has its key and one has not, so that
// KeyUnavailable is reached too; the seeds are the shapes of the walk
// tests, sealed to the P-256 key so that the fuzzer runs fast.
func FuzzInspect(f *testing.F) {
	ec := loadPair(f, "ec")
	rsa := loadPair(f, "rsa")
	keys := []cms.KeyPair{ec, {Cert: rsa.Cert}}
	certs := []*x509.Certificate{ec.Cert, rsa.Cert}
	inner := shapes["plain text"]
	toUs := encryptedEntity(f, inner, ec.Cert)
	b64 := base64Lines(envelopedDER(f, inner, ec.Cert))
	for _, m := range []string{
		inner,
		shapes["multipart with attachment"],
		outerFrom + "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64,
		outerFrom + toUs,
		mixed("Content-Type: text/plain\r\n\r\nhi", toUs),
		mixed("Content-Type: text/plain\r\n\r\nhi", "Content-Type: message/rfc822\r\n\r\n"+outerFrom+toUs),
		outerFrom + "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=s\r\n\r\n--s\r\n" + toUs + "\r\n--s\r\n" +
			"Content-Type: application/pkcs7-signature\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQEx\r\n--s--\r\n",
		outerFrom + "Content-Type: application/pkcs7-mime; smime-type=compressed-data\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
			base64Lines(compressedDER(f, []byte(toUs))),
		outerFrom + encryptedEntity(f, inner, rsa.Cert),
		"Received: from a\r\n" + outerFrom + "Content-Type: application/pkcs7-mime\r\n\r\n" + string(envelopedDER(f, "Content-Type: text/plain\n\nx\n", ec.Cert)),
		outerFrom + "Content-Type: application/pkcs7-mime\r\n\r\nnot base64\r\n",
	} {
		f.Add([]byte(m))
	}
	opts := OpenOptions{MaxSize: 1 << 20, MaxHeaderBytes: 4096}
	f.Fuzz(func(t *testing.T, msg []byte) {
		orig := bytes.Clone(msg)
		ins := Inspect(msg, certs, opts)
		if !bytes.Equal(msg, orig) {
			t.Fatal("Inspect modified its input")
		}
		r := Open(msg, keys, opts)
		if err := agree(ins, r); err != nil {
			t.Fatal(err)
		}
		if ins.ForUs && !ins.Encrypted || ins.Encrypted && ins.Err == nil && ins.Where == "" {
			t.Fatalf("inconsistent %+v", ins)
		}
	})
}

// FuzzReadEncapsulated feeds arbitrary BER to the SignedData and
// CompressedData reader: never a panic, and the content it returns is no
// longer than its input (the pieces of a constructed OCTET STRING are
// joined, never multiplied).
func FuzzReadEncapsulated(f *testing.F) {
	entity := []byte("Content-Type: text/plain\r\n\r\nsigned\r\n")
	f.Add(runTool(f, nil, entity, "openssl", "cms", "-sign", "-nodetach", "-binary", "-outform", "DER", "-signer", fixture("rsa.crt"), "-inkey", fixture("rsa.key")))
	f.Add(runTool(f, nil, entity, "openssl", "cms", "-sign", "-nodetach", "-binary", "-stream", "-outform", "DER", "-signer", fixture("rsa.crt"), "-inkey", fixture("rsa.key")))
	f.Add(runTool(f, nil, entity, "openssl", "cms", "-sign", "-binary", "-outform", "DER", "-signer", fixture("rsa.crt"), "-inkey", fixture("rsa.key")))
	f.Add(compressedDER(f, entity))
	f.Add([]byte{0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02, 0xa0, 0x80, 0x30, 0x80, 0x02, 0x01, 0x01, 0x31, 0x00,
		0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x01, 0xa0, 0x80, 0x24, 0x80, 0x04, 0x01, 'a', 0x24, 0x80, 0x04, 0x01, 'b', 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, der []byte) {
		for _, compressed := range []bool{false, true} {
			ec, err := readEncapsulated(der, compressed)
			if err != nil {
				if !errors.Is(err, errBER) {
					t.Fatalf("error %v does not wrap errBER", err)
				}
				continue
			}
			if len(ec.content) > len(der) || ec.content != nil && !ec.present {
				t.Fatalf("content of %d bytes from %d, present %v", len(ec.content), len(der), ec.present)
			}
		}
	})
}
