package certstore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"smimegate/internal/cms"
)

// KEM domain keys: ML-KEM (RFC 9935) and composite ML-KEM certificates.
// A KEM key cannot sign, so neither can it sign its own certificate nor a
// certificate signing request (RFC 2986 section 3 wants the subject's
// signature): the certificate is issued by a signing certificate of the
// domain, an ECDSA P-256 issuer that GenerateKEM makes unless the caller
// gives one.

// KEMKeyTypes are the KEM key types GenerateKEM makes, as `smimegate keygen
// -key` names them.
var KEMKeyTypes = cms.KEMAlgorithms()

// IsKEMKeyType reports whether kind is one of KEMKeyTypes.
func IsKEMKeyType(kind string) bool { return slices.Contains(KEMKeyTypes, kind) }

// issuerValidityDays is how long a generated issuer lasts: the longest
// validity keygen allows, since it signs each successive KEM certificate
// of the domain and partners may anchor their trust in it.
const issuerValidityDays = maxValidityDays

// KEMKeygenOptions describes the KEM domain key and certificate to make.
type KEMKeygenOptions struct {
	KeygenOptions // KeyType is one of KEMKeyTypes
	// IssuerCert and IssuerKey sign the certificate: a CA certificate
	// (basicConstraints cA, keyCertSign when key usage is present) and
	// its key. Both nil: GenerateKEM makes a new issuer.
	IssuerCert *x509.Certificate
	IssuerKey  crypto.Signer
}

// GeneratedKEM is a new KEM domain key with its certificate.
type GeneratedKEM struct {
	Domain  string
	Key     *cms.KEMPrivateKey
	Cert    *x509.Certificate
	KeyPEM  []byte // PKCS#8 in the seed form, encrypted if a passphrase was given
	CertPEM []byte
	// Issuer signed Cert. IssuerKeyPEM and IssuerCertPEM are set only when
	// GenerateKEM made the issuer.
	Issuer        *x509.Certificate
	IssuerCertPEM []byte
	IssuerKeyPEM  []byte
}

// GenerateKEM makes a KEM domain key and a domain certificate for it that
// carries both naming conventions (draft section 4, RFC 3183 section 4.1),
// with keyEncipherment as its only key usage (RFC 9935 section 5; the
// composite draft section 5.2) and emailProtection, signed by the issuer
// of opts or by a new one.
func GenerateKEM(opts KEMKeygenOptions) (*GeneratedKEM, error) {
	if !IsKEMKeyType(opts.KeyType) {
		return nil, fmt.Errorf("KEM key type must be one of %v", KEMKeyTypes)
	}
	if (opts.IssuerCert == nil) != (opts.IssuerKey == nil) {
		return nil, errors.New("an issuer needs both its certificate and its key")
	}
	domains, err := opts.normalise()
	if err != nil {
		return nil, err
	}
	now := opts.Now()
	notAfter := now.Add(time.Duration(opts.Days) * 24 * time.Hour)
	g := &GeneratedKEM{Domain: domains[0]}
	issuer, signer := opts.IssuerCert, opts.IssuerKey
	if issuer == nil {
		if issuer, signer, err = newKEMIssuer(domains[0], now); err != nil {
			return nil, err
		}
		g.IssuerCertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: issuer.Raw})
		pkcs8, err := x509.MarshalPKCS8PrivateKey(signer)
		if err != nil {
			return nil, err
		}
		if g.IssuerKeyPEM, err = kemKeyPEM(pkcs8, opts.Passphrase); err != nil {
			return nil, err
		}
	} else if err := checkKEMIssuer(issuer, signer, notAfter); err != nil {
		return nil, err
	}
	g.Issuer = issuer

	if g.Key, err = cms.GenerateKEMKey(opts.KeyType); err != nil {
		return nil, err
	}
	pub := g.Key.Public().(*cms.KEMPublicKey)
	// RFC 5280 section 4.2.1.2 method (1): SHA-1 of the subjectPublicKey.
	ski := sha1.Sum(pub.Bytes())
	serial, err := kemSerial()
	if err != nil {
		return nil, err
	}
	var emails []string
	for _, d := range domains {
		for _, n := range opts.Names {
			emails = append(emails, n+"@"+d)
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: domains[0], OrganizationalUnit: []string{"S/MIME domain encryption"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		BasicConstraintsValid: true,
		EmailAddresses:        emails,
		SubjectKeyId:          ski[:],
	}
	der, err := createKEMCertificate(tmpl, issuer, signer, cms.MarshalKEMPublicKey(pub))
	if err != nil {
		return nil, err
	}
	if g.Cert, err = parseCertificate(der); err != nil {
		return nil, err
	}
	if err := g.Cert.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("the new certificate does not verify under its issuer: %w", err)
	}
	pkcs8 := marshalKEMPKCS8(g.Key)
	defer clear(pkcs8)
	if g.KeyPEM, err = kemKeyPEM(pkcs8, opts.Passphrase); err != nil {
		return nil, err
	}
	g.CertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return g, nil
}

// normalise applies the defaults of Generate and canonicalises the domains.
func (opts *KEMKeygenOptions) normalise() ([]string, error) {
	return keygenDefaults(opts.Domains, &opts.Days, &opts.Names, &opts.Now)
}

// kemKeyPEM wraps a PKCS#8 key in PEM, encrypted when there is a passphrase.
func kemKeyPEM(pkcs8, passphrase []byte) ([]byte, error) {
	if len(passphrase) == 0 {
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), nil
	}
	enc, err := encryptPKCS8(pkcs8, passphrase)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: enc}), nil
}

func kemSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	return serial.Add(serial, big.NewInt(1)), nil // RFC 5280 section 4.1.2.2: positive
}

// newKEMIssuer makes the domain's signing certificate: ECDSA P-256,
// self-signed, digitalSignature and keyCertSign, a CA that issues only
// end-entity certificates (path length 0), named for the domain by its
// common name alone, so that it is never taken for a domain certificate
// (no mailbox names it).
func newKEMIssuer(domain string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	ski, err := subjectKeyID(key.Public())
	if err != nil {
		return nil, nil, err
	}
	serial, err := kemSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: domain, OrganizationalUnit: []string{"S/MIME domain certificate issuer"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(issuerValidityDays * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          ski,
		AuthorityKeyId:        ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("issuer certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// checkKEMIssuer refuses an issuer that cannot issue the certificate: not a
// CA, without keyCertSign, a key that is not the certificate's, or one
// that expires before the new certificate would.
func checkKEMIssuer(c *x509.Certificate, key crypto.Signer, notAfter time.Time) error {
	switch {
	case !c.BasicConstraintsValid || !c.IsCA:
		return fmt.Errorf("issuer %q is not a CA certificate (basicConstraints cA)", c.Subject)
	case c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0:
		return fmt.Errorf("issuer %q: its key usage lacks keyCertSign", c.Subject)
	case !samePublicKey(key.Public(), c.PublicKey):
		return fmt.Errorf("the issuer key is not the key of issuer certificate %q", c.Subject)
	case notAfter.After(c.NotAfter):
		return fmt.Errorf("issuer %q expires on %s, before the new certificate would; ask for fewer days or renew the issuer", c.Subject, c.NotAfter.UTC().Format(time.DateOnly))
	}
	return nil
}

// ParseKEMIssuer reads an issuer for GenerateKEM: a PEM or DER certificate,
// and its private key in any form the own directory accepts (an encrypted
// one with passphrase), which must be able to sign.
func ParseKEMIssuer(certData, keyData, passphrase []byte) (*x509.Certificate, crypto.Signer, error) {
	cc, err := parseFile("issuer.crt", certData, partnerFile, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("issuer certificate: %w", err)
	}
	if len(cc.certs) != 1 {
		return nil, nil, fmt.Errorf("issuer certificate: the file holds %d certificates, want 1", len(cc.certs))
	}
	kc, err := parseFile("issuer.key", keyData, ownFile, passphrase)
	if err != nil {
		return nil, nil, fmt.Errorf("issuer key: %w", err)
	}
	if len(kc.keyErrors) > 0 {
		return nil, nil, fmt.Errorf("issuer key: %s", kc.keyErrors[0])
	}
	if len(kc.keys) != 1 {
		return nil, nil, fmt.Errorf("issuer key: the file holds %d private keys, want 1", len(kc.keys))
	}
	signer, ok := kc.keys[0].(crypto.Signer)
	if _, kem := kc.keys[0].(*cms.KEMPrivateKey); !ok || kem {
		return nil, nil, errors.New("issuer key: not a signing key")
	}
	return cc.certs[0], signer, nil
}

// createKEMCertificate issues a certificate for a public key that
// crypto/x509 cannot encode: it has x509 make the certificate for a
// placeholder key, puts spki (the KEM SubjectPublicKeyInfo) in the
// placeholder's place in the TBSCertificate (RFC 5280 section 4.1), and
// signs that with the issuer's key under the signature algorithm x509
// chose. tmpl must set SubjectKeyId, which x509 would otherwise derive
// from the placeholder.
func createKEMCertificate(tmpl, issuer *x509.Certificate, signer crypto.Signer, spki []byte) ([]byte, error) {
	placeholder, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, placeholder.Public(), signer)
	if err != nil {
		return nil, fmt.Errorf("certificate: %w", err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	tbs, err := replaceSPKI(c.RawTBSCertificate, spki)
	if err != nil {
		return nil, err
	}
	hash, pss, err := signatureHash(c.SignatureAlgorithm)
	if err != nil {
		return nil, err
	}
	digest := tbs
	if hash != 0 {
		h := hash.New()
		h.Write(tbs)
		digest = h.Sum(nil)
	}
	var opts crypto.SignerOpts = hash
	if pss {
		opts = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: hash}
	}
	sig, err := signer.Sign(rand.Reader, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("signing the certificate: %w", err)
	}
	// The signatureAlgorithm of the Certificate is the one x509 wrote.
	in := cryptobyte.String(der)
	var cert, oldTBS, sigAlg cryptobyte.String
	if !in.ReadASN1(&cert, cbasn1.SEQUENCE) || !cert.ReadASN1Element(&oldTBS, cbasn1.SEQUENCE) ||
		!cert.ReadASN1Element(&sigAlg, cbasn1.SEQUENCE) {
		return nil, errors.New("cannot read back the certificate x509 made")
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(tbs)
		b.AddBytes(sigAlg)
		b.AddASN1BitString(sig)
	})
	return b.Bytes()
}

// replaceSPKI returns tbs with its subjectPublicKeyInfo, the seventh
// field of TBSCertificate (after version, serialNumber, signature, issuer,
// validity and subject), replaced by spki.
func replaceSPKI(tbs, spki []byte) ([]byte, error) {
	in := cryptobyte.String(tbs)
	var body cryptobyte.String
	if !in.ReadASN1(&body, cbasn1.SEQUENCE) || !in.Empty() {
		return nil, errors.New("malformed TBSCertificate")
	}
	var fields [][]byte
	for !body.Empty() {
		var f cryptobyte.String
		var tag cbasn1.Tag
		if !body.ReadAnyASN1Element(&f, &tag) {
			return nil, errors.New("malformed TBSCertificate field")
		}
		fields = append(fields, f)
	}
	const spkiField = 6 // version [0] is present: x509 writes v3
	if len(fields) <= spkiField {
		return nil, errors.New("TBSCertificate too short")
	}
	fields[spkiField] = spki
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		for _, f := range fields {
			b.AddBytes(f)
		}
	})
	return b.Bytes()
}

// signatureHash gives the digest to sign for the algorithms
// x509.CreateCertificate picks for an issuer's key.
func signatureHash(a x509.SignatureAlgorithm) (crypto.Hash, bool, error) {
	switch a {
	case x509.ECDSAWithSHA256, x509.SHA256WithRSA:
		return crypto.SHA256, false, nil
	case x509.ECDSAWithSHA384, x509.SHA384WithRSA:
		return crypto.SHA384, false, nil
	case x509.ECDSAWithSHA512, x509.SHA512WithRSA:
		return crypto.SHA512, false, nil
	case x509.SHA256WithRSAPSS:
		return crypto.SHA256, true, nil
	case x509.SHA384WithRSAPSS:
		return crypto.SHA384, true, nil
	case x509.SHA512WithRSAPSS:
		return crypto.SHA512, true, nil
	case x509.PureEd25519:
		return 0, false, nil
	}
	return 0, false, fmt.Errorf("issuer signature algorithm %s is not supported", a)
}
