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
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"smimegate/internal/smtp"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// KeyTypes are the key types Generate makes; the first is the default.
var KeyTypes = []string{"rsa3072", "rsa2048", "rsa4096", "p256", "p384"}

// DefaultValidityDays is how long a generated certificate lasts: two years,
// long enough not to be a chore, short enough that a rotation is practised.
const DefaultValidityDays = 730

// maxValidityDays bounds -days: ten years.
const maxValidityDays = 3650

// backdate is how far before now a new certificate starts, so that a
// partner whose clock is a little behind does not see it as not yet valid.
const backdate = time.Hour

// KeygenOptions describes the domain key and certificate to make.
type KeygenOptions struct {
	Domains []string // one or more; the first names the files and the subject
	KeyType string   // one of KeyTypes; "" is rsa3072
	Days    int      // validity; 0 is DefaultValidityDays
	Names   []string // local parts written into the certificate; DefaultNames if empty; SigningName is always added
	// Passphrase, if set, encrypts the private key (PKCS#8 with PBES2,
	// PBKDF2-HMAC-SHA256 and AES-256-CBC).
	Passphrase []byte
	Now        func() time.Time
}

// Generated is a new domain key with its self-signed certificate and a
// certificate signing request for the same key and names.
type Generated struct {
	Domain  string // the first domain, A-label
	Key     crypto.Signer
	Cert    *x509.Certificate
	KeyPEM  []byte // PKCS#8, encrypted if a passphrase was given
	CertPEM []byte
	CSRPEM  []byte // PKCS#10 (RFC 2986)
}

// The extensions requested in the CSR (RFC 5280 section 4.2.1).
var (
	oidExtKeyUsage      = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidEmailProtection  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 4}
)

// Errors for keygen options that cannot be honoured.
var (
	errGenerateNoDomain    = errors.New("at least one domain is needed")
	errGenerateBadValidity = fmt.Errorf("validity must be 1 to %d days", maxValidityDays)
	errGenerateBadKeyType  = fmt.Errorf("key type must be one of %v", KeyTypes)
)

// SigningName is the local part that RFC 3183 section 3.1.1 gives the
// certificate of a domain signature: domain-signing-authority@DOMAIN. A
// receiving domain tells a domain signature from a user's by it.
const SigningName = "domain-signing-authority"

// Generate makes a domain key and a self-signed domain certificate that
// carries both naming conventions for encryption (draft section 4 and RFC
// 3183 section 4.1) and RFC 3183's name for domain signing (section 3.1.1)
// for every domain in its subjectAltName, so that one certificate serves
// both halves of RFC 3183.
//
// Key usage: digitalSignature, for domain signatures (RFC 8550 section
// 4.4.2), beside keyEncipherment for RSA (RSA key transport) or
// keyAgreement for EC (ECDH, RFC 5480 section 3 lists no encipherment bit
// for EC keys). Extended key usage is emailProtection.
//
// GnuPG's gpgsm 2.2 refuses an EC certificate without keyEncipherment, and
// with it fails anyway ("ksba_cms_set_enc_val failed: Invalid
// S-expression", measured with 2.2.40): it cannot encrypt to EC keys at
// all, so bending RFC 5480 for it would gain nothing. Partners on gpgsm
// need an RSA certificate, the default.
func Generate(opts KeygenOptions) (*Generated, error) {
	domains, err := keygenDefaults(opts.Domains, &opts.Days, &opts.Names, &opts.Now)
	if err != nil {
		return nil, err
	}
	key, usage, err := newKey(opts.KeyType)
	if err != nil {
		return nil, err
	}
	names := opts.Names
	if !slices.Contains(names, SigningName) {
		names = append(slices.Clip(names), SigningName)
	}
	var emails []string
	for _, d := range domains {
		for _, n := range names {
			emails = append(emails, n+"@"+d)
		}
	}
	ski, err := subjectKeyID(key.Public())
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	serial.Add(serial, big.NewInt(1)) // RFC 5280 section 4.1.2.2: positive
	now := opts.Now()
	subject := pkix.Name{CommonName: domains[0], OrganizationalUnit: []string{"S/MIME domain encryption"}}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(time.Duration(opts.Days) * 24 * time.Hour),
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		BasicConstraintsValid: true,
		EmailAddresses:        emails,
		SubjectKeyId:          ski,
		AuthorityKeyId:        ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	csr, err := newCSR(key, subject, emails, usage)
	if err != nil {
		return nil, err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	keyBlock := &pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}
	if len(opts.Passphrase) > 0 {
		enc, err := encryptPKCS8(pkcs8, opts.Passphrase)
		if err != nil {
			return nil, err
		}
		keyBlock = &pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: enc}
	}
	g := &Generated{
		Domain:  domains[0],
		Key:     key,
		Cert:    cert,
		KeyPEM:  pem.EncodeToMemory(keyBlock),
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		CSRPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}),
	}
	clear(pkcs8)
	return g, nil
}

func newKey(kind string) (crypto.Signer, x509.KeyUsage, error) {
	rsaBits := map[string]int{"": 3072, "rsa3072": 3072, "rsa2048": 2048, "rsa4096": 4096}
	if bits, ok := rsaBits[kind]; ok {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		return k, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, err
	}
	var curve elliptic.Curve
	switch kind {
	case "p256":
		curve = elliptic.P256()
	case "p384":
		curve = elliptic.P384()
	default:
		return nil, 0, errGenerateBadKeyType
	}
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	return k, x509.KeyUsageDigitalSignature | x509.KeyUsageKeyAgreement, err
}

// subjectKeyID computes the key identifier of RFC 5280 section 4.2.1.2
// method (1): SHA-1 of the subjectPublicKey BIT STRING. The CMS code may
// name recipients by it (RFC 5652 section 6.2.1, subjectKeyIdentifier).
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	in := cryptobyte.String(spki)
	var seq, algo cryptobyte.String
	var bits asn1.BitString
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !seq.ReadASN1(&algo, cbasn1.SEQUENCE) || !seq.ReadASN1BitString(&bits) {
		return nil, errors.New("cannot read back the public key")
	}
	sum := sha1.Sum(bits.Bytes)
	return sum[:], nil
}

// newCSR makes a PKCS#10 request that asks a CA for the same names and the
// same key usage as the self-signed certificate (RFC 2985 section 5.4.2
// extensionRequest, which Go writes from ExtraExtensions).
func newCSR(key crypto.Signer, subject pkix.Name, emails []string, usage x509.KeyUsage) ([]byte, error) {
	ku, err := marshalKeyUsage(usage)
	if err != nil {
		return nil, err
	}
	eku, err := asn1.Marshal([]asn1.ObjectIdentifier{oidEmailProtection})
	if err != nil {
		return nil, err
	}
	bc, err := asn1.Marshal(struct{}{}) // BasicConstraints with cA FALSE (the default)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:        subject,
		EmailAddresses: emails,
		ExtraExtensions: []pkix.Extension{
			{Id: oidKeyUsage, Critical: true, Value: ku},
			{Id: oidExtKeyUsage, Value: eku},
			{Id: oidBasicConstraints, Critical: true, Value: bc},
		},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("certificate signing request: %w", err)
	}
	return der, nil
}

// marshalKeyUsage encodes the KeyUsage BIT STRING (RFC 5280 section
// 4.2.1.3) in DER: bit i of x509.KeyUsage is named bit i, trailing zero
// bits are dropped (X.690 section 11.2.2).
func marshalKeyUsage(ku x509.KeyUsage) ([]byte, error) {
	var b [2]byte
	n := 0
	for i := range 9 {
		if ku&(1<<i) != 0 {
			b[i/8] |= 0x80 >> (i % 8)
			n = i + 1
		}
	}
	return asn1.Marshal(asn1.BitString{Bytes: b[:(n+7)/8], BitLength: n})
}

// keygenDefaults applies the defaults that Generate and GenerateKEM share
// (validity, names, clock) and returns the domains canonical and without
// repeats.
func keygenDefaults(in []string, days *int, names *[]string, now *func() time.Time) ([]string, error) {
	if len(in) == 0 {
		return nil, errGenerateNoDomain
	}
	if *days == 0 {
		*days = DefaultValidityDays
	}
	if *days < 1 || *days > maxValidityDays {
		return nil, errGenerateBadValidity
	}
	if len(*names) == 0 {
		*names = DefaultNames
	}
	if *now == nil {
		*now = time.Now
	}
	var domains []string
	for _, d := range in {
		a, err := smtp.CanonicalDomain(d)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(domains, a) {
			domains = append(domains, a)
		}
	}
	return domains, nil
}
