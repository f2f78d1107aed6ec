package gateway

import (
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"smimegate/internal/certstore"
	"smimegate/internal/cms"
	"smimegate/internal/config"
	"smimegate/internal/policy"
	"smimegate/internal/smime"
	"smimegate/internal/spool"
)

// Domain signatures, both ways (RFC 3183 section 3). Outbound, mail to a
// partner with sign = true is signed with our domain certificate of the
// sender's domain and then encrypted (RFC 8551 section 3.7). Inbound, a
// decrypted message (and a plain one from a partner domain) is checked for
// a domain signature of its sender's domain; the verdict goes to the
// recipient in our Authentication-Results field, require_signature sends
// mail that claims a domain without that domain's signature to the
// quarantine, and a verified domain signature layer is taken off unless
// keep_domain_signature says otherwise.

// inbound is the gateway's judgement of one inbound message for local
// recipients.
type inbound struct {
	result  smime.DomainResult
	checked bool // a signature was looked for: the verdict is written
	// quarantine is the reason to quarantine the message, "" to relay it.
	quarantine string
	// message is what goes to the recipients below the trace fields: the
	// input without forged fields of ours, and without the domain
	// signature layer when it was taken off. trace are the trace fields
	// that the layer's removal took from above it (plain mail).
	message, trace []byte
	// domains are those the inbound per-partner settings (require_aead,
	// require_signature) are looked up for: the verified signer's domain,
	// the From domains and the envelope sender's, never the envelope
	// sender's alone.
	domains []string
	changed bool // message differs from the input
	forged  int  // fields that claimed to be ours, removed
}

// signatureCheck is the smime verifier's view of our certificates.
func signatureCheck(st *state, env *spool.Envelope, now time.Time) smime.DomainCheck {
	return smime.DomainCheck{
		Canonical:      func(addr string) (string, bool) { return policy.Domain(addr) },
		EnvelopeSender: env.Sender,
		Domains:        st.certs.SignerDomains,
		Trust:          st.certs.TrustSigner,
		Held:           st.signerCerts,
		Now:            now,
		Open:           openOptions(st.cfg),
	}
}

// judgeInbound is judge at the current time, with the forged fields it
// removed logged and counted.
func (g *Gateway) judgeInbound(st *state, env *spool.Envelope, msg []byte, decrypted bool) (*inbound, error) {
	in, err := judge(st, env, msg, decrypted, time.Now())
	if err != nil {
		return nil, err
	}
	g.countForged(env, in)
	return in, nil
}

// countForged logs and counts the fields of ours that judge removed.
func (g *Gateway) countForged(env *spool.Envelope, in *inbound) {
	if in == nil || in.forged == 0 {
		return
	}
	g.log.Warn("removed header fields that claimed to be ours", "queue_id", env.ID, "fields", in.forged)
	g.metrics.forgedFields.Add(float64(in.forged))
}

// judge checks msg (decrypted, or as it came) and decides: verify a
// signature at now (always for decrypted mail; for plain mail when a
// claimed domain is a partner's or requires a signature), apply
// require_signature, take a verified domain layer off, and remove forged
// fields of ours. It has no side effects.
func judge(st *state, env *spool.Envelope, msg []byte, decrypted bool, now time.Time) (*inbound, error) {
	in := &inbound{message: msg}
	cfg := st.cfg
	claimed := claimedDomains(env, msg)
	verify := decrypted
	for _, d := range claimed {
		pp := cfg.PartnerPolicy(d)
		if pp.RequireSignature || pp.Entry != "" || st.certs.Lookup(d).Domain != "" {
			verify = true
		}
	}
	if verify {
		in.result = smime.VerifyDomainSignature(msg, signatureCheck(st, env, now))
		in.checked = decrypted || in.result.Verdict != smime.VerdictNone
		for _, d := range in.result.Claimed {
			if !slices.Contains(claimed, d) {
				claimed = append(claimed, d)
			}
		}
	}
	in.domains = claimed
	if r := in.result; r.Verdict == smime.VerdictPass && !slices.Contains(in.domains, r.Domain) {
		in.domains = append(in.domains, r.Domain)
	}
	for _, d := range claimed {
		if !cfg.PartnerPolicy(d).RequireSignature {
			continue
		}
		if why := signatureMissing(in.result, d); why != "" {
			in.quarantine = fmt.Sprintf("policy.partners.%q.require_signature: the message claims %s (From or envelope sender) without a valid domain signature of it: %s", cfg.PartnerPolicy(d).Entry, d, why)
			return in, nil
		}
	}
	r := in.result
	if r.Verdict == smime.VerdictPass && r.DomainLayer {
		var err error
		if cfg.Policy.KeepDomainSignature {
			in.message, in.trace, err = smime.KeepSignatureLayer(msg, r.Signature, openOptions(cfg))
		} else {
			in.message, in.trace, err = smime.RemoveSignatureLayer(msg, r.Signature, openOptions(cfg))
		}
		if err != nil {
			return nil, fmt.Errorf("the verified message cannot be rebuilt: %w", err)
		}
		in.changed = true
	}
	if out, n := smime.RemoveHeaderFields(in.message, forgedField(cfg.Hostname)); n > 0 {
		in.message, in.changed, in.forged = out, true, n
	}
	return in, nil
}

// signatureMissing says why r is not a valid domain signature of d ("" when
// it is one): a pass by d itself or by a parent of d (RFC 3183 section
// 3.1.1); a valid signature of another domain is not d's.
func signatureMissing(r smime.DomainResult, d string) string {
	switch {
	case r.Verdict == smime.VerdictPass && (d == r.Domain || strings.HasSuffix(d, "."+r.Domain)):
		return ""
	case r.Verdict == smime.VerdictPass:
		return fmt.Sprintf("%s (signed by %s)", smime.ReasonWrongDomain, r.Domain)
	case r.Verdict == smime.VerdictNone || r.Verdict == "":
		return smime.ReasonUnsigned
	}
	return r.Reason + " (" + r.Detail + ")"
}

// claimedDomains are the domains the message's From fields (every "@" in
// them) and its envelope sender claim, canonical: what require_signature
// and require_aead are looked up for.
func claimedDomains(env *spool.Envelope, msg []byte) []string {
	var out []string
	add := func(addr string) {
		if d, ok := policy.Domain(addr); ok && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	o := smime.FromOf(msg)
	for _, a := range o.Addresses {
		add(a)
	}
	for _, d := range o.Claimed {
		add("x@" + d)
	}
	if env.Sender != "" {
		add(env.Sender)
	}
	return out
}

// requiresAEAD reports whether any of the domains has require_aead.
func requiresAEAD(cfg *config.Config, domains []string) (string, bool) {
	if len(domains) == 0 {
		return "", cfg.Policy.RequireAEAD
	}
	for _, d := range domains {
		if cfg.PartnerPolicy(d).RequireAEAD {
			return d, true
		}
	}
	return "", false
}

// errNoSigner is a policy step failure: a partner wants our signature and
// no own certificate can give it. The message waits (retried like a 4xx),
// never leaves unsigned.
var errNoSigner = errors.New("cannot sign")

// signOptions finds our signing certificate for a message: the own
// certificate of its From domain, or else of its envelope sender's, or
// else of any local domain (a message relayed for a local client from a
// foreign From still leaves signed by us, which partners see as ours).
func signOptions(st *state, env *spool.Envelope, msg []byte) (*smime.SignOptions, error) {
	var candidates []string
	for _, a := range smime.FromOf(msg).Addresses {
		if d, ok := policy.Domain(a); ok && st.cfg.IsLocal(d) {
			candidates = append(candidates, d)
		}
	}
	if d, ok := policy.Domain(env.Sender); ok && st.cfg.IsLocal(d) {
		candidates = append(candidates, d)
	}
	candidates = append(candidates, st.cfg.LocalDomains...)
	var errs []string
	for _, d := range candidates {
		sg, err := st.certs.OwnSigner(d)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		return &smime.SignOptions{
			Signer:         cms.Signer{Cert: sg.Cert.X509, Key: sg.Key, Chain: sg.Chain},
			EncryptionCert: encryptionCertFor(st, d, sg.Cert),
			Time:           time.Now(),
		}, nil
	}
	return nil, fmt.Errorf("%w: %s", errNoSigner, strings.Join(slices.Compact(errs), "; "))
}

// encryptionCertFor is the certificate our signature names in
// SMIMEEncryptionKeyPreference (RFC 8551 section 2.5.3): the signing
// certificate itself when mail can be encrypted to it, else our usable
// certificate for domain that lasts longest.
func encryptionCertFor(st *state, domain string, signer *certstore.Cert) *x509.Certificate {
	if signer.Usable() && covers(signer.Domains, domain) {
		return signer.X509
	}
	var best *certstore.Cert
	for _, c := range st.certs.Own() {
		if c.Key != nil && c.Usable() && covers(c.Domains, domain) && (best == nil || c.X509.NotAfter.After(best.X509.NotAfter)) {
			best = c
		}
	}
	if best == nil {
		return nil
	}
	return best.X509
}

func covers(domains []string, d string) bool {
	for _, s := range domains {
		if d == s || strings.HasSuffix(d, "."+s) {
			return true
		}
	}
	return false
}

// harvest adds the encryption certificates that came with a verified
// domain signature to the partner store (certs.harvest), and reloads the
// store when one was added. Failures are logged: they never stop the mail.
func (g *Gateway) harvest(st *state, env *spool.Envelope, r smime.DomainResult) {
	if !st.cfg.Certs.Harvest || r.Verdict != smime.VerdictPass || r.Signature == nil {
		return
	}
	sd := r.Signature.Data
	var picked []*x509.Certificate
	for _, c := range sd.Certificates {
		if len(picked) == certstore.MaxHarvestPerMessage {
			break
		}
		preferred := r.SignerInfo != nil && r.SignerInfo.EncryptionKeyPreference.Matches(c)
		if c.Equal(r.Signer) && !preferred {
			// The signer itself is held or chains already; it is
			// harvested only when it is also the preferred encryption
			// certificate.
			continue
		}
		if !preferred && !covers(st.certs.SignerDomains(c), r.Domain) {
			continue
		}
		picked = append(picked, c)
	}
	added := 0
	for _, c := range picked {
		path, err := st.certs.Harvest(c, sd.Certificates, r.Domain, "message "+env.ID, time.Now())
		switch {
		case err != nil:
			g.log.Info("certificate from a domain signature not harvested", "queue_id", env.ID, "domain", r.Domain, "cert_sha256", certstore.Fingerprint(c), "reason", err)
		case path != "":
			added++
			g.metrics.harvested.Inc()
			g.log.Warn("partner certificate harvested from a verified domain signature", "queue_id", env.ID, "domain", r.Domain, "cert_sha256", certstore.Fingerprint(c), "file", path)
		}
	}
	if added == 0 {
		return
	}
	store, err := st.certs.Reload()
	if err != nil {
		g.log.Error("harvested certificates written, but the store did not reload; they apply at the next SIGHUP", "err", err)
		return
	}
	g.Reload(st.cfg, store)
}

// traceAndRest splits a plain message into its leading Received field
// (ours, which the receiver put first) and the rest.
func traceAndRest(msg []byte) ([]byte, []byte) {
	n := smime.LeadingTraceField(msg)
	return msg[:n], msg[n:]
}

// signPrep is one pass's domain signature: made for the first sealed copy
// that wants it, reused by the others.
type signPrep struct {
	parts  *smime.SignedParts
	signer string // the signing certificate's fingerprint, for the log
	err    error
}

// prepare signs data once and sets opts to use the signature.
func (p *signPrep) prepare(st *state, env *spool.Envelope, data []byte, opts *smime.SealOptions) error {
	if p.parts == nil && p.err == nil {
		so, err := signOptions(st, env, data)
		if err == nil {
			o := *opts
			o.Sign = so
			p.parts, err = smime.PrepareSigned(data, o)
		}
		if err != nil {
			p.err = err
		} else {
			p.signer = certstore.Fingerprint(so.Signer.Cert)
		}
	}
	if p.err != nil {
		return p.err
	}
	opts.Prepared = p.parts
	return nil
}

// note is the decision log's account of the signature of one copy.
func (p *signPrep) note(signed bool) string {
	if !signed || p.parts == nil {
		return ""
	}
	return "signed with our certificate sha256:" + p.signer
}

// signatureMetrics count what the domain signature code decides.
type signatureMetrics struct {
	// verdicts counts inbound verdicts (pass, fail, neutral, none,
	// permerror) of the messages that got our Authentication-Results.
	verdicts *prometheus.CounterVec
	// forgedFields counts header fields removed because they claimed to
	// be ours (Authentication-Results for our host, Smimegate-*).
	forgedFields prometheus.Counter
	// harvested counts partner certificates added from signatures.
	harvested prometheus.Counter
}

func newSignatureMetrics(reg *prometheus.Registry) signatureMetrics {
	m := signatureMetrics{
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smimegate_signature_verdicts_total", Help: "Inbound messages given our Authentication-Results, by smime verdict (pass, fail, neutral, none, permerror)."}, []string{"verdict"}),
		forgedFields: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smimegate_forged_fields_removed_total", Help: "Header fields removed from inbound mail because they claimed to be ours (Authentication-Results for our hostname, Smimegate-*)."}),
		harvested: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smimegate_certificates_harvested_total", Help: "Partner encryption certificates added to partners/harvested/ from verified domain signatures."}),
	}
	reg.MustRegister(m.verdicts, m.forgedFields, m.harvested)
	return m
}
