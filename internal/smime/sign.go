package smime

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"smimegate/internal/cms"
)

// SignOptions is the domain signature (RFC 3183 section 3) that Seal puts
// inside the encryption when policy.sign is on for a partner.
type SignOptions struct {
	// Signer is our domain certificate and key.
	Signer cms.Signer
	// EncryptionCert is named in SMIMEEncryptionKeyPreference (RFC 8551
	// section 2.5.3): the certificate partners should encrypt to.
	EncryptionCert *x509.Certificate
	// Time is the signing time; the gateway passes its clock.
	Time time.Time
	// Hash is the digest algorithm; 0 is SHA-256.
	Hash crypto.Hash
}

// The signed payload is a multipart/signed entity (RFC 1847, RFC 8551
// section 3.5.3) whose first part is the original message, byte for byte,
// header and body, so that the domain signature covers its header fields
// too (RFC 9788 section 2), and whose second part is a detached SignedData.
// It was chosen over opaque signed-data (application/pkcs7-mime;
// smime-type=signed-data) because a receiver that cannot or does not
// verify still reads the message as it is, and because RFC 8551 section
// 3.5 recommends it; once decrypted, it is an ordinary S/MIME signed
// message that `openssl cms -verify`, gpgsm and mail clients verify. Its
// own header is RFC 9788's Cryptographic Payload header: copies of the
// original's header fields (the protected ones), the HP-Outer fields, and
// a Content-Type with hp="cipher".

// sigPartHeader is the header of the signature part (RFC 8551 section
// 3.5.3.1).
const sigPartHeader = "Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"Content-Disposition: attachment; filename=\"smime.p7s\"\r\n\r\n"

// micalg names the digest for the multipart/signed micalg parameter (RFC
// 8551 section 3.5.3.2); Ed25519 signs with SHA-512 (RFC 8419 section 2.3).
func micalg(o *SignOptions) (string, crypto.Hash) {
	h := o.Hash
	if h == 0 {
		h = crypto.SHA256
	}
	if _, ok := o.Signer.Key.(ed25519.PrivateKey); ok {
		h = crypto.SHA512
	}
	return map[crypto.Hash]string{crypto.SHA256: "sha-256", crypto.SHA384: "sha-384", crypto.SHA512: "sha-512"}[h], h
}

// payloadParts returns what Seal puts around the original message to make
// the encrypted payload: prefix replaces the first k bytes of msg, suffix
// follows msg; the payload is prefix, msg[k:], suffix. Unsigned, the
// payload is msg itself (hp.go says why). Signing costs one hash of the
// message and one private-key operation.
func payloadParts(msg []byte, opts *SealOptions) (prefix []byte, k int, suffix []byte, err error) {
	if p := opts.Prepared; p != nil {
		return p.prefix, p.k, p.suffix, nil
	}
	if opts.Sign == nil {
		return nil, 0, nil, nil
	}
	header, _ := splitHeader(msg)
	hpOuter := hpOuterFields(header, opts.ProtectSubject)
	so := opts.Sign
	alg, hash := micalg(so)
	sig, err := cms.Sign(msg, so.Signer, cms.SignOptions{Hash: hash, SigningTime: so.Time, EncryptionCert: so.EncryptionCert, Detached: true})
	if err != nil {
		return nil, 0, nil, err
	}
	boundary := newBoundary(msg)
	var p bytes.Buffer
	p.Grow(2*len(header) + len(hpOuter) + 256)
	for s := newHeaderScanner(header); s.next(); {
		if len(s.name) >= 8 && strings.EqualFold(string(s.name[:8]), "content-") || s.is("MIME-Version") || s.isTraceField() {
			continue
		}
		writeCRLF(&p, s.raw)
	}
	p.Write(hpOuter)
	p.WriteString("MIME-Version: 1.0\r\n")
	fmt.Fprintf(&p, "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=%s;\r\n\tboundary=\"%s\"%s\r\n\r\n", alg, boundary, hpParam)
	p.WriteString("--" + boundary + "\r\n")
	p.Write(header)
	var s bytes.Buffer
	s.Grow(len(sig)*78/57 + len(sigPartHeader) + 2*len(boundary) + 32)
	// The CRLF before the delimiter belongs to it (RFC 2046 section
	// 5.1.1): the first part is exactly msg.
	s.WriteString("\r\n--" + boundary + "\r\n" + sigPartHeader)
	enc := newLineEncoder(&s)
	enc.Write(sig)
	err = enc.Close()
	enc.release()
	if err != nil {
		return nil, 0, nil, err
	}
	s.WriteString("--" + boundary + "--\r\n")
	return p.Bytes(), len(header), s.Bytes(), nil
}

// newBoundary returns a random multipart boundary that msg does not
// contain (RFC 2046 section 5.1.1: it must not occur in the parts).
func newBoundary(msg []byte) string {
	for {
		var r [12]byte
		_, _ = rand.Read(r[:])
		b := "smimegate-sig-" + hex.EncodeToString(r[:])
		if !bytes.Contains(msg, []byte("--"+b)) {
			return b
		}
	}
}

// sealGrowth bounds how many bytes payloadParts adds to a message: for a
// signed one, the copied header and the HP-Outer block (each at most the
// header again, with the field names), the MIME framing, and the base64
// signature with the certificates it carries.
func sealGrowth(msg []byte, opts *SealOptions) int {
	if p := opts.Prepared; p != nil {
		return len(p.prefix) - p.k + len(p.suffix)
	}
	if opts.Sign == nil {
		return 0
	}
	header, _ := splitHeader(msg)
	h := len(header)
	der := 4096 // attributes, signature value and framing
	for _, c := range append([]*x509.Certificate{opts.Sign.Signer.Cert}, opts.Sign.Signer.Chain...) {
		if c != nil {
			der += len(c.Raw)
		}
	}
	return 3*h + 1024 + der*78/57
}

// SealCapacity returns the capacity msg's buffer needs for Seal to build
// the payload and encrypt it in place, without a copy of the message.
func SealCapacity(msg []byte, opts SealOptions) int {
	return len(msg) + sealGrowth(msg, &opts) + SealSpare
}

// splice makes prefix, msg[k:], suffix, in msg's own buffer when its
// capacity allows (moving the body once) and in a new one otherwise; the
// result has SealSpare bytes of spare capacity either way.
func splice(msg, prefix []byte, k int, suffix []byte) []byte {
	n := len(prefix) + len(msg) - k + len(suffix)
	if n == len(msg) && k == 0 && cap(msg) >= n+SealSpare {
		return msg
	}
	if cap(msg) >= n+SealSpare {
		buf := msg[:n]
		copy(buf[len(prefix):], msg[k:len(msg)]) // overlapping: copy is memmove
		copy(buf, prefix)
		copy(buf[n-len(suffix):], suffix)
		return buf
	}
	buf := make([]byte, 0, n+SealSpare)
	buf = append(buf, prefix...)
	buf = append(buf, msg[k:]...)
	return append(buf, suffix...)
}

// SignedParts is a signed payload's framing made once for a message, so
// that copies of it sealed for several partner domains cost one signature
// rather than one each.
type SignedParts struct {
	prefix []byte
	k      int
	suffix []byte
}

// PrepareSigned signs msg as Seal would with opts.Sign and returns the
// framing; a SealOptions whose Prepared is set uses it instead of signing
// again. msg must not change in between (the signature covers it).
func PrepareSigned(msg []byte, opts SealOptions) (*SignedParts, error) {
	if opts.Sign == nil {
		return nil, errors.New("smime: PrepareSigned without SignOptions")
	}
	opts.Prepared = nil
	prefix, k, suffix, err := payloadParts(msg, &opts)
	if err != nil {
		return nil, err
	}
	return &SignedParts{prefix: prefix, k: k, suffix: suffix}, nil
}
