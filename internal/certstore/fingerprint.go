package certstore

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
)

// Fingerprint is the one name smimegate gives a certificate in logs, file
// names and commands: the hex SHA-256 of its DER encoding, as `openssl x509
// -fingerprint -sha256` shows it without the colons. A nil certificate has
// none.
func Fingerprint(c *x509.Certificate) string {
	if c == nil {
		return ""
	}
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}
