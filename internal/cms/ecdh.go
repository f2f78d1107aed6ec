package cms

import (
	"crypto"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/asn1"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Key agreement: ECDH ephemeral-static on P-256, P-384 and P-521 (RFC 5753
// section 3.1) and X25519 (RFC 8418), carried in a KeyAgreeRecipientInfo
// (RFC 5652 section 6.2.2). The sender makes a fresh key pair per
// recipient, derives a key-encryption key from the shared secret, and wraps
// the content-encryption key with AES key wrap sized to it.

// kdfScheme is one keyEncryptionAlgorithm for key agreement.
type kdfScheme struct {
	oid  asn1.ObjectIdentifier
	hash crypto.Hash
	hkdf bool // RFC 8418 HKDF; otherwise the X9.63 KDF of RFC 5753
	name string
}

var kdfSchemes = []kdfScheme{
	{oidECDHSHA1KDF, crypto.SHA1, false, "sha1kdf"},
	{oidECDHSHA224KDF, crypto.SHA224, false, "sha224kdf"},
	{oidECDHSHA256KDF, crypto.SHA256, false, "sha256kdf"},
	{oidECDHSHA384KDF, crypto.SHA384, false, "sha384kdf"},
	{oidECDHSHA512KDF, crypto.SHA512, false, "sha512kdf"},
	{oidECDHHKDFSHA256, crypto.SHA256, true, "hkdf-sha256"},
	{oidECDHHKDFSHA384, crypto.SHA384, true, "hkdf-sha384"},
	{oidECDHHKDFSHA512, crypto.SHA512, true, "hkdf-sha512"},
}

func (s kdfScheme) derive(z, ukm, sharedInfo []byte, n int) ([]byte, error) {
	if s.hkdf {
		return hkdfKDF(s.hash, z, ukm, sharedInfo, n)
	}
	return x963KDF(s.hash, z, sharedInfo, n), nil
}

// keyWrapAlgs are the AES key-wrap algorithms (RFC 3565 section 4.3).
var keyWrapAlgs = []struct {
	oid    asn1.ObjectIdentifier
	kekLen int
}{
	{oidAES128Wrap, 16},
	{oidAES192Wrap, 24},
	{oidAES256Wrap, 32},
}

// curveName gives the short name that Info.KeyTransport uses.
func curveName(c ecdh.Curve) string {
	switch c {
	case ecdh.P256():
		return "p256"
	case ecdh.P384():
		return "p384"
	case ecdh.P521():
		return "p521"
	case ecdh.X25519():
		return "x25519"
	}
	return "unknown"
}

// addKeyAgreeRecipient writes a KeyAgreeRecipientInfo for one recipient.
func addKeyAgreeRecipient(b *cryptobyte.Builder, r Recipient, pub *ecdh.PublicKey, cek []byte) error {
	curve := pub.Curve()
	x25519 := curve == ecdh.X25519()
	// RFC 8551 section 2.3 makes dhSinglePass-stdDH-sha256kdf-scheme the
	// one that receivers MUST support, so we send it on every NIST curve
	// (RFC 5753 section 8 would pair P-384 and P-521 with longer digests;
	// we read those too). RFC 8418 section 2: HKDF-SHA-256 for X25519.
	scheme := kdfSchemes[2]
	if x25519 {
		scheme = kdfSchemes[5]
	}
	// The wrap algorithm is sized to the content key (RFC 5753 section 8).
	var wrapOID asn1.ObjectIdentifier
	kekLen := len(cek)
	switch kekLen {
	case 16:
		wrapOID = oidAES128Wrap
	case 24:
		wrapOID = oidAES192Wrap
	case 32:
		wrapOID = oidAES256Wrap
	default:
		return fmt.Errorf("cms: no AES key wrap for a %d-byte content key", kekLen)
	}
	wb := cryptobyte.NewBuilder(nil)
	addAlgID(wb, wrapOID, nil) // RFC 3565 section 4.3: parameters absent
	wrapAlg := wb.BytesOrPanic()

	eph, err := curve.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("cms: ephemeral key for %q: %w", r.Cert.Subject, err)
	}
	z, err := eph.ECDH(pub)
	if err != nil {
		return fmt.Errorf("cms: key agreement with %q: %w", r.Cert.Subject, err)
	}
	kek, err := scheme.derive(z, nil, eccSharedInfo(wrapAlg, nil, kekLen), kekLen)
	clear(z)
	if err != nil {
		return fmt.Errorf("cms: key derivation for %q: %w", r.Cert.Subject, err)
	}
	wrapped, err := keyWrap(kek, cek)
	clear(kek)
	if err != nil {
		return err
	}

	b.AddASN1(casn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
		b.AddASN1Int64(3) // RFC 5652 section 6.2.2: always 3
		// originator [0] EXPLICIT, originatorKey [1] IMPLICIT
		// OriginatorPublicKey (RFC 5753 section 3.1.1: the ephemeral key,
		// with the id-ecPublicKey parameters absent; RFC 8418 section 2.1:
		// id-X25519, parameters absent).
		b.AddASN1(casn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				if x25519 {
					addAlgID(b, oidX25519, nil)
				} else {
					addAlgID(b, oidECPublicKey, nil)
				}
				b.AddASN1BitString(eph.PublicKey().Bytes())
			})
		})
		addAlgID(b, scheme.oid, func(b *cryptobyte.Builder) { b.AddBytes(wrapAlg) })
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) { // RecipientEncryptedKeys
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				if r.UseSKI {
					// rKeyId [0] IMPLICIT RecipientKeyIdentifier
					b.AddASN1(casn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
						b.AddASN1OctetString(r.Cert.SubjectKeyId)
					})
				} else {
					addIssuerAndSerial(b, r.Cert)
				}
				b.AddASN1OctetString(wrapped)
			})
		})
	})
	return nil
}

// keyAgreeInfo is a decoded KeyAgreeRecipientInfo.
type keyAgreeInfo struct {
	origAlg algID
	origKey []byte // the ephemeral public key: an uncompressed point, or 32 bytes for X25519
	ukm     []byte
	scheme  kdfScheme
	wrapDER []byte
	kekLen  int
	keys    []keyRef
}

// keyRef is one RecipientEncryptedKey, or the single key of a
// KeyTransRecipientInfo.
type keyRef struct {
	rid    recipientID
	encKey []byte
}

// readKeyAgreeInfo decodes a KeyAgreeRecipientInfo (RFC 5652 section
// 6.2.2). encryptedKeys counts the RecipientEncryptedKeys read so far in
// the whole message, against MaxRecipientInfos.
func readKeyAgreeInfo(e element, encryptedKeys *int) (*keyAgreeInfo, error) {
	r, err := e.children()
	if err != nil {
		return nil, err
	}
	ve, err := r.nextIs(classUniversal, tagInteger, "KeyAgreeRecipientInfo version")
	if err != nil {
		return nil, err
	}
	if v, err := readSmallInt(ve, "KeyAgreeRecipientInfo version"); err != nil {
		return nil, err
	} else if v != 3 {
		return nil, malformed("KeyAgreeRecipientInfo version %d (want 3)", v)
	}
	ka := &keyAgreeInfo{}
	oe, err := r.nextIs(classContext, 0, "originator")
	if err != nil {
		return nil, err
	}
	if err := ka.readOriginator(oe); err != nil {
		return nil, err
	}
	if ue, ok, err := r.optional(classContext, 1); err != nil {
		return nil, err
	} else if ok {
		ur, err := ue.children()
		if err != nil {
			return nil, err
		}
		u, err := ur.nextIs(classUniversal, tagOctetString, "ukm")
		if err != nil {
			return nil, err
		}
		if ka.ukm, err = octets(u, false); err != nil {
			return nil, err
		}
		if !ur.empty() {
			return nil, malformed("trailing data after ukm")
		}
	}
	kee, err := r.nextIs(classUniversal, tagSequence, "keyEncryptionAlgorithm")
	if err != nil {
		return nil, err
	}
	if err := ka.readAlgorithm(kee); err != nil {
		return nil, err
	}
	rke, err := r.nextIs(classUniversal, tagSequence, "recipientEncryptedKeys")
	if err != nil {
		return nil, err
	}
	if !r.empty() {
		return nil, malformed("trailing data in KeyAgreeRecipientInfo")
	}
	rr, err := rke.children()
	if err != nil {
		return nil, err
	}
	for !rr.empty() {
		if *encryptedKeys == MaxRecipientInfos {
			return nil, malformed("RecipientEncryptedKey #%d: more than %d RecipientEncryptedKeys in all KeyAgreeRecipientInfos", *encryptedKeys+1, MaxRecipientInfos)
		}
		*encryptedKeys++
		k, err := rr.nextIs(classUniversal, tagSequence, "RecipientEncryptedKey")
		if err != nil {
			return nil, err
		}
		ref, err := readRecipientEncryptedKey(k)
		if err != nil {
			return nil, err
		}
		ka.keys = append(ka.keys, ref)
	}
	return ka, nil
}

// readOriginator decodes originator [0] EXPLICIT OriginatorIdentifierOrKey.
// Only originatorKey is possible with ephemeral-static ECDH (RFC 5753
// section 3.1.1); the other choices mean static-static key agreement.
func (ka *keyAgreeInfo) readOriginator(e element) error {
	r, err := e.children()
	if err != nil {
		return err
	}
	k, err := r.next()
	if err != nil {
		return err
	}
	if !k.is(classContext, 1) || !k.constructed {
		return malformed("originator is not an originatorKey (static-static key agreement is not supported)")
	}
	if !r.empty() {
		return malformed("trailing data after originator")
	}
	kr, _ := k.children()
	ae, err := kr.nextIs(classUniversal, tagSequence, "originatorKey algorithm")
	if err != nil {
		return err
	}
	if ka.origAlg, err = readAlgID(ae, "originatorKey algorithm"); err != nil {
		return err
	}
	be, err := kr.nextIs(classUniversal, tagBitString, "originatorKey publicKey")
	if err != nil {
		return err
	}
	if be.constructed || len(be.body) < 1 || be.body[0] != 0 {
		return malformed("originatorKey publicKey is not a whole-byte BIT STRING")
	}
	ka.origKey = be.body[1:]
	if !kr.empty() {
		return malformed("trailing data in OriginatorPublicKey")
	}
	return nil
}

// readAlgorithm decodes the keyEncryptionAlgorithm: a key-agreement scheme
// whose parameters are the key-wrap AlgorithmIdentifier (RFC 5753 section
// 7.1.4, RFC 8418 section 2.2).
func (ka *keyAgreeInfo) readAlgorithm(e element) error {
	a, err := readAlgID(e, "keyEncryptionAlgorithm")
	if err != nil {
		return err
	}
	found := false
	for _, s := range kdfSchemes {
		if s.oid.Equal(a.oid) {
			ka.scheme, found = s, true
		}
	}
	if !found {
		return &UnsupportedAlgorithmError{OID: a.oid, Where: "key agreement"}
	}
	if !a.hasParams {
		return malformed("key-agreement algorithm without its key-wrap algorithm")
	}
	w, err := readAlgID(a.params, "key-wrap algorithm")
	if err != nil {
		return err
	}
	for _, kw := range keyWrapAlgs {
		if kw.oid.Equal(w.oid) {
			ka.kekLen = kw.kekLen
		}
	}
	if ka.kekLen == 0 {
		return &UnsupportedAlgorithmError{OID: w.oid, Where: "key wrap"}
	}
	// The SharedInfo repeats the wrap algorithm as it was sent, so that a
	// peer that writes NULL parameters still derives the same key.
	ka.wrapDER, err = toDER(w.elem)
	return err
}

func readRecipientEncryptedKey(e element) (keyRef, error) {
	r, _ := e.children()
	ide, err := r.next()
	if err != nil {
		return keyRef{}, err
	}
	var ref keyRef
	switch {
	case ide.is(classUniversal, tagSequence):
		ref.rid, err = readIssuerAndSerial(ide)
	case ide.is(classContext, 0) && ide.constructed:
		// rKeyId [0] IMPLICIT RecipientKeyIdentifier: the key identifier,
		// then an optional date and other attribute that we do not need.
		kr, _ := ide.children()
		var ske element
		if ske, err = kr.nextIs(classUniversal, tagOctetString, "rKeyId subjectKeyIdentifier"); err == nil {
			ref.rid, err = readSKI(ske)
		}
	default:
		err = malformed("RecipientEncryptedKey identifier is %s", tagString(ide.class, ide.tag))
	}
	if err != nil {
		return keyRef{}, err
	}
	ke, err := r.nextIs(classUniversal, tagOctetString, "encryptedKey")
	if err != nil {
		return keyRef{}, err
	}
	if ref.encKey, err = octets(ke, false); err != nil {
		return keyRef{}, err
	}
	if !r.empty() {
		return keyRef{}, malformed("trailing data in RecipientEncryptedKey")
	}
	return ref, nil
}

// originatorCurveOK checks the originator key's algorithm against our key's
// curve: id-X25519 for X25519; id-ecPublicKey with absent or NULL
// parameters, or the same named curve, otherwise.
func (ka *keyAgreeInfo) originatorCurveOK(curve ecdh.Curve) bool {
	if curve == ecdh.X25519() {
		return ka.origAlg.oid.Equal(oidX25519) && !ka.origAlg.hasParams
	}
	if !ka.origAlg.oid.Equal(oidECPublicKey) {
		return false
	}
	if ka.origAlg.paramsAbsentOrNull() {
		return true
	}
	named, err := readOID(ka.origAlg.params)
	if err != nil {
		return false
	}
	want := map[ecdh.Curve]asn1.ObjectIdentifier{
		ecdh.P256(): {1, 2, 840, 10045, 3, 1, 7},
		ecdh.P384(): {1, 3, 132, 0, 34},
		ecdh.P521(): {1, 3, 132, 0, 35},
	}[curve]
	return named.Equal(want)
}

// unwrap recovers the content-encryption key from ref with priv. Like the
// RSA path it never reports failure: a bad point, a wrong key or a failed
// integrity check all give a random key, and the failure shows only at
// content decryption.
func (ka *keyAgreeInfo) unwrap(priv *ecdh.PrivateKey, ref keyRef, keyLen int) []byte {
	cek := randomBytes(keyLen)
	curve := priv.Curve()
	if !ka.originatorCurveOK(curve) {
		return cek
	}
	pub, err := curve.NewPublicKey(ka.origKey)
	if err != nil {
		return cek
	}
	z, err := priv.ECDH(pub)
	if err != nil {
		return cek
	}
	kek, err := ka.scheme.derive(z, ka.ukm, eccSharedInfo(ka.wrapDER, ka.ukm, ka.kekLen), ka.kekLen)
	clear(z)
	if err != nil {
		return cek
	}
	key, err := keyUnwrap(kek, ref.encKey)
	clear(kek)
	if err != nil || len(key) != keyLen {
		return cek
	}
	return key
}

func (ka *keyAgreeInfo) transportName(curve ecdh.Curve) string {
	return "ecdh-" + curveName(curve) + "-" + ka.scheme.name
}
