package cms

import (
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"time"
)

// Bounds on what a SignedData may hold. RFC 5652 sets none; each is far
// above what real S/MIME senders write and keeps a hostile structure of tiny
// elements from costing more than a small, fixed amount of memory and work
// per byte of input.
const (
	// MaxSignerInfos bounds the SignerInfos of one SignedData. A message is
	// signed by its author and perhaps by a domain (RFC 3183), and during
	// an algorithm transition each of them may sign twice (RSA beside a
	// post-quantum key): four. Sixteen leaves room for odd senders, and
	// every SignerInfo costs at most one public-key operation, which the
	// caller chooses to spend.
	MaxSignerInfos = 16

	// MaxCertificates bounds the certificates field. Senders include their
	// own certificate and its chain (three to five), sometimes the chains
	// of several signers or a whole bundle; 64 covers those, and each one
	// is parsed by crypto/x509.
	MaxCertificates = 64

	// maxCertificateSize bounds one certificate: the largest in use (many
	// subjectAltNames, embedded logos) are tens of kilobytes.
	maxCertificateSize = 256 << 10

	// maxRevocationInfos bounds the crls field, which is counted and
	// skipped (revocation is checked from the partner's own sources).
	maxRevocationInfos = 64

	// maxAttributes bounds the signed and the unsigned attributes of one
	// SignerInfo. S/MIME senders write four to eight (content type,
	// digest, signing time, capabilities, key preference, signing
	// certificate); 64 is plenty.
	maxAttributes = 64

	// maxAttributeValues bounds the values of one attribute: RFC 5652
	// section 11 allows exactly one for each attribute it defines, and a
	// countersignature attribute may hold several SignerInfos.
	maxAttributeValues = 16

	// maxCapabilities bounds the SMIMECapabilities list (RFC 8551 section
	// 2.5.2): a sender lists the dozen algorithms it supports.
	maxCapabilities = 64

	// maxDigestAlgorithms bounds the digestAlgorithms SET: one per hash in
	// use by the signers.
	maxDigestAlgorithms = MaxSignerInfos
)

// SignedData is a parsed SignedData (RFC 5652 section 5.1). Its slices may
// alias the input.
type SignedData struct {
	Version int
	// ContentType is the eContentType: id-data for a MIME entity (RFC
	// 8551 section 3.5).
	ContentType asn1.ObjectIdentifier
	// Content is the eContent, its pieces joined; nil for a detached
	// signature (HasContent false), whose content travels beside it.
	Content    []byte
	HasContent bool
	// Certificates are those of the certificates field that crypto/x509
	// parses; CertificateErrors counts the others (attribute certificates,
	// other formats, or X.509 that it refuses).
	Certificates      []*x509.Certificate
	CertificateErrors int
	Signers           []*SignerInfo
}

// IsData reports whether the encapsulated content type is id-data.
func (sd *SignedData) IsData() bool { return sd.ContentType.Equal(oidData) }

// SignerInfo is one signer of a SignedData (RFC 5652 section 5.3).
type SignerInfo struct {
	Version int
	sid     recipientID
	// Digest is the digestAlgorithm: crypto.SHA256, SHA384 or SHA512; 0
	// for an algorithm this package does not verify (DigestError says
	// which).
	Digest      crypto.Hash
	DigestError error
	digestAlg   algID
	sigAlg      algID
	Signature   []byte

	signedAttrs    element
	hasSignedAttrs bool

	// Parsed signed attributes (RFC 5652 section 11, RFC 8551 section 2.5).
	contentType   asn1.ObjectIdentifier
	messageDigest []byte
	// SigningTime is the signingTime attribute, zero when absent. It is
	// the signer's own claim, as trustworthy as its signature.
	SigningTime time.Time
	// EncryptionKeyPreference names the certificate the signer wants mail
	// encrypted to (SMIMEEncryptionKeyPreference, RFC 8551 section 2.5.3);
	// nil when absent.
	EncryptionKeyPreference *CertRef
	// Capabilities are the algorithm identifiers of SMIMECapabilities.
	Capabilities []asn1.ObjectIdentifier
}

// CertRef names a certificate by issuer and serial number or by subject key
// identifier, as a SignerIdentifier or a key preference does.
type CertRef struct{ id recipientID }

// Matches reports whether r names cert.
func (r *CertRef) Matches(cert *x509.Certificate) bool { return r != nil && r.id.matches(cert) }

func (r *CertRef) String() string { return r.id.String() }

// Identifies reports whether si's SignerIdentifier names cert.
func (si *SignerInfo) Identifies(cert *x509.Certificate) bool { return si.sid.matches(cert) }

// SID describes the signer identifier for messages: issuer and serial
// number, or the subject key identifier.
func (si *SignerInfo) SID() string { return si.sid.String() }

// SignedAttributes reports whether si has signed attributes (RFC 5652
// section 5.3); without them the signature covers the content's digest
// directly and carries no signing time or key preference.
func (si *SignerInfo) SignedAttributes() bool { return si.hasSignedAttrs }

// Algorithm names the signature algorithm for logs: "rsa-pkcs1v15-sha256",
// "rsassa-pss-sha256", "ecdsa-sha384", "ed25519".
func (si *SignerInfo) Algorithm() string {
	scheme, err := si.scheme()
	if err != nil {
		if n := oidName(si.sigAlg.oid); n != "" {
			return n
		}
		return si.sigAlg.oid.String()
	}
	return scheme.name
}

// Certificate returns the certificate that si names, from sd's certificates
// or else from extra (certificates the verifier holds already: RFC 5652
// section 5.1 lets a sender leave its certificate out), or nil.
func (sd *SignedData) Certificate(si *SignerInfo, extra []*x509.Certificate) *x509.Certificate {
	for _, set := range [][]*x509.Certificate{sd.Certificates, extra} {
		for _, c := range set {
			if si.sid.matches(c) {
				return c
			}
		}
	}
	return nil
}

// ParseSignedData parses a BER or DER ContentInfo holding SignedData, and
// nothing after it, within the bounds above. The content type must be
// id-signedData.
func ParseSignedData(input []byte) (*SignedData, error) {
	ct, body, err := readContentInfo(input, "SignedData")
	if err != nil {
		return nil, err
	}
	if !ct.Equal(oidSignedData) {
		return nil, malformed("content type %s is not signedData", ct)
	}
	return parseSignedData(body)
}

func parseSignedData(e element) (*SignedData, error) {
	sd := &SignedData{}
	r, _ := e.children()
	ve, err := r.nextIs(classUniversal, tagInteger, "SignedData version")
	if err != nil {
		return nil, err
	}
	if sd.Version, err = readSmallInt(ve, "SignedData version"); err != nil {
		return nil, err
	}
	da, err := r.nextIs(classUniversal, tagSet, "digestAlgorithms")
	if err != nil {
		return nil, err
	}
	if err := checkDigestAlgorithms(da); err != nil {
		return nil, err
	}
	eci, err := r.nextIs(classUniversal, tagSequence, "encapContentInfo")
	if err != nil {
		return nil, err
	}
	if err := sd.readEncapContentInfo(eci); err != nil {
		return nil, err
	}
	if ce, ok, err := r.optional(classContext, 0); err != nil {
		return nil, err
	} else if ok {
		if err := sd.readCertificates(ce); err != nil {
			return nil, err
		}
	}
	if re, ok, err := r.optional(classContext, 1); err != nil {
		return nil, err
	} else if ok {
		if err := countChildren(re, maxRevocationInfos, "crls"); err != nil {
			return nil, err
		}
	}
	si, err := r.nextIs(classUniversal, tagSet, "signerInfos")
	if err != nil {
		return nil, err
	}
	if err := sd.readSignerInfos(si); err != nil {
		return nil, err
	}
	if !r.empty() {
		return nil, malformed("trailing data in SignedData")
	}
	return sd, nil
}

// checkDigestAlgorithms reads the digestAlgorithms SET: only its shape and
// count matter, since each SignerInfo names its own digest algorithm.
func checkDigestAlgorithms(set element) error {
	r, _ := set.children()
	for n := 0; !r.empty(); n++ {
		if n == maxDigestAlgorithms {
			return malformed("more than %d digestAlgorithms", maxDigestAlgorithms)
		}
		a, err := r.next()
		if err != nil {
			return err
		}
		if _, err := readAlgID(a, "digestAlgorithms"); err != nil {
			return err
		}
	}
	return nil
}

// countChildren checks that a constructed element has at most limit
// well-formed children.
func countChildren(e element, limit int, what string) error {
	r, err := e.children()
	if err != nil {
		return malformed("%s: %v", what, err)
	}
	for n := 0; !r.empty(); n++ {
		if n == limit {
			return malformed("more than %d %s entries", limit, what)
		}
		if _, err := r.next(); err != nil {
			return err
		}
	}
	return nil
}

// readEncapContentInfo decodes EncapsulatedContentInfo (RFC 5652 section
// 5.2): the content type and, unless detached, the content, whose BER
// pieces are joined into a new buffer.
func (sd *SignedData) readEncapContentInfo(e element) error {
	r, _ := e.children()
	te, err := r.nextIs(classUniversal, tagOID, "eContentType")
	if err != nil {
		return err
	}
	if sd.ContentType, err = readOID(te); err != nil {
		return err
	}
	ex, ok, err := r.optional(classContext, 0)
	if err != nil {
		return err
	}
	if ok {
		er, err := ex.children()
		if err != nil {
			return malformed("eContent: %v", err)
		}
		os, err := er.nextIs(classUniversal, tagOctetString, "eContent")
		if err != nil {
			return err
		}
		if !er.empty() {
			return malformed("trailing data after eContent")
		}
		if sd.Content, err = octets(os, false); err != nil {
			return err
		}
		if sd.Content == nil {
			sd.Content = []byte{}
		}
		sd.HasContent = true
	}
	if !r.empty() {
		return malformed("trailing data in EncapsulatedContentInfo")
	}
	return nil
}

// readCertificates decodes the CertificateSet (RFC 5652 section 10.2.3).
// Only plain X.509 certificates are used; attribute certificates and other
// formats ([0] to [3]) are counted, as are certificates that crypto/x509
// refuses, so that a missing signer certificate can be explained.
func (sd *SignedData) readCertificates(set element) error {
	r, err := set.children()
	if err != nil {
		return malformed("certificates: %v", err)
	}
	for n := 0; !r.empty(); n++ {
		if n == MaxCertificates {
			return malformed("more than %d certificates", MaxCertificates)
		}
		c, err := r.next()
		if err != nil {
			return err
		}
		if !c.is(classUniversal, tagSequence) || !c.constructed {
			sd.CertificateErrors++
			continue
		}
		if len(c.raw) > maxCertificateSize {
			return malformed("certificate #%d of %d bytes, limit %d", n+1, len(c.raw), maxCertificateSize)
		}
		der := c.raw
		if c.indefinite {
			if der, err = toDER(c); err != nil {
				return err
			}
		}
		x, err := x509.ParseCertificate(der)
		if err != nil {
			sd.CertificateErrors++
			continue
		}
		sd.Certificates = append(sd.Certificates, x)
	}
	return nil
}

// readSignerInfos decodes the SET OF SignerInfo (RFC 5652 section 5.3).
func (sd *SignedData) readSignerInfos(set element) error {
	r, _ := set.children()
	for n := 0; !r.empty(); n++ {
		if n == MaxSignerInfos {
			return malformed("SignerInfo #%d: more than %d SignerInfos", n+1, MaxSignerInfos)
		}
		e, err := r.nextIs(classUniversal, tagSequence, "SignerInfo")
		if err != nil {
			return err
		}
		si, err := readSignerInfo(e)
		if err != nil {
			return fmt.Errorf("SignerInfo #%d: %w", n+1, err)
		}
		sd.Signers = append(sd.Signers, si)
	}
	return nil
}

func readSignerInfo(e element) (*SignerInfo, error) {
	si := &SignerInfo{}
	r, _ := e.children()
	ve, err := r.nextIs(classUniversal, tagInteger, "SignerInfo version")
	if err != nil {
		return nil, err
	}
	if si.Version, err = readSmallInt(ve, "SignerInfo version"); err != nil {
		return nil, err
	}
	ide, err := r.next()
	if err != nil {
		return nil, err
	}
	switch {
	case ide.is(classUniversal, tagSequence) && ide.constructed:
		si.sid, err = readIssuerAndSerial(ide)
	case ide.is(classContext, 0):
		si.sid, err = readSKI(ide)
	default:
		err = malformed("SignerIdentifier is %s", tagString(ide.class, ide.tag))
	}
	if err != nil {
		return nil, err
	}
	de, err := r.nextIs(classUniversal, tagSequence, "digestAlgorithm")
	if err != nil {
		return nil, err
	}
	if si.digestAlg, err = readAlgID(de, "digestAlgorithm"); err != nil {
		return nil, err
	}
	si.Digest, si.DigestError = digestHash(si.digestAlg)
	if si.signedAttrs, si.hasSignedAttrs, err = r.optional(classContext, 0); err != nil {
		return nil, err
	}
	if si.hasSignedAttrs {
		if err := si.readSignedAttrs(); err != nil {
			return nil, err
		}
	}
	se, err := r.nextIs(classUniversal, tagSequence, "signatureAlgorithm")
	if err != nil {
		return nil, err
	}
	if si.sigAlg, err = readAlgID(se, "signatureAlgorithm"); err != nil {
		return nil, err
	}
	sv, err := r.nextIs(classUniversal, tagOctetString, "signature")
	if err != nil {
		return nil, err
	}
	if si.Signature, err = octets(sv, false); err != nil {
		return nil, err
	}
	if ue, ok, err := r.optional(classContext, 1); err != nil {
		return nil, err
	} else if ok {
		// unsignedAttrs: a countersignature, a timestamp; nothing this
		// package relies on, but bounded like the signed ones.
		if err := walkAttributes(ue, "unsignedAttrs", func(asn1.ObjectIdentifier, []element) error { return nil }); err != nil {
			return nil, err
		}
	}
	if !r.empty() {
		return nil, malformed("trailing data in SignerInfo")
	}
	return si, nil
}

// digestHash maps a digest AlgorithmIdentifier to the hash it names. RFC
// 5754 section 2 lets the parameters be absent or NULL.
func digestHash(a algID) (crypto.Hash, error) {
	if !a.paramsAbsentOrNull() {
		return 0, malformed("digest algorithm %s with parameters", a.oid)
	}
	switch {
	case a.oid.Equal(oidSHA256):
		return crypto.SHA256, nil
	case a.oid.Equal(oidSHA384):
		return crypto.SHA384, nil
	case a.oid.Equal(oidSHA512):
		return crypto.SHA512, nil
	}
	return 0, &UnsupportedAlgorithmError{OID: a.oid, Where: "digestAlgorithm (SHA-256, SHA-384 and SHA-512 are verified; SHA-1 is no longer safe for signatures, RFC 8551 section 2.1)"}
}

// walkAttributes reads a SET OF Attribute (RFC 5652 section 5.3) within the
// count bounds and hands each attribute type and its values to f.
func walkAttributes(set element, what string, f func(asn1.ObjectIdentifier, []element) error) error {
	r, err := set.children()
	if err != nil {
		return malformed("%s: %v", what, err)
	}
	n := 0
	for ; !r.empty(); n++ {
		if n == maxAttributes {
			return malformed("%s: more than %d attributes", what, maxAttributes)
		}
		ae, err := r.nextIs(classUniversal, tagSequence, what+" Attribute")
		if err != nil {
			return err
		}
		ar, _ := ae.children()
		te, err := ar.nextIs(classUniversal, tagOID, what+" attrType")
		if err != nil {
			return err
		}
		typ, err := readOID(te)
		if err != nil {
			return err
		}
		vs, err := ar.nextIs(classUniversal, tagSet, what+" attrValues")
		if err != nil {
			return err
		}
		if !ar.empty() {
			return malformed("%s: trailing data in Attribute %s", what, typ)
		}
		vr, _ := vs.children()
		var values []element
		for !vr.empty() {
			if len(values) == maxAttributeValues {
				return malformed("%s: attribute %s has more than %d values", what, typ, maxAttributeValues)
			}
			v, err := vr.next()
			if err != nil {
				return err
			}
			values = append(values, v)
		}
		if err := f(typ, values); err != nil {
			return err
		}
	}
	if n == 0 {
		// RFC 5652 section 5.3: SIZE (1..MAX).
		return malformed("%s is empty", what)
	}
	return nil
}

// readSignedAttrs decodes the signed attributes that S/MIME defines. Each
// of content type, message digest and signing time must occur at most once
// and with one value (RFC 5652 sections 11.1 to 11.3); a second instance
// could make two verifiers see two different messages.
func (si *SignerInfo) readSignedAttrs() error {
	seen := map[string]bool{}
	return walkAttributes(si.signedAttrs, "signedAttrs", func(typ asn1.ObjectIdentifier, values []element) error {
		single := func() (element, error) {
			if seen[typ.String()] {
				return element{}, malformed("signedAttrs: attribute %s occurs twice", typ)
			}
			seen[typ.String()] = true
			if len(values) != 1 {
				return element{}, malformed("signedAttrs: attribute %s has %d values, not one", typ, len(values))
			}
			return values[0], nil
		}
		switch {
		case typ.Equal(oidAttrContentType):
			v, err := single()
			if err != nil {
				return err
			}
			if si.contentType, err = readOID(v); err != nil {
				return err
			}
		case typ.Equal(oidAttrMessageDigest):
			v, err := single()
			if err != nil {
				return err
			}
			if !v.is(classUniversal, tagOctetString) {
				return malformed("messageDigest is %s", tagString(v.class, v.tag))
			}
			if si.messageDigest, err = octets(v, false); err != nil {
				return err
			}
		case typ.Equal(oidAttrSigningTime):
			v, err := single()
			if err != nil {
				return err
			}
			if si.SigningTime, err = readTime(v); err != nil {
				return err
			}
		case typ.Equal(oidAttrEncrypKeyPref):
			v, err := single()
			if err != nil {
				return err
			}
			ref, err := readKeyPreference(v)
			if err != nil {
				return err
			}
			si.EncryptionKeyPreference = ref
		case typ.Equal(oidAttrSMIMECapabilities):
			v, err := single()
			if err != nil {
				return err
			}
			if si.Capabilities, err = readCapabilities(v); err != nil {
				return err
			}
		}
		return nil
	})
}

// readTime decodes a Time (RFC 5652 section 11.3): UTCTime or
// GeneralizedTime.
func readTime(e element) (time.Time, error) {
	const tagUTCTime, tagGeneralizedTime = 23, 24
	if e.class != classUniversal || (e.tag != tagUTCTime && e.tag != tagGeneralizedTime) || e.constructed {
		return time.Time{}, malformed("signingTime is %s, not UTCTime or GeneralizedTime", tagString(e.class, e.tag))
	}
	der, err := toDER(e)
	if err != nil {
		return time.Time{}, err
	}
	var t time.Time
	if rest, err := asn1.Unmarshal(der, &t); err != nil || len(rest) > 0 {
		return time.Time{}, malformed("signingTime does not parse")
	}
	return t, nil
}

// readKeyPreference decodes SMIMEEncryptionKeyPreference (RFC 8551 section
// 2.5.3): issuerAndSerialNumber [0], receipentKeyId [1] (whose subject key
// identifier is used) or subjectAltKeyIdentifier [2].
func readKeyPreference(e element) (*CertRef, error) {
	var id recipientID
	var err error
	switch {
	case e.is(classContext, 0) && e.constructed:
		id, err = readIssuerAndSerial(e)
	case e.is(classContext, 1) && e.constructed:
		r, _ := e.children()
		var ski element
		if ski, err = r.nextIs(classUniversal, tagOctetString, "receipentKeyId subjectKeyIdentifier"); err == nil {
			id, err = readSKI(ski)
		}
	case e.is(classContext, 2):
		id, err = readSKI(e)
	default:
		err = malformed("SMIMEEncryptionKeyPreference is %s", tagString(e.class, e.tag))
	}
	if err != nil {
		return nil, err
	}
	return &CertRef{id: id}, nil
}

// readCapabilities decodes SMIMECapabilities (RFC 8551 section 2.5.2), a
// SEQUENCE OF SMIMECapability, keeping the algorithm identifiers.
func readCapabilities(e element) ([]asn1.ObjectIdentifier, error) {
	if !e.is(classUniversal, tagSequence) || !e.constructed {
		return nil, malformed("SMIMECapabilities is %s", tagString(e.class, e.tag))
	}
	r, _ := e.children()
	var caps []asn1.ObjectIdentifier
	for !r.empty() {
		if len(caps) == maxCapabilities {
			return nil, malformed("more than %d SMIMECapabilities", maxCapabilities)
		}
		c, err := r.nextIs(classUniversal, tagSequence, "SMIMECapability")
		if err != nil {
			return nil, err
		}
		cr, _ := c.children()
		oe, err := cr.nextIs(classUniversal, tagOID, "capabilityID")
		if err != nil {
			return nil, err
		}
		oid, err := readOID(oe)
		if err != nil {
			return nil, err
		}
		caps = append(caps, oid)
	}
	return caps, nil
}
