package cms

import "encoding/asn1"

// MaxRecipientInfos bounds the RecipientInfos of one message, and
// separately the RecipientEncryptedKeys of all its KeyAgreeRecipientInfos
// counted together. A gateway encrypts to one certificate per domain and a
// mail client to one per recipient, and a mail has at most as many
// recipients as the receiving MTA accepts: RFC 5321 section 4.5.3.1.8 asks
// for at least 100, and Postfix accepts 1000 by default. Without a bound,
// a message of tiny RecipientInfos is a memory bomb: 1.2 million of them
// in 47 MB took 1.5 GB to parse. Parsing stops at the first one past the
// bound, before it is decoded.
const MaxRecipientInfos = 1000

// envelope is a parsed EnvelopedData (RFC 5652 section 6.1) or
// AuthEnvelopedData (RFC 5083 section 2.1). Its slices alias the input.
type envelope struct {
	auth       bool
	keyTrans   []keyTransInfo
	keyAgree   []*keyAgreeInfo
	kem        []*kemRecipientInfo // ori of type id-ori-kem (RFC 9629)
	otherKinds int                 // kekri, pwri, other ori: never for a certificate
	// encryptedKeys counts the RecipientEncryptedKeys of all keyAgree
	// entries, against MaxRecipientInfos.
	encryptedKeys int

	contentType asn1.ObjectIdentifier
	contentAlg  algID
	content     element // encryptedContent, [0] IMPLICIT OCTET STRING
	hasContent  bool

	authAttrs    element
	hasAuthAttrs bool
	mac          []byte
}

// keyTransInfo is a KeyTransRecipientInfo (RFC 5652 section 6.2.1).
type keyTransInfo struct {
	ref keyRef
	alg algID
}

// readContentInfo decodes a ContentInfo (RFC 5652 section 3), and nothing
// after it, whose content is a SEQUENCE: it returns the contentType and
// that SEQUENCE. what names the content in errors.
func readContentInfo(input []byte, what string) (asn1.ObjectIdentifier, element, error) {
	if len(input) == 0 {
		return nil, element{}, malformed("empty input")
	}
	top := newReader(input, 0)
	ci, err := top.nextIs(classUniversal, tagSequence, "ContentInfo")
	if err != nil {
		return nil, element{}, err
	}
	if !top.empty() {
		return nil, element{}, malformed("%d bytes of trailing data after the ContentInfo", len(top.b))
	}
	r, err := ci.children()
	if err != nil {
		return nil, element{}, err
	}
	te, err := r.nextIs(classUniversal, tagOID, "contentType")
	if err != nil {
		return nil, element{}, err
	}
	ct, err := readOID(te)
	if err != nil {
		return nil, element{}, err
	}
	ce, err := r.nextIs(classContext, 0, "content")
	if err != nil {
		return nil, element{}, err
	}
	if !r.empty() {
		return nil, element{}, malformed("trailing data in ContentInfo")
	}
	cr, err := ce.children()
	if err != nil {
		return nil, element{}, err
	}
	body, err := cr.nextIs(classUniversal, tagSequence, what)
	if err != nil {
		return nil, element{}, err
	}
	if !cr.empty() {
		return nil, element{}, malformed("trailing data after the %s", what)
	}
	return ct, body, nil
}

// parseContentInfo decodes a ContentInfo (RFC 5652 section 3) that holds
// EnvelopedData or AuthEnvelopedData, and nothing after it.
func parseContentInfo(input []byte) (*envelope, error) {
	ct, body, err := readContentInfo(input, "enveloped content")
	if err != nil {
		return nil, err
	}
	var auth bool
	switch {
	case ct.Equal(oidEnvelopedData):
	case ct.Equal(oidAuthEnvelopedData):
		auth = true
	default:
		return nil, malformed("content type %s is neither envelopedData nor authEnvelopedData", ct)
	}
	return parseEnvelope(body, auth)
}

func parseEnvelope(e element, auth bool) (*envelope, error) {
	env := &envelope{auth: auth}
	r, err := e.children()
	if err != nil {
		return nil, err
	}
	ve, err := r.nextIs(classUniversal, tagInteger, "version")
	if err != nil {
		return nil, err
	}
	if _, err := readSmallInt(ve, "version"); err != nil {
		return nil, err
	}
	// originatorInfo [0] IMPLICIT: certificates and CRLs that we do not use.
	if r.peekIs(classContext, 0) {
		if _, err := r.next(); err != nil {
			return nil, err
		}
	}
	rs, err := r.nextIs(classUniversal, tagSet, "recipientInfos")
	if err != nil {
		return nil, err
	}
	if err := env.readRecipientInfos(rs); err != nil {
		return nil, err
	}
	eci, err := r.nextIs(classUniversal, tagSequence, "encryptedContentInfo")
	if err != nil {
		return nil, err
	}
	if err := env.readEncryptedContentInfo(eci); err != nil {
		return nil, err
	}
	if auth {
		// RFC 5083 section 2.1: authAttrs [1], mac, unauthAttrs [2].
		if env.authAttrs, env.hasAuthAttrs, err = r.optional(classContext, 1); err != nil {
			return nil, err
		}
		me, err := r.nextIs(classUniversal, tagOctetString, "mac")
		if err != nil {
			return nil, err
		}
		if env.mac, err = octets(me, false); err != nil {
			return nil, err
		}
		if r.peekIs(classContext, 2) {
			if _, err := r.next(); err != nil {
				return nil, err
			}
		}
	} else if r.peekIs(classContext, 1) {
		// unprotectedAttrs [1] (RFC 5652 section 6.1): nothing we use.
		if _, err := r.next(); err != nil {
			return nil, err
		}
	}
	if !r.empty() {
		return nil, malformed("trailing data in the enveloped content")
	}
	return env, nil
}

// readRecipientInfos decodes the SET OF RecipientInfo (RFC 5652 section 6.2).
func (env *envelope) readRecipientInfos(set element) error {
	r, err := set.children()
	if err != nil {
		return err
	}
	n := 0
	for !r.empty() {
		if n == MaxRecipientInfos {
			return malformed("RecipientInfo #%d: more than %d RecipientInfos", n+1, MaxRecipientInfos)
		}
		ri, err := r.next()
		if err != nil {
			return err
		}
		n++
		switch {
		case ri.is(classUniversal, tagSequence) && ri.constructed:
			kt, err := readKeyTransInfo(ri)
			if err != nil {
				return err
			}
			env.keyTrans = append(env.keyTrans, kt)
		case ri.is(classContext, 1) && ri.constructed:
			ka, err := readKeyAgreeInfo(ri, &env.encryptedKeys)
			if err != nil {
				return err
			}
			env.keyAgree = append(env.keyAgree, ka)
		case ri.is(classContext, 4) && ri.constructed:
			ki, err := readOtherRecipientInfo(ri)
			if err != nil {
				return err
			}
			if ki == nil {
				env.otherKinds++
			} else {
				env.kem = append(env.kem, ki)
			}
		case ri.class == classContext && ri.tag >= 2 && ri.tag <= 4:
			// kekri, pwri, ori: symmetric or other keys, never a certificate.
			env.otherKinds++
		default:
			return malformed("RecipientInfo is %s", tagString(ri.class, ri.tag))
		}
	}
	if n == 0 {
		return malformed("no RecipientInfo")
	}
	return nil
}

func readKeyTransInfo(e element) (keyTransInfo, error) {
	r, _ := e.children()
	ve, err := r.nextIs(classUniversal, tagInteger, "KeyTransRecipientInfo version")
	if err != nil {
		return keyTransInfo{}, err
	}
	if _, err := readSmallInt(ve, "KeyTransRecipientInfo version"); err != nil {
		return keyTransInfo{}, err
	}
	ide, err := r.next()
	if err != nil {
		return keyTransInfo{}, err
	}
	var kt keyTransInfo
	switch {
	case ide.is(classUniversal, tagSequence):
		kt.ref.rid, err = readIssuerAndSerial(ide)
	case ide.is(classContext, 0):
		// subjectKeyIdentifier [0] IMPLICIT OCTET STRING
		kt.ref.rid, err = readSKI(ide)
	default:
		err = malformed("RecipientIdentifier is %s", tagString(ide.class, ide.tag))
	}
	if err != nil {
		return keyTransInfo{}, err
	}
	ae, err := r.nextIs(classUniversal, tagSequence, "keyEncryptionAlgorithm")
	if err != nil {
		return keyTransInfo{}, err
	}
	if kt.alg, err = readAlgID(ae, "keyEncryptionAlgorithm"); err != nil {
		return keyTransInfo{}, err
	}
	ke, err := r.nextIs(classUniversal, tagOctetString, "encryptedKey")
	if err != nil {
		return keyTransInfo{}, err
	}
	if kt.ref.encKey, err = octets(ke, false); err != nil {
		return keyTransInfo{}, err
	}
	if !r.empty() {
		return keyTransInfo{}, malformed("trailing data in KeyTransRecipientInfo")
	}
	return kt, nil
}

// readEncryptedContentInfo decodes EncryptedContentInfo (RFC 5652 section
// 6.1). The ciphertext is only located here; Decrypt joins and decrypts it
// in place once everything else has been read.
func (env *envelope) readEncryptedContentInfo(e element) error {
	r, _ := e.children()
	te, err := r.nextIs(classUniversal, tagOID, "encrypted contentType")
	if err != nil {
		return err
	}
	if env.contentType, err = readOID(te); err != nil {
		return err
	}
	ae, err := r.nextIs(classUniversal, tagSequence, "contentEncryptionAlgorithm")
	if err != nil {
		return err
	}
	if env.contentAlg, err = readAlgID(ae, "contentEncryptionAlgorithm"); err != nil {
		return err
	}
	if env.content, env.hasContent, err = r.optional(classContext, 0); err != nil {
		return err
	}
	if env.hasContent {
		if env.content.constructed {
			// Validate the segments now, so that a bad one is reported as
			// malformed before any key is used.
			if _, err := segmentsLen(env.content); err != nil {
				return err
			}
		}
	}
	if !r.empty() {
		return malformed("trailing data in EncryptedContentInfo")
	}
	return nil
}
