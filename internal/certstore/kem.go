package certstore

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"smimegate/internal/cms"
)

// Certificates and private keys of ML-KEM (RFC 9935) and composite ML-KEM
// (draft-ietf-lamps-pq-composite-kem sections 5 and 4.2). crypto/x509
// parses such certificates but leaves PublicKey nil, and refuses such
// PKCS#8 keys; the store reads both itself, so that a KEM certificate is
// judged, paired with its key, listed and imported like any other.

// parseCertificate is x509.ParseCertificate that also reads a KEM
// SubjectPublicKeyInfo into PublicKey (a *cms.KEMPublicKey). A KEM key
// that is refused leaves PublicKey nil; checkKey then says why.
func parseCertificate(der []byte) (*x509.Certificate, error) {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if c.PublicKey == nil {
		if pub, err := cms.ParseKEMPublicKey(c.RawSubjectPublicKeyInfo); err == nil {
			c.PublicKey = pub
		}
	}
	return c, nil
}

// kemKeyProblem says why a certificate's KEM key was refused, or "" when
// its key is no KEM key at all.
func kemKeyProblem(x *x509.Certificate) string {
	_, err := cms.ParseKEMPublicKey(x.RawSubjectPublicKeyInfo)
	if err == nil || errors.Is(err, cms.ErrNotKEM) {
		return ""
	}
	return err.Error()
}

// checkKEMKey judges a KEM certificate's key usage. RFC 9935 section 5 and
// the composite draft section 5.2: when the extension is present,
// keyEncipherment MUST be the only bit; and RFC 9629 section 3 needs
// keyEncipherment for KEMRecipientInfo.
func checkKEMKey(x *x509.Certificate, pub *cms.KEMPublicKey) (Status, string) {
	if x.KeyUsage != 0 && x.KeyUsage != x509.KeyUsageKeyEncipherment {
		return WrongKeyUsage, fmt.Sprintf("%s certificate whose key usage is not keyEncipherment alone (RFC 9935 section 5)", pub.Algorithm())
	}
	return Valid, ""
}

// PostQuantum reports whether c's key is ML-KEM or composite ML-KEM: mail
// encrypted to it stays confidential against a quantum computer.
func (c *Cert) PostQuantum() bool {
	_, ok := c.X509.PublicKey.(*cms.KEMPublicKey)
	return ok
}

// KeyType names c's key for listings: "rsa2048", "p256", "x25519",
// "mlkem768", "mlkem768-x25519" and so on.
func (c *Cert) KeyType() string { return keyTypeOf(c.X509.PublicKey) }

func keyTypeOf(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("rsa%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		switch k.Curve.Params().BitSize {
		case 256:
			return "p256"
		case 384:
			return "p384"
		case 521:
			return "p521"
		}
		return "ec"
	case *ecdh.PublicKey:
		if k.Curve() == ecdh.X25519() {
			return "x25519"
		}
		return "ecdh"
	case ed25519.PublicKey:
		return "ed25519"
	case *cms.KEMPublicKey:
		return k.Algorithm()
	}
	return "unknown"
}

// PostQuantumOnly returns m with only its post-quantum certificates in
// Certs; the others move to Unusable with a reason, for
// [policy.partners."D"] require_pq. Domain stays, so that a domain without
// a post-quantum certificate is held, never sent in the clear.
func (m Match) PostQuantumOnly() Match {
	out := Match{Domain: m.Domain, Unusable: slices.Clone(m.Unusable), Rule: m.Rule}
	for _, c := range m.Certs {
		if c.PostQuantum() {
			out.Certs = append(out.Certs, c)
			continue
		}
		e := *c
		e.Reason = fmt.Sprintf("a %s key, not post-quantum: require_pq encrypts only to ML-KEM or composite ML-KEM certificates", c.KeyType())
		out.Unusable = append(out.Unusable, &e)
	}
	if m.Domain != "" {
		out.Rule += fmt.Sprintf("; require_pq: %d of its %d usable certificate(s) are post-quantum", len(out.Certs), len(m.Certs))
	}
	return out
}

// parsePKCS8Key reads an unencrypted PKCS#8 private key: what
// x509.ParsePKCS8PrivateKey reads, and ML-KEM and composite keys.
func parsePKCS8Key(der []byte) (crypto.PrivateKey, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err == nil {
		return k, nil
	}
	kk, isKEM, kerr := parseKEMPKCS8(der)
	if isKEM {
		return kk, kerr
	}
	return nil, err
}

// maxKEMKeyInfo bounds a PKCS#8 KEM key: the largest here (ML-KEM-768
// with RSA-4096, its public key included) is under 4,200 bytes.
const maxKEMKeyInfo = 8192

// parseKEMPKCS8 reads a OneAsymmetricKey (RFC 5958 section 2) whose
// algorithm is a KEM: version 0, or 1 with the optional publicKey, which
// must then be the key's own (RFC 9935 section 8, composite draft section
// 5.3). isKEM is false when the algorithm is none of ours, so that the
// caller reports its own error.
func parseKEMPKCS8(der []byte) (key *cms.KEMPrivateKey, isKEM bool, err error) {
	if len(der) > maxKEMKeyInfo {
		return nil, false, nil
	}
	in := cryptobyte.String(der)
	var oak, alg cryptobyte.String
	var version int
	var oid asn1.ObjectIdentifier
	var priv []byte
	if !in.ReadASN1(&oak, cbasn1.SEQUENCE) || !in.Empty() || !oak.ReadASN1Integer(&version) ||
		!oak.ReadASN1(&alg, cbasn1.SEQUENCE) || !alg.ReadASN1ObjectIdentifier(&oid) {
		return nil, false, nil
	}
	// Only a KEM algorithm makes this our error to report.
	name, ok := cms.KEMName(oid)
	if !ok {
		return nil, false, nil
	}
	if version != 0 && version != 1 {
		return nil, true, fmt.Errorf("%s private key: PKCS#8 version %d", name, version)
	}
	if !alg.Empty() {
		return nil, true, fmt.Errorf("%s private key with algorithm parameters, which must be absent", name)
	}
	if !oak.ReadASN1Bytes(&priv, cbasn1.OCTET_STRING) {
		return nil, true, fmt.Errorf("%s private key: malformed PKCS#8", name)
	}
	if oak.PeekASN1Tag(cbasn1.Tag(0).ContextSpecific().Constructed()) {
		var attrs cryptobyte.String
		oak.ReadASN1(&attrs, cbasn1.Tag(0).ContextSpecific().Constructed())
	}
	var pubBits []byte
	hasPub := false
	if oak.PeekASN1Tag(cbasn1.Tag(1).ContextSpecific()) {
		var pb cryptobyte.String
		if version != 1 || !oak.ReadASN1(&pb, cbasn1.Tag(1).ContextSpecific()) || len(pb) == 0 || pb[0] != 0 {
			return nil, true, fmt.Errorf("%s private key: malformed publicKey", name)
		}
		pubBits, hasPub = pb[1:], true
	}
	if !oak.Empty() {
		return nil, true, fmt.Errorf("%s private key: trailing data in PKCS#8", name)
	}
	k, err := cms.NewKEMPrivateKey(oid, priv)
	clear(priv)
	if err != nil {
		return nil, true, err
	}
	if hasPub {
		own, _ := k.Public().(*cms.KEMPublicKey)
		if !bytes.Equal(own.Bytes(), pubBits) {
			return nil, true, fmt.Errorf("%s private key: its publicKey field is not the key's own", name)
		}
	}
	return k, true, nil
}

// marshalKEMPKCS8 encodes k as a version 0 OneAsymmetricKey (PrivateKeyInfo)
// in the seed form; the caller should clear the result after use.
func marshalKEMPKCS8(k *cms.KEMPrivateKey) []byte {
	priv := k.PrivateKeyBytes()
	defer clear(priv)
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(0)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(k.OID()) })
		b.AddASN1OctetString(priv)
	})
	return b.BytesOrPanic()
}
