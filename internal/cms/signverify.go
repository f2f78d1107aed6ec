package cms

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
)

// ErrBadSignature means that a SignerInfo does not verify: the content's
// digest differs from its messageDigest attribute, or the signature does
// not verify under the signer's public key. The wrapping error says which.
var ErrBadSignature = errors.New("cms: signature does not verify")

// RSA key sizes that verification accepts. RFC 8550 section 4.3 asks
// receivers to accept 2048 to 4096 bits; smaller keys are too weak, and
// larger ones make each verification cost more for no gain, so 8192 bounds
// the work a hostile certificate can ask for.
const (
	minVerifyRSABits = 2048
	maxVerifyRSABits = 8192
)

// sigScheme is a signature algorithm as a SignerInfo names it.
type sigScheme struct {
	name string
	kind int // schemeRSA, schemePSS, schemeECDSA, schemeEd25519
	hash crypto.Hash
	salt int // PSS salt length
}

const (
	schemeRSA = iota
	schemePSS
	schemeECDSA
	schemeEd25519
)

// scheme resolves si's signatureAlgorithm together with its digest
// algorithm. An algorithm that names a hash must name the digest
// algorithm's: a SignerInfo whose two hashes differ would be verified one
// way by one peer and another way by the next.
func (si *SignerInfo) scheme() (sigScheme, error) {
	if si.DigestError != nil {
		return sigScheme{}, si.DigestError
	}
	h := si.Digest
	named := func(want crypto.Hash, s sigScheme) (sigScheme, error) {
		if want != h {
			return sigScheme{}, malformed("signatureAlgorithm %s does not match digestAlgorithm %s", oidName(si.sigAlg.oid), oidName(si.digestAlg.oid))
		}
		return s, nil
	}
	a := si.sigAlg
	hashName := map[crypto.Hash]string{crypto.SHA256: "sha256", crypto.SHA384: "sha384", crypto.SHA512: "sha512"}[h]
	switch {
	case a.oid.Equal(oidRSAEncryption):
		if !a.paramsAbsentOrNull() {
			return sigScheme{}, malformed("rsaEncryption with parameters")
		}
		return sigScheme{name: "rsa-pkcs1v15-" + hashName, kind: schemeRSA, hash: h}, nil
	case a.oid.Equal(oidSHA256WithRSA), a.oid.Equal(oidSHA384WithRSA), a.oid.Equal(oidSHA512WithRSA):
		if !a.paramsAbsentOrNull() {
			return sigScheme{}, malformed("%s with parameters", oidName(a.oid))
		}
		want := map[string]crypto.Hash{oidSHA256WithRSA.String(): crypto.SHA256, oidSHA384WithRSA.String(): crypto.SHA384, oidSHA512WithRSA.String(): crypto.SHA512}[a.oid.String()]
		return named(want, sigScheme{name: "rsa-pkcs1v15-" + hashName, kind: schemeRSA, hash: h})
	case a.oid.Equal(oidRSASSAPSS):
		return si.pssScheme()
	case a.oid.Equal(oidECDSAWithSHA256), a.oid.Equal(oidECDSAWithSHA384), a.oid.Equal(oidECDSAWithSHA512):
		if a.hasParams {
			// RFC 5758 section 3.2: the parameters MUST be absent.
			return sigScheme{}, malformed("%s with parameters", oidName(a.oid))
		}
		want := map[string]crypto.Hash{oidECDSAWithSHA256.String(): crypto.SHA256, oidECDSAWithSHA384.String(): crypto.SHA384, oidECDSAWithSHA512.String(): crypto.SHA512}[a.oid.String()]
		return named(want, sigScheme{name: "ecdsa-" + hashName, kind: schemeECDSA, hash: h})
	case a.oid.Equal(oidECPublicKey):
		// Some senders name the key type instead of the signature
		// algorithm; the digest algorithm then gives the hash.
		return sigScheme{name: "ecdsa-" + hashName, kind: schemeECDSA, hash: h}, nil
	case a.oid.Equal(oidEd25519):
		if a.hasParams {
			// RFC 8410 section 3: the parameters MUST be absent.
			return sigScheme{}, malformed("id-Ed25519 with parameters")
		}
		if si.hasSignedAttrs && h != crypto.SHA512 {
			// RFC 8419 section 2.3: SHA-512 with signed attributes.
			return sigScheme{}, malformed("Ed25519 with digest %s; RFC 8419 requires SHA-512", oidName(si.digestAlg.oid))
		}
		return sigScheme{name: "ed25519", kind: schemeEd25519, hash: h}, nil
	}
	return sigScheme{}, &UnsupportedAlgorithmError{OID: a.oid, Where: "signatureAlgorithm"}
}

// pssScheme reads RSASSA-PSS-params (RFC 4055 section 3.1): the hash and
// the MGF1 hash must both be the digest algorithm (RFC 4056 section 3), the
// trailer field 1.
func (si *SignerInfo) pssScheme() (sigScheme, error) {
	a := si.sigAlg
	hash, mgf, salt, trailer := crypto.SHA1, crypto.SHA1, 20, 1
	if a.hasParams {
		if !a.params.is(classUniversal, tagSequence) || !a.params.constructed {
			return sigScheme{}, malformed("RSASSA-PSS-params is %s", tagString(a.params.class, a.params.tag))
		}
		r, _ := a.params.children()
		if e, ok, err := r.optional(classContext, 0); err != nil {
			return sigScheme{}, err
		} else if ok {
			if hash, err = explicitDigest(e, "PSS hashAlgorithm"); err != nil {
				return sigScheme{}, err
			}
		}
		if e, ok, err := r.optional(classContext, 1); err != nil {
			return sigScheme{}, err
		} else if ok {
			ar, err := e.children()
			if err != nil {
				return sigScheme{}, malformed("PSS maskGenAlgorithm: %v", err)
			}
			ae, err := ar.nextIs(classUniversal, tagSequence, "PSS maskGenAlgorithm")
			if err != nil {
				return sigScheme{}, err
			}
			m, err := readAlgID(ae, "PSS maskGenAlgorithm")
			if err != nil {
				return sigScheme{}, err
			}
			if !m.oid.Equal(oidMGF1) || !m.hasParams {
				return sigScheme{}, &UnsupportedAlgorithmError{OID: m.oid, Where: "RSASSA-PSS maskGenAlgorithm (only MGF1)"}
			}
			ma, err := readAlgID(m.params, "MGF1 hash")
			if err != nil {
				return sigScheme{}, err
			}
			if mgf, err = digestHash(ma); err != nil {
				return sigScheme{}, err
			}
		}
		for _, f := range []struct {
			tag int
			v   *int
			n   string
		}{{2, &salt, "saltLength"}, {3, &trailer, "trailerField"}} {
			if e, ok, err := r.optional(classContext, f.tag); err != nil {
				return sigScheme{}, err
			} else if ok {
				ir, err := e.children()
				if err != nil {
					return sigScheme{}, malformed("PSS %s: %v", f.n, err)
				}
				ie, err := ir.nextIs(classUniversal, tagInteger, "PSS "+f.n)
				if err != nil {
					return sigScheme{}, err
				}
				if *f.v, err = readSmallInt(ie, "PSS "+f.n); err != nil {
					return sigScheme{}, err
				}
			}
		}
		if !r.empty() {
			return sigScheme{}, malformed("trailing data in RSASSA-PSS-params")
		}
	}
	if hash != si.Digest || mgf != si.Digest {
		return sigScheme{}, malformed("RSASSA-PSS hash or MGF1 hash differs from the digestAlgorithm")
	}
	if trailer != 1 {
		return sigScheme{}, malformed("RSASSA-PSS trailerField %d (RFC 4055 section 3.1: only 1)", trailer)
	}
	name := map[crypto.Hash]string{crypto.SHA256: "sha256", crypto.SHA384: "sha384", crypto.SHA512: "sha512"}[hash]
	return sigScheme{name: "rsassa-pss-" + name, kind: schemePSS, hash: hash, salt: salt}, nil
}

// explicitDigest reads an [n] EXPLICIT digest AlgorithmIdentifier.
func explicitDigest(e element, what string) (crypto.Hash, error) {
	r, err := e.children()
	if err != nil {
		return 0, malformed("%s: %v", what, err)
	}
	ae, err := r.nextIs(classUniversal, tagSequence, what)
	if err != nil {
		return 0, err
	}
	a, err := readAlgID(ae, what)
	if err != nil {
		return 0, err
	}
	return digestHash(a)
}

// Verify checks that si signed detached (if not nil) or else sd's content
// with cert's key (RFC 5652 section 5.6): the digest of the
// content, the content type and messageDigest attributes when there are
// signed attributes, and the signature over them. It costs one hash of the
// content and one public-key operation. It checks nothing about cert itself
// (validity, key usage, trust): that is the caller's policy.
//
// Errors: ErrBadSignature (wrapped, saying what differed), ErrMalformed, or
// an *UnsupportedAlgorithmError.
func (sd *SignedData) Verify(si *SignerInfo, cert *x509.Certificate, detached []byte) error {
	scheme, err := si.scheme()
	if err != nil {
		return err
	}
	// Detached content, when given, is what is verified even if the
	// SignedData carries content too: a multipart/signed is read, and so
	// must be verified, as its first part.
	content := detached
	if content == nil {
		if !sd.HasContent {
			return malformed("detached signature without its content")
		}
		content = sd.Content
	}
	var signed []byte // what the signature covers before hashing (Ed25519) ...
	var digest []byte // ... or its digest (RSA, ECDSA)
	if si.hasSignedAttrs {
		// RFC 5652 section 5.3: with signed attributes, contentType and
		// messageDigest are required, and the content type must be the
		// eContentType.
		if si.contentType == nil {
			return malformed("signedAttrs without a contentType attribute")
		}
		if !si.contentType.Equal(sd.ContentType) {
			return fmt.Errorf("%w: the contentType attribute %s differs from the eContentType %s", ErrBadSignature, si.contentType, sd.ContentType)
		}
		if si.messageDigest == nil {
			return malformed("signedAttrs without a messageDigest attribute")
		}
		h := si.Digest.New()
		h.Write(content)
		if !bytes.Equal(h.Sum(nil), si.messageDigest) {
			return fmt.Errorf("%w: the content's digest differs from the messageDigest attribute (the content was changed)", ErrBadSignature)
		}
		// RFC 5652 section 5.4: the signature covers the DER of the
		// attributes with an EXPLICIT SET OF tag instead of [0].
		der, err := toDER(si.signedAttrs)
		if err != nil {
			return err
		}
		der[0] = 0x31
		signed = der
	} else {
		// RFC 5652 section 5.3: without signed attributes the content
		// must be id-data, and the signature covers the content.
		if !sd.IsData() {
			return malformed("eContentType %s without signed attributes", sd.ContentType)
		}
		signed = content
	}
	if scheme.kind != schemeEd25519 {
		h := scheme.hash.New()
		h.Write(signed)
		digest = h.Sum(nil)
	}
	if err := checkSignature(scheme, cert, signed, digest, si.Signature); err != nil {
		return err
	}
	return nil
}

// checkSignature verifies sig under cert's public key with the scheme.
func checkSignature(s sigScheme, cert *x509.Certificate, signed, digest, sig []byte) error {
	bad := func(err error) error {
		return fmt.Errorf("%w: %s signature by %q: %v", ErrBadSignature, s.name, cert.Subject.String(), err)
	}
	switch pub := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		if s.kind != schemeRSA && s.kind != schemePSS {
			return malformed("%s signature from an RSA key", s.name)
		}
		if bits := pub.N.BitLen(); bits < minVerifyRSABits || bits > maxVerifyRSABits {
			return fmt.Errorf("%w: RSA key of %d bits (only %d to %d are accepted)", ErrBadSignature, bits, minVerifyRSABits, maxVerifyRSABits)
		}
		if s.kind == schemePSS {
			if err := rsa.VerifyPSS(pub, s.hash, digest, sig, &rsa.PSSOptions{SaltLength: s.salt, Hash: s.hash}); err != nil {
				return bad(err)
			}
			return nil
		}
		if err := rsa.VerifyPKCS1v15(pub, s.hash, digest, sig); err != nil {
			return bad(err)
		}
		return nil
	case *ecdsa.PublicKey:
		if s.kind != schemeECDSA {
			return malformed("%s signature from an EC key", s.name)
		}
		switch pub.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return &UnsupportedAlgorithmError{OID: oidECPublicKey, Where: "signer key on curve " + pub.Curve.Params().Name}
		}
		if !ecdsa.VerifyASN1(pub, digest, sig) {
			return bad(errors.New("ECDSA verification failed"))
		}
		return nil
	case ed25519.PublicKey:
		if s.kind != schemeEd25519 {
			return malformed("%s signature from an Ed25519 key", s.name)
		}
		if !ed25519.Verify(pub, signed, sig) {
			return bad(errors.New("Ed25519 verification failed"))
		}
		return nil
	}
	return &UnsupportedAlgorithmError{OID: asn1.ObjectIdentifier(nil), Where: fmt.Sprintf("signer key of type %s", cert.PublicKeyAlgorithm)}
}
