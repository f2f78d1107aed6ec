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
// copy) plus a few kilobytes of header and line buffer; the base64 text is
// streamed to the writer. Open leaves its input untouched and allocates one
// decoded buffer (3/4 of the input for base64, the input's size for a binary
// body) in which cms.Decrypt works in place; the plaintext of a whole message
// is handed back inside that buffer, and only a peer that encrypted a body
// part alone costs one more copy, to join the outer header to it. AES-GCM
// releases no plaintext before its tag is checked, so opening is one-shot by
// nature: for a base64 message of N bytes Open needs the N bytes of input
// plus 0.75 N (whole message) or 1.5 N (body part), and it refuses input
// larger than OpenOptions.MaxSize (DefaultMaxSize, 64 MiB, if unset) before
// allocating anything. TestSealMemoryBound and TestOpenMemoryBound check
// these bounds.
package smime
