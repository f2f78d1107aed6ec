package cms

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/mlkem"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha3"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Key encapsulation mechanisms for KEMRecipientInfo (RFC 9629): ML-KEM-768
// and ML-KEM-1024 (FIPS 203, RFC 9936) and composite ML-KEM
// (draft-ietf-lamps-pq-composite-kem), which pairs ML-KEM with X25519, ECDH
// on a NIST curve or RSA-OAEP and combines the two shared secrets with
// SHA3-256, so that the key stays secret as long as either component holds.
//
// The composite construction follows the draft as the IETF PQC hackathon's
// artifacts implement it (the CryptoNext vectors in testdata/pqc-cryptonext
// decrypt with it): sections 3.2 and 3.3 for encapsulation and
// decapsulation, section 3.4 for the combiner
//
//	ss = SHA3-256(mlkemSS || tradSS || tradCT || tradPK || Label)
//
// and section 4 for the serialisation of keys and ciphertexts, each the
// ML-KEM part followed by the traditional part.

// tradKind is the traditional half of a composite KEM.
type tradKind int

const (
	tradNone tradKind = iota // pure ML-KEM
	tradECDH                 // X25519 or ECDH on a NIST curve, as a DHKEM (draft section 2.2)
	tradRSA                  // RSA-OAEP with SHA-256 as a KEM (draft section 2.1)
)

// compositeSecretSize is the length of the secret that RSA-OAEP carries in
// a composite KEM (draft section 6.1, ss_len of 256 bits).
const compositeSecretSize = 32

// kemAlg is one KEM that a KEMRecipientInfo may name.
type kemAlg struct {
	oid     asn1.ObjectIdentifier
	name    string // Info.KeyTransport and `smimegate keygen -key` call it this
	mlkem   int    // the ML-KEM parameter set: 768 or 1024 (512 only to rebuild RFC 9936's example)
	trad    tradKind
	curve   ecdh.Curve // tradECDH
	rsaBits int        // tradRSA: the modulus size, which the draft fixes per OID
	label   []byte     // the combiner label (draft section 6)
}

// kemAlgs are the KEMs this package implements. ML-KEM-512 is missing
// from Go's standard library; X448 and the brainpool curves too.
var kemAlgs = []*kemAlg{
	{oid: oidMLKEM768, name: "mlkem768", mlkem: 768},
	{oid: oidMLKEM1024, name: "mlkem1024", mlkem: 1024},
	{oid: oidMLKEM768RSA2048, name: "mlkem768-rsa2048", mlkem: 768, trad: tradRSA, rsaBits: 2048, label: []byte("MLKEM768-RSAOAEP2048")},
	{oid: oidMLKEM768RSA3072, name: "mlkem768-rsa3072", mlkem: 768, trad: tradRSA, rsaBits: 3072, label: []byte("MLKEM768-RSAOAEP3072")},
	{oid: oidMLKEM768RSA4096, name: "mlkem768-rsa4096", mlkem: 768, trad: tradRSA, rsaBits: 4096, label: []byte("MLKEM768-RSAOAEP4096")},
	// The draft gives this label only in hex, 5c2e2f2f5e5c: the ASCII
	// backslash, dot, slash, slash, caret, backslash.
	{oid: oidMLKEM768X25519, name: "mlkem768-x25519", mlkem: 768, trad: tradECDH, curve: ecdh.X25519(), label: []byte{0x5c, 0x2e, 0x2f, 0x2f, 0x5e, 0x5c}},
	{oid: oidMLKEM768P256, name: "mlkem768-p256", mlkem: 768, trad: tradECDH, curve: ecdh.P256(), label: []byte("MLKEM768-P256")},
	{oid: oidMLKEM768P384, name: "mlkem768-p384", mlkem: 768, trad: tradECDH, curve: ecdh.P384(), label: []byte("MLKEM768-P384")},
	{oid: oidMLKEM1024RSA3072, name: "mlkem1024-rsa3072", mlkem: 1024, trad: tradRSA, rsaBits: 3072, label: []byte("MLKEM1024-RSAOAEP3072")},
	{oid: oidMLKEM1024P384, name: "mlkem1024-p384", mlkem: 1024, trad: tradECDH, curve: ecdh.P384(), label: []byte("MLKEM1024-P384")},
	{oid: oidMLKEM1024P521, name: "mlkem1024-p521", mlkem: 1024, trad: tradECDH, curve: ecdh.P521(), label: []byte("MLKEM1024-P521")},
}

// unsupportedKEMs are KEMs that RFC 9936 and the composite draft define
// and that this package knows only to name them in an error.
var unsupportedKEMs = []asn1.ObjectIdentifier{oidMLKEM512, oidMLKEM768Brainpool, oidMLKEM1024Brainpool, oidMLKEM1024X448}

// KEMAlgorithms lists the names of the KEMs that GenerateKEMKey makes.
func KEMAlgorithms() []string {
	names := make([]string, len(kemAlgs))
	for i, a := range kemAlgs {
		names[i] = a.name
	}
	return names
}

// ErrNotKEM is returned (wrapped) by ParseKEMPublicKey and NewKEMPublicKey
// for an algorithm that is not a key encapsulation mechanism at all, as
// opposed to a KEM key that is refused.
var ErrNotKEM = errors.New("cms: not a KEM algorithm")

// kemAlgByOID returns the KEM for oid: an *UnsupportedAlgorithmError for a
// KEM we know but do not implement, ErrNotKEM for anything else.
func kemAlgByOID(oid asn1.ObjectIdentifier, where string) (*kemAlg, error) {
	for _, a := range kemAlgs {
		if a.oid.Equal(oid) {
			return a, nil
		}
	}
	for _, u := range unsupportedKEMs {
		if u.Equal(oid) {
			return nil, &UnsupportedAlgorithmError{OID: oid, Where: where}
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrNotKEM, oid)
}

func kemAlgByName(name string) *kemAlg {
	for _, a := range kemAlgs {
		if a.name == name {
			return a
		}
	}
	return nil
}

func (a *kemAlg) mlkemKeySize() int {
	if a.mlkem == 768 {
		return mlkem.EncapsulationKeySize768
	}
	return mlkem.EncapsulationKeySize1024
}

func (a *kemAlg) mlkemCiphertextSize() int {
	if a.mlkem == 768 {
		return mlkem.CiphertextSize768
	}
	return mlkem.CiphertextSize1024
}

// tradCiphertextSize is the length of the traditional ciphertext: an
// ephemeral public key (draft section 4: uncompressed point, or the raw
// X25519 key) or an RSA-OAEP ciphertext as long as the modulus.
func (a *kemAlg) tradCiphertextSize() int {
	switch a.trad {
	case tradECDH:
		return ecdhPointSize(a.curve)
	case tradRSA:
		return a.rsaBits / 8
	}
	return 0
}

// ciphertextSize is the length of a kemct for a: fixed for every KEM here,
// since the draft fixes the RSA modulus size per OID (section 6.1).
func (a *kemAlg) ciphertextSize() int {
	return a.mlkemCiphertextSize() + a.tradCiphertextSize()
}

// ecdhPointSize is the length of a public key in the encoding that
// crypto/ecdh uses, which is the draft's: 32 bytes for X25519, an
// uncompressed point (0x04, X, Y) for the NIST curves.
func ecdhPointSize(c ecdh.Curve) int {
	switch c {
	case ecdh.X25519():
		return 32
	case ecdh.P256():
		return 1 + 2*32
	case ecdh.P384():
		return 1 + 2*48
	}
	return 1 + 2*66 // P-521
}

// ecdhSecretSize is the length of the ECDH shared secret: the
// x-coordinate for the NIST curves, 32 bytes for X25519.
func ecdhSecretSize(c ecdh.Curve) int {
	if c == ecdh.X25519() {
		return 32
	}
	return (ecdhPointSize(c) - 1) / 2
}

// combine is the composite KEM combiner (draft section 3.4).
func (a *kemAlg) combine(mlkemSS, tradSS, tradCT, tradPK []byte) []byte {
	h := sha3.New256()
	h.Write(mlkemSS)
	h.Write(tradSS)
	h.Write(tradCT)
	h.Write(tradPK)
	h.Write(a.label)
	return h.Sum(nil)
}

// KEMPublicKey is a recipient's ML-KEM or composite ML-KEM public key, as
// a certificate carries it (RFC 9935 section 4, composite draft sections
// 4.1 and 5). crypto/x509 leaves such keys unparsed; see ParseKEMPublicKey.
type KEMPublicKey struct {
	alg     *kemAlg
	raw     []byte // the subjectPublicKey: mlkemPK || tradPK
	ek768   *mlkem.EncapsulationKey768
	ek1024  *mlkem.EncapsulationKey1024
	ecdhPub *ecdh.PublicKey
	rsaPub  *rsa.PublicKey
}

// Algorithm names the KEM, e.g. "mlkem768" or "mlkem768-x25519".
func (k *KEMPublicKey) Algorithm() string { return k.alg.name }

// OID is the KEM's object identifier.
func (k *KEMPublicKey) OID() asn1.ObjectIdentifier { return k.alg.oid }

// Composite reports whether the key pairs ML-KEM with a traditional
// algorithm.
func (k *KEMPublicKey) Composite() bool { return k.alg.trad != tradNone }

// Bytes returns the encoded key, the subjectPublicKey of its certificate.
func (k *KEMPublicKey) Bytes() []byte { return bytes.Clone(k.raw) }

// Equal reports whether x is the same key.
func (k *KEMPublicKey) Equal(x crypto.PublicKey) bool {
	o, ok := x.(*KEMPublicKey)
	return ok && o != nil && o.alg == k.alg && bytes.Equal(o.raw, k.raw)
}

// tradPK is the traditional public key as the combiner takes it: its
// serialisation inside the composite key (draft section 4.1).
func (k *KEMPublicKey) tradPK() []byte { return k.raw[k.alg.mlkemKeySize():] }

// NewKEMPublicKey decodes the subjectPublicKey of a KEM key with algorithm
// oid: the raw ML-KEM encapsulation key (RFC 9935 section 4), or for a
// composite the ML-KEM key followed by the traditional key (draft section
// 4.1): an uncompressed point, a raw X25519 key, or a DER RSAPublicKey.
func NewKEMPublicKey(oid asn1.ObjectIdentifier, raw []byte) (*KEMPublicKey, error) {
	alg, err := kemAlgByOID(oid, "public key")
	if err != nil {
		return nil, err
	}
	n := alg.mlkemKeySize()
	if len(raw) < n || (alg.trad == tradNone && len(raw) != n) {
		return nil, fmt.Errorf("cms: %s public key of %d bytes", alg.name, len(raw))
	}
	k := &KEMPublicKey{alg: alg, raw: bytes.Clone(raw)}
	if alg.mlkem == 768 {
		k.ek768, err = mlkem.NewEncapsulationKey768(raw[:n])
	} else {
		k.ek1024, err = mlkem.NewEncapsulationKey1024(raw[:n])
	}
	if err != nil {
		return nil, fmt.Errorf("cms: %s public key: ML-KEM part: %w", alg.name, err)
	}
	trad := raw[n:]
	switch alg.trad {
	case tradECDH:
		if k.ecdhPub, err = alg.curve.NewPublicKey(trad); err != nil {
			return nil, fmt.Errorf("cms: %s public key: traditional part: %w", alg.name, err)
		}
		if alg.curve == ecdh.X25519() {
			// crypto/ecdh takes any 32 bytes as an X25519 key; a point of
			// small order gives every sender the all-zero secret, which
			// ECDH refuses. One agreement finds it now, not at each seal.
			probe, err := ecdh.X25519().GenerateKey(rand.Reader)
			if err == nil {
				_, err = probe.ECDH(k.ecdhPub)
			}
			if err != nil {
				return nil, fmt.Errorf("cms: %s public key: the X25519 part is a point of small order", alg.name)
			}
		}
	case tradRSA:
		if k.rsaPub, err = x509.ParsePKCS1PublicKey(trad); err != nil {
			return nil, fmt.Errorf("cms: %s public key: RSA part: %w", alg.name, err)
		}
		if k.rsaPub.N.BitLen() != alg.rsaBits {
			return nil, fmt.Errorf("cms: %s public key: RSA modulus of %d bits (the algorithm fixes %d)", alg.name, k.rsaPub.N.BitLen(), alg.rsaBits)
		}
	}
	return k, nil
}

// maxSPKISize bounds a SubjectPublicKeyInfo that ParseKEMPublicKey reads:
// the largest KEM key here (ML-KEM-768 with RSA-4096) takes about 1,740
// bytes, and an RSA key of a size the draft does not name is refused
// anyway.
const maxSPKISize = 4096

// ParseKEMPublicKey decodes a DER SubjectPublicKeyInfo (RFC 5280 section
// 4.1.2.7) that holds a KEM key. The algorithm's parameters must be
// absent (RFC 9935 section 3, composite draft section 6). An algorithm
// that is no KEM gives an error wrapping ErrNotKEM.
func ParseKEMPublicKey(spki []byte) (*KEMPublicKey, error) {
	if len(spki) > maxSPKISize {
		return nil, fmt.Errorf("cms: SubjectPublicKeyInfo of %d bytes, more than any KEM key", len(spki))
	}
	in := cryptobyte.String(spki)
	var seq, alg cryptobyte.String
	var oid asn1.ObjectIdentifier
	var bits asn1.BitString
	if !in.ReadASN1(&seq, casn1.SEQUENCE) || !in.Empty() ||
		!seq.ReadASN1(&alg, casn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) ||
		!seq.ReadASN1BitString(&bits) || !seq.Empty() {
		return nil, errors.New("cms: malformed SubjectPublicKeyInfo")
	}
	if _, err := kemAlgByOID(oid, "public key"); err != nil {
		return nil, err
	}
	if !alg.Empty() {
		return nil, fmt.Errorf("cms: %s public key with algorithm parameters, which must be absent", oidName(oid))
	}
	if bits.BitLength%8 != 0 {
		return nil, errors.New("cms: subjectPublicKey is not a whole number of bytes")
	}
	return NewKEMPublicKey(oid, bits.Bytes)
}

// MarshalKEMPublicKey encodes k as a DER SubjectPublicKeyInfo, with the
// parameters absent.
func MarshalKEMPublicKey(k *KEMPublicKey) []byte {
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		addAlgID(b, k.alg.oid, nil)
		b.AddASN1BitString(k.raw)
	})
	return b.BytesOrPanic()
}

// encapsulate makes a fresh shared secret and the ciphertext that carries
// it to k (RFC 9629 section 1: Encapsulate(pk) -> (ct, ss)).
func (k *KEMPublicKey) encapsulate() (ss, ct []byte, err error) {
	var mss, mct []byte
	if k.ek768 != nil {
		mss, mct = k.ek768.Encapsulate()
	} else {
		mss, mct = k.ek1024.Encapsulate()
	}
	if k.alg.trad == tradNone {
		return mss, mct, nil
	}
	var tss, tct []byte
	switch k.alg.trad {
	case tradECDH:
		eph, err := k.alg.curve.GenerateKey(rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		if tss, err = eph.ECDH(k.ecdhPub); err != nil {
			return nil, nil, err
		}
		tct = eph.PublicKey().Bytes()
	case tradRSA:
		// Draft sections 2.1 and 6.1: a random 256-bit secret under
		// RSAES-OAEP with SHA-256, MGF1-SHA-256 and an empty label.
		tss = randomBytes(compositeSecretSize)
		if tct, err = rsa.EncryptOAEP(sha256.New(), rand.Reader, k.rsaPub, tss, nil); err != nil {
			return nil, nil, err
		}
	}
	ss = k.alg.combine(mss, tss, tct, k.tradPK())
	clear(mss)
	clear(tss)
	return ss, append(mct, tct...), nil
}

// KEMPrivateKey is our ML-KEM or composite ML-KEM private key. It keeps
// the 64-byte ML-KEM seed (d || z) from which FIPS 203's
// ML-KEM.KeyGen_internal expands the key (RFC 9935 section 6).
type KEMPrivateKey struct {
	pub      *KEMPublicKey
	seed     []byte
	dk768    *mlkem.DecapsulationKey768
	dk1024   *mlkem.DecapsulationKey1024
	ecdhPriv *ecdh.PrivateKey
	rsaPriv  *rsa.PrivateKey
	// rejection keys the stand-in for a traditional shared secret that
	// could not be computed (see decapsulate).
	rejection []byte
}

// Public returns the public key, a *KEMPublicKey.
func (k *KEMPrivateKey) Public() crypto.PublicKey { return k.pub }

// Algorithm names the KEM, as KEMPublicKey.Algorithm does.
func (k *KEMPrivateKey) Algorithm() string { return k.pub.alg.name }

// OID is the KEM's object identifier.
func (k *KEMPrivateKey) OID() asn1.ObjectIdentifier { return k.pub.alg.oid }

// rejectionLabel separates the rejection secret from every other use of
// the seed.
const rejectionLabel = "smimegate cms composite ML-KEM rejection"

// GenerateKEMKey makes a fresh key of the named KEM (one of
// KEMAlgorithms), both components generated anew as the composite draft
// requires (section 3.1).
func GenerateKEMKey(name string) (*KEMPrivateKey, error) {
	alg := kemAlgByName(name)
	if alg == nil {
		return nil, fmt.Errorf("cms: unknown KEM %q (want one of %v)", name, KEMAlgorithms())
	}
	seed := randomBytes(mlkem.SeedSize)
	defer clear(seed)
	var trad []byte
	switch alg.trad {
	case tradECDH:
		k, err := alg.curve.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		trad = marshalTradECDH(k)
	case tradRSA:
		k, err := rsa.GenerateKey(rand.Reader, alg.rsaBits)
		if err != nil {
			return nil, err
		}
		trad = x509.MarshalPKCS1PrivateKey(k)
	}
	defer clear(trad)
	return newKEMPrivateKey(alg, seed, trad)
}

// newKEMPrivateKey expands a seed and a traditional private key in the
// draft's encoding (section 4.2) into a key.
func newKEMPrivateKey(alg *kemAlg, seed, trad []byte) (*KEMPrivateKey, error) {
	if len(seed) != mlkem.SeedSize {
		return nil, fmt.Errorf("cms: %s: ML-KEM seed of %d bytes (want %d)", alg.name, len(seed), mlkem.SeedSize)
	}
	k := &KEMPrivateKey{seed: bytes.Clone(seed)}
	var ek []byte
	var err error
	if alg.mlkem == 768 {
		if k.dk768, err = mlkem.NewDecapsulationKey768(seed); err == nil {
			ek = k.dk768.EncapsulationKey().Bytes()
		}
	} else {
		if k.dk1024, err = mlkem.NewDecapsulationKey1024(seed); err == nil {
			ek = k.dk1024.EncapsulationKey().Bytes()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("cms: %s: %w", alg.name, err)
	}
	var tradPK []byte
	switch alg.trad {
	case tradNone:
		if len(trad) != 0 {
			return nil, fmt.Errorf("cms: %s private key with %d bytes after the seed", alg.name, len(trad))
		}
	case tradECDH:
		if k.ecdhPriv, err = parseTradECDH(alg, trad); err != nil {
			return nil, err
		}
		tradPK = k.ecdhPriv.PublicKey().Bytes()
	case tradRSA:
		if k.rsaPriv, err = x509.ParsePKCS1PrivateKey(trad); err != nil {
			return nil, fmt.Errorf("cms: %s: RSA part: %w", alg.name, err)
		}
		if k.rsaPriv.N.BitLen() != alg.rsaBits {
			return nil, fmt.Errorf("cms: %s: RSA modulus of %d bits (the algorithm fixes %d)", alg.name, k.rsaPriv.N.BitLen(), alg.rsaBits)
		}
		// Draft section 10.4: the public key is in the private key.
		tradPK = x509.MarshalPKCS1PublicKey(&k.rsaPriv.PublicKey)
	}
	raw := append(ek, tradPK...)
	k.pub = &KEMPublicKey{alg: alg, raw: raw}
	if alg.mlkem == 768 {
		k.pub.ek768 = k.dk768.EncapsulationKey()
	} else {
		k.pub.ek1024 = k.dk1024.EncapsulationKey()
	}
	if k.ecdhPriv != nil {
		k.pub.ecdhPub = k.ecdhPriv.PublicKey()
	}
	if k.rsaPriv != nil {
		k.pub.rsaPub = &k.rsaPriv.PublicKey
	}
	r := sha3.New256()
	r.Write([]byte(rejectionLabel))
	r.Write(seed)
	k.rejection = r.Sum(nil)
	return k, nil
}

// parseTradECDH reads the traditional private key of an ECDH composite:
// 32 raw bytes for X25519 (RFC 7748 section 5), an ECPrivateKey (RFC
// 5915) for the NIST curves, whose curve must be the algorithm's.
func parseTradECDH(alg *kemAlg, trad []byte) (*ecdh.PrivateKey, error) {
	if alg.curve == ecdh.X25519() {
		k, err := ecdh.X25519().NewPrivateKey(trad)
		if err != nil {
			return nil, fmt.Errorf("cms: %s: X25519 part: %w", alg.name, err)
		}
		return k, nil
	}
	ec, err := x509.ParseECPrivateKey(trad)
	if err != nil {
		return nil, fmt.Errorf("cms: %s: EC part: %w", alg.name, err)
	}
	k, err := ec.ECDH()
	if err != nil || k.Curve() != alg.curve {
		return nil, fmt.Errorf("cms: %s: the EC part is not on the algorithm's curve", alg.name)
	}
	return k, nil
}

// marshalTradECDH encodes the traditional private key of an ECDH
// composite as the draft requires (section 4): raw for X25519, else an
// ECPrivateKey with the named curve and without the publicKey field, which
// x509.MarshalECPrivateKey would write.
func marshalTradECDH(k *ecdh.PrivateKey) []byte {
	if k.Curve() == ecdh.X25519() {
		return k.Bytes()
	}
	curve := map[ecdh.Curve]asn1.ObjectIdentifier{
		ecdh.P256(): oidNamedCurveP256,
		ecdh.P384(): oidNamedCurveP384,
		ecdh.P521(): oidNamedCurveP521,
	}[k.Curve()]
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1) // RFC 5915 section 3: ecPrivkeyVer1
		b.AddASN1OctetString(k.Bytes())
		b.AddASN1(casn1.Tag(0).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(curve)
		})
	})
	return b.BytesOrPanic()
}

// The ML-KEM-PrivateKey CHOICE of RFC 9935 section 6: the seed [0], the
// expanded key, or both in a SEQUENCE.
const (
	mlkemSeedTag = 0x80 // seed [0] IMPLICIT OCTET STRING (SIZE (64))
)

// ErrExpandedKeyOnly is returned (wrapped) for an ML-KEM private key that
// holds only the expanded decapsulation key: crypto/mlkem builds keys from
// the seed only, and no library that reads the expanded form is used.
var ErrExpandedKeyOnly = errors.New("cms: the ML-KEM private key holds only the expanded key, not the seed (RFC 9935 section 6): export the seed form, or make a new key with `smimegate keygen`")

// NewKEMPrivateKey decodes the privateKey of a PKCS#8 OneAsymmetricKey
// (RFC 5958) with algorithm oid. For ML-KEM it is the ML-KEM-PrivateKey
// CHOICE of RFC 9935 section 6: the seed form, or the "both" form, whose
// expanded key must agree with its seed; the expanded form alone gives
// ErrExpandedKeyOnly. For a composite it is the ML-KEM seed followed by the
// traditional private key (draft section 4.2).
func NewKEMPrivateKey(oid asn1.ObjectIdentifier, privateKey []byte) (*KEMPrivateKey, error) {
	alg, err := kemAlgByOID(oid, "private key")
	if err != nil {
		return nil, err
	}
	if alg.trad != tradNone {
		if len(privateKey) < mlkem.SeedSize {
			return nil, fmt.Errorf("cms: %s private key of %d bytes is shorter than the ML-KEM seed", alg.name, len(privateKey))
		}
		return newKEMPrivateKey(alg, privateKey[:mlkem.SeedSize], privateKey[mlkem.SeedSize:])
	}
	in := cryptobyte.String(privateKey)
	var seed, expanded cryptobyte.String
	switch {
	case in.PeekASN1Tag(casn1.Tag(0).ContextSpecific()):
		if !in.ReadASN1(&seed, casn1.Tag(0).ContextSpecific()) || !in.Empty() {
			return nil, fmt.Errorf("cms: %s private key: malformed seed", alg.name)
		}
		return newKEMPrivateKey(alg, seed, nil)
	case in.PeekASN1Tag(casn1.OCTET_STRING):
		return nil, fmt.Errorf("%s: %w", alg.name, ErrExpandedKeyOnly)
	case in.PeekASN1Tag(casn1.SEQUENCE):
		var both cryptobyte.String
		if !in.ReadASN1(&both, casn1.SEQUENCE) || !in.Empty() ||
			!both.ReadASN1(&seed, casn1.OCTET_STRING) || !both.ReadASN1(&expanded, casn1.OCTET_STRING) || !both.Empty() {
			return nil, fmt.Errorf("cms: %s private key: malformed seed-and-expanded-key form", alg.name)
		}
		k, err := newKEMPrivateKey(alg, seed, nil)
		if err != nil {
			return nil, err
		}
		if err := checkExpandedKey(k, expanded); err != nil {
			return nil, err
		}
		return k, nil
	}
	return nil, fmt.Errorf("cms: %s private key: neither seed nor expanded key", alg.name)
}

// checkExpandedKey compares the expanded key of the "both" form with what
// the seed gives, as RFC 9935 section 8 asks. FIPS 203 section 7.1 lays the
// expanded key out as dkPKE || ek || H(ek) || z; crypto/mlkem does not
// expose dkPKE, so the check covers ek, its hash and z, which is enough to
// catch a seed and an expanded key of different keys.
func checkExpandedKey(k *KEMPrivateKey, expanded []byte) error {
	alg := k.pub.alg
	n := alg.mlkemKeySize()
	dkPKE := n - 32 // 384·k bytes, as the encapsulation key without its 32-byte rho
	if len(expanded) != dkPKE+n+32+32 {
		return fmt.Errorf("cms: %s expanded private key of %d bytes (want %d)", alg.name, len(expanded), dkPKE+n+64)
	}
	ek := k.pub.raw[:n]
	h := sha3.Sum256(ek)
	rest := expanded[dkPKE:]
	if subtle.ConstantTimeCompare(rest[:n], ek) != 1 ||
		subtle.ConstantTimeCompare(rest[n:n+32], h[:]) != 1 ||
		subtle.ConstantTimeCompare(rest[n+32:], k.seed[32:]) != 1 {
		return fmt.Errorf("cms: %s private key: the seed and the expanded key are of different keys (RFC 9935 section 8)", alg.name)
	}
	return nil
}

// PrivateKeyBytes encodes k as the privateKey of a PKCS#8
// OneAsymmetricKey: the seed form of RFC 9935 section 6 for ML-KEM (the
// form it recommends), the seed and the traditional key for a composite.
// The caller should clear the result after use.
func (k *KEMPrivateKey) PrivateKeyBytes() []byte {
	if k.pub.alg.trad == tradNone {
		return append([]byte{mlkemSeedTag, mlkem.SeedSize}, k.seed...)
	}
	out := bytes.Clone(k.seed)
	switch k.pub.alg.trad {
	case tradECDH:
		out = append(out, marshalTradECDH(k.ecdhPriv)...)
	case tradRSA:
		out = append(out, x509.MarshalPKCS1PrivateKey(k.rsaPriv)...)
	}
	return out
}

// decapsulate recovers the shared secret from ct, whose length the caller
// has checked against ciphertextSize. It never fails: ML-KEM rejects a bad
// ciphertext implicitly (FIPS 203 section 7.3: a pseudorandom secret), and
// when the traditional half fails (an invalid point, RSA-OAEP padding
// that does not check) a stand-in secret keyed by the private key takes
// its place. The composite draft asks for an explicit error there (section
// 3.5); in CMS that error would be an oracle on RSA-OAEP (Manger's attack:
// an attacker who made the ML-KEM half knows its secret, and a known
// stand-in would let them tell a failure from a success), so the failure
// shows only as a key that does not unwrap, like every other one.
func (k *KEMPrivateKey) decapsulate(ct []byte) []byte {
	alg := k.pub.alg
	n := alg.mlkemCiphertextSize()
	var mss []byte
	var err error
	if k.dk768 != nil {
		mss, err = k.dk768.Decapsulate(ct[:n])
	} else {
		mss, err = k.dk1024.Decapsulate(ct[:n])
	}
	if err != nil {
		// Only a ciphertext of the wrong length fails, which the caller
		// has excluded; answer as the stand-in would all the same.
		mss = k.standIn(ct, mlkem.SharedKeySize)
	}
	if alg.trad == tradNone {
		return mss
	}
	tct := ct[n:]
	var tss []byte
	size := compositeSecretSize
	ok := false
	switch alg.trad {
	case tradECDH:
		size = ecdhSecretSize(alg.curve)
		if pub, err := alg.curve.NewPublicKey(tct); err == nil {
			if s, err := k.ecdhPriv.ECDH(pub); err == nil {
				tss, ok = s, true
			}
		}
	case tradRSA:
		s, err := k.rsaPriv.Decrypt(nil, tct, &rsa.OAEPOptions{Hash: crypto.SHA256, MGFHash: crypto.SHA256})
		if err == nil && len(s) == compositeSecretSize {
			tss, ok = s, true
		}
	}
	// The stand-in is computed either way, so that a failure takes no
	// less time than a success.
	stand := k.standIn(tct, size)
	if ok && len(tss) == size {
		copy(stand, tss)
	}
	ss := alg.combine(mss, stand, tct, k.pub.tradPK())
	clear(mss)
	clear(stand)
	clear(tss)
	return ss
}

// standIn derives n bytes from the rejection secret and ct with SHAKE256
// (FIPS 202), keyed by the secret as its prefix: unknown to whoever made
// ct, and the same for the same ct, as a wrong but valid secret would be.
func (k *KEMPrivateKey) standIn(ct []byte, n int) []byte {
	h := sha3.NewSHAKE256()
	h.Write(k.rejection)
	h.Write(ct)
	out := make([]byte, n)
	h.Read(out)
	return out
}

// KEMName names the KEM whose object identifier is oid: our name for one
// this package implements ("mlkem768"), the standard's for one it knows
// but does not ("id-alg-ml-kem-512"). ok is false when oid is no KEM.
func KEMName(oid asn1.ObjectIdentifier) (name string, ok bool) {
	a, err := kemAlgByOID(oid, "")
	switch {
	case err == nil:
		return a.name, true
	case errors.Is(err, ErrNotKEM):
		return "", false
	}
	return oidName(oid), true
}

// Encapsulate makes a fresh shared secret for k and the ciphertext that
// carries it (RFC 9629 section 1), as a KEMRecipientInfo does.
func (k *KEMPublicKey) Encapsulate() (sharedKey, ciphertext []byte, err error) {
	return k.encapsulate()
}

// Decapsulate recovers the shared secret from a ciphertext of the key's
// KEM. Only a ciphertext of the wrong length is an error: a wrong one
// gives a wrong secret (ML-KEM's implicit rejection, and the stand-in of
// decapsulate for a failed traditional half).
func (k *KEMPrivateKey) Decapsulate(ciphertext []byte) ([]byte, error) {
	if n := k.pub.alg.ciphertextSize(); len(ciphertext) != n {
		return nil, fmt.Errorf("cms: %s ciphertext of %d bytes (want %d)", k.pub.alg.name, len(ciphertext), n)
	}
	return k.decapsulate(ciphertext), nil
}
