package cms

import (
	"crypto/x509"
	"testing"
)

// FuzzParseSignedData: no input makes the parser or the verifier panic or
// loop, and a parsed structure's every SignerInfo can be verified (against
// its own certificate, a held one, and detached content) without a panic.
func FuzzParseSignedData(f *testing.F) {
	content := []byte("From: a@example.org\r\n\r\nfuzz\r\n")
	for _, key := range []string{"rsa", "p256", "ed25519"} {
		s := signerFixture(f, key)
		for _, detached := range []bool{false, true} {
			der, err := Sign(content, s, SignOptions{SigningTime: signTime, EncryptionCert: s.Cert, Detached: detached})
			if err != nil {
				f.Fatal(err)
			}
			f.Add(der)
			if key == "rsa" {
				f.Add(berify(f, der, 16))
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
