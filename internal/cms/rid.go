package cms

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"math/big"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// recipientID is a RecipientIdentifier (RFC 5652 section 6.2.1) or a
// KeyAgreeRecipientIdentifier (section 6.2.2): either an issuer and serial
// number, or a subject key identifier.
type recipientID struct {
	issuer []byte // DER Name
	serial *big.Int
	ski    []byte
}

// matches reports whether id names cert.
func (id recipientID) matches(cert *x509.Certificate) bool {
	if id.ski != nil {
		return len(cert.SubjectKeyId) > 0 && bytes.Equal(id.ski, cert.SubjectKeyId)
	}
	return cert.SerialNumber != nil && id.serial.Cmp(cert.SerialNumber) == 0 && bytes.Equal(id.issuer, cert.RawIssuer)
}

// String describes id for an error message: the issuer's distinguished name
// and the serial number, or the key identifier in hex.
func (id recipientID) String() string {
	if id.ski != nil {
		return "subjectKeyIdentifier " + hex.EncodeToString(id.ski)
	}
	issuer := "?"
	var rdn pkix.RDNSequence
	if rest, err := asn1.Unmarshal(id.issuer, &rdn); err == nil && len(rest) == 0 {
		var n pkix.Name
		n.FillFromRDNSequence(&rdn)
		issuer = n.String()
	}
	return fmt.Sprintf("issuer %q serial %s", issuer, id.serial.Text(16))
}

// readIssuerAndSerial decodes IssuerAndSerialNumber (RFC 5652 section 10.2.4).
func readIssuerAndSerial(e element) (recipientID, error) {
	if !e.constructed {
		return recipientID{}, malformed("IssuerAndSerialNumber is not constructed")
	}
	r, _ := e.children()
	name, err := r.nextIs(classUniversal, tagSequence, "issuer name")
	if err != nil {
		return recipientID{}, err
	}
	issuer, err := toDER(name)
	if err != nil {
		return recipientID{}, err
	}
	se, err := r.nextIs(classUniversal, tagInteger, "serial number")
	if err != nil {
		return recipientID{}, err
	}
	der, err := toDER(se)
	if err != nil {
		return recipientID{}, err
	}
	serial := new(big.Int)
	s := cryptobyte.String(der)
	if !s.ReadASN1Integer(serial) {
		return recipientID{}, malformed("serial number is not a valid INTEGER")
	}
	if !r.empty() {
		return recipientID{}, malformed("trailing data in IssuerAndSerialNumber")
	}
	return recipientID{issuer: issuer, serial: serial}, nil
}

// readSKI decodes a SubjectKeyIdentifier, refusing an empty one so that it
// can never match a certificate without the extension.
func readSKI(e element) (recipientID, error) {
	ski, err := octets(e, false)
	if err != nil {
		return recipientID{}, err
	}
	if len(ski) == 0 {
		return recipientID{}, malformed("empty subjectKeyIdentifier")
	}
	return recipientID{ski: ski}, nil
}

// addIssuerAndSerial writes IssuerAndSerialNumber for cert.
func addIssuerAndSerial(b *cryptobyte.Builder, cert *x509.Certificate) {
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(cert.RawIssuer)
		b.AddASN1BigInt(cert.SerialNumber)
	})
}

// checkRecipientCert refuses a certificate that cannot be named in a
// RecipientIdentifier.
func checkRecipientCert(r Recipient) error {
	if r.Cert == nil {
		return fmt.Errorf("cms: recipient without a certificate")
	}
	if r.UseSKI && len(r.Cert.SubjectKeyId) == 0 {
		return fmt.Errorf("cms: recipient %q: subjectKeyIdentifier requested but the certificate has none", r.Cert.Subject)
	}
	if !r.UseSKI && (r.Cert.SerialNumber == nil || len(r.Cert.RawIssuer) == 0) {
		return fmt.Errorf("cms: recipient %q: certificate lacks issuer or serial number", r.Cert.Subject)
	}
	return nil
}
