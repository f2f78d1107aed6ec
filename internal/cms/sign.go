package cms

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"
	casn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Signer is a certificate of ours with its private key, for Sign.
type Signer struct {
	Cert *x509.Certificate
	// Key is an *rsa.PrivateKey, *ecdsa.PrivateKey or ed25519.PrivateKey
	// whose public half is Cert's.
	Key crypto.Signer
	// Chain are further certificates to include (intermediates), so that
	// a receiver that trusts our CA can build the path.
	Chain []*x509.Certificate
}

// SignOptions chooses how Sign signs.
type SignOptions struct {
	// Hash is the digest algorithm: crypto.SHA256 (the default), SHA384
	// or SHA512. Ed25519 always uses SHA-512 (RFC 8419 section 2.3).
	Hash crypto.Hash
	// SigningTime is written as the signingTime attribute (RFC 5652
	// section 11.3); the zero time leaves it out.
	SigningTime time.Time
	// EncryptionCert, if set, is named in SMIMEEncryptionKeyPreference
	// (RFC 8551 section 2.5.3), so that the receiver learns which of our
	// certificates to encrypt to.
	EncryptionCert *x509.Certificate
	// Detached leaves the content out of the SignedData (RFC 8551 section
	// 3.5.3, multipart/signed): the receiver gets it beside the signature.
	Detached bool
}

// capabilities are the content-encryption algorithms we announce in
// SMIMECapabilities, in our order of preference (RFC 8551 section 2.5.2):
// what Decrypt opens, AEAD first. 3DES, which opens only by policy, is
// left out so that no partner is invited to use it.
var capabilities = []asn1.ObjectIdentifier{oidAES256GCM, oidAES128GCM, oidAES256CBC, oidAES192CBC, oidAES128CBC}

// Sign returns a DER ContentInfo holding SignedData over content (RFC 5652
// section 5) by s, with the signed attributes contentType, signingTime,
// messageDigest, smimeCapabilities and SMIMEEncryptionKeyPreference, and
// with s's certificate and chain included. It costs one hash of the content
// and one private-key operation. content is not modified.
func Sign(content []byte, s Signer, opts SignOptions) ([]byte, error) {
	if s.Cert == nil || s.Key == nil {
		return nil, errors.New("cms: sign: no certificate or key")
	}
	if !samePublic(s.Key.Public(), s.Cert.PublicKey) {
		return nil, fmt.Errorf("cms: sign: the key is not the key of certificate %q", s.Cert.Subject)
	}
	if s.Cert.SerialNumber == nil || len(s.Cert.RawIssuer) == 0 {
		return nil, fmt.Errorf("cms: sign: certificate %q lacks issuer or serial number", s.Cert.Subject)
	}
	hash := opts.Hash
	if hash == 0 {
		hash = crypto.SHA256
	}
	var sigAlg asn1.ObjectIdentifier
	var sigNull bool
	switch s.Key.(type) {
	case *rsa.PrivateKey:
		// RFC 5754 section 3.2: shaNNNWithRSAEncryption with NULL.
		sigAlg = map[crypto.Hash]asn1.ObjectIdentifier{crypto.SHA256: oidSHA256WithRSA, crypto.SHA384: oidSHA384WithRSA, crypto.SHA512: oidSHA512WithRSA}[hash]
		sigNull = true
	case *ecdsa.PrivateKey:
		sigAlg = map[crypto.Hash]asn1.ObjectIdentifier{crypto.SHA256: oidECDSAWithSHA256, crypto.SHA384: oidECDSAWithSHA384, crypto.SHA512: oidECDSAWithSHA512}[hash]
	case ed25519.PrivateKey:
		sigAlg, hash = oidEd25519, crypto.SHA512
	default:
		return nil, fmt.Errorf("cms: sign: unsupported key type %T", s.Key)
	}
	digestAlg := map[crypto.Hash]asn1.ObjectIdentifier{crypto.SHA256: oidSHA256, crypto.SHA384: oidSHA384, crypto.SHA512: oidSHA512}[hash]
	if sigAlg == nil || digestAlg == nil {
		return nil, fmt.Errorf("cms: sign: unsupported hash %v", hash)
	}

	h := hash.New()
	h.Write(content)
	attrs, err := signedAttributes(h.Sum(nil), opts)
	if err != nil {
		return nil, err
	}
	// RFC 5652 section 5.4: the signature covers the attributes' DER with
	// the SET OF tag; they are written with [0] IMPLICIT.
	var sig []byte
	if _, ok := s.Key.(ed25519.PrivateKey); ok {
		sig, err = s.Key.Sign(rand.Reader, attrs, crypto.Hash(0))
	} else {
		ah := hash.New()
		ah.Write(attrs)
		sig, err = s.Key.Sign(rand.Reader, ah.Sum(nil), hash)
	}
	if err != nil {
		return nil, fmt.Errorf("cms: sign: %w", err)
	}
	implicitAttrs := slices.Clone(attrs)
	implicitAttrs[0] = 0xa0

	certs := append([]*x509.Certificate{s.Cert}, s.Chain...)
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oidSignedData)
		b.AddASN1(casn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
			b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
				// RFC 5652 section 5.1: version 1 for X.509 certificates,
				// id-data and issuerAndSerialNumber SignerInfos.
				b.AddASN1Int64(1)
				b.AddASN1(casn1.SET, func(b *cryptobyte.Builder) { addAlgID(b, digestAlg, nil) })
				b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidData)
					if !opts.Detached {
						b.AddASN1(casn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
							b.AddASN1OctetString(content)
						})
					}
				})
				b.AddASN1(casn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
					for _, raw := range sortedDER(certs) {
						b.AddBytes(raw)
					}
				})
				b.AddASN1(casn1.SET, func(b *cryptobyte.Builder) {
					b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddASN1Int64(1)
						addIssuerAndSerial(b, s.Cert)
						addAlgID(b, digestAlg, nil)
						b.AddBytes(implicitAttrs)
						if sigNull {
							addAlgID(b, sigAlg, addNull)
						} else {
							addAlgID(b, sigAlg, nil)
						}
						b.AddASN1OctetString(sig)
					})
				})
			})
		})
	})
	out, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("cms: sign: encoding: %w", err)
	}
	return out, nil
}

// signedAttributes encodes the SignedAttributes as a DER SET OF (tag 0x31),
// its members sorted as X.690 section 11.6 requires.
func signedAttributes(digest []byte, opts SignOptions) ([]byte, error) {
	var attrs [][]byte
	add := func(typ asn1.ObjectIdentifier, value cryptobyte.BuilderContinuation) {
		b := cryptobyte.NewBuilder(nil)
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(typ)
			b.AddASN1(casn1.SET, value)
		})
		attrs = append(attrs, b.BytesOrPanic())
	}
	add(oidAttrContentType, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidData) })
	if !opts.SigningTime.IsZero() {
		t := opts.SigningTime.UTC().Truncate(time.Second)
		add(oidAttrSigningTime, func(b *cryptobyte.Builder) {
			// RFC 5652 section 11.3: UTCTime for 1950 to 2049,
			// GeneralizedTime otherwise.
			if y := t.Year(); y >= 1950 && y < 2050 {
				b.AddASN1UTCTime(t)
			} else {
				b.AddASN1GeneralizedTime(t)
			}
		})
	}
	add(oidAttrMessageDigest, func(b *cryptobyte.Builder) { b.AddASN1OctetString(digest) })
	add(oidAttrSMIMECapabilities, func(b *cryptobyte.Builder) {
		b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for _, c := range capabilities {
				b.AddASN1(casn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(c) })
			}
		})
	})
	if c := opts.EncryptionCert; c != nil {
		if c.SerialNumber == nil || len(c.RawIssuer) == 0 {
			return nil, fmt.Errorf("cms: sign: encryption certificate %q lacks issuer or serial number", c.Subject)
		}
		add(oidAttrEncrypKeyPref, func(b *cryptobyte.Builder) {
			// issuerAndSerialNumber [0] IMPLICIT
			b.AddASN1(casn1.Tag(0).Constructed().ContextSpecific(), func(b *cryptobyte.Builder) {
				b.AddBytes(c.RawIssuer)
				b.AddASN1BigInt(c.SerialNumber)
			})
		})
	}
	slices.SortFunc(attrs, bytes.Compare)
	b := cryptobyte.NewBuilder(nil)
	b.AddASN1(casn1.SET, func(b *cryptobyte.Builder) {
		for _, a := range attrs {
			b.AddBytes(a)
		}
	})
	return b.Bytes()
}

// sortedDER returns the certificates' DER without duplicates, sorted as a
// DER SET OF is (X.690 section 11.6).
func sortedDER(certs []*x509.Certificate) [][]byte {
	var out [][]byte
	for _, c := range certs {
		if c != nil && !slices.ContainsFunc(out, func(b []byte) bool { return bytes.Equal(b, c.Raw) }) {
			out = append(out, c.Raw)
		}
	}
	slices.SortFunc(out, bytes.Compare)
	return out
}

// samePublic compares public keys; all of Go's key types have Equal.
func samePublic(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && b != nil && e.Equal(b)
}
