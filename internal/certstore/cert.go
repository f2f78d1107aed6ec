package certstore

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/publicsuffix"

	"smimegate/internal/cms"
	"smimegate/internal/smtp"
)

// Status says whether a certificate may be used, and if not, why not.
type Status int

// The statuses, from best to worst. Only Valid and ExpiresSoon are usable.
const (
	Valid Status = iota
	ExpiresSoon
	Expired
	NotYetValid
	WrongKeyUsage
	BadKey
	Untrusted
	// NoPrivateKey is our own certificate whose private key could not be
	// loaded: the gateway knows the certificate is ours, but cannot open
	// mail encrypted to it.
	NoPrivateKey
	// PublicSuffix is a certificate that names a public suffix (com,
	// co.uk, github.io) not listed in Options.AllowPublicSuffix: it would
	// capture the mail of every domain under it, so it is not used.
	PublicSuffix
	// Revoked: its issuer (or the issuer of a CA in its chain) says it is
	// revoked (OCSP or CRL; see Revocation).
	Revoked
	// RevocationUnknown: under certs.revocation = strict, its revocation
	// status could not be learnt for longer than the grace period, or
	// cannot be learnt at all.
	RevocationUnknown
)

// ExpiresSoonWindow is how long before its notAfter a certificate is flagged
// "expires soon": long enough for a partner to send a new one by mail.
const ExpiresSoonWindow = 30 * 24 * time.Hour

// RSA key sizes that are accepted (RFC 8550: receivers MUST accept 2048 to
// 4096 bits; smaller keys are too weak, larger ones are not required).
const (
	minRSABits = 2048
	maxRSABits = 4096
)

var statusNames = [...]string{
	Valid:         "valid",
	ExpiresSoon:   "expires soon",
	Expired:       "expired",
	NotYetValid:   "not yet valid",
	WrongKeyUsage: "wrong key usage",
	BadKey:        "bad key",
	Untrusted:     "untrusted",
	NoPrivateKey:  "no private key",
	PublicSuffix:  "public suffix",
	Revoked:       "revoked",
	// The name says what an operator must look at: the status, not the
	// certificate, is what is missing.
	RevocationUnknown: "revocation unknown",
}

func (s Status) String() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", int(s))
}

// Usable tells whether mail may be encrypted to a certificate with this status.
func (s Status) Usable() bool { return s == Valid || s == ExpiresSoon }

// Cert is one domain certificate, ours (with its private key) or a partner's.
type Cert struct {
	X509 *x509.Certificate
	// Key is the private key of an own certificate. It is nil for a
	// partner's, and for an own certificate whose key could not be loaded
	// or is refused (Status NoPrivateKey or PublicSuffix; Reason says why).
	Key         crypto.PrivateKey
	Own         bool
	Domains     []string // A-label, lower case, sorted
	File        string
	Fingerprint string // hex SHA-256 of the DER
	Status      Status
	Reason      string // why the status is what it is, for logs and `cert list`

	// NamedBy says, for each of Domains, where the certificate names it,
	// e.g. "subjectAltName rfc822Name smg_encryptor@example.net".
	NamedBy map[string]string

	// static is the verdict that does not depend on the clock (key type and
	// size, key usage, trust); the time-dependent part is added by evaluate.
	static       Status
	staticReason string
	// trustUntil is the earliest notAfter in the best verified chain, when
	// trust anchors are configured: past it the certificate is Untrusted.
	trustUntil time.Time

	// Source says where the certificate came from: SourceFile (the own
	// or partner directory) or SourceSMIMEA (discovered in DNS).
	Source string
	// Revocation is what is known of its revocation status (of the worst
	// certificate in its chain), as of the evaluation.
	Revocation RevocationInfo
	// chain is the certificate, then its issuers up to a trust anchor:
	// the best verified chain of a partner certificate, the issuers found
	// for an own one. Each link is checked for revocation.
	chain []*x509.Certificate
	// pairs are chain's links as the Revocation checks them (revPairs).
	pairs []revPair
}

// The values of Cert.Source.
const (
	SourceFile   = "file"
	SourceSMIMEA = "smimea"
)

// Usable tells whether mail may be encrypted to c.
func (c *Cert) Usable() bool { return c.Status.Usable() }

// oidEmailAddress is PKCS #9 emailAddress, the legacy place for a mail
// address in a subject DN (RFC 5280 section 4.1.2.6; the draft allows it).
var oidEmailAddress = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}

// oidCommonName is the X.520 commonName, where RFC 3183 section 4.1 puts
// domain-confidentiality-authority@DOMAIN.
var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}

// newCert describes x for the store: domains, fingerprint and the part of the
// status that does not depend on the clock. It does not check trust.
func newCert(x *x509.Certificate, file string, n naming) *Cert {
	c := &Cert{X509: x, File: file, Fingerprint: Fingerprint(x), NamedBy: map[string]string{}, Source: SourceFile}
	c.domainsFrom(n)
	c.static, c.staticReason = checkKey(x)
	if d, why := c.publicSuffix(n); d != "" {
		c.static, c.staticReason = PublicSuffix, fmt.Sprintf("names %s (%s), %s", d, c.NamedBy[d], why)
	}
	return c
}

// naming says which names in a certificate mark the domains it serves.
type naming struct {
	names       []string // local parts of the mailbox forms (smg_encryptor, ...)
	hosts       bool     // also subjectAltName dNSName and smtp:// URI
	allowSuffix []string // public suffixes a certificate may name anyway
}

func (o Options) naming() naming {
	n := naming{names: o.Names, hosts: o.HostNames}
	for _, d := range o.AllowPublicSuffix {
		if c, err := smtp.CanonicalDomain(d); err == nil {
			n.allowSuffix = append(n.allowSuffix, c)
		}
	}
	return n
}

// publicSuffix returns the first of c's domains that is itself a public
// suffix and not allowed by n, with the reason, or "" if there is none.
// Mail to every domain under a public suffix would be encrypted to a
// certificate that names it (Lookup takes the most specific parent), so
// such a certificate captures the mail of strangers.
func (c *Cert) publicSuffix(n naming) (string, string) {
	for _, d := range c.Domains {
		if why := publicSuffixReason(d); why != "" && !slices.Contains(n.allowSuffix, d) {
			return d, why
		}
	}
	return "", ""
}

// publicSuffixReason says why d is a public suffix per the Public Suffix
// List that golang.org/x/net/publicsuffix compiles in, or "" if it is not.
// The list's default rule makes every single-label name a suffix; its
// private section holds names such as github.io, under which different
// owners register, and counts as much as the ICANN section.
func publicSuffixReason(d string) string {
	suffix, icann := publicsuffix.PublicSuffix(d)
	switch {
	case suffix != d:
		return ""
	case icann:
		return "a public suffix in the ICANN section of the Public Suffix List"
	case !strings.Contains(d, "."):
		return "a single-label name, which is a public suffix by the default rule of the Public Suffix List"
	}
	return "a public suffix in the private section of the Public Suffix List, under which different owners register"
}

// domainsFrom fills Domains and NamedBy (draft section 4: the subject DN or
// a subjectAltName lists mailboxes of the form smg_encryptor@domain; RFC 3183
// section 4.1 uses domain-confidentiality-authority@domain, also in the CN).
// An unparseable domain is skipped: the certificate still serves the others.
//
// With n.hosts, a subjectAltName dNSName or smtp:// URI names a domain too
// (the convention of draft-melnikov-smime-msa-to-mda, docs/threats.md
// section 2). Wildcards never do. A TLS server certificate is not thereby a domain
// certificate: its extended key usage (serverAuth, no emailProtection)
// makes it unusable for encryption (see status).
func (c *Cert) domainsFrom(n naming) {
	record := func(d, where, name string) {
		if _, seen := c.NamedBy[d]; !seen {
			c.NamedBy[d] = where + " " + name
			c.Domains = append(c.Domains, d)
		}
	}
	add := func(addr, where string) {
		d, err := domainOfMailbox(addr, n.names)
		if err != nil || d == "" {
			return
		}
		record(d, where, addr)
	}
	if n.hosts {
		addHost := func(host, where string) {
			if host == "" || strings.Contains(host, "*") {
				return
			}
			if d, err := smtp.CanonicalDomain(host); err == nil {
				record(d, where, host)
			}
		}
		for _, h := range c.X509.DNSNames {
			addHost(h, "subjectAltName dNSName")
		}
		for _, u := range c.X509.URIs {
			if strings.EqualFold(u.Scheme, "smtp") {
				addHost(u.Hostname(), "subjectAltName URI")
			}
		}
	}
	for _, e := range c.X509.EmailAddresses {
		add(e, "subjectAltName rfc822Name")
	}
	for _, atv := range c.X509.Subject.Names {
		s, ok := atv.Value.(string)
		if !ok {
			continue
		}
		switch {
		case atv.Type.Equal(oidEmailAddress):
			add(s, "subject emailAddress")
		case atv.Type.Equal(oidCommonName):
			add(s, "subject commonName")
		}
	}
	slices.Sort(c.Domains)
}

// checkKey judges the key and its declared usage, which do not change with time.
func checkKey(x *x509.Certificate) (Status, string) {
	switch pub := x.PublicKey.(type) {
	case *rsa.PublicKey:
		if bits := pub.N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return BadKey, fmt.Sprintf("RSA key of %d bits (only %d to %d are accepted)", bits, minRSABits, maxRSABits)
		}
		// RFC 8550 section 4.4.2: a key usage extension, when present,
		// must allow what the key is used for; RSA key transport is
		// keyEncipherment. Without the extension every use is allowed.
		if x.KeyUsage != 0 && x.KeyUsage&x509.KeyUsageKeyEncipherment == 0 {
			return WrongKeyUsage, "RSA certificate whose key usage lacks keyEncipherment"
		}
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return BadKey, fmt.Sprintf("EC key on unsupported curve %s", pub.Curve.Params().Name)
		}
		// RFC 5480 section 3 and RFC 5753 section 7.1: ECDH needs keyAgreement.
		if x.KeyUsage != 0 && x.KeyUsage&x509.KeyUsageKeyAgreement == 0 {
			return WrongKeyUsage, "EC certificate whose key usage lacks keyAgreement"
		}
	case *ecdh.PublicKey:
		if pub.Curve() != ecdh.X25519() {
			return BadKey, "unsupported ECDH key"
		}
		// RFC 8410 section 5: keyAgreement MUST be present for X25519.
		if x.KeyUsage&x509.KeyUsageKeyAgreement == 0 {
			return WrongKeyUsage, "X25519 certificate whose key usage lacks keyAgreement"
		}
	case *cms.KEMPublicKey:
		if s, why := checkKEMKey(x, pub); s != Valid {
			return s, why
		}
	default:
		if why := kemKeyProblem(x); why != "" {
			return BadKey, why
		}
		return BadKey, fmt.Sprintf("%s key, which cannot receive encrypted mail", x.PublicKeyAlgorithm)
	}
	// RFC 8550 section 4.4.4: if extended key usage is present, it must
	// allow emailProtection (or anyExtendedKeyUsage).
	if len(x.ExtKeyUsage) > 0 || len(x.UnknownExtKeyUsage) > 0 {
		if !slices.Contains(x.ExtKeyUsage, x509.ExtKeyUsageEmailProtection) && !slices.Contains(x.ExtKeyUsage, x509.ExtKeyUsageAny) {
			return WrongKeyUsage, "extended key usage lacks emailProtection"
		}
	}
	return Valid, ""
}

// evaluated returns a copy of c with Status and Reason as of now: the static
// verdict first, then trust expiry, then the validity period.
func (c *Cert) evaluated(now time.Time) *Cert {
	e := *c
	e.Status, e.Reason = c.statusAt(now)
	return &e
}

func (c *Cert) statusAt(now time.Time) (Status, string) {
	if c.static != Valid {
		return c.static, c.staticReason
	}
	x := c.X509
	switch {
	case now.Before(x.NotBefore):
		return NotYetValid, "not valid before " + x.NotBefore.UTC().Format(time.RFC3339)
	case now.After(x.NotAfter):
		return Expired, "expired on " + x.NotAfter.UTC().Format(time.RFC3339)
	case !c.trustUntil.IsZero() && now.After(c.trustUntil):
		return Untrusted, "its chain to the trust anchors expired on " + c.trustUntil.UTC().Format(time.RFC3339)
	case x.NotAfter.Sub(now) < ExpiresSoonWindow:
		return ExpiresSoon, "expires on " + x.NotAfter.UTC().Format(time.RFC3339)
	}
	return Valid, c.staticReason
}

// Describe names c for humans: subject and a fingerprint prefix.
func (c *Cert) Describe() string {
	return fmt.Sprintf("certificate %q (sha256 %s)", c.X509.Subject.String(), c.Fingerprint[:16])
}
