package cms

import (
	"crypto"
	"crypto/x509"
	"errors"
)

// Recipient is one certificate to encrypt to.
type Recipient struct {
	Cert       *x509.Certificate
	RSAPadding RSAPadding // for RSA certificates; ignored for EC, X25519 and KEM keys
	UseSKI     bool       // name the recipient by subjectKeyIdentifier instead of issuerAndSerialNumber
}

// EncryptOptions chooses how Encrypt protects the content.
type EncryptOptions struct {
	Cipher ContentCipher // zero value: AES256GCM
}

// KeyPair is one of our certificates with its private key, which is an
// *rsa.PrivateKey, an *ecdsa.PrivateKey, an *ecdh.PrivateKey (P-256,
// P-384, P-521 or X25519) or a *KEMPrivateKey (ML-KEM or composite
// ML-KEM). Key is nil for a certificate of ours whose key could not be
// loaded; see Decrypt and ErrKeyUnavailable.
type KeyPair struct {
	Cert *x509.Certificate
	Key  crypto.PrivateKey
}

// DecryptOptions sets what Decrypt accepts.
type DecryptOptions struct {
	// Allow3DES accepts des-ede3-cbc content (S/MIME v3). It is off by
	// default: 3DES has a 64-bit block and no sender needs it today.
	Allow3DES bool
	// MaxSize refuses input longer than this many bytes; zero means no
	// limit beyond the input the caller already holds.
	MaxSize int64
}

// Info describes a message that Decrypt opened.
type Info struct {
	ContentType  string            // "authEnvelopedData" or "envelopedData"
	Cipher       string            // e.g. "aes256-gcm", "aes128-cbc", "des-ede3-cbc"
	AEAD         bool              // the content was authenticated (AES-GCM)
	KeyTransport string            // e.g. "rsa-pkcs1v15", "rsa-oaep-sha256", "ecdh-p256-sha256kdf", "ecdh-x25519-hkdf-sha256", "mlkem768-x25519-hkdf-sha256"
	Cert         *x509.Certificate // our certificate that the message was encrypted to
}

// ErrTooLarge is returned by Decrypt for input longer than
// DecryptOptions.MaxSize.
var ErrTooLarge = errors.New("cms: input exceeds the size limit")
