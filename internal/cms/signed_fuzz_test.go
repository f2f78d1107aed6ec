package cms

import (
	"bytes"
	"crypto/x509"
	"testing"
)

// FuzzParseSignedData: no input makes the parser or the verifier panic or
// loop, and a parsed structure's every SignerInfo can be verified (against
// its own certificate, a held one, and detached content) without a panic.
//
// The seeds leave the certificates out (the verifier holds them): parsing
// X.509 is crypto/x509's, and under the fuzzer's instrumentation on this
// machine each certificate parse costs a second, which would leave the
// SignedData structure itself nearly unexplored. One seed keeps them.
func FuzzParseSignedData(f *testing.F) {
	content := []byte("From: a@example.org\r\n\r\nfuzz\r\n")
	for _, key := range []string{"rsa", "p256"} {
		s := signerFixture(f, key)
		for _, detached := range []bool{false, true} {
			der, err := Sign(content, s, SignOptions{SigningTime: signTime, EncryptionCert: s.Cert, Detached: detached})
			if err != nil {
				f.Fatal(err)
			}
			bare := withoutCertificates(f, der)
			f.Add(bare)
			if key == "rsa" {
				f.Add(berify(f, bare, 16))
				if !detached {
					f.Add(der)
				}
			}
		}
	}
	f.Add(signedDataWith(nil, tinySignerInfo(attribute(oidAttrMessageDigest, octetString(nil)))))
	held := []*x509.Certificate{fixture(f, "rsa").Cert, fixture(f, "p256").Cert}
	f.Fuzz(func(t *testing.T, b []byte) {
		sd, err := ParseSignedData(b)
		if err != nil {
			return
		}
		for _, si := range sd.Signers {
			_ = si.Algorithm()
			_ = si.SID()
			if cert := sd.Certificate(si, held); cert != nil {
				_ = sd.Verify(si, cert, nil)
				_ = sd.Verify(si, cert, content)
			}
			for _, c := range held {
				_ = sd.Verify(si, c, content)
				_ = si.EncryptionKeyPreference.Matches(c)
			}
		}
	})
}

// withoutCertificates rebuilds a ContentInfo of SignedData without its
// certificates field.
func withoutCertificates(tb testing.TB, der []byte) []byte {
	tb.Helper()
	top := newReader(der, 0)
	ci, _ := top.next()
	r, _ := ci.children()
	oid, _ := r.next()
	ex, _ := r.next()
	er, _ := ex.children()
	sd, _ := er.next()
	fields, _ := sd.children()
	var body []byte
	for !fields.empty() {
		e, err := fields.next()
		if err != nil {
			tb.Fatal(err)
		}
		if e.is(classContext, 0) {
			continue
		}
		body = append(body, e.raw...)
	}
	sdDER := appendHeader(nil, classUniversal, tagSequence, true, len(body), body)
	exDER := appendHeader(nil, classContext, 0, true, len(sdDER), sdDER)
	inner := append(bytes.Clone(oid.raw), exDER...)
	return appendHeader(nil, classUniversal, tagSequence, true, len(inner), inner)
}
