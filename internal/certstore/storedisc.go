package certstore

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"smimegate/internal/smtp"
)

// maxDiscoveredMemo bounds the discovered certificates a Store keeps
// judged (naming, key, chain); past it the memo starts again.
const maxDiscoveredMemo = 2 * maxDiscoveryEntries

// discoveredMemo keeps the certificates built from SMIMEA records, so
// that a lookup does not verify a chain for every message.
type discoveredMemo struct {
	mu    sync.Mutex
	certs map[string]*Cert // by fingerprint, usage and domain
	// trackMu orders the hand-overs to the Revocation.
	trackMu sync.Mutex
}

// discoveredCert is the certificate of one SMIMEA record for domain level,
// judged like a partner certificate from the directory: it must name the
// domain (certs.names, as a local one), its key and key usage must serve,
// and a usage 1 (PKIX-EE) record's certificate must chain to the trust
// anchors. A usage 3 (DANE-EE) record needs no anchors: DNSSEC vouches for
// it (RFC 8162 section 2, after RFC 7671 section 5.1).
func (s *Store) discoveredCert(x *x509.Certificate, usage uint8, level, owner string) *Cert {
	probe := newCert(x, "dns:"+owner, s.opts.naming())
	key := fmt.Sprintf("%s/%d/%s", probe.Fingerprint, usage, level)
	s.discovered.mu.Lock()
	if c, ok := s.discovered.certs[key]; ok {
		s.discovered.mu.Unlock()
		return c
	}
	s.discovered.mu.Unlock()

	c := probe
	c.Source = SourceSMIMEA
	if c.static == Valid {
		switch {
		case !slices.Contains(c.Domains, level):
			named := strings.Join(c.Domains, ", ")
			if named == "" {
				named = "no domain"
			}
			c.static, c.staticReason = Untrusted, fmt.Sprintf("the certificate of the SMIMEA record for %s does not name %s@%s (it names %s)", level, strings.Join(s.opts.naming().names, "@"+level+" or "), level, named)
		case usage == 1 && s.roots == nil:
			c.static, c.staticReason = Untrusted, "an SMIMEA record of usage 1 (PKIX-EE) must chain to certs.trust_anchors, and none are configured"
		case usage == 1:
			c.verifyChain(s.roots, s.intermediates, s.opts.Now(), s.opts.TrustDir)
		}
	}
	c.pairs = c.revPairs()
	s.discovered.mu.Lock()
	if s.discovered.certs == nil || len(s.discovered.certs) >= maxDiscoveredMemo {
		s.discovered.certs = map[string]*Cert{}
	}
	s.discovered.certs[key] = c
	s.discovered.mu.Unlock()
	if len(c.chain) > 1 && s.opts.Revocation != nil && s.opts.TrustDir != "" {
		// Off the caller's path: tracking reads the revocation cache,
		// and a lookup never waits for the disk.
		go s.trackDiscovered()
	}
	return c
}

// trackDiscovered hands the chains of the discovered certificates to the
// Revocation (the group "smimea").
func (s *Store) trackDiscovered() {
	s.discovered.trackMu.Lock()
	defer s.discovered.trackMu.Unlock()
	s.discovered.mu.Lock()
	var pairs []revPair
	for _, c := range s.discovered.certs {
		pairs = append(pairs, c.pairs...)
	}
	s.discovered.mu.Unlock()
	s.opts.Revocation.track("smimea", pairs)
}

// lookupDiscovered completes a Lookup that found no usable local
// certificate (local) from the SMIMEA cache.
func (s *Store) lookupDiscovered(d string, local Match, now time.Time) Match {
	res := s.opts.Discovery.cached(d, local.Domain, now)
	switch res.state {
	case statePending, outcomeFailed:
		dom, rule := local.Domain, local.Rule
		if dom == "" {
			dom, rule = d, fmt.Sprintf("no local certificate for %s or a parent domain", d)
		}
		return Match{Domain: dom, Unusable: local.Unusable, Deferred: res.why,
			Rule: rule + "; " + res.why + ": the message waits, and is never sent in the clear meanwhile"}
	case outcomeNone:
		if local.Domain == "" {
			local.Rule = fmt.Sprintf("no partner certificate names %s or a parent domain of it, and %s: mail to %s is not encrypted", d, res.why, d)
		} else {
			local.Rule += "; " + res.why
		}
		return local
	}
	m := Match{Domain: res.level}
	if res.level == local.Domain {
		m.Unusable = local.Unusable
	}
	certs, usages, skipped := res.entry.parsedRecords()
	for i, x := range certs {
		e := s.judge(s.discoveredCert(x, usages[i], res.level, res.entry.Owner), now)
		if e.Usable() {
			m.Certs = append(m.Certs, e)
		} else {
			m.Unusable = append(m.Unusable, e)
		}
	}
	var b strings.Builder
	if local.Domain == "" {
		fmt.Fprintf(&b, "no local certificate for %s or a parent domain", d)
	} else {
		fmt.Fprintf(&b, "no usable local certificate for %s (%s's are unusable)", d, local.Domain)
	}
	fmt.Fprintf(&b, "; DNSSEC-validated SMIMEA record(s) at %s (RFC 8162), cached until %s", res.entry.Owner, res.entry.Expires.UTC().Format(time.RFC3339))
	switch {
	case len(m.Certs) > 1:
		fmt.Fprintf(&b, "; encrypted to its %d usable certificates", len(m.Certs))
	case len(m.Certs) == 1:
		b.WriteString("; encrypted to its usable certificate")
	default:
		b.WriteString("; none of its certificates is usable: the message must not be sent in the clear")
	}
	if len(skipped) > 0 {
		fmt.Fprintf(&b, "; records ignored: %s", strings.Join(skipped, "; "))
	}
	m.Rule = b.String()
	return m
}

// Discover makes sure the SMIMEA cache can answer Lookup for domain,
// asking DNS for what it lacks, and waits for the answers (at most until
// ctx ends). It returns an error when discovery cannot say whether the
// domain has a certificate (a lookup failed, or ctx ended first): the
// caller must then not send in the clear. Without discovery, or with a
// usable local certificate, it does nothing.
func (s *Store) Discover(ctx context.Context, domain string) error {
	if s.opts.Discovery == nil {
		return nil
	}
	d, err := smtp.CanonicalDomain(domain)
	if err != nil {
		return nil // Lookup refuses it; nothing to ask DNS
	}
	local := s.lookupLocal(d, s.opts.Now())
	if len(local.Certs) > 0 {
		return nil
	}
	res := s.opts.Discovery.discover(ctx, d, local.Domain, false)
	switch res.state {
	case statePending, outcomeFailed:
		return errors.New(res.why)
	}
	return nil
}

// DiscoveryPending reports whether Lookup would now answer for domain only
// that discovery has not answered (or failed): then mail to it waits for
// Discover, in the queue.
func (s *Store) DiscoveryPending(domain string) bool {
	if s.opts.Discovery == nil {
		return false
	}
	d, err := smtp.CanonicalDomain(domain)
	if err != nil {
		return false
	}
	now := s.opts.Now()
	local := s.lookupLocal(d, now)
	if len(local.Certs) > 0 {
		return false
	}
	switch s.opts.Discovery.cached(d, local.Domain, now).state {
	case statePending, outcomeFailed:
		return true
	}
	return false
}

// Discovered returns the certificates of the SMIMEA records in the cache,
// judged as of now, for `cert list` and the metrics.
func (s *Store) Discovered() []*Cert {
	if s.opts.Discovery == nil {
		return nil
	}
	now := s.opts.Now()
	var out []*Cert
	for _, e := range s.opts.Discovery.found(now) {
		certs, usages, _ := e.parsedRecords()
		for i, x := range certs {
			out = append(out, s.judge(s.discoveredCert(x, usages[i], e.Domain, e.Owner), now))
		}
	}
	slices.SortFunc(out, func(a, b *Cert) int { return strings.Compare(a.File+a.Fingerprint, b.File+b.Fingerprint) })
	return out
}

// found returns copies of the unexpired entries with records.
func (dc *Discovery) found(now time.Time) []smimeaEntry {
	dc.mu.Lock()
	defer dc.mu.Unlock()
	var out []smimeaEntry
	for _, e := range dc.entries {
		if e.Outcome == outcomeFound && now.Before(e.Expires) {
			out = append(out, *e)
		}
	}
	return out
}

// DiscoveryLine is one owner name asked about by ExplainDiscovery.
type DiscoveryLine struct {
	Owner   string
	Outcome string // found, none, insecure, failed
	Why     string
	Until   time.Time
	Records []string // each record: its kind, and its certificate's verdict or why it is ignored
}

// ExplainDiscovery asks DNS afresh about domain (when discovery is on and
// no usable local certificate exists), for `cert show`: every owner name
// asked, what each answered, and each record's verdict. The Match that
// Lookup then gives says what mail to domain would do.
func (s *Store) ExplainDiscovery(ctx context.Context, domain string) ([]DiscoveryLine, error) {
	if s.opts.Discovery == nil {
		return nil, nil
	}
	d, err := smtp.CanonicalDomain(domain)
	if err != nil {
		return nil, err
	}
	now := s.opts.Now()
	local := s.lookupLocal(d, now)
	if len(local.Certs) > 0 {
		return nil, nil
	}
	dc := s.opts.Discovery
	dc.discover(ctx, d, local.Domain, true)
	var lines []DiscoveryLine
	for _, level := range discoveryLevels(d, local.Domain) {
		for _, name := range dc.opts.Names {
			owner := OwnerName(name, level)
			dc.mu.Lock()
			e := dc.entries[owner]
			var ec smimeaEntry
			if e != nil {
				ec = *e
			}
			dc.mu.Unlock()
			if e == nil {
				continue
			}
			l := DiscoveryLine{Owner: owner, Outcome: ec.Outcome, Why: ec.Why, Until: ec.Expires}
			for _, r := range ec.Records {
				kind := fmt.Sprintf("usage %d selector %d matching type %d", r.Usage, r.Selector, r.MatchingType)
				if ok, why := r.Usable(); !ok {
					l.Records = append(l.Records, kind+": ignored: "+why)
					continue
				}
				x, err := x509.ParseCertificate(r.Data)
				if err != nil {
					l.Records = append(l.Records, kind+": no certificate: "+err.Error())
					continue
				}
				c := s.judge(s.discoveredCert(x, r.Usage, level, owner), now)
				verdict := "used"
				if !c.Usable() {
					verdict = "not used: " + c.Reason
				}
				l.Records = append(l.Records, fmt.Sprintf("%s: %q sha256 %s, %s: %s", kind, x.Subject.String(), c.Fingerprint, c.Status, verdict))
			}
			lines = append(lines, l)
		}
	}
	return lines, nil
}
