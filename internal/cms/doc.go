// Package cms implements the parts of the Cryptographic Message Syntax that an
// S/MIME domain-encryption gateway needs: EnvelopedData (RFC 5652 section 6)
// and AuthEnvelopedData (RFC 5083), written as DER and read as BER or DER.
//
// It encrypts to recipient certificates with RSA key transport (PKCS #1 v1.5
// or RSAES-OAEP, RFC 3370 and RFC 4055), ECDH ephemeral-static key agreement
// on the NIST curves (RFC 5753) and X25519 (RFC 8418), and key encapsulation
// in a KEMRecipientInfo (RFC 9629) with ML-KEM (RFC 9936) or composite
// ML-KEM (draft-ietf-lamps-pq-composite-kem), and it decrypts with any of
// several private keys. It knows nothing about mail.
//
// # Memory
//
// Encrypt works in place: the caller's content buffer becomes the ciphertext,
// and only the DER framing around it is allocated. For AES-GCM the 16-byte
// authentication tag is appended by cipher.AEAD.Seal, so a caller that leaves
// 16 bytes of spare capacity (cap(content) >= len(content)+16) avoids any copy
// of the message; otherwise Seal allocates one buffer of len(content)+16.
// AES-CBC never copies the message: the last partial block and its padding are
// encrypted in a 16-byte side buffer.
//
// Decrypt also works in place: the plaintext it returns aliases input, and
// input is overwritten. BER input whose ciphertext is split into a constructed
// OCTET STRING (what streaming encoders emit) is joined in place as well, so
// decryption needs no memory proportional to the message beyond input itself,
// except when several candidate keys must be tried against an AES-GCM
// content (a key rotation with more than one RSA PKCS #1 v1.5 match), where
// each attempt but the last works on a copy.
package cms
