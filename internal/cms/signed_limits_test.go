package cms

import (
	"bytes"
	"crypto/x509"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// signedDataWith builds a ContentInfo of SignedData whose certificates and
// signerInfos fields are the given raw bytes (nil leaves certificates out).
func signedDataWith(certs, signerInfos []byte) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oidSignedData)
		b.AddASN1(casn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(1)
				b.AddASN1(casn1.SET, func(b *cryptobyte.Builder) { addAlgID(b, oidSHA256, nil) })
				b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidData) })
				if certs != nil {
					b.AddASN1(casn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(certs) })
				}
				b.AddASN1(casn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(signerInfos) })
			})
		})
	})
	return b.BytesOrPanic()
}

// tinySignerInfo is a SignerInfo of a few dozen bytes naming nobody.
func tinySignerInfo(attrs []byte) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1)
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {})
			b.AddASN1Int64(1)
		})
		addAlgID(b, oidSHA256, nil)
		if attrs != nil {
			b.AddASN1(casn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) { b.AddBytes(attrs) })
		}
		addAlgID(b, oidSHA256WithRSA, addNull)
		b.AddASN1OctetString(make([]byte, 8))
	})
	return b.BytesOrPanic()
}

func attribute(typ []int, values ...[]byte) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(typ)
		b.AddASN1(casn1.SET, func(b *cryptobyte.Builder) {
			for _, v := range values {
				b.AddBytes(v)
			}
		})
	})
	return b.BytesOrPanic()
}

func octetString(v []byte) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1OctetString(v)
	return b.BytesOrPanic()
}

// TestSignedDataBounds: past each count bound the structure is refused as
// malformed, with the bound in the reason, before it is decoded further;
// at the bound it parses.
func TestSignedDataBounds(t *testing.T) {
	t.Parallel()
	cert := fixture(t, "rsa").Cert.Raw
	digest := attribute(oidAttrMessageDigest, octetString(make([]byte, 32)))
	repeat := func(b []byte, n int) []byte { return bytes.Repeat(b, n) }
	tests := []struct {
		name  string
		input []byte
		want  string // "" parses
	}{
		{"signers at the bound", signedDataWith(nil, repeat(tinySignerInfo(nil), MaxSignerInfos)), ""},
		{"signers past the bound", signedDataWith(nil, repeat(tinySignerInfo(nil), 100000)), "more than 16 SignerInfos"},
		{"certificates at the bound", signedDataWith(repeat(cert, MaxCertificates), tinySignerInfo(nil)), ""},
		{"certificates past the bound", signedDataWith(repeat(cert, MaxCertificates+1), tinySignerInfo(nil)), "more than 64 certificates"},
		{"attributes past the bound", signedDataWith(nil, tinySignerInfo(repeat(attribute([]int{1, 2, 3}, octetString(nil)), maxAttributes+1))), "more than 64 attributes"},
		{"values past the bound", signedDataWith(nil, tinySignerInfo(attribute([]int{1, 2, 3}, repeat(octetString(nil), maxAttributeValues+1)))), "more than 16 values"},
		{"two message digests", signedDataWith(nil, tinySignerInfo(append(digest, digest...))), "occurs twice"},
		{"a digest of two values", signedDataWith(nil, tinySignerInfo(attribute(oidAttrMessageDigest, octetString(nil), octetString(nil)))), "has 2 values"},
		{"empty signed attributes", signedDataWith(nil, tinySignerInfo([]byte{})), "signedAttrs is empty"},
		{"a certificate too large", signedDataWith(appendHeader(nil, classUniversal, tagSequence, true, maxCertificateSize, make([]byte, maxCertificateSize)), tinySignerInfo(nil)), "limit"},
	}
	for _, tc := range tests {
		_, err := ParseSignedData(tc.input)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (!errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want ErrMalformed with %q", tc.name, err, tc.want)
		}
	}
}

// TestSignedDataBER: a signature re-encoded as BER (indefinite lengths,
// the content and the other strings in segments) parses and verifies. The
// certificate inside no longer parses as X.509 (its strings are segmented
// too) and is counted; the verifier holds it.
func TestSignedDataBER(t *testing.T) {
	t.Parallel()
	s := signerFixture(t, "rsa")
	content := signedContent(t)
	der, err := Sign(content, s, SignOptions{SigningTime: signTime})
	if err != nil {
		t.Fatal(err)
	}
	ber := berify(t, der, 64)
	if bytes.Equal(ber, der) {
		t.Fatal("berify changed nothing")
	}
	sd, err := ParseSignedData(ber)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sd.Content, content) {
		t.Fatal("the segmented content was not joined")
	}
	cert := sd.Certificate(sd.Signers[0], []*x509.Certificate{s.Cert})
	if err := sd.Verify(sd.Signers[0], cert, nil); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

// TestUnsupportedSignatureAlgorithms: SHA-1 and unknown algorithms are
// refused by name, never verified.
func TestUnsupportedSignatureAlgorithms(t *testing.T) {
	t.Parallel()
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1)
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {})
			b.AddASN1Int64(1)
		})
		addAlgID(b, oidSHA1, nil)
		addAlgID(b, oidSHA1WithRSA, addNull)
		b.AddASN1OctetString(make([]byte, 8))
	})
	sd, err := ParseSignedData(signedDataWith(nil, b.BytesOrPanic()))
	if err != nil {
		t.Fatal(err)
	}
	err = sd.Verify(sd.Signers[0], fixture(t, "rsa").Cert, []byte("x"))
	var ue *UnsupportedAlgorithmError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "sha1") {
		t.Fatalf("SHA-1: %v", err)
	}
}
