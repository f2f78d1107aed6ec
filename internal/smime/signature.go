package smime

import (
	"fmt"
	"strings"

	"smimegate/internal/cms"
)

// Signature is a top-level S/MIME signature layer of a message: a
// multipart/signed of two parts (RFC 1847 section 2.1, RFC 8551 section
// 3.5.3) or an opaque signed-data body (section 3.5.2).
type Signature struct {
	// Opaque: application/pkcs7-mime signed-data rather than
	// multipart/signed.
	Opaque bool
	// Content is the signed entity: the first part of a multipart/signed
	// exactly as it stands between its delimiters, or the eContent.
	Content []byte
	// Detached is Content for a multipart/signed, the bytes that
	// SignedData.Verify must be given; nil for opaque signed-data.
	Detached []byte
	Data     *cms.SignedData
	// DER is the SignedData's ContentInfo as it came (decoded from its
	// transfer encoding).
	DER []byte
	// Where names the part that holds the signature, for reasons.
	Where string
}

// FindSignature returns the top-level signature layer of msg, or nil when
// its body is not signed. A structure that says it is signed but cannot
// be read (no second part, a signature part that is no SignedData, a
// malformed SignedData) is an error: it is never taken for unsigned mail.
// The bounds of opts (header size, decoded size) apply.
func FindSignature(msg []byte, opts OpenOptions) (*Signature, error) {
	maxSize, maxHeader := opts.MaxSize, opts.MaxHeaderBytes
	if maxSize <= 0 {
		maxSize = DefaultMaxSize
	}
	if maxHeader <= 0 {
		maxHeader = DefaultMaxHeaderBytes
	}
	header, body := entity(msg)
	h, err := scanMIMEHeader(header, maxHeader)
	if err != nil {
		return nil, fmt.Errorf("the message header: %w", err)
	}
	if h.conflict != "" {
		return nil, fmt.Errorf("the message has two %s fields that differ", h.conflict)
	}
	mt, params := mediaType(h.contentType)
	if int64(len(body)) > maxSize {
		return nil, fmt.Errorf("%w: a body of %d bytes, limit %d", ErrTooLarge, len(body), maxSize)
	}
	switch mt {
	case "multipart/signed":
		return multipartSignature(body, params)
	case "application/pkcs7-mime", "application/x-pkcs7-mime":
		if st := strings.ToLower(params["smime-type"]); st != "" && st != "signed-data" {
			return nil, nil
		}
	}
	// An opaque signature is recognised by what the body holds, as the
	// walk recognises ciphertext, whatever its label says.
	var peek [peekLen]byte
	prefix, enc, err := peekBody(body, h.cte, peek[:])
	if err != nil {
		return nil, nil
	}
	if kind, _ := peekContentInfo(prefix); kind != cmsSigned {
		return nil, nil
	}
	der, err := decodeAs(body, enc)
	if err != nil {
		return nil, fmt.Errorf("the signed-data body: %w", err)
	}
	sd, err := cms.ParseSignedData(der)
	if err != nil {
		return nil, fmt.Errorf("the signed-data body: %w", err)
	}
	if !sd.HasContent {
		return nil, fmt.Errorf("the signed-data body has no content (a detached signature outside multipart/signed)")
	}
	return &Signature{Opaque: true, Content: sd.Content, Data: sd, DER: der, Where: "the message body (signed-data)"}, nil
}

// multipartSignature reads a multipart/signed body: exactly two parts, the
// second an application/pkcs7-signature (or x-pkcs7-signature) SignedData
// without content (RFC 8551 section 3.5.3).
func multipartSignature(body []byte, params map[string]string) (*Signature, error) {
	boundary := params["boundary"]
	if boundary == "" {
		return nil, fmt.Errorf("multipart/signed without a boundary")
	}
	switch p := strings.ToLower(params["protocol"]); p {
	case "application/pkcs7-signature", "application/x-pkcs7-signature":
	default:
		// A PGP/MIME signature (RFC 3156) or something else: not ours to
		// judge, and not an S/MIME signature.
		return nil, nil
	}
	parts := splitParts(body, boundary)
	if len(parts) != 2 {
		return nil, fmt.Errorf("multipart/signed with %d parts, not 2 (RFC 1847 section 2.1)", len(parts))
	}
	sh, sb := entity(parts[1])
	h, err := scanMIMEHeader(sh, DefaultMaxHeaderBytes)
	if err != nil {
		return nil, fmt.Errorf("the signature part: %w", err)
	}
	der, err := decodeBody(sb, h.cte)
	if err != nil {
		return nil, fmt.Errorf("the signature part: %w", err)
	}
	if kind, total := peekContentInfo(der); kind != cmsSigned {
		return nil, fmt.Errorf("the signature part is not a CMS SignedData")
	} else if total > 0 && total < len(der) {
		der = der[:total]
	}
	sd, err := cms.ParseSignedData(der)
	if err != nil {
		return nil, fmt.Errorf("the signature part: %w", err)
	}
	return &Signature{Content: parts[0], Detached: parts[0], Data: sd, DER: der, Where: "part 2 (application/pkcs7-signature)"}, nil
}
