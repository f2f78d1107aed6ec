package cms

import "encoding/asn1"

// Object identifiers of SignedData (RFC 5652 section 5), its attributes and
// the signature algorithms, kept apart from oid.go so that the signing code
// reads as one piece.
var (
	// RFC 5652 section 5.1.
	oidSignedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}

	// RFC 5652 section 11: the attributes a SignerInfo carries.
	oidAttrContentType      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidAttrMessageDigest    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	oidAttrSigningTime      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 5}
	oidAttrCountersignature = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 6}
	// RFC 8551 section 2.5.2 and 2.5.3.
	oidAttrSMIMECapabilities = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 15}
	oidAttrEncrypKeyPref     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 11}

	// RFC 4055 section 5 and RFC 5754 section 3.2: RSA PKCS #1 v1.5 with
	// a SHA-2 hash; rsaEncryption (oid.go) is accepted as well (RFC 3370
	// section 3.2, what OpenSSL writes).
	oidSHA256WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSHA384WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSHA512WithRSA = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
	oidSHA1WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 5}
	// RFC 4056: RSASSA-PSS in CMS.
	oidRSASSAPSS = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	// RFC 5758 section 3.2 and RFC 5753 section 7.1.3.
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSAWithSHA512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidECDSAWithSHA1   = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 1}
	// RFC 8410 section 3 and RFC 8419 section 2.3.
	oidEd25519 = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidEd448   = asn1.ObjectIdentifier{1, 3, 101, 113}
)
