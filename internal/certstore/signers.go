package certstore

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"smimegate/internal/smtp"
)

// Domain signatures (RFC 3183 section 3): which certificates speak for a
// domain, which of ours signs for one, and whether a signer that a message
// names is to be believed. A domain certificate of D is one that names D in
// one of the configured forms (certs.names, host names) or as D's domain
// signer, SigningName@D.

// signerNaming is n with RFC 3183's signing name added to the local parts.
func signerNaming(n naming) naming {
	if !slices.Contains(n.names, SigningName) {
		n.names = append(slices.Clip(n.names), SigningName)
	}
	return n
}

// isSigningCert reports whether x is a leaf that names a domain only as its
// signer (SigningName), for partner files that hold a signing certificate
// apart from the encryption one.
func isSigningCert(x *x509.Certificate, n naming) bool {
	if x.BasicConstraintsValid && x.IsCA {
		return false
	}
	return len(newCert(x, "", signerNaming(n)).Domains) > 0
}

// addSigner keeps a partner's signing-only certificate, once.
func (s *Store) addSigner(x *x509.Certificate, file string) {
	c := newCert(x, file, signerNaming(s.opts.naming()))
	for _, o := range s.signers {
		if o.Fingerprint == c.Fingerprint {
			return
		}
	}
	s.signers = append(s.signers, c)
}

// SignerDomains returns the domains x is a domain certificate of, as a
// signer: those it names as SigningName@D or in one of the store's forms.
// A certificate that names a public suffix (not allowed) speaks for none.
func (s *Store) SignerDomains(x *x509.Certificate) []string {
	c := newCert(x, "", signerNaming(s.opts.naming()))
	if c.static == PublicSuffix {
		return nil
	}
	return c.Domains
}

// HeldCertificates returns every certificate we hold, ours and partners'
// (signing-only ones included): for a signer that left its certificate out
// of its SignedData.
func (s *Store) HeldCertificates() []*x509.Certificate {
	out := make([]*x509.Certificate, 0, len(s.own)+len(s.partners)+len(s.signers))
	for _, set := range [][]*Cert{s.own, s.partners, s.signers} {
		for _, c := range set {
			out = append(out, c.X509)
		}
	}
	return out
}

// TrustSigner returns nil when x may make domain signatures for domain. With
// trust anchors configured (certs.trust_anchors), x must chain to one of
// them now, through intermediates (those the message carried) and the CA
// certificates of the partner files, for emailProtection: as partner
// certificates must. Without them, x must be a certificate we hold, a
// partner's or one of ours, that names domain: certificates are exchanged
// out of band, and a signer we do not hold is a stranger. It checks
// neither key usage nor the validity period (VerifyDomainSignature does).
func (s *Store) TrustSigner(x *x509.Certificate, intermediates []*x509.Certificate, domain string, now time.Time) error {
	if s.roots != nil {
		pool := x509.NewCertPool()
		for _, c := range intermediates {
			pool.AddCert(c)
		}
		for _, c := range s.chainCerts {
			pool.AddCert(c)
		}
		chains, err := x.Verify(x509.VerifyOptions{
			Roots:         s.roots,
			Intermediates: pool,
			CurrentTime:   now,
			KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		})
		if err != nil {
			return fmt.Errorf("it does not chain to a trust anchor in %s: %v", s.opts.TrustDir, err)
		}
		return s.signerRevocation(x, chains[0], now)
	}
	fp := newCert(x, "", s.opts.naming()).Fingerprint
	for _, set := range [][]*Cert{s.partners, s.signers, s.own} {
		for _, c := range set {
			if c.Fingerprint != fp {
				continue
			}
			if !slices.Contains(s.SignerDomains(c.X509), domain) {
				return fmt.Errorf("the certificate we hold (%s) does not name %s", c.File, domain)
			}
			return nil
		}
	}
	return errors.New("it is not a certificate we hold (certs.partners), and no trust anchors are configured to chain it to")
}

// signerRevocation judges a signer's revocation status (certs.revocation)
// as a partner certificate's is judged: a revoked signer, or under strict
// one whose status cannot be learnt (past the grace, or from an issuer that
// names no source), makes no domain signature.
func (s *Store) signerRevocation(x *x509.Certificate, chain []*x509.Certificate, now time.Time) error {
	r := s.opts.Revocation
	if r == nil || r.Mode() == RevocationOff || len(chain) < 2 {
		return nil
	}
	fp := newCert(x, "", s.opts.naming()).Fingerprint
	name := fmt.Sprintf("signer %s (sha256 %s)", x.Subject, fp[:16])
	pairs := make([]revPair, 0, len(chain)-1)
	for i := 0; i+1 < len(chain); i++ {
		label := name
		if i > 0 {
			label = fmt.Sprintf("issuing CA %q of %s", chain[i].Subject.String(), name)
		}
		pairs = append(pairs, revPair{cert: chain[i], issuer: chain[i+1], label: label, key: subjectKey(chain[i], chain[i+1])})
	}
	if st, why := r.verdict(r.trackSigner(fp, pairs, now), now); st != Valid {
		return fmt.Errorf("its revocation status: %s", why)
	}
	return nil
}

// CanSign says whether an own certificate may make domain signatures, and
// if not, why: its private key must be loaded and able to sign (RSA, ECDSA
// or Ed25519; an X25519 key cannot), and its key usage, when present, must
// include digitalSignature (RFC 8550 section 4.4.2). Validity is judged by
// the caller's clock (OwnSigner).
func CanSign(c *Cert) (bool, string) {
	switch c.Key.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
	case nil:
		return false, "its private key is not loaded"
	default:
		return false, fmt.Sprintf("its %s key cannot sign", c.X509.PublicKeyAlgorithm)
	}
	if c.X509.KeyUsage != 0 && c.X509.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return false, "its key usage lacks digitalSignature (make a new one with `smimegate keygen`, which sets it)"
	}
	if len(c.X509.ExtKeyUsage) > 0 && !slices.Contains(c.X509.ExtKeyUsage, x509.ExtKeyUsageEmailProtection) && !slices.Contains(c.X509.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return false, "its extended key usage lacks emailProtection"
	}
	return true, ""
}

// Signing is an own certificate that can make domain signatures, its key,
// and the CA certificates of its chain that the own directory holds.
type Signing struct {
	Cert  *Cert
	Key   crypto.Signer
	Chain []*x509.Certificate
}

// maxChain bounds the chain included with a signature: a domain
// certificate sits one to three levels below a root.
const maxChain = 8

// OwnSigner returns our certificate to sign mail from domain with: the own
// certificate with a key that can sign, usable now, that names domain or
// the nearest parent of it as a domain signer, the one that lasts longest
// among equals; or an error that says why there is none.
func (s *Store) OwnSigner(domain string) (*Signing, error) {
	d, err := smtp.CanonicalDomain(domain)
	if err != nil {
		return nil, err
	}
	now := s.opts.Now()
	var best *Cert
	bestLen := -1
	var why []string
	for _, c := range s.own {
		e := c.evaluated(now)
		covers := ""
		for _, sd := range s.SignerDomains(c.X509) {
			if (d == sd || strings.HasSuffix(d, "."+sd)) && len(sd) > len(covers) {
				covers = sd
			}
		}
		if covers == "" {
			continue
		}
		if ok, reason := CanSign(e); !ok {
			why = append(why, fmt.Sprintf("%s: %s", e.Describe(), reason))
			continue
		}
		if !e.Usable() {
			why = append(why, fmt.Sprintf("%s: %s (%s)", e.Describe(), e.Status, e.Reason))
			continue
		}
		if len(covers) > bestLen || len(covers) == bestLen && e.X509.NotAfter.After(best.X509.NotAfter) {
			best, bestLen = e, len(covers)
		}
	}
	if best == nil {
		if len(why) == 0 {
			return nil, fmt.Errorf("no own certificate names %s or a parent domain of it", d)
		}
		return nil, fmt.Errorf("no own certificate can sign for %s: %s", d, strings.Join(why, "; "))
	}
	sg := &Signing{Cert: best, Key: best.Key.(crypto.Signer)}
	// The issuers above it, as far as the own directory has them.
	for cur := best.X509; len(sg.Chain) < maxChain; {
		var next *x509.Certificate
		for _, ca := range s.ownChain {
			if bytes.Equal(ca.RawSubject, cur.RawIssuer) && !bytes.Equal(ca.Raw, cur.Raw) && !slices.ContainsFunc(sg.Chain, ca.Equal) {
				next = ca
				break
			}
		}
		if next == nil {
			break
		}
		sg.Chain = append(sg.Chain, next)
		cur = next
	}
	return sg, nil
}

// OwnCannotSign lists our certificates (with a loaded key) that can never
// make a domain signature, with the reason, for `serve` and `check-config`
// to say so.
func (s *Store) OwnCannotSign() []Problem {
	var out []Problem
	for _, c := range s.own {
		if c.Key == nil {
			continue
		}
		if ok, reason := CanSign(c); !ok {
			out = append(out, Problem{File: c.File, Reason: c.Describe() + " is never used to sign: " + reason})
		}
	}
	return out
}

// checkSigners refuses signing-only certificates that `cert import` must
// not take: one that names a public suffix, is not valid now, may not sign
// (key usage without digitalSignature, extended key usage without
// emailProtection), or, with trust anchors, does not chain to them.
func checkSigners(signers []*Cert, roots, chain *x509.CertPool, now time.Time, trustDir string) error {
	for _, c := range signers {
		x := c.X509
		switch {
		case c.static == PublicSuffix:
			return errors.New(refusedSuffix(c))
		case now.Before(x.NotBefore) || now.After(x.NotAfter):
			return fmt.Errorf("signing certificate %s is not valid now (%s to %s)", c.Describe(), x.NotBefore.UTC().Format(time.RFC3339), x.NotAfter.UTC().Format(time.RFC3339))
		case x.KeyUsage != 0 && x.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0:
			return fmt.Errorf("signing certificate %s: its key usage lacks digitalSignature", c.Describe())
		case len(x.ExtKeyUsage) > 0 && !slices.Contains(x.ExtKeyUsage, x509.ExtKeyUsageEmailProtection) && !slices.Contains(x.ExtKeyUsage, x509.ExtKeyUsageAny):
			return fmt.Errorf("signing certificate %s: its extended key usage lacks emailProtection", c.Describe())
		}
		if roots != nil {
			if _, err := x.Verify(x509.VerifyOptions{Roots: roots, Intermediates: chain, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}}); err != nil {
				return fmt.Errorf("signing certificate %s does not chain to a trust anchor in %s: %v", c.Describe(), trustDir, err)
			}
		}
	}
	return nil
}
