package certstore

import (
	"crypto"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// publicKeyOf returns the public half of a private key, nil if it has none.
func publicKeyOf(k crypto.PrivateKey) crypto.PublicKey {
	if s, ok := k.(interface{ Public() crypto.PublicKey }); ok {
		return s.Public()
	}
	return nil
}

// samePublicKey compares public keys; all of Go's key types have Equal.
func samePublicKey(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && b != nil && e.Equal(b)
}

// pairOwn joins our certificates with their private keys by public key, not
// by file name: a PEM pair may be split across files in any way, and a key
// may serve several certificates (a renewal with the same key).
//
// A certificate without a key is kept as ours, with Key nil and status
// NoPrivateKey, when it names a domain or is not a CA certificate: its key
// may be in a file that could not be read, and mail encrypted to it must
// then wait rather than pass as "not for us", still encrypted. A CA
// certificate that names no domain came with ours in a chain (PKCS#12) and
// is not ours. A certificate that names a public suffix is kept as ours
// the same way, but its key is not used (status PublicSuffix).
func (s *Store) pairOwn() {
	type keyEntry struct {
		key  crypto.PrivateKey
		pub  crypto.PublicKey
		file string
		used bool
	}
	var keys []*keyEntry
	paths := s.sortedFiles(ownFile)
	for _, p := range paths {
		for _, k := range s.files[p].content.keys {
			keys = append(keys, &keyEntry{key: k, pub: publicKeyOf(k), file: p})
		}
	}
	seen := map[string]bool{}
	for _, p := range paths {
		for _, x := range s.files[p].content.certs {
			c := newCert(x, p, s.opts.naming())
			if seen[c.Fingerprint] {
				continue
			}
			for _, k := range keys {
				if samePublicKey(k.pub, x.PublicKey) {
					c.Key, k.used = k.key, true
					break
				}
			}
			switch {
			case c.static == PublicSuffix:
				c.Key = nil
			case c.Key != nil:
				if len(c.Domains) == 0 {
					c.staticReason = "names no domain; its key is used only to decrypt"
				}
			case len(c.Domains) == 0 && x.BasicConstraintsValid && x.IsCA:
				// A CA certificate of our chain: it travels with our
				// domain signatures (signers.go).
				s.ownChain = append(s.ownChain, x)
				continue
			default:
				c.static, c.staticReason = NoPrivateKey, "no usable private key: "+s.missingKeyReason(p)
			}
			seen[c.Fingerprint] = true
			c.Own = true
			s.own = append(s.own, c)
		}
	}
	for _, k := range keys {
		if !k.used {
			s.problem(k.file, "private key matches no certificate in the own directory")
		}
	}
}

// missingKeyReason says why an own certificate from file has no key: the
// key that failed in file itself, else one that failed in a file of the
// same name but for the extension (example.org.crt and example.org.key),
// else every own file that failed to load, one of which may hold it.
func (s *Store) missingKeyReason(file string) string {
	stem := strings.TrimSuffix(file, filepath.Ext(file))
	var same, sibling, all []string
	for _, f := range s.ownFailed {
		r := f.File + ": " + f.Reason
		switch {
		case f.File == file:
			same = append(same, r)
		case strings.TrimSuffix(f.File, filepath.Ext(f.File)) == stem:
			sibling = append(sibling, r)
		}
		all = append(all, r)
	}
	switch {
	case len(same) > 0:
		return strings.Join(same, "; ")
	case len(sibling) > 0:
		return strings.Join(sibling, "; ")
	case len(all) > 0:
		return strings.Join(all, "; ")
	}
	return "no private key in the own directory matches it"
}

// collectPartners turns partner files into Certs, checks trust when anchors
// are configured, drops duplicates and indexes them by domain.
func (s *Store) collectPartners(roots *x509.CertPool) {
	now := s.opts.Now()
	var leaves []*Cert
	chain := x509.NewCertPool()
	for _, p := range s.sortedFiles(partnerFile) {
		for _, x := range s.files[p].content.certs {
			c := newCert(x, p, s.opts.naming())
			if len(c.Domains) == 0 {
				if isSigningCert(x, s.opts.naming()) {
					s.addSigner(x, p)
					continue
				}
				// A CA certificate shipped with the partner's: an
				// intermediate for the chain, not a recipient.
				chain.AddCert(x)
				s.chainCerts = append(s.chainCerts, x)
				if s.chainByFile == nil {
					s.chainByFile = map[string][]*x509.Certificate{}
				}
				s.chainByFile[p] = append(s.chainByFile[p], x)
				continue
			}
			leaves = append(leaves, c)
		}
	}
	s.intermediates = chain
	seen := map[string]bool{}
	for _, c := range leaves {
		if seen[c.Fingerprint] {
			continue
		}
		seen[c.Fingerprint] = true
		if c.static == PublicSuffix {
			s.problem(c.File, refusedSuffix(c))
			continue
		}
		if roots != nil && c.static == Valid {
			c.verifyChain(roots, chain, now, s.opts.TrustDir)
		}
		s.partners = append(s.partners, c)
		for _, d := range c.Domains {
			s.byDomain[d] = append(s.byDomain[d], c)
		}
	}
	s.chain = chain
	for _, cs := range s.byDomain {
		// Newest first: with a rotation in progress, the certificate
		// that lasts longest leads the recipient list.
		slices.SortStableFunc(cs, func(a, b *Cert) int { return b.X509.NotAfter.Compare(a.X509.NotAfter) })
	}
}

// verifyChain checks c against the trust anchors. It verifies at a moment
// inside c's own validity period, so that an expired leaf is reported as
// Expired by the clock check rather than as Untrusted; the chain's own
// expiry is kept in trustUntil and checked at each use.
func (c *Cert) verifyChain(roots, chain *x509.CertPool, now time.Time, dir string) {
	at := now
	if at.Before(c.X509.NotBefore) {
		at = c.X509.NotBefore
	}
	if at.After(c.X509.NotAfter) {
		at = c.X509.NotAfter
	}
	chains, err := c.X509.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: chain,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
	})
	if err != nil {
		c.static, c.staticReason = Untrusted, fmt.Sprintf("does not chain to a trust anchor in %s: %v", dir, err)
		return
	}
	var best time.Time
	for _, ch := range chains {
		until := ch[0].NotAfter
		for _, x := range ch[1:] {
			if x.NotAfter.Before(until) {
				until = x.NotAfter
			}
		}
		if until.After(best) {
			best = until
			c.chain = ch
		}
	}
	c.trustUntil = best
}

// finish records the unusable certificates as problems, sorts everything
// and logs what is new since prev: each unusable file once, not on every
// reload.
func (s *Store) finish(prev *Store) {
	now := s.opts.Now()
	for _, c := range append(slices.Clone(s.own), s.partners...) {
		e := s.judge(c, now)
		switch {
		case e.Usable():
			if e.Status == ExpiresSoon {
				s.problem(c.File, c.Describe()+" "+e.Reason+": ask for (or make) its successor")
			}
		case c.Own && e.Status == PublicSuffix:
			s.problem(c.File, refusedSuffix(c)+"; its key is not used, so mail encrypted to it cannot be opened")
		case c.Own && c.Key == nil:
			s.problem(c.File, fmt.Sprintf("%s is our certificate but has %s: mail encrypted to it cannot be opened", c.Describe(), e.Reason))
		case c.Own:
			s.problem(c.File, fmt.Sprintf("%s is %s (%s); its key still decrypts mail in flight", c.Describe(), e.Status, e.Reason))
		default:
			s.problem(c.File, fmt.Sprintf("%s is %s (%s): mail is not encrypted to it", c.Describe(), e.Status, e.Reason))
		}
	}
	slices.SortStableFunc(s.problems, func(a, b Problem) int { return strings.Compare(a.File, b.File) })
	old := map[Problem]bool{}
	if prev != nil {
		for _, p := range prev.problems {
			old[p] = true
		}
	}
	log := s.opts.Logger
	for _, p := range s.problems {
		if !old[p] {
			log.Warn("certificate file problem", "file", p.File, "reason", p.Reason)
		}
	}
	log.Info("certificates loaded", "own", len(s.own), "partners", len(s.partners), "domains", len(s.byDomain), "problems", len(s.problems))
}
