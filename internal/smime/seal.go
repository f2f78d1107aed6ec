package smime

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"smimegate/internal/cms"
)

// SealSpare is the spare capacity Seal's msg should have beyond its length:
// AES-GCM appends its 16-byte tag (RFC 5084 section 3.2) to the content
// that cms.Encrypt encrypts in place, and with this room nothing is copied.
const SealSpare = 16

// SealOptions says to whom and how a message is encrypted. Cipher and the
// recipients' RSA padding come from [policy] and [policy.partners."D"].
type SealOptions struct {
	Recipients     []cms.Recipient
	Cipher         cms.ContentCipher
	ProtectSubject bool
}

// Seal writes the outbound S/MIME message for msg, a whole RFC 5322
// message, to w. The whole message, header and body, is the encrypted
// content, byte for byte: nothing is re-encoded, so 8-bit, binary, SMTPUTF8
// and already-S/MIME messages survive and a DKIM signature on the original
// still verifies once the partner opens it (draft-ramsdell section 3,
// RFC 8551 section 3.1). Outside stand only the fields of outerFields.
//
// msg is overwritten: cms.Encrypt encrypts it in place. With
// cap(msg) >= len(msg)+SealSpare, Seal holds no second copy of the message:
// its memory is msg plus a few kilobytes of header and base64 buffer, and
// the base64 text is streamed to w in CRLF lines of 76 characters.
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

	enc := newLineEncoder(&prefixWriter{w: w, prefix: outer.Bytes()})
	defer enc.release()
	if err := cms.Encrypt(enc, msg, opts.Recipients, cms.EncryptOptions{Cipher: opts.Cipher}); err != nil {
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
