package cms

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	_ "crypto/sha1" // SHA-1 for RSAES-OAEP and the ECDH KDF, decrypt only
	"crypto/sha256"
	_ "crypto/sha512"
	"encoding/asn1"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"weak"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// digestAlgs maps digest OIDs to hashes (RFC 3370 section 2.1, RFC 5754).
var digestAlgs = []struct {
	oid  asn1.ObjectIdentifier
	hash crypto.Hash
	name string
}{
	{oidSHA1, crypto.SHA1, "sha1"},
	{oidSHA224, crypto.SHA224, "sha224"},
	{oidSHA256, crypto.SHA256, "sha256"},
	{oidSHA384, crypto.SHA384, "sha384"},
	{oidSHA512, crypto.SHA512, "sha512"},
}

func digestByOID(a algID, where string) (crypto.Hash, string, error) {
	for _, d := range digestAlgs {
		if d.oid.Equal(a.oid) {
			if !a.paramsAbsentOrNull() {
				return 0, "", malformed("%s: %s with parameters", where, d.name)
			}
			return d.hash, d.name, nil
		}
	}
	return 0, "", &UnsupportedAlgorithmError{OID: a.oid, Where: where}
}

// addKeyTransRecipient writes a KeyTransRecipientInfo (RFC 5652 section
// 6.2.1) that carries cek encrypted to pub.
func addKeyTransRecipient(b *cryptobyte.Builder, r Recipient, pub *rsa.PublicKey, cek []byte) error {
	var encKey []byte
	var err error
	switch r.RSAPadding {
	case PKCS1v15:
		// RFC 3370 section 4.2.1.
		encKey, err = rsa.EncryptPKCS1v15(rand.Reader, pub, cek)
	case OAEP:
		// RFC 3560 section 2.2, with SHA-256 as RFC 4055 section 4.1 allows
		// and no label.
		encKey, err = rsa.EncryptOAEP(crypto.SHA256.New(), rand.Reader, pub, cek, nil)
	default:
		return fmt.Errorf("cms: unknown RSA padding %d", int(r.RSAPadding))
	}
	if err != nil {
		return fmt.Errorf("cms: RSA key transport to %q: %w", r.Cert.Subject, err)
	}
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		// The version is 2 when the rid is a subjectKeyIdentifier, 0
		// otherwise (RFC 5652 section 6.2.1).
		if r.UseSKI {
			b.AddASN1Int64(2)
			b.AddASN1(casn1.Tag(0).ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddBytes(r.Cert.SubjectKeyId)
			})
		} else {
			b.AddASN1Int64(0)
			addIssuerAndSerial(b, r.Cert)
		}
		if r.RSAPadding == OAEP {
			addOAEPSHA256(b)
		} else {
			// RFC 3370 section 4.2.1: the parameters MUST be NULL.
			addAlgID(b, oidRSAEncryption, addNull)
		}
		b.AddASN1OctetString(encKey)
	})
	return nil
}

// addOAEPSHA256 writes the RSAES-OAEP AlgorithmIdentifier with SHA-256 and
// MGF1-SHA-256 spelled out in full, as RFC 4055 section 4.1 describes
// (only pSourceFunc, at its default, is omitted as DER requires); OpenSSL
// reads exactly this form.
func addOAEPSHA256(b *cryptobyte.Builder) {
	sha256ID := func(b *cryptobyte.Builder) { addAlgID(b, oidSHA256, addNull) }
	addAlgID(b, oidRSAESOAEP, func(b *cryptobyte.Builder) {
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.Tag(0).ContextSpecific().Constructed(), sha256ID)
			b.AddASN1(casn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
				addAlgID(b, oidMGF1, sha256ID)
			})
		})
	})
}

// oaepParams are the decoded RSAES-OAEP-params (RFC 4055 section 4.1).
type oaepParams struct {
	hash, mgfHash crypto.Hash
	label         []byte
	name          string
}

// readOAEPParams decodes RSAES-OAEP-params; absent fields take the defaults
// of RFC 4055 section 4.1 (SHA-1, MGF1 with SHA-1, empty label).
func readOAEPParams(a algID) (oaepParams, error) {
	p := oaepParams{hash: crypto.SHA1, mgfHash: crypto.SHA1, name: "sha1"}
	if a.paramsAbsentOrNull() {
		return p, nil
	}
	if !a.params.is(classUniversal, tagSequence) || !a.params.constructed {
		return p, malformed("RSAES-OAEP parameters are not a SEQUENCE")
	}
	r, _ := a.params.children()
	if e, ok, err := r.optional(classContext, 0); err != nil {
		return p, err
	} else if ok {
		h, err := explicitAlgID(e, "OAEP hashFunc")
		if err != nil {
			return p, err
		}
		if p.hash, p.name, err = digestByOID(h, "RSAES-OAEP hashFunc"); err != nil {
			return p, err
		}
	}
	if e, ok, err := r.optional(classContext, 1); err != nil {
		return p, err
	} else if ok {
		m, err := explicitAlgID(e, "OAEP maskGenFunc")
		if err != nil {
			return p, err
		}
		if !m.oid.Equal(oidMGF1) {
			return p, &UnsupportedAlgorithmError{OID: m.oid, Where: "RSAES-OAEP maskGenFunc"}
		}
		if !m.hasParams {
			return p, malformed("MGF1 without a hash algorithm")
		}
		h, err := readAlgID(m.params, "MGF1 hash")
		if err != nil {
			return p, err
		}
		if p.mgfHash, _, err = digestByOID(h, "RSAES-OAEP MGF1 hash"); err != nil {
			return p, err
		}
	}
	if e, ok, err := r.optional(classContext, 2); err != nil {
		return p, err
	} else if ok {
		s, err := explicitAlgID(e, "OAEP pSourceFunc")
		if err != nil {
			return p, err
		}
		if !s.oid.Equal(oidPSpecified) {
			return p, &UnsupportedAlgorithmError{OID: s.oid, Where: "RSAES-OAEP pSourceFunc"}
		}
		if s.hasParams {
			if !s.params.is(classUniversal, tagOctetString) {
				return p, malformed("OAEP label is not an OCTET STRING")
			}
			if p.label, err = octets(s.params, false); err != nil {
				return p, err
			}
		}
	}
	if !r.empty() {
		return p, malformed("trailing data in RSAES-OAEP parameters")
	}
	return p, nil
}

// explicitAlgID unwraps an [n] EXPLICIT AlgorithmIdentifier.
func explicitAlgID(e element, what string) (algID, error) {
	r, err := e.children()
	if err != nil {
		return algID{}, err
	}
	inner, err := r.nextIs(classUniversal, tagSequence, what)
	if err != nil {
		return algID{}, err
	}
	if !r.empty() {
		return algID{}, malformed("%s: trailing data", what)
	}
	return readAlgID(inner, what)
}

// rsaKeyTransport is the decoded keyEncryptionAlgorithm of an RSA
// KeyTransRecipientInfo.
type rsaKeyTransport struct {
	oaep   bool
	params oaepParams
	name   string
}

func readRSAKeyTransport(a algID) (rsaKeyTransport, error) {
	switch {
	case a.oid.Equal(oidRSAEncryption):
		return rsaKeyTransport{name: "rsa-pkcs1v15"}, nil
	case a.oid.Equal(oidRSAESOAEP):
		p, err := readOAEPParams(a)
		if err != nil {
			return rsaKeyTransport{}, err
		}
		return rsaKeyTransport{oaep: true, params: p, name: "rsa-oaep-" + p.name}, nil
	}
	return rsaKeyTransport{}, &UnsupportedAlgorithmError{OID: a.oid, Where: "key transport"}
}

// unwrap recovers a content-encryption key of keyLen bytes. It never
// reports failure: when the padding is bad, the key is wrong, or the
// recovered key has the wrong length, it returns a synthetic key instead,
// so that the failure shows only when the content does not decrypt, with
// the same error and after the same work as any other failure (RFC 3218
// section 2.3.2, "implicit rejection"). Bleichenbacher's attack needs an
// oracle that tells bad padding apart; this leaves none.
//
// The synthetic key is derived from the ciphertext under a secret of the
// private key (see syntheticKey), never drawn at random. With a random key
// a non-conformant block would "open" a CBC message now and then (a random
// AES key gives valid CBC padding about one time in 256) while a conformant
// one opens every time: an attacker who sends the same block again and
// again could tell the two apart. With a derived key the same block gives
// the same answer every time, as a wrong but conformant key would.
func (t rsaKeyTransport) unwrap(priv *rsa.PrivateKey, encKey []byte, keyLen int) []byte {
	cek := syntheticKey(priv, encKey, keyLen)
	if !t.oaep {
		// DecryptPKCS1v15SessionKey overwrites cek, in constant time, only
		// when the padding is valid and the key has exactly keyLen bytes.
		// Its error reports only public facts (ciphertext or key size).
		_ = rsa.DecryptPKCS1v15SessionKey(nil, priv, encKey, cek)
		return cek
	}
	key, err := priv.Decrypt(nil, encKey, &rsa.OAEPOptions{Hash: t.params.hash, MGFHash: t.params.mgfHash, Label: t.params.label})
	if err != nil || len(key) != keyLen {
		return cek
	}
	clear(cek)
	return key
}

// syntheticLabel separates the synthetic-key expansion from any other use
// of the key-derivation key.
const syntheticLabel = "smimegate cms synthetic content-encryption key"

// syntheticKey derives the key that unwrap returns for a block that does
// not decrypt, by the implicit-rejection construction of
// draft-irtf-cfrg-rsa-guidance (as in OpenSSL 3.2): a key-derivation key
// KDK = HMAC-SHA-256(SHA-256(d), ciphertext), both the private exponent d
// and the ciphertext left-padded to the modulus length, then keyLen bytes
// of HMAC-SHA-256(KDK, counter || label || length in bits) for counter 0, 1,
// and so on. Only the holder of d can compute it, it is the same for the
// same ciphertext, and it differs with the ciphertext, the key and keyLen.
func syntheticKey(priv *rsa.PrivateKey, encKey []byte, keyLen int) []byte {
	secret := rejectionSecret(priv)
	mac := hmac.New(sha256.New, secret[:])
	clear(secret[:])
	if pad := priv.Size() - len(encKey); pad > 0 {
		mac.Write(make([]byte, pad))
	}
	mac.Write(encKey)
	kdk := mac.Sum(nil)
	out := make([]byte, 0, keyLen+sha256.Size)
	var hdr [2]byte
	var bits [2]byte
	binary.BigEndian.PutUint16(bits[:], uint16(keyLen*8))
	for i := uint16(0); len(out) < keyLen; i++ {
		prf := hmac.New(sha256.New, kdk)
		binary.BigEndian.PutUint16(hdr[:], i)
		prf.Write(hdr[:])
		prf.Write([]byte(syntheticLabel))
		prf.Write(bits[:])
		out = prf.Sum(out)
	}
	clear(kdk)
	clear(out[keyLen:cap(out)])
	return out[:keyLen]
}

// rejectionSecrets caches SHA-256 of each private key's exponent, the
// secret that syntheticKey derives from, so that d is serialised once per
// key rather than once per message. It holds its keys weakly: an entry
// goes when the key is collected (a certificate store reload drops old
// keys), and it never keeps a copy of d itself.
var rejectionSecrets struct {
	sync.Mutex
	m map[weak.Pointer[rsa.PrivateKey]]*[sha256.Size]byte
}

// rejectionSecret returns SHA-256 of priv's private exponent, big-endian
// and left-padded to the modulus length, from the cache when it is there.
func rejectionSecret(priv *rsa.PrivateKey) [sha256.Size]byte {
	wp := weak.Make(priv)
	rejectionSecrets.Lock()
	defer rejectionSecrets.Unlock()
	if s, ok := rejectionSecrets.m[wp]; ok {
		return *s
	}
	d := make([]byte, priv.Size())
	priv.D.FillBytes(d)
	s := new([sha256.Size]byte)
	*s = sha256.Sum256(d)
	clear(d)
	if rejectionSecrets.m == nil {
		rejectionSecrets.m = make(map[weak.Pointer[rsa.PrivateKey]]*[sha256.Size]byte)
	}
	rejectionSecrets.m[wp] = s
	runtime.AddCleanup(priv, forgetRejectionSecret, wp)
	return *s
}

func forgetRejectionSecret(wp weak.Pointer[rsa.PrivateKey]) {
	rejectionSecrets.Lock()
	defer rejectionSecrets.Unlock()
	if s, ok := rejectionSecrets.m[wp]; ok {
		clear(s[:])
		delete(rejectionSecrets.m, wp)
	}
}
