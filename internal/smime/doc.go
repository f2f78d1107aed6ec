// Package smime is the S/MIME message shape of the gateway: Seal turns a
// whole RFC 5322 message into the encrypted message that travels between
// domains, and Open turns such a message back into the one to relay.
//
// The CMS layer (internal/cms) deals in bytes; this package knows mail:
// which header fields may stand outside the encryption (RFC 9788 header
// protection), how the encrypted part is labelled (RFC 8551 section 3.2 and
// 3.4), which mangled labels are found in the wild, and how to tell a whole
// encrypted message from an encrypted body part. It knows nothing of SMTP.
//
// Memory: Seal holds the message once (encrypted in place by cms.Encrypt,
// so the caller's buffer needs SealSpare bytes of spare capacity to avoid a
// copy) plus a fixed-size buffer in front of the writer; the base64 text is
// streamed. Open holds the sealed input, one decoded buffer of at most 3/4
// of the input's size in which cms.Decrypt works in place, and, only when a
// peer encrypted a body part rather than a whole message, one copy of the
// plaintext joined to the outer header. AES-GCM cannot release plaintext
// before the tag is checked, so opening is one-shot by nature: with the
// default limit of DefaultMaxSize, Open needs at most about 1.75 times the
// input plus one plaintext, and it refuses larger input before allocating.
package smime
