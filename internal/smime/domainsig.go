package smime

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"smimegate/internal/cms"
)

// Verdict is the result of checking a message's domain signature, as the
// smime method of Authentication-Results names them (RFC 7281 section 3,
// RFC 8601 section 2.7).
type Verdict string

const (
	// VerdictNone: the message is not signed.
	VerdictNone Verdict = "none"
	// VerdictPass: a valid domain signature of the sender's domain.
	VerdictPass Verdict = "pass"
	// VerdictFail: a signature by a certificate of the sender's domain
	// that does not hold: the content changed, the certificate expired,
	// is not trusted or may not sign.
	VerdictFail Verdict = "fail"
	// VerdictNeutral: signed, but not by the sender's domain (another
	// domain's or a user's signature, an unknown signer), or the sender
	// cannot be told (no single From domain), or the envelope sender is
	// outside the signer's domain.
	VerdictNeutral Verdict = "neutral"
	// VerdictPermError: the signature cannot be evaluated (malformed, an
	// algorithm we do not verify).
	VerdictPermError Verdict = "permerror"
)

// The reasons of a verdict that is not a pass, as the quarantine and the
// logs give them.
const (
	ReasonUnsigned        = "unsigned"
	ReasonBadSignature    = "bad signature"
	ReasonWrongDomain     = "wrong signer domain"
	ReasonExpired         = "expired"
	ReasonUntrusted       = "untrusted"
	ReasonKeyUsage        = "wrong key usage"
	ReasonEnvelope        = "envelope sender outside the signer's domain"
	ReasonAmbiguousSender = "no single From domain"
	ReasonMalformed       = "malformed signature"
)

// DomainCheck is what VerifyDomainSignature needs from the gateway: how
// domains are compared, which domains a certificate speaks for, and which
// certificates are trusted to.
type DomainCheck struct {
	// Canonical returns an address's domain in the form domains are
	// compared in, and false when it has none that canonicalises.
	Canonical func(addr string) (string, bool)
	// EnvelopeSender is MAIL FROM ("" for the null sender).
	EnvelopeSender string
	// Domains returns the domains cert is a domain certificate of (RFC
	// 3183 section 3.1.1 and the configured names), canonical.
	Domains func(cert *x509.Certificate) []string
	// Trust returns nil when cert may speak for domain: one we hold for
	// it, or one that chains to the trust anchors (with intermediates
	// from the message). Its error says why not.
	Trust func(cert *x509.Certificate, intermediates []*x509.Certificate, domain string, now time.Time) error
	// Held are certificates we hold (partners' and ours), for a signer
	// that left its certificate out.
	Held []*x509.Certificate
	// Now is the clock.
	Now time.Time
	// Open bounds the parsing, as for Open.
	Open OpenOptions
}

// DomainResult is what VerifyDomainSignature found.
type DomainResult struct {
	Verdict Verdict
	// Reason is one of the Reason constants ("" for a pass); Detail says
	// more, for logs and the quarantine.
	Reason, Detail string
	// SenderDomain is the single From domain ("" when there is none);
	// Claimed are all the domains the From fields (of the message and of
	// its signed content) and the envelope sender claim, canonical, for
	// policies that key on them (require_signature).
	SenderDomain string
	Claimed      []string
	// Domain is the signer certificate's domain that covers the sender's
	// (the sender's own or a parent, RFC 3183 section 3.1.1), for a pass.
	Domain string
	// Signer and SignerInfo are the signer that passed (or, for a fail,
	// the one that failed).
	Signer     *x509.Certificate
	SignerInfo *cms.SignerInfo
	// Signature is the layer that was checked; nil when unsigned.
	Signature *Signature
	// WholeMessage: the signed content is a whole message (its own From,
	// or an RFC 9788 payload), so its header is covered by the signature;
	// otherwise only the body entity is, and the header around it is not.
	WholeMessage bool
	// DomainLayer: every SignerInfo of the layer is a domain certificate's
	// (none is a user's), so the layer may be taken off after a pass (RFC
	// 3183 section 3.2.3) without touching anyone's own signature.
	DomainLayer bool
}

// VerifyDomainSignature checks msg's top-level signature as a domain
// signature (RFC 3183 section 3) of the sender's domain: the domain of the
// From field, which must be one domain, in the message's header and in
// that of the signed content when the latter is a whole message. It passes
// when a SignerInfo's certificate is a domain certificate of that domain
// or a parent, trusted for it, allowed to sign (digitalSignature or
// nonRepudiation; emailProtection when extended key usage is present),
// valid at its signing time and now, the signature verifies, and the
// envelope sender is in the signer's domain. SignerInfos are tried until
// one passes: each costs at most one public-key operation, and those of
// other domains cost none.
func VerifyDomainSignature(msg []byte, c DomainCheck) DomainResult {
	res := DomainResult{}
	top := FromOf(msg)
	sig, err := FindSignature(msg, c.Open)
	froms := []Originator{top}
	if err == nil && sig != nil {
		if inner := FromOf(sig.Content); inner.Fields > 0 {
			froms = append(froms, inner)
		}
	}
	res.SenderDomain, res.Claimed = c.senderDomain(froms)
	switch {
	case err != nil:
		res.Verdict, res.Reason, res.Detail = VerdictPermError, ReasonMalformed, err.Error()
		return res
	case sig == nil:
		res.Verdict, res.Reason = VerdictNone, ReasonUnsigned
		return res
	}
	res.Signature = sig
	envelope, envelopeOK := "", false
	if c.EnvelopeSender != "" {
		envelope, envelopeOK = c.Canonical(c.EnvelopeSender)
	}

	// The best outcome so far, ranked: a pass ends the search; a failure
	// of the sender's domain's signature is worth more than an error,
	// which is worth more than a neutral one.
	rank := map[Verdict]int{VerdictNeutral: 1, VerdictPermError: 2, VerdictFail: 3}
	best := DomainResult{Verdict: VerdictNeutral, Reason: ReasonUntrusted, Detail: "no SignerInfo"}
	bestRank := 0
	note := func(v Verdict, reason, detail string, cert *x509.Certificate, si *cms.SignerInfo) {
		if rank[v] > bestRank {
			best = DomainResult{Verdict: v, Reason: reason, Detail: detail, Signer: cert, SignerInfo: si}
			bestRank = rank[v]
		}
	}
	for _, si := range sig.Data.Signers {
		cert := sig.Data.Certificate(si, c.Held)
		if cert == nil {
			note(VerdictNeutral, ReasonUntrusted, fmt.Sprintf("the signer (%s) left its certificate out and we hold none that matches", si.SID()), nil, si)
			continue
		}
		domains := c.Domains(cert)
		if res.SenderDomain == "" {
			note(VerdictNeutral, ReasonAmbiguousSender, "the From fields do not name exactly one domain", cert, si)
			continue
		}
		domain := coveringDomain(domains, res.SenderDomain)
		if domain == "" {
			what := "a user's certificate"
			if len(domains) > 0 {
				what = "a domain certificate of " + strings.Join(domains, ", ")
			}
			note(VerdictNeutral, ReasonWrongDomain, fmt.Sprintf("signed with %s (%q), not one of %s", what, cert.Subject.String(), res.SenderDomain), cert, si)
			continue
		}
		if reason, detail := c.checkSigner(cert, si, sig, domain); reason != "" {
			v := VerdictFail
			if reason == ReasonMalformed {
				v = VerdictPermError
			}
			note(v, reason, detail, cert, si)
			continue
		}
		if !envelopeOK || coveringDomain([]string{domain}, envelope) == "" {
			env := c.EnvelopeSender
			if env == "" {
				env = "<>"
			}
			note(VerdictNeutral, ReasonEnvelope, fmt.Sprintf("a valid signature of %s, but the envelope sender %s is not in %s", domain, env, domain), cert, si)
			continue
		}
		res.Verdict, res.Domain, res.Signer, res.SignerInfo = VerdictPass, domain, cert, si
		ch, _ := splitHeader(sig.Content)
		if p, err := scanPlainHeader(ch, DefaultMaxHeaderBytes); err == nil {
			res.WholeMessage = p.originator || hasHPParam(p.contentType)
		}
		res.Detail = fmt.Sprintf("domain signature of %s by %q", domain, cert.Subject.String())
		res.DomainLayer = allDomainSigners(sig.Data, c)
		return res
	}
	best.SenderDomain, best.Claimed, best.Signature = res.SenderDomain, res.Claimed, sig
	return best
}

// senderDomain returns the single canonical From domain of the headers
// given ("" unless there is exactly one, from parsed fields, one per
// header that has any, and nothing else is claimed), and every domain
// claimed.
func (c DomainCheck) senderDomain(froms []Originator) (string, []string) {
	var claimed, parsed []string
	add := func(list *[]string, d string) {
		if !slices.Contains(*list, d) {
			*list = append(*list, d)
		}
	}
	// A header without a From field (the wrapper OpenSSL writes around a
	// signed whole message) says nothing; every one that has From fields
	// must agree, and at least one must.
	single, any := true, false
	for _, o := range froms {
		if o.Fields == 0 {
			continue
		}
		any = true
		if o.Fields != 1 || !o.Parsed || len(o.Addresses) == 0 {
			single = false
		}
		for _, a := range o.Addresses {
			if d, ok := c.Canonical(a); ok {
				add(&parsed, d)
			} else {
				single = false
			}
		}
		for _, d := range o.Claimed {
			if cd, ok := c.Canonical("x@" + d); ok {
				add(&claimed, cd)
			}
		}
	}
	if c.EnvelopeSender != "" {
		if d, ok := c.Canonical(c.EnvelopeSender); ok {
			add(&claimed, d)
		}
	}
	for _, d := range parsed {
		add(&claimed, d)
	}
	if !any || !single || len(parsed) != 1 {
		return "", claimed
	}
	// A display name or comment that claims another domain (From:
	// "ceo@a.example" <x@b.example>) leaves no single sender.
	for _, o := range froms {
		for _, d := range o.Claimed {
			if cd, ok := c.Canonical("x@" + d); !ok || cd != parsed[0] {
				return "", claimed
			}
		}
	}
	return parsed[0], claimed
}

// coveringDomain returns the one of domains that is d or a parent of d,
// the most specific first (RFC 3183 section 3.1.1 lets a domain sign for
// its sub-domains), or "".
func coveringDomain(domains []string, d string) string {
	best := ""
	for _, s := range domains {
		if (d == s || strings.HasSuffix(d, "."+s)) && len(s) > len(best) {
			best = s
		}
	}
	return best
}

// checkSigner applies the gateway's trust, the certificate's usage and
// validity, and then the signature itself; it returns a Reason and detail
// for the first that fails, or "".
func (c DomainCheck) checkSigner(cert *x509.Certificate, si *cms.SignerInfo, sig *Signature, domain string) (string, string) {
	if err := c.Trust(cert, sig.Data.Certificates, domain, c.Now); err != nil {
		return ReasonUntrusted, fmt.Sprintf("%q may not sign for %s: %v", cert.Subject.String(), domain, err)
	}
	// RFC 8550 section 4.4.2: digitalSignature or nonRepudiation; section
	// 4.4.4: emailProtection (or any) when extended key usage is present.
	if cert.KeyUsage != 0 && cert.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		return ReasonKeyUsage, fmt.Sprintf("%q has no digitalSignature key usage", cert.Subject.String())
	}
	if len(cert.ExtKeyUsage) > 0 || len(cert.UnknownExtKeyUsage) > 0 {
		if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageEmailProtection) && !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageAny) {
			return ReasonKeyUsage, fmt.Sprintf("%q: extended key usage lacks emailProtection", cert.Subject.String())
		}
	}
	for _, at := range []struct {
		t    time.Time
		what string
	}{{si.SigningTime, "at its signing time"}, {c.Now, "now"}} {
		if at.t.IsZero() {
			continue
		}
		if at.t.Before(cert.NotBefore) || at.t.After(cert.NotAfter) {
			return ReasonExpired, fmt.Sprintf("%q is not valid %s (%s; valid %s to %s)", cert.Subject.String(), at.what, at.t.UTC().Format(time.RFC3339),
				cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
		}
	}
	if err := sig.Data.Verify(si, cert, sig.Detached); err != nil {
		var ue *cms.UnsupportedAlgorithmError
		if errors.As(err, &ue) || errors.Is(err, cms.ErrMalformed) {
			return ReasonMalformed, err.Error()
		}
		return ReasonBadSignature, err.Error()
	}
	return "", ""
}

// allDomainSigners reports whether every SignerInfo of sd is by a
// certificate that names a domain, so that removing the layer removes no
// user's signature: a user's certificate names a mailbox, never a domain
// signer's local part (RFC 3183 section 3.1.1).
func allDomainSigners(sd *cms.SignedData, c DomainCheck) bool {
	for _, si := range sd.Signers {
		cert := sd.Certificate(si, c.Held)
		if cert == nil || len(c.Domains(cert)) == 0 {
			return false
		}
	}
	return true
}

// RemoveSignatureLayer returns msg without its signature layer sig (RFC
// 3183 section 3.2.3 lets the receiving domain take a domain signature
// off): the signed content when it is a whole message (its own From, or
// an RFC 9788 payload), else the signed entity under msg's header fields
// other than the Content-* and trace ones, as unwrap joins a decrypted
// entity. The trace fields of msg's header are returned apart, to stand
// above it. The result ends in CRLF.
func RemoveSignatureLayer(msg []byte, sig *Signature, opts OpenOptions) (out, trace []byte, err error) {
	maxHeader := opts.MaxHeaderBytes
	if maxHeader <= 0 {
		maxHeader = DefaultMaxHeaderBytes
	}
	header, _ := entity(msg)
	out, err = unwrap(sig.Content, header, maxHeader)
	if err != nil {
		return nil, nil, err
	}
	if n := len(out); n < 2 || out[n-2] != '\r' || out[n-1] != '\n' {
		out = append(out[:n:n], '\r', '\n')
	}
	return out, traceFields(header), nil
}

// KeepSignatureLayer returns msg with its signature layer kept
// (policy.keep_domain_signature), for a layer whose signed content is a
// whole message: the header fields above a multipart/signed (or around an
// opaque signed-data) are not covered by the signature, yet they are what
// a reader shows, so they are replaced by the signed content's own (all
// but its Content-*, MIME-Version and trace fields). For a signed entity
// without a header of its own the outer header is all there is, and msg
// stays as it is. The trace fields of msg's header are returned apart, as
// RemoveSignatureLayer does.
func KeepSignatureLayer(msg []byte, sig *Signature, opts OpenOptions) (out, trace []byte, err error) {
	maxHeader := opts.MaxHeaderBytes
	if maxHeader <= 0 {
		maxHeader = DefaultMaxHeaderBytes
	}
	header, body := entity(msg)
	trace = traceFields(header)
	ch, _ := splitHeader(sig.Content)
	p, err := scanPlainHeader(ch, maxHeader)
	if err != nil {
		return nil, nil, err
	}
	structural := func(s *headerScanner) bool {
		return len(s.name) >= 8 && strings.EqualFold(string(s.name[:8]), "content-") || s.is("MIME-Version")
	}
	var b bytes.Buffer
	b.Grow(len(ch) + len(header) + len(body))
	if p.originator {
		for s := newHeaderScanner(ch); s.next(); {
			if !structural(&s) && !s.isTraceField() {
				writeCRLF(&b, s.raw)
			}
		}
		for s := newHeaderScanner(header); s.next(); {
			if structural(&s) {
				writeCRLF(&b, s.raw)
			}
		}
	} else {
		for s := newHeaderScanner(header); s.next(); {
			if !s.isTraceField() {
				writeCRLF(&b, s.raw)
			}
		}
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes(), trace, nil
}
