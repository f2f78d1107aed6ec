package gateway

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"smimegate/internal/cms"
	"smimegate/internal/smime"
)

// The bound sealedSize gives holds for real sealed messages, from tiny to
// several MiB, with one and with three recipients; it is what keeps the
// buffer of a sealed copy from doubling.
func TestSealedSizeIsABound(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageKeyEncipherment}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 100, 57 * 1000, 1 << 20, 3<<20 + 7} {
		for _, recipients := range []int{1, 3} {
			msg := "From: <a@example.org>\r\nTo: <b@example.net>\r\nSubject: " + strings.Repeat("s", 200) + "\r\n\r\n" + strings.Repeat("x", n)
			opts := smime.SealOptions{Cipher: cms.AES256GCM}
			for range recipients {
				opts.Recipients = append(opts.Recipients, cms.Recipient{Cert: cert})
			}
			buf := make([]byte, len(msg), len(msg)+smime.SealSpare)
			copy(buf, msg)
			var out bytes.Buffer
			if err := smime.Seal(&out, buf, opts); err != nil {
				t.Fatal(err)
			}
			if bound := sealedSize(len(msg), recipients); out.Len() > bound {
				t.Errorf("%d bytes, %d recipients: sealed %d bytes, bound %d", len(msg), recipients, out.Len(), bound)
			}
		}
	}
}
