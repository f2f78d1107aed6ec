package certstore

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"slices"
	"time"
)

// maxChainDepth bounds the issuers looked for above an own certificate.
const maxChainDepth = 8

// judge is c as of now: its validity (evaluated), then its revocation
// status when the store checks revocation. A partner certificate that is
// revoked, or (strict) whose status is unknown past the grace, becomes
// unusable; one of our own is marked Revoked but keeps its key: mail in
// flight to it is still opened, and the operator is told.
func (s *Store) judge(c *Cert, now time.Time) *Cert {
	e := c.evaluated(now)
	r := s.opts.Revocation
	if r == nil || s.opts.TrustDir == "" || r.Mode() == RevocationOff {
		return e
	}
	if len(c.pairs) == 0 {
		return e
	}
	e.Revocation = r.status(c.pairs, now)
	if !e.Usable() {
		return e
	}
	st, why := r.verdict(e.Revocation, now)
	switch {
	case st == Valid:
	case c.Own && st != Revoked:
		// An own certificate is not encrypted to: an unknown status is
		// shown (Revocation) but changes nothing.
	case c.Own:
		e.Status, e.Reason = st, why+"; its key still opens mail encrypted to it"
	default:
		e.Status, e.Reason = st, why
	}
	return e
}

// revPairs are the links of c's chain that are checked: each certificate
// with its issuer, the trust anchor at the top excepted.
func (c *Cert) revPairs() []revPair {
	if len(c.chain) < 2 {
		return nil
	}
	who := "partner"
	if c.Own {
		who = "own"
	}
	name := fmt.Sprintf("%s %s (sha256 %s)", who, firstDomain(c), c.Fingerprint[:16])
	pairs := make([]revPair, 0, len(c.chain)-1)
	for i := 0; i+1 < len(c.chain); i++ {
		label := name
		if i > 0 {
			label = fmt.Sprintf("issuing CA %q of %s", c.chain[i].Subject.String(), name)
		}
		pairs = append(pairs, revPair{cert: c.chain[i], issuer: c.chain[i+1], label: label, key: subjectKey(c.chain[i], c.chain[i+1])})
	}
	return pairs
}

// ownChains finds the issuers of our own certificates among the trust
// anchors, the partner directory's CA certificates and the CA certificates
// of the own directory, so that a revocation of one of ours is noticed.
// A self-signed certificate (keygen's) has none and is not checked.
func (s *Store) ownChains() {
	var cands []*x509.Certificate
	cands = append(cands, s.anchors...)
	for _, kind := range []fileKind{ownFile, partnerFile} {
		for _, p := range s.sortedFiles(kind) {
			for _, x := range s.files[p].content.certs {
				if x.BasicConstraintsValid && x.IsCA {
					cands = append(cands, x)
				}
			}
		}
	}
	for _, c := range s.own {
		chain := []*x509.Certificate{c.X509}
		cur := c.X509
		for len(chain) < maxChainDepth && !bytes.Equal(cur.RawIssuer, cur.RawSubject) {
			var next *x509.Certificate
			for _, cand := range cands {
				if bytes.Equal(cand.RawSubject, cur.RawIssuer) && !bytes.Equal(cand.Raw, cur.Raw) && cur.CheckSignatureFrom(cand) == nil {
					next = cand
					break
				}
			}
			if next == nil {
				break
			}
			chain = append(chain, next)
			cur = next
		}
		if len(chain) > 1 {
			c.chain = chain
		}
	}
}

// trackRevocation hands the chains of the loaded certificates to the
// Revocation, which checks them from now on.
//
// It also fixes each certificate's pairs, which every lookup then uses.
func (s *Store) trackRevocation() {
	for _, c := range append(slices.Clone(s.own), s.partners...) {
		c.pairs = c.revPairs()
	}
	r := s.opts.Revocation
	if r == nil || s.opts.TrustDir == "" {
		return
	}
	var pairs []revPair
	for _, c := range s.own {
		pairs = append(pairs, c.pairs...)
	}
	for _, c := range s.partners {
		pairs = append(pairs, c.pairs...)
	}
	r.track("files", pairs)
}
