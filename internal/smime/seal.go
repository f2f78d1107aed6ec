package smime

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"smimegate/internal/cms"
)

// SealSpare is the spare capacity that the payload Seal encrypts needs
// beyond its length: AES-GCM appends its 16-byte tag (RFC 5084 section
// 3.2) to the content that cms.Encrypt encrypts in place. SealCapacity adds
// the room for the header protection fields and a signature.
const SealSpare = 16

// SealOptions says to whom and how a message is encrypted. Cipher and the
// recipients' RSA padding come from [policy] and [policy.partners."D"].
type SealOptions struct {
	Recipients     []cms.Recipient
	Cipher         cms.ContentCipher
	ProtectSubject bool
	// Sign, if set, signs the message with our domain certificate inside
	// the encryption (RFC 8551 section 3.7: sign, then encrypt, so that
	// the signature stays hidden; RFC 3183 section 3).
	Sign *SignOptions
	// Prepared, if set, is the signed framing PrepareSigned made for this
	// message, used instead of signing it again.
	Prepared *SignedParts
}

// Seal writes the outbound S/MIME message for msg, a whole RFC 5322
// message, to w. The whole message, header and body, travels inside the
// encryption byte for byte: nothing is re-encoded, so 8-bit, binary,
// SMTPUTF8 and already-S/MIME messages survive and a DKIM signature on the
// original still verifies once the partner opens it (draft-ramsdell
// section 3, RFC 8551 section 3.1). The encrypted payload is marked as RFC
// 9788 header protection says (hp.go): HP-Outer fields and hp="cipher"
// added to the original, or, with opts.Sign, a multipart/signed around it
// (sign.go). Outside stand only the fields of outerFields.
//
// msg is overwritten: the payload is built in its buffer and encrypted in
// place by cms.Encrypt. With cap(msg) >= SealCapacity(msg, opts), Seal
// holds no second copy of the message: its memory is msg plus a few
// kilobytes of header and base64 buffer, and the base64 text is streamed
// to w in CRLF lines of 76 characters.
//
// Nothing is written to w before the encryption has started, so an error
// about the recipients or the options leaves w untouched; an error after
// that leaves a partial message in w, which the caller must discard.
func Seal(w io.Writer, msg []byte, opts SealOptions) error {
	if len(opts.Recipients) == 0 {
		return errors.New("smime: seal: no recipient certificate")
	}
	header, _ := splitHeader(msg)
	var outer bytes.Buffer
	writeOuterFields(&outer, header, opts.ProtectSubject)
	// RFC 8551 section 3.2.2: authEnveloped-data for AuthEnvelopedData
	// (GCM), enveloped-data for EnvelopedData (CBC). Section 3.2.1: the
	// file name smime.p7m.
	smimeType := "enveloped-data"
	if opts.Cipher.AEAD() {
		smimeType = "authEnveloped-data"
	}
	outer.WriteString("MIME-Version: 1.0\r\n")
	outer.WriteString("Content-Type: application/pkcs7-mime; smime-type=" + smimeType + ";\r\n\tname=\"smime.p7m\"\r\n")
	outer.WriteString("Content-Disposition: attachment; filename=\"smime.p7m\"\r\n")
	outer.WriteString("Content-Transfer-Encoding: base64\r\n")
	outer.WriteString("\r\n")

	prefix, k, suffix, err := payloadParts(msg, &opts)
	if err != nil {
		return fmt.Errorf("smime: seal: signing: %w", err)
	}
	payload := splice(msg, prefix, k, suffix)
	enc := newLineEncoder(&prefixWriter{w: w, prefix: outer.Bytes()})
	defer enc.release()
	if err := cms.Encrypt(enc, payload, opts.Recipients, cms.EncryptOptions{Cipher: opts.Cipher}); err != nil {
		return fmt.Errorf("smime: seal: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("smime: seal: writing the encrypted message: %w", err)
	}
	return nil
}

// prefixWriter writes prefix before the first bytes written to it, so that
// the outer header reaches the writer only once there is a body to follow.
type prefixWriter struct {
	w      io.Writer
	prefix []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	if p.prefix != nil {
		if _, err := p.w.Write(p.prefix); err != nil {
			return 0, err
		}
		p.prefix = nil
	}
	return p.w.Write(b)
}
