package cms

import (
	"encoding/asn1"
	"errors"
	"fmt"
)

var (
	// ErrNotForUs means that no RecipientInfo names any of the certificates
	// the caller holds keys for: the message is encrypted to someone else.
	ErrNotForUs = errors.New("cms: not encrypted to any of our certificates")

	// ErrDecrypt means that key transport, key agreement, or content
	// decryption and authentication failed. All such failures return this
	// same error with the same text, so that a padding oracle learns nothing
	// (RFC 3218 section 2.3).
	ErrDecrypt = errors.New("cms: decryption failed")

	// ErrKeyUnavailable means that the message is encrypted to one of our
	// certificates whose private key is not available (a KeyPair with a nil
	// Key), and no key that is available opened it. The error names the
	// certificates by subject and serial number. The message is probably
	// for us and must be held until the key is back: passing it on would
	// deliver it still encrypted.
	ErrKeyUnavailable = errors.New("cms: encrypted to our certificate whose private key is unavailable")

	// ErrMalformed means that the input is not a well-formed CMS structure.
	ErrMalformed = errors.New("cms: malformed input")
)

// UnsupportedAlgorithmError reports an algorithm that this package does not
// implement or refuses by policy (RC2, 3DES without Allow3DES, a non-AEAD
// cipher inside AuthEnvelopedData, a GCM tag shorter than 16 bytes).
type UnsupportedAlgorithmError struct {
	OID   asn1.ObjectIdentifier
	Where string // which field, and why it was refused
}

func (e *UnsupportedAlgorithmError) Error() string {
	name := oidName(e.OID)
	if name != "" {
		return fmt.Sprintf("cms: unsupported algorithm %s (%s) in %s", e.OID, name, e.Where)
	}
	return fmt.Sprintf("cms: unsupported algorithm %s in %s", e.OID, e.Where)
}

// malformed wraps ErrMalformed with a description of what was wrong.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}
