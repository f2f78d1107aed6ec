package cms

import (
	"crypto"
	"encoding/asn1"
)

// The object identifiers other packages read or write, exported from this
// package's one table (oid.go, signed_oid.go) so that no package keeps a
// copy: certstore reads PKCS #7 bundles, encrypted PKCS #8 keys and OCSP
// responses, smime tells content types apart. The slices are shared:
// callers compare with them and never modify them.
var (
	OIDData              = oidData              // RFC 5652 section 4
	OIDSignedData        = oidSignedData        // RFC 5652 section 5.1
	OIDEnvelopedData     = oidEnvelopedData     // RFC 5652 section 6
	OIDAuthEnvelopedData = oidAuthEnvelopedData // RFC 5083 section 1

	OIDAES128CBC  = oidAES128CBC  // RFC 3565 section 4.1
	OIDAES192CBC  = oidAES192CBC  // RFC 3565 section 4.1
	OIDAES256CBC  = oidAES256CBC  // RFC 3565 section 4.1
	OIDDESEDE3CBC = oidDESEDE3CBC // RFC 3370 section 5.1
)

// DigestByOID returns the hash that a digest algorithm identifier names
// (RFC 3370 section 2.1, RFC 5754 section 2), from the table this package
// reads CMS with; false for any other identifier. Whether that hash is
// strong enough for the caller's purpose is the caller's decision.
func DigestByOID(oid asn1.ObjectIdentifier) (crypto.Hash, bool) {
	for _, d := range digestAlgs {
		if d.oid.Equal(oid) {
			return d.hash, true
		}
	}
	return 0, false
}
