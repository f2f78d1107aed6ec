package certstore

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"smimegate/internal/smtp"
)

// Match is the answer to Lookup.
type Match struct {
	Domain   string  // the certificate domain that matched ("" if none)
	Certs    []*Cert // the usable ones: encrypt to all of them
	Unusable []*Cert // matched but unusable (expired, ...)
	Rule     string  // human explanation for `cert show`
	// Deferred is set when SMIMEA discovery has no answer for the domain
	// yet, or its lookup failed: then Domain is set and Certs empty (the
	// message must not go in the clear), and Deferred says why. The queue
	// retries such a message rather than holding it for good.
	Deferred string
}

// Lookup finds the partner certificates for mail to domain, most specific
// first (draft section 4): with certificates for sub.example.net and
// example.net, mail to deep.sub.example.net uses sub.example.net's.
//
// The most specific domain that has any certificate decides, even when none
// of its certificates is usable: then Domain is set and Certs is empty, and
// the caller must not send in the clear (RFC 8162 section 5: unusable
// certificates are never used, even if the message then cannot be sent
// securely; docs/threats.md section 3). Falling back to a parent's
// certificate would encrypt to a gateway that the sub-domain did not name.
//
// Validity is judged at the time of the call, so a certificate that expires
// while loaded stops being used without a reload.
//
// With discovery (Options.Discovery), a domain without a usable local
// certificate is looked up in the SMIMEA cache (see Discovery and
// lookupDiscovered); Lookup itself never waits for DNS.
func (s *Store) Lookup(domain string) Match {
	d, err := smtp.CanonicalDomain(domain)
	if err != nil {
		return Match{Rule: fmt.Sprintf("%q is not a valid domain (%v): nothing is encrypted to it", domain, err)}
	}
	now := s.opts.Now()
	m := s.lookupLocal(d, now)
	if len(m.Certs) > 0 || s.opts.Discovery == nil {
		return m
	}
	return s.lookupDiscovered(d, m, now)
}

// lookupLocal is Lookup in the own and partner directories only.
func (s *Store) lookupLocal(d string, now time.Time) Match {
	for cur := d; cur != ""; cur = parentDomain(cur) {
		certs := s.byDomain[cur]
		if len(certs) == 0 {
			continue
		}
		m := Match{Domain: cur}
		for _, c := range certs {
			e := s.judge(c, now)
			if e.Usable() {
				m.Certs = append(m.Certs, e)
			} else {
				m.Unusable = append(m.Unusable, e)
			}
		}
		m.Rule = m.explain(d)
		return m
	}
	return Match{Rule: fmt.Sprintf("no partner certificate names %s or a parent domain of it: mail to %s is not encrypted", d, d)}
}

func (m *Match) explain(d string) string {
	var b strings.Builder
	if m.Domain == d {
		fmt.Fprintf(&b, "a partner certificate names %s itself", d)
	} else {
		fmt.Fprintf(&b, "no partner certificate names %s; its most specific parent domain with one is %s (draft section 4: most specific first)", d, m.Domain)
	}
	var where []string
	for _, c := range append(slices.Clone(m.Certs), m.Unusable...) {
		if w := c.NamedBy[m.Domain]; w != "" && !slices.Contains(where, w) {
			where = append(where, w)
		}
	}
	fmt.Fprintf(&b, " (%s)", strings.Join(where, "; "))
	switch {
	case len(m.Certs) > 1:
		fmt.Fprintf(&b, "; %d usable certificates (a rotation in progress): encrypted to all of them", len(m.Certs))
	case len(m.Certs) == 1:
		b.WriteString("; encrypted to its one usable certificate")
	default:
		b.WriteString("; none of its certificates is usable: the message must not be sent in the clear")
	}
	if len(m.Unusable) > 0 {
		fmt.Fprintf(&b, "; %d unusable certificate(s) skipped", len(m.Unusable))
	}
	return b.String()
}

// Own returns our certificates with their private keys, expired ones
// included: mail encrypted to a key shortly before its certificate expired
// may still be in flight, and decrypting it does no harm.
//
// It also returns our certificates whose key is missing (status
// NoPrivateKey: the key file could not be read or decrypted) or refused
// (status PublicSuffix), with Key nil. Callers must check Key: such a
// certificate tells mail that is for us but cannot be opened (hold it)
// from mail that is not for us (pass it on). OwnWithoutKey lists them.
func (s *Store) Own() []*Cert {
	now := s.opts.Now()
	out := make([]*Cert, len(s.own))
	for i, c := range s.own {
		out[i] = s.judge(c, now)
	}
	return out
}

// OwnWithoutKey returns the own certificates that Own returns with Key
// nil, for `serve` and `check-config` to report: mail encrypted to them
// cannot be opened until their key is readable (Reason says why not).
func (s *Store) OwnWithoutKey() []*Cert {
	now := s.opts.Now()
	var out []*Cert
	for _, c := range s.own {
		if c.Key == nil {
			out = append(out, s.judge(c, now))
		}
	}
	return out
}

// All returns every loaded certificate, own first, then by domain and file.
func (s *Store) All() []*Cert {
	now := s.opts.Now()
	out := make([]*Cert, 0, len(s.own)+len(s.partners))
	for _, c := range s.own {
		out = append(out, s.judge(c, now))
	}
	for _, c := range s.partners {
		out = append(out, s.judge(c, now))
	}
	slices.SortStableFunc(out, func(a, b *Cert) int {
		if a.Own != b.Own {
			if a.Own {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(firstDomain(a), firstDomain(b)), cmp.Compare(a.File, b.File))
	})
	return out
}

func firstDomain(c *Cert) string {
	if len(c.Domains) == 0 {
		return ""
	}
	return c.Domains[0]
}

// Problems returns the files and certificates that cannot be used, and
// those that soon cannot, as of the last load.
func (s *Store) Problems() []Problem { return slices.Clone(s.problems) }

// Options returns the options the store was loaded with.
func (s *Store) Options() Options { return s.opts }
