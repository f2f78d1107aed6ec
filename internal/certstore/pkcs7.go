package certstore

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"

	"smimegate/internal/cms"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// maxCertsPerFile bounds how many certificates one file may bring: a
// partner's chain is a handful, a whole CA bundle a few hundred.
const maxCertsPerFile = 1000

// parsePKCS7Certs returns the certificates of a PKCS#7 / CMS SignedData,
// typically a certs-only message (RFC 8551 section 3.8, `.p7b`/`.p7c`, as
// `openssl crl2pkcs7 -nocrl` writes it). Signatures, if any, are ignored:
// the file is a container for certificates, each judged on its own.
func parsePKCS7Certs(data []byte) ([]*x509.Certificate, error) {
	certs, err := parsePKCS7DER(data)
	if err == nil {
		return certs, nil
	}
	// Streaming encoders write BER with indefinite lengths; re-encode and
	// try again, reporting the first error if that does not help.
	der, berErr := cms.BERToDER(data)
	if berErr != nil {
		return nil, err
	}
	return parsePKCS7DER(der)
}

func parsePKCS7DER(der []byte) ([]*x509.Certificate, error) {
	in := cryptobyte.String(der)
	var ci, content, sd cryptobyte.String
	var ctype asn1.ObjectIdentifier
	// RFC 5652 section 3: ContentInfo ::= SEQUENCE { contentType, [0] EXPLICIT content }
	if !in.ReadASN1(&ci, cbasn1.SEQUENCE) || !in.Empty() || !ci.ReadASN1ObjectIdentifier(&ctype) {
		return nil, errors.New("not a PKCS#7 ContentInfo")
	}
	if !ctype.Equal(cms.OIDSignedData) {
		return nil, fmt.Errorf("PKCS#7 content type %s is not signedData", ctype)
	}
	if !ci.ReadASN1(&content, cbasn1.Tag(0).Constructed().ContextSpecific()) || !ci.Empty() ||
		!content.ReadASN1(&sd, cbasn1.SEQUENCE) || !content.Empty() {
		return nil, errors.New("malformed PKCS#7 signedData content")
	}
	// RFC 5652 section 5.1: SignedData ::= SEQUENCE { version,
	// digestAlgorithms SET, encapContentInfo, certificates [0] IMPLICIT
	// OPTIONAL, crls [1] IMPLICIT OPTIONAL, signerInfos SET }
	var version int
	var digestAlgs, encap, certSet cryptobyte.String
	var hasCerts bool
	if !sd.ReadASN1Integer(&version) ||
		!sd.ReadASN1(&digestAlgs, cbasn1.SET) ||
		!sd.ReadASN1(&encap, cbasn1.SEQUENCE) ||
		!sd.ReadOptionalASN1(&certSet, &hasCerts, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return nil, errors.New("malformed PKCS#7 SignedData")
	}
	var certs []*x509.Certificate
	for !certSet.Empty() {
		var raw cryptobyte.String
		var tag cbasn1.Tag
		if !certSet.ReadAnyASN1Element(&raw, &tag) {
			return nil, errors.New("malformed certificate set in PKCS#7 SignedData")
		}
		// CertificateChoices: only the plain Certificate (a SEQUENCE) is a
		// certificate we can use; attribute certificates are skipped.
		if tag != cbasn1.SEQUENCE {
			continue
		}
		if len(certs) == maxCertsPerFile {
			return nil, fmt.Errorf("more than %d certificates in one PKCS#7 file", maxCertsPerFile)
		}
		c, err := parseCertificate(raw)
		if err != nil {
			return nil, fmt.Errorf("certificate %d in PKCS#7: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("PKCS#7 file holds no certificate")
	}
	return certs, nil
}
