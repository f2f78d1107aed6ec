package cms

import "encoding/asn1"

// Object identifiers used by this package, with the RFC that defines each.
var (
	// RFC 5652 section 4 and 6, RFC 5083 section 1.1.
	oidData              = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidEnvelopedData     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3}
	oidAuthEnvelopedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 23}

	// RFC 3565 section 4.1 (CBC) and RFC 5084 section 3.2 (GCM).
	oidAES128CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 2}
	oidAES192CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 22}
	oidAES256CBC = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
	oidAES128GCM = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 6}
	oidAES192GCM = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 26}
	oidAES256GCM = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 46}

	// RFC 3565 section 4.3: AES key wrap (RFC 3394).
	oidAES128Wrap = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 5}
	oidAES192Wrap = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 25}
	oidAES256Wrap = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 45}

	// RFC 3370 section 5.1 (3DES) and 5.2 (RC2, recognised only to name it).
	oidDESEDE3CBC = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}
	oidRC2CBC     = asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 2}

	// RFC 3370 section 4.2.1 and RFC 4055 section 4.1.
	oidRSAEncryption = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidRSAESOAEP     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 7}
	oidMGF1          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	oidPSpecified    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 9}

	// Digest algorithms (RFC 3370 section 2, RFC 5754 section 2).
	oidSHA1   = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA224 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 4}
	oidSHA256 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}

	// RFC 5753 section 7.1.4: ECDH key agreement schemes with the X9.63 KDF.
	oidECDHSHA1KDF   = asn1.ObjectIdentifier{1, 3, 133, 16, 840, 63, 0, 2}
	oidECDHSHA224KDF = asn1.ObjectIdentifier{1, 3, 132, 1, 11, 0}
	oidECDHSHA256KDF = asn1.ObjectIdentifier{1, 3, 132, 1, 11, 1}
	oidECDHSHA384KDF = asn1.ObjectIdentifier{1, 3, 132, 1, 11, 2}
	oidECDHSHA512KDF = asn1.ObjectIdentifier{1, 3, 132, 1, 11, 3}

	// RFC 8418 section 2: X25519 key agreement with HKDF.
	oidECDHHKDFSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 3, 19}
	oidECDHHKDFSHA384 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 3, 20}
	oidECDHHKDFSHA512 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 3, 21}

	// RFC 5480 section 2.1.1 and RFC 8410 section 3.
	oidECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidX25519      = asn1.ObjectIdentifier{1, 3, 101, 110}
)

// oidNames gives the readable name of the algorithms that error messages
// mention, so that an operator sees "rc2-cbc" and not only digits: one
// table for the identifiers of oid.go, signed_oid.go and oid_kem.go.
var oidNames = []struct {
	oid  asn1.ObjectIdentifier
	name string
}{
	{oidAES128CBC, "aes128-cbc"}, {oidAES192CBC, "aes192-cbc"}, {oidAES256CBC, "aes256-cbc"},
	{oidAES128GCM, "aes128-gcm"}, {oidAES192GCM, "aes192-gcm"}, {oidAES256GCM, "aes256-gcm"},
	{oidAES128Wrap, "aes128-wrap"}, {oidAES192Wrap, "aes192-wrap"}, {oidAES256Wrap, "aes256-wrap"},
	{oidDESEDE3CBC, "des-ede3-cbc"}, {oidRC2CBC, "rc2-cbc"},
	{oidRSAEncryption, "rsaEncryption"}, {oidRSAESOAEP, "rsaes-oaep"}, {oidMGF1, "mgf1"},
	{oidSHA1, "sha1"}, {oidSHA224, "sha224"}, {oidSHA256, "sha256"}, {oidSHA384, "sha384"}, {oidSHA512, "sha512"},
	{oidECDHSHA1KDF, "dhSinglePass-stdDH-sha1kdf-scheme"},
	{oidECDHSHA224KDF, "dhSinglePass-stdDH-sha224kdf-scheme"},
	{oidECDHSHA256KDF, "dhSinglePass-stdDH-sha256kdf-scheme"},
	{oidECDHSHA384KDF, "dhSinglePass-stdDH-sha384kdf-scheme"},
	{oidECDHSHA512KDF, "dhSinglePass-stdDH-sha512kdf-scheme"},
	{oidECDHHKDFSHA256, "dhSinglePass-stdDH-hkdf-sha256-scheme"},
	{oidECDHHKDFSHA384, "dhSinglePass-stdDH-hkdf-sha384-scheme"},
	{oidECDHHKDFSHA512, "dhSinglePass-stdDH-hkdf-sha512-scheme"},
	{oidECPublicKey, "id-ecPublicKey"}, {oidX25519, "id-X25519"},
	{oidData, "id-data"}, {oidEnvelopedData, "envelopedData"}, {oidAuthEnvelopedData, "authEnvelopedData"},
	// signed_oid.go
	{oidSignedData, "signedData"},
	{oidSHA256WithRSA, "sha256WithRSAEncryption"}, {oidSHA384WithRSA, "sha384WithRSAEncryption"},
	{oidSHA512WithRSA, "sha512WithRSAEncryption"}, {oidSHA1WithRSA, "sha1WithRSAEncryption"},
	{oidRSASSAPSS, "rsassa-pss"},
	{oidECDSAWithSHA256, "ecdsa-with-SHA256"}, {oidECDSAWithSHA384, "ecdsa-with-SHA384"},
	{oidECDSAWithSHA512, "ecdsa-with-SHA512"}, {oidECDSAWithSHA1, "ecdsa-with-SHA1"},
	{oidEd25519, "id-Ed25519"}, {oidEd448, "id-Ed448"},
	// oid_kem.go
	{oidORIKEM, "id-ori-kem"},
	{oidMLKEM512, "id-alg-ml-kem-512"}, {oidMLKEM768, "id-alg-ml-kem-768"}, {oidMLKEM1024, "id-alg-ml-kem-1024"},
	{oidHKDFSHA256, "id-alg-hkdf-with-sha256"}, {oidHKDFSHA384, "id-alg-hkdf-with-sha384"}, {oidHKDFSHA512, "id-alg-hkdf-with-sha512"},
	{oidKMAC128, "id-kmac128"}, {oidKMAC256, "id-kmac256"},
	{oidMLKEM768RSA2048, "id-MLKEM768-RSA2048-SHA3-256"},
	{oidMLKEM768RSA3072, "id-MLKEM768-RSA3072-SHA3-256"},
	{oidMLKEM768RSA4096, "id-MLKEM768-RSA4096-SHA3-256"},
	{oidMLKEM768X25519, "id-MLKEM768-X25519-SHA3-256"},
	{oidMLKEM768P256, "id-MLKEM768-ECDH-P256-SHA3-256"},
	{oidMLKEM768P384, "id-MLKEM768-ECDH-P384-SHA3-256"},
	{oidMLKEM768Brainpool, "id-MLKEM768-ECDH-brainpoolP256r1-SHA3-256"},
	{oidMLKEM1024RSA3072, "id-MLKEM1024-RSA3072-SHA3-256"},
	{oidMLKEM1024P384, "id-MLKEM1024-ECDH-P384-SHA3-256"},
	{oidMLKEM1024Brainpool, "id-MLKEM1024-ECDH-brainpoolP384r1-SHA3-256"},
	{oidMLKEM1024X448, "id-MLKEM1024-X448-SHA3-256"},
	{oidMLKEM1024P521, "id-MLKEM1024-ECDH-P521-SHA3-256"},
}

func oidName(oid asn1.ObjectIdentifier) string {
	for _, n := range oidNames {
		if n.oid.Equal(oid) {
			return n.name
		}
	}
	return ""
}
