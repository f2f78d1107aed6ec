package cms

import (
	"crypto"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	_ "crypto/sha512" // HKDF-SHA-384 and -512
	"encoding/asn1"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// KEMRecipientInfo (RFC 9629 section 3), carried in an OtherRecipientInfo
// of type id-ori-kem: the sender encapsulates a shared secret to the
// recipient's KEM key, derives a key-encryption key from it with a KDF
// whose info is the DER CMSORIforKEMOtherInfo (section 5), and wraps the
// content-encryption key with it.

// Bounds on the fields of a KEMRecipientInfo that an attacker sets. The
// input already bounds them all; these refuse the absurd before any of it
// is copied or hashed once per key.
const (
	// maxKEMCiphertext: the largest kemct of a KEM here is 1,952 bytes
	// (id-MLKEM1024-RSA3072-SHA3-256); 4 KiB leaves room for a KEM we do
	// not implement, which a message may name for another recipient.
	maxKEMCiphertext = 4096
	// maxUKM: RFC 9629 gives the ukm no size, and RFC 9936 needs none; a
	// nonce or an identifier is tens of bytes. It is hashed into the KDF.
	maxUKM = 1024
	// maxWrappedKey: an AES key wrap of a 256-bit key is 40 bytes.
	maxWrappedKey = 256
	// maxKEKLength is kekLength's upper bound in RFC 9629 section 3.
	maxKEKLength = 65535
)

// kemKDFs are the KeyDerivationAlgorithmIdentifiers of RFC 8619 that
// KEMRecipientInfo may name. RFC 9936 section 2.1 requires HKDF-SHA256.
var kemKDFs = []struct {
	oid  asn1.ObjectIdentifier
	hash crypto.Hash
	name string
}{
	{oidHKDFSHA256, crypto.SHA256, "hkdf-sha256"},
	{oidHKDFSHA384, crypto.SHA384, "hkdf-sha384"},
	{oidHKDFSHA512, crypto.SHA512, "hkdf-sha512"},
}

// kemRecipientInfo is a decoded KEMRecipientInfo. Its algorithms are only
// read here; they are resolved when one of our keys needs them, so that a
// KEM we do not implement, named for another recipient, does not stop a
// message that is also for us.
type kemRecipientInfo struct {
	ref    keyRef // rid and encryptedKey
	kem    algID
	kemct  []byte
	kdf    algID
	kekLen int
	ukm    []byte
	hasUKM bool
	wrap   algID
}

// readOtherRecipientInfo decodes ori [4] OtherRecipientInfo (RFC 5652
// section 6.2.5). It returns nil for an oriType other than id-ori-kem,
// which names no certificate that we could hold.
func readOtherRecipientInfo(e element) (*kemRecipientInfo, error) {
	r, err := e.children()
	if err != nil {
		return nil, err
	}
	te, err := r.nextIs(classUniversal, tagOID, "oriType")
	if err != nil {
		return nil, err
	}
	typ, err := readOID(te)
	if err != nil {
		return nil, err
	}
	if !typ.Equal(oidORIKEM) {
		return nil, nil
	}
	ve, err := r.nextIs(classUniversal, tagSequence, "KEMRecipientInfo")
	if err != nil {
		return nil, err
	}
	if !r.empty() {
		return nil, malformed("trailing data in OtherRecipientInfo")
	}
	return readKEMRecipientInfo(ve)
}

func readKEMRecipientInfo(e element) (*kemRecipientInfo, error) {
	r, _ := e.children()
	ve, err := r.nextIs(classUniversal, tagInteger, "KEMRecipientInfo version")
	if err != nil {
		return nil, err
	}
	if v, err := readSmallInt(ve, "KEMRecipientInfo version"); err != nil {
		return nil, err
	} else if v != 0 {
		return nil, malformed("KEMRecipientInfo version %d (RFC 9629 section 3: always 0)", v)
	}
	ki := &kemRecipientInfo{}
	ide, err := r.next()
	if err != nil {
		return nil, err
	}
	switch {
	case ide.is(classUniversal, tagSequence):
		ki.ref.rid, err = readIssuerAndSerial(ide)
	case ide.is(classContext, 0):
		ki.ref.rid, err = readSKI(ide) // subjectKeyIdentifier [0] IMPLICIT
	default:
		err = malformed("KEMRecipientInfo rid is %s", tagString(ide.class, ide.tag))
	}
	if err != nil {
		return nil, err
	}
	ae, err := r.nextIs(classUniversal, tagSequence, "KEMRecipientInfo kem")
	if err != nil {
		return nil, err
	}
	if ki.kem, err = readAlgID(ae, "KEMRecipientInfo kem"); err != nil {
		return nil, err
	}
	ce, err := r.nextIs(classUniversal, tagOctetString, "KEMRecipientInfo kemct")
	if err != nil {
		return nil, err
	}
	if n, err := segmentsLen(ce); err != nil {
		return nil, err
	} else if n > maxKEMCiphertext {
		return nil, malformed("KEMRecipientInfo kemct of %d bytes (at most %d)", n, maxKEMCiphertext)
	}
	if ki.kemct, err = octets(ce, false); err != nil {
		return nil, err
	}
	de, err := r.nextIs(classUniversal, tagSequence, "KEMRecipientInfo kdf")
	if err != nil {
		return nil, err
	}
	if ki.kdf, err = readAlgID(de, "KEMRecipientInfo kdf"); err != nil {
		return nil, err
	}
	le, err := r.nextIs(classUniversal, tagInteger, "KEMRecipientInfo kekLength")
	if err != nil {
		return nil, err
	}
	if ki.kekLen, err = readSmallInt(le, "KEMRecipientInfo kekLength"); err != nil {
		return nil, err
	}
	if ki.kekLen < 1 || ki.kekLen > maxKEKLength {
		return nil, malformed("KEMRecipientInfo kekLength %d (RFC 9629 section 3: 1 to %d)", ki.kekLen, maxKEKLength)
	}
	if ue, ok, err := r.optional(classContext, 0); err != nil {
		return nil, err
	} else if ok {
		// ukm [0] EXPLICIT UserKeyingMaterial
		ur, err := ue.children()
		if err != nil {
			return nil, err
		}
		u, err := ur.nextIs(classUniversal, tagOctetString, "KEMRecipientInfo ukm")
		if err != nil {
			return nil, err
		}
		if !ur.empty() {
			return nil, malformed("trailing data after the KEMRecipientInfo ukm")
		}
		if n, err := segmentsLen(u); err != nil {
			return nil, err
		} else if n > maxUKM {
			return nil, malformed("KEMRecipientInfo ukm of %d bytes (at most %d)", n, maxUKM)
		}
		if ki.ukm, err = octets(u, false); err != nil {
			return nil, err
		}
		ki.hasUKM = true
	}
	we, err := r.nextIs(classUniversal, tagSequence, "KEMRecipientInfo wrap")
	if err != nil {
		return nil, err
	}
	if ki.wrap, err = readAlgID(we, "KEMRecipientInfo wrap"); err != nil {
		return nil, err
	}
	ke, err := r.nextIs(classUniversal, tagOctetString, "KEMRecipientInfo encryptedKey")
	if err != nil {
		return nil, err
	}
	if n, err := segmentsLen(ke); err != nil {
		return nil, err
	} else if n > maxWrappedKey {
		return nil, malformed("KEMRecipientInfo encryptedKey of %d bytes (at most %d)", n, maxWrappedKey)
	}
	if ki.ref.encKey, err = octets(ke, false); err != nil {
		return nil, err
	}
	if !r.empty() {
		return nil, malformed("trailing data in KEMRecipientInfo")
	}
	return ki, nil
}

// kemParams are the algorithms of a KEMRecipientInfo, resolved and
// checked against one another.
type kemParams struct {
	alg     *kemAlg
	hash    crypto.Hash
	kdfName string
	wrapDER []byte // the wrap AlgorithmIdentifier as sent, in DER
}

// resolve looks up the KEMRecipientInfo's algorithms. Its errors are
// *UnsupportedAlgorithmError (a KEM, KDF or key wrap that this package
// does not implement) and ErrMalformed (parameters where RFC 8619 and RFC
// 3565 want none, a kekLength that does not fit the key wrap, a kemct of
// the wrong size); they say nothing that the message does not show anyone.
func (ki *kemRecipientInfo) resolve() (kemParams, error) {
	var p kemParams
	var err error
	if p.alg, err = kemAlgByOID(ki.kem.oid, "KEMRecipientInfo kem"); err != nil {
		if _, ok := err.(*UnsupportedAlgorithmError); ok {
			return p, err
		}
		return p, &UnsupportedAlgorithmError{OID: ki.kem.oid, Where: "KEMRecipientInfo kem"}
	}
	if ki.kem.hasParams {
		// RFC 9936 section 2.1 and the composite draft section 6: absent.
		return p, malformed("KEMRecipientInfo kem %s with parameters, which must be absent", p.alg.name)
	}
	for _, k := range kemKDFs {
		if k.oid.Equal(ki.kdf.oid) {
			p.hash, p.kdfName = k.hash, k.name
		}
	}
	if p.hash == 0 {
		return p, &UnsupportedAlgorithmError{OID: ki.kdf.oid, Where: "KEMRecipientInfo kdf"}
	}
	if ki.kdf.hasParams {
		// RFC 8619 section 2: the parameters MUST be absent.
		return p, malformed("KEMRecipientInfo kdf %s with parameters, which must be absent", p.kdfName)
	}
	wrapLen := 0
	for _, kw := range keyWrapAlgs {
		if kw.oid.Equal(ki.wrap.oid) {
			wrapLen = kw.kekLen
		}
	}
	if wrapLen == 0 {
		return p, &UnsupportedAlgorithmError{OID: ki.wrap.oid, Where: "KEMRecipientInfo wrap"}
	}
	if !ki.wrap.paramsAbsentOrNull() {
		// RFC 3565 section 4.3: the parameters are absent.
		return p, malformed("KEMRecipientInfo wrap %s with parameters", oidName(ki.wrap.oid))
	}
	if ki.kekLen != wrapLen {
		// RFC 9629 section 3: kekLength MUST be confirmed against wrap.
		return p, malformed("KEMRecipientInfo kekLength %d does not fit %s, whose key is %d bytes", ki.kekLen, oidName(ki.wrap.oid), wrapLen)
	}
	if len(ki.kemct) != p.alg.ciphertextSize() {
		return p, malformed("KEMRecipientInfo kemct of %d bytes; %s ciphertexts are %d", len(ki.kemct), p.alg.name, p.alg.ciphertextSize())
	}
	if p.wrapDER, err = toDER(ki.wrap.elem); err != nil {
		return p, err
	}
	return p, nil
}

// oriForKEMOtherInfo encodes CMSORIforKEMOtherInfo (RFC 9629 section 5),
// the KDF's info: the wrap AlgorithmIdentifier exactly as the
// KEMRecipientInfo carries it, kekLength, and the ukm when there is one.
func oriForKEMOtherInfo(wrapDER []byte, kekLen int, ukm []byte, hasUKM bool) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(wrapDER)
		b.AddASN1Int64(int64(kekLen))
		if hasUKM {
			b.AddASN1(casn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				b.AddASN1OctetString(ukm)
			})
		}
	})
	return b.BytesOrPanic()
}

// kemKEK derives the key-encryption key from the shared secret: HKDF with
// an empty salt, the secret as IKM and CMSORIforKEMOtherInfo as info
// (RFC 9936 section 2.2.1, RFC 9629 section 5).
func kemKEK(h crypto.Hash, ss, info []byte, kekLen int) ([]byte, error) {
	return hkdf.Key(h.New, ss, nil, string(info), kekLen)
}

// fallbackLabel separates the fallback content-encryption key from any
// other use of a key-encryption key.
const fallbackLabel = "smimegate cms KEMRecipientInfo fallback content-encryption key"

// fallbackCEK is the key that unwrap returns when the content-encryption
// key does not unwrap: HMAC-SHA-256 of the wrapped key under the KEK,
// expanded to keyLen. The KEK comes from a secret that only our private
// key gives (ML-KEM's implicit rejection makes one even for a tampered
// kemct), so the fallback is unknown to the sender of a bad message and the
// same for the same message, as with RSA's implicit rejection (see
// rsaKeyTransport.unwrap): the failure shows only when the content does
// not decrypt.
func fallbackCEK(kek, encKey []byte, keyLen int) []byte {
	out := make([]byte, 0, keyLen+sha256.Size)
	for i := byte(0); len(out) < keyLen; i++ {
		m := hmac.New(sha256.New, kek)
		m.Write([]byte(fallbackLabel))
		m.Write([]byte{i})
		m.Write(encKey)
		out = m.Sum(out)
	}
	clear(out[keyLen:cap(out)])
	return out[:keyLen]
}

// unwrap recovers the content-encryption key of keyLen bytes with priv.
// Its errors are those of resolve, and an error for a key of another KEM
// than the one the message names; a failed decapsulation or key unwrap is
// not reported but yields a key that does not open the content.
func (ki *kemRecipientInfo) unwrap(priv *KEMPrivateKey, keyLen int) ([]byte, string, error) {
	p, err := ki.resolve()
	if err != nil {
		return nil, "", err
	}
	if p.alg != priv.pub.alg {
		return nil, "", fmt.Errorf("the KEMRecipientInfo uses %s but our key is %s", p.alg.name, priv.pub.alg.name)
	}
	ss := priv.decapsulate(ki.kemct)
	kek, err := kemKEK(p.hash, ss, oriForKEMOtherInfo(p.wrapDER, ki.kekLen, ki.ukm, ki.hasUKM), ki.kekLen)
	clear(ss)
	if err != nil {
		return nil, "", err
	}
	// The fallback is computed whether or not the key unwraps, so that
	// the two outcomes take the same time up to the integrity check.
	cek := fallbackCEK(kek, ki.ref.encKey, keyLen)
	key, err := keyUnwrap(kek, ki.ref.encKey)
	clear(kek)
	if err == nil && len(key) == keyLen {
		copy(cek, key)
	}
	clear(key)
	return cek, p.alg.name + "-" + p.kdfName, nil
}

// kemEncapsulator makes a shared secret and its ciphertext for one
// recipient: KEMPublicKey.encapsulate, or a fixed answer in the tests that
// reproduce the RFCs' worked examples.
type kemEncapsulator func() (ss, ct []byte, err error)

// addKEMRecipient writes an ori [4] OtherRecipientInfo holding a
// KEMRecipientInfo for one recipient: HKDF-SHA256, the KDF that RFC 9936
// section 2.1 and the composite CMS draft require, the key wrap of
// kemAlg.sendWrap, and no ukm, on which ML-KEM's security does not depend.
func addKEMRecipient(b *cryptobyte.Builder, r Recipient, pub *KEMPublicKey, cek []byte, encaps kemEncapsulator) error {
	wrapOID, kekLength := pub.alg.sendWrap()
	wb := cryptobyte.NewBuilder(nil)
	addAlgID(wb, wrapOID, nil) // RFC 3565 section 4.3: parameters absent
	wrapDER := wb.BytesOrPanic()

	ss, ct, err := encaps()
	if err != nil {
		return fmt.Errorf("cms: KEM encapsulation to %q: %w", r.Cert.Subject, err)
	}
	kek, err := kemKEK(crypto.SHA256, ss, oriForKEMOtherInfo(wrapDER, kekLength, nil, false), kekLength)
	clear(ss)
	if err != nil {
		return fmt.Errorf("cms: key derivation for %q: %w", r.Cert.Subject, err)
	}
	wrapped, err := keyWrap(kek, cek)
	clear(kek)
	if err != nil {
		return err
	}
	b.AddASN1(casn1.Tag(4).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oidORIKEM)
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1Int64(0) // RFC 9629 section 3: always 0
			if r.UseSKI {
				b.AddASN1(casn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) {
					b.AddBytes(r.Cert.SubjectKeyId)
				})
			} else {
				addIssuerAndSerial(b, r.Cert)
			}
			addAlgID(b, pub.alg.oid, nil) // parameters absent
			b.AddASN1OctetString(ct)
			addAlgID(b, oidHKDFSHA256, nil) // RFC 8619: parameters absent
			b.AddASN1Int64(int64(kekLength))
			b.AddBytes(wrapDER)
			b.AddASN1OctetString(wrapped)
		})
	})
	return nil
}

// sendWrap is the key wrap, and so the kekLength, sent for a: AES-256 key
// wrap, which RFC 9936 section 2.1 requires for ML-KEM-768 and ML-KEM-1024
// and draft-ietf-lamps-cms-composite-kem section 2.1 for every composite;
// AES-128 key wrap for ML-KEM-512, as RFC 9936 section 2.1 pairs them (this package
// has no ML-KEM-512 key, but rebuilds the RFC's ML-KEM-512 example).
func (a *kemAlg) sendWrap() (asn1.ObjectIdentifier, int) {
	if a.mlkem == 512 {
		return oidAES128Wrap, 16
	}
	return oidAES256Wrap, 32
}
