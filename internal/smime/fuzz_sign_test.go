package smime

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// FuzzVerifyDomainSignature: no message makes the signature code panic,
// loop or pass what it should not: whatever it finds, taking the layer off
// or keeping it gives a message that ends in CRLF, and restoring header
// protection never grows a message.
//
// The seeds' signatures leave their certificates out (the check holds the
// signer's): under the fuzzer's instrumentation on this machine every
// X.509 parse costs about a second, which would leave the MIME and CMS
// structure nearly unexplored.
func FuzzVerifyDomainSignature(f *testing.F) {
	s := signerOf(f, "rsa")
	p := RestoreHeaderProtection(signedPayload(f, signedMsg, s))
	sig, err := FindSignature(p, OpenOptions{})
	if err != nil || sig == nil {
		f.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString(sig.DER)
	bare := base64.StdEncoding.EncodeToString(withoutCertificates(f, sig.DER))
	var lines []string
	for len(bare) > 76 {
		lines, bare = append(lines, bare[:76]), bare[76:]
	}
	lines = append(lines, bare)
	seed := bytes.Replace(p, []byte(wrapBase64(b64)), []byte(strings.Join(lines, "\r\n")+"\r\n"), 1)
	if bytes.Equal(seed, p) {
		f.Fatal("the signature part was not replaced")
	}
	f.Add(seed)
	f.Add([]byte(signedMsg))
	f.Add([]byte("From: a@example.net\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b\r\nContent-Type: application/pkcs7-signature\r\n\r\nMIIB\r\n--b--\r\n"))
	f.Add([]byte("Content-Type: text/plain; hp=\"cipher\"\r\nHP-Outer: Subject: [...]\r\n\r\nbody"))
	c := check("alice@example.net", s.Cert)
	f.Fuzz(func(t *testing.T, msg []byte) {
		r := VerifyDomainSignature(msg, c)
		if r.Verdict == VerdictPass && (r.Signature == nil || r.Domain == "" || r.SenderDomain == "") {
			t.Fatalf("a pass without its signature, domain or sender: %+v", r)
		}
		if r.Signature != nil {
			for _, layer := range []func([]byte, *Signature, OpenOptions) ([]byte, []byte, error){RemoveSignatureLayer, KeepSignatureLayer} {
				out, _, err := layer(msg, r.Signature, OpenOptions{})
				if err == nil && !bytes.HasSuffix(out, []byte("\r\n")) {
					t.Fatalf("a message without a final CRLF: %q", out)
				}
			}
		}
		if n := len(RestoreHeaderProtection(bytes.Clone(msg))); n > len(msg) {
			t.Fatalf("restoration grew %d bytes to %d", len(msg), n)
		}
		_ = FromOf(msg)
	})
}

// wrapBase64 is base64 text in the 76-character CRLF lines that Seal's
// encoder writes.
func wrapBase64(b64 string) string {
	var b strings.Builder
	for len(b64) > 76 {
		b.WriteString(b64[:76] + "\r\n")
		b64 = b64[76:]
	}
	b.WriteString(b64 + "\r\n")
	return b.String()
}

// withoutCertificates rebuilds a DER ContentInfo of SignedData without its
// certificates field.
func withoutCertificates(tb testing.TB, der []byte) []byte {
	tb.Helper()
	in := cryptobyte.String(der)
	var ci, sd, inner cryptobyte.String
	var oid []byte
	var ex cryptobyte.String
	if !in.ReadASN1(&ci, casn1.SEQUENCE) || !ci.ReadASN1Element((*cryptobyte.String)(&oid), casn1.OBJECT_IDENTIFIER) ||
		!ci.ReadASN1(&ex, casn1.Tag(0).Constructed().ContextSpecific()) || !ex.ReadASN1(&sd, casn1.SEQUENCE) {
		tb.Fatal("not a SignedData")
	}
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(oid)
		b.AddASN1(casn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				for !sd.Empty() {
					var tag casn1.Tag
					if !sd.ReadAnyASN1Element(&inner, &tag) {
						tb.Fatal("bad element")
					}
					if tag != casn1.Tag(0).Constructed().ContextSpecific() {
						b.AddBytes(inner)
					}
				}
			})
		})
	})
	return b.BytesOrPanic()
}
