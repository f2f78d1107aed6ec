package gateway

import (
	"bytes"
	"strings"
	"testing"

	"smimegate/internal/certstore"
	"smimegate/internal/cms"
	"smimegate/internal/smime"
)

// TestSealedSizeIsABoundForKEM: the bound holds for the largest
// KEMRecipientInfo there is (id-MLKEM1024-RSA3072), for as many
// recipients as a domain in a long migration might have.
func TestSealedSizeIsABoundForKEM(t *testing.T) {
	g, err := certstore.GenerateKEM(certstore.KEMKeygenOptions{KeygenOptions: certstore.KeygenOptions{Domains: []string{"example.net"}, KeyType: "mlkem1024-rsa3072"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, 100, 57 * 1000} {
		for _, recipients := range []int{1, 3, 10} {
			msg := "From: <a@example.org>\r\nTo: <b@example.net>\r\nSubject: " + strings.Repeat("s", 200) + "\r\n\r\n" + strings.Repeat("x", n)
			opts := smime.SealOptions{Cipher: cms.AES256GCM}
			for range recipients {
				opts.Recipients = append(opts.Recipients, cms.Recipient{Cert: g.Cert})
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
