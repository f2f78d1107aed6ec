package cms

import "encoding/asn1"

// Object identifiers of key encapsulation (RFC 9629), ML-KEM (RFC 9936,
// RFC 9935) and composite ML-KEM (draft-ietf-lamps-pq-composite-kem), with
// the document that defines each.
var (
	// RFC 9629 section 3: OtherRecipientInfo type of KEMRecipientInfo.
	oidORIKEM = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 13, 3}

	// RFC 9936 section 3 (from NIST's CSOR): the ML-KEM parameter sets.
	oidMLKEM512  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 4, 1}
	oidMLKEM768  = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 4, 2}
	oidMLKEM1024 = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 4, 3}

	// RFC 8619 section 2: HKDF as a KeyDerivationAlgorithmIdentifier.
	oidHKDFSHA256 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 3, 28}
	oidHKDFSHA384 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 3, 29}
	oidHKDFSHA512 = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 3, 30}

	// draft-ietf-lamps-pq-composite-kem section 6: id-MLKEM768-RSA2048-SHA3-256
	// and its siblings, 1.3.6.1.5.5.7.6.55 to .66.
	oidMLKEM768RSA2048    = compositeOID(55)
	oidMLKEM768RSA3072    = compositeOID(56)
	oidMLKEM768RSA4096    = compositeOID(57)
	oidMLKEM768X25519     = compositeOID(58)
	oidMLKEM768P256       = compositeOID(59)
	oidMLKEM768P384       = compositeOID(60)
	oidMLKEM768Brainpool  = compositeOID(61)
	oidMLKEM1024RSA3072   = compositeOID(62)
	oidMLKEM1024P384      = compositeOID(63)
	oidMLKEM1024Brainpool = compositeOID(64)
	oidMLKEM1024X448      = compositeOID(65)
	oidMLKEM1024P521      = compositeOID(66)
	oidKMAC128            = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 21} // RFC 9688 section 3
	oidKMAC256            = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 22}
	oidNamedCurveP256     = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7} // RFC 5480 section 2.1.1.1
	oidNamedCurveP384     = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidNamedCurveP521     = asn1.ObjectIdentifier{1, 3, 132, 0, 35}
)

func compositeOID(n int) asn1.ObjectIdentifier {
	return asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 6, n}
}
