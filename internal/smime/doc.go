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
// # Finding ciphertext
//
// Open and Inspect decide "encrypted or not" by what bodies contain, the
// contentType of a CMS ContentInfo (RFC 5652 section 3), not by their labels:
// a body labelled text/plain, or smime-type=signed-data, that is
// EnvelopedData to our certificate is opened all the same. They walk the
// MIME structure (multipart bodies, message/rfc822, and the encapsulated
// content of SignedData and CompressedData) within fixed bounds (16 levels,
// 1000 parts, OpenOptions.MaxHeaderBytes per header section, 1000 lines per
// header section, OpenOptions.MaxSize of decoded bytes), and a message beyond
// a bound is Failed: a structure that cannot be inspected is not passed on.
// Ciphertext to our certificate is opened where its plaintext can stand for
// the message (the message body, or what a top-level signature covers) and
// makes the message Failed anywhere else; ciphertext to someone else is left
// alone. Inspect makes the same decisions without a private key, so that the
// gateway can act on them before its SMTP reply.
//
// # Decrypted content
//
// The plaintext of an opened message reaches the internal server without
// having passed the SMTP receiver's strict DATA reader, so Open holds it to
// the same rules (docs/threats.md section 5): a NUL byte anywhere or
// a bare CR (not followed by LF) makes the message Failed, with the offset
// in the reason; a bare LF becomes CRLF (peers that encrypt LF-only text are
// common); the message ends with CRLF, one being appended if it does not.
// Its header sections are bounded like any other. OpenResult.EightBit says
// whether it needs BODY=8BITMIME. The outer header's trace fields (Received,
// Return-Path; RFC 5321 section 4.4) are returned apart, as
// OpenResult.Trace, and are not repeated in the message.
//
// # Memory
//
// Seal holds the message once (encrypted in place by cms.Encrypt, so the
// caller's buffer needs SealSpare bytes of spare capacity to avoid a copy)
// plus a few kilobytes of header and line buffer; the base64 text is
// streamed to the writer, and the header is read field by field without
// allocating per field.
//
// Open leaves its input untouched. On mail that is not encrypted it decodes
// only the first bytes of each body (a fixed buffer) and allocates nothing
// that grows with the message; headers are read without allocating per
// field. For an encrypted message it allocates one decoded buffer (3/4 of
// the encrypted part for base64, the part's size for a binary body) in which
// cms.Decrypt works in place; the plaintext of a whole message is handed back
// inside that buffer. One more copy of the plaintext is made only for a peer
// that encrypted a body part alone (to join the outer header to it), for
// LF-only text or text without a final CRLF (to fix the line ends), and for
// an encrypted message/rfc822 entity that is itself base64 (decoded, 3/4 of
// it). AES-GCM releases no plaintext before its tag is checked, so opening
// is one-shot by nature: for a base64 message of N bytes Open needs the N
// bytes of input plus 0.75 N (a whole message with CRLF line ends) and 0.75
// N more for each of those copies. Parts
// that the walk looks into (a signed or compressed body, an encoded
// message/rfc822) are decoded too, within a budget of OpenOptions.MaxSize
// decoded bytes per message (DefaultMaxSize, 64 MiB, if unset), and an
// encrypted part larger than MaxSize is refused before anything is allocated
// for it. TestSealMemoryBound, TestOpenMemoryBound, TestOpenBlankBase64Bomb
// and TestOpenHeaderBomb check these bounds.
package smime
