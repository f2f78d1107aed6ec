package cms

import (
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// randomBytes returns n bytes from crypto/rand, which never fails (since Go
// 1.24 it crashes the program rather than return an error).
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// Encrypt writes a DER ContentInfo to w: AuthEnvelopedData (RFC 5083) for
// AES-GCM, EnvelopedData (RFC 5652 section 6) for AES-CBC, encrypted to
// every recipient. content is encrypted IN PLACE and must be treated as
// garbage afterwards. For GCM, cap(content) >= len(content)+16 avoids any
// copy of the message (with less capacity, cipher.AEAD.Seal encrypts into
// a new buffer and content keeps its plaintext); see the package
// documentation for the memory cost. Nothing is written to w unless every
// recipient could be processed.
func Encrypt(w io.Writer, content []byte, recipients []Recipient, opts EncryptOptions) error {
	alg, err := opts.Cipher.alg()
	if err != nil {
		return err
	}
	if len(recipients) == 0 {
		return errors.New("cms: no recipients")
	}
	cek := randomBytes(alg.keyLen)
	defer clear(cek)

	ris, version, err := recipientInfos(recipients, cek)
	if err != nil {
		return err
	}
	iv := randomBytes(alg.ivLen())
	block, err := alg.block(cek)
	if err != nil {
		return fmt.Errorf("cms: %s key: %w", alg.name, err)
	}

	var body, tail []byte
	var contentType = oidEnvelopedData
	if alg.aead {
		contentType = oidAuthEnvelopedData
		body, tail, err = sealGCM(block, iv, content)
	} else {
		body, tail = sealCBC(block, iv, content)
	}
	if err != nil {
		return err
	}
	var trailer []byte
	if alg.aead {
		// AuthEnvelopedData.mac (RFC 5083 section 2.1) carries the GCM tag
		// after the EncryptedContentInfo, and the version is always 0.
		trailer = append([]byte{0x04, gcmTagSize}, tail...)
		tail = nil
		version = 0
	}
	ctLen := len(body) + len(tail)

	// Everything in front of the ciphertext: the outer headers need the
	// total length, which is known now, so the ciphertext itself is written
	// straight from the caller's buffer.
	eciPrefix := encryptedContentInfoPrefix(alg, iv)
	ctHeader := appendLength([]byte{0x80}, ctLen) // [0] IMPLICIT OCTET STRING, primitive
	eciLen := len(eciPrefix) + len(ctHeader) + ctLen
	eciHeader := appendLength([]byte{0x30}, eciLen)
	verAndRIs := append([]byte{0x02, 0x01, byte(version)}, ris...)
	envLen := len(verAndRIs) + len(eciHeader) + eciLen + len(trailer)
	envHeader := appendLength([]byte{0x30}, envLen)
	oid := cryptobyte.NewBuilder(nil)
	oid.AddASN1ObjectIdentifier(contentType)
	oidDER := oid.BytesOrPanic()
	explicitLen := len(envHeader) + envLen
	explicitHeader := appendLength([]byte{0xa0}, explicitLen)
	ciLen := len(oidDER) + len(explicitHeader) + explicitLen
	head := appendLength([]byte{0x30}, ciLen)
	head = append(head, oidDER...)
	head = append(head, explicitHeader...)
	head = append(head, envHeader...)
	head = append(head, verAndRIs...)
	head = append(head, eciHeader...)
	head = append(head, eciPrefix...)
	head = append(head, ctHeader...)

	for _, part := range [][]byte{head, body, tail, trailer} {
		if len(part) == 0 {
			continue
		}
		if _, err := w.Write(part); err != nil {
			return fmt.Errorf("cms: writing the encrypted message: %w", err)
		}
	}
	return nil
}

// recipientInfos encodes the SET OF RecipientInfo and returns the
// enveloping structure's version: 3 when there is an ori (a
// KEMRecipientInfo), else 0 when every RecipientInfo is version 0, else 2
// (RFC 5652 section 6.1). That rule is for EnvelopedData only;
// AuthEnvelopedData is always version 0 (RFC 5083 section 2.1).
func recipientInfos(recipients []Recipient, cek []byte) ([]byte, int, error) {
	b := cryptobyte.NewBuilder(nil)
	allV0 := true
	hasORI := false
	var err error
	b.AddASN1(casn1.SET, func(b *cryptobyte.Builder) {
		for _, r := range recipients {
			if err = checkRecipientCert(r); err != nil {
				return
			}
			switch pub := recipientPublicKey(r.Cert).(type) {
			case *rsa.PublicKey:
				allV0 = allV0 && !r.UseSKI
				err = addKeyTransRecipient(b, r, pub, cek)
			case *ecdsa.PublicKey:
				allV0 = false
				var epub *ecdh.PublicKey
				if epub, err = pub.ECDH(); err != nil {
					err = fmt.Errorf("cms: recipient %q: %w", r.Cert.Subject, err)
					return
				}
				err = addKeyAgreeRecipient(b, r, epub, cek)
			case *ecdh.PublicKey:
				allV0 = false
				err = addKeyAgreeRecipient(b, r, pub, cek)
			case *KEMPublicKey:
				allV0, hasORI = false, true
				err = addKEMRecipient(b, r, pub, cek, pub.encapsulate)
			default:
				err = fmt.Errorf("cms: recipient %q: unsupported public key type %T", r.Cert.Subject, pub)
			}
			if err != nil {
				return
			}
		}
	})
	if err != nil {
		return nil, 0, err
	}
	der, berr := b.Bytes()
	if berr != nil {
		return nil, 0, fmt.Errorf("cms: encoding RecipientInfos: %w", berr)
	}
	version := 2
	switch {
	case hasORI:
		version = 3 // RFC 5652 section 6.1: an ori RecipientInfo makes it 3
	case allV0:
		version = 0
	}
	return der, version, nil
}

// recipientPublicKey returns cert's public key. crypto/x509 leaves
// PublicKey nil for X25519 certificates (RFC 8410), which
// ParsePKIXPublicKey does read, and for ML-KEM and composite keys, which
// ParseKEMPublicKey reads (certstore fills PublicKey in with them).
func recipientPublicKey(cert *x509.Certificate) any {
	if cert.PublicKey != nil {
		return cert.PublicKey
	}
	if pub, err := x509.ParsePKIXPublicKey(cert.RawSubjectPublicKeyInfo); err == nil {
		return pub
	}
	if pub, err := ParseKEMPublicKey(cert.RawSubjectPublicKeyInfo); err == nil {
		return pub
	}
	return nil
}

// encryptedContentInfoPrefix encodes the fields of EncryptedContentInfo that
// precede the ciphertext: contentType id-data and the algorithm with its
// IV (RFC 3565 section 4.1) or GCMParameters (RFC 5084 section 3.2).
func encryptedContentInfoPrefix(alg *contentAlg, iv []byte) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1ObjectIdentifier(oidData)
	addAlgID(b, alg.oid, func(b *cryptobyte.Builder) {
		if alg.aead {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1OctetString(iv)
				// aes-ICVlen DEFAULT 12: a 16-byte tag must be written.
				b.AddASN1Int64(gcmTagSize)
			})
		} else {
			b.AddASN1OctetString(iv)
		}
	})
	return b.BytesOrPanic()
}

// sealGCM encrypts content in place and returns the ciphertext and the tag.
func sealGCM(block cipher.Block, nonce, content []byte) (ct, tag []byte, err error) {
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, nil, fmt.Errorf("cms: GCM: %w", err)
	}
	// With spare capacity, Seal writes ciphertext and tag over content
	// without allocating; RFC 5083 keeps no authenticated attributes, so
	// there is no additional data.
	out := aead.Seal(content[:0], nonce, content, nil)
	n := len(content)
	return out[:n], out[n:], nil
}

// sealCBC encrypts the whole blocks of content in place and the last
// partial block, padded as RFC 5652 section 6.3 requires, in a side buffer,
// so that the message is never copied.
func sealCBC(block cipher.Block, iv, content []byte) (full, last []byte) {
	bs := block.BlockSize()
	mode := cipher.NewCBCEncrypter(block, iv)
	n := len(content) - len(content)%bs
	full = content[:n]
	mode.CryptBlocks(full, full)
	last = make([]byte, bs)
	copy(last, content[n:])
	pad := bs - (len(content) - n)
	for i := bs - pad; i < bs; i++ {
		last[i] = byte(pad)
	}
	mode.CryptBlocks(last, last)
	// The partial block is now encrypted in last; leave no plaintext behind
	// in the caller's buffer.
	clear(content[n:])
	return full, last
}
