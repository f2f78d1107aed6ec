// Package policy decides what the gateway does with a message: which
// direction it travels (draft section 5), and for each destination domain
// whether it is sealed to partner certificates, held, passed unaltered or
// delivered inward. It performs no I/O beyond the certificate store lookup,
// so that the same decision is made at SMTP time (mixed_recipients =
// "reject") and in the queue.
package policy

import (
	"fmt"
	"slices"
	"strings"

	"smimegate/internal/certstore"
	"smimegate/internal/config"
	"smimegate/internal/smtp"
)

// Direction is a message's direction relative to the local domains.
type Direction string

const (
	// Outbound: the originator is a member of a local domain (draft 5) and
	// the client is in the trusted networks, or the null sender from a
	// trusted client (our own network's bounces). An untrusted client can
	// never make a message outbound: anyone can write a local address in
	// MAIL FROM.
	Outbound Direction = "outbound"
	// Inbound: everything else.
	Inbound Direction = "inbound"
)

// Action is the treatment of one group of recipients.
type Action string

const (
	// Local: recipients in a local domain. Never encrypted; opened if the
	// message is inbound and encrypted to one of our certificates.
	Local Action = "local"
	// Encrypt: a partner domain with usable certificate(s): seal to all.
	Encrypt Action = "encrypt"
	// Hold: a partner that requires encryption (or post-quantum
	// encryption, require_pq, and has no such certificate), or whose
	// certificates are all unusable now: keep the message, retry, bounce
	// at hold_lifetime.
	Hold Action = "hold"
	// Pass: a foreign domain without a certificate: relayed unaltered.
	Pass Action = "pass"
	// Refuse: a domain that does not canonicalise (not a valid IDNA name,
	// an address literal). No certificate lookup can be trusted for it, so
	// it is neither sealed nor passed: its recipients are bounced (5.1.3).
	// The receiver refuses such recipients at RCPT; this is the policy's
	// own guard, for anything that reaches it another way.
	Refuse Action = "refuse"
)

// Group is the recipients of one destination domain and their treatment.
type Group struct {
	// Domain is the destination domain, A-label, lower case; for Refuse, the
	// domain as written (lower case), which names nothing.
	Domain     string
	Action     Action
	Recipients []int // indexes into the recipient list given to Classify

	// For Encrypt (and, for the record, Hold): what the lookup found.
	Match  certstore.Match
	Policy config.PartnerPolicy
}

// Plan is the decision for a whole message.
type Plan struct {
	Direction Direction
	Groups    []Group
}

// Secured reports whether some recipients are protected by encryption
// (sealed or held for it), and Unsecured whether some foreign recipients
// would receive the message in the clear. Refused recipients are neither.
func (p *Plan) Secured() bool   { return p.has(Encrypt) || p.has(Hold) }
func (p *Plan) Unsecured() bool { return p.has(Pass) }

func (p *Plan) has(a Action) bool {
	return slices.ContainsFunc(p.Groups, func(g Group) bool { return g.Action == a })
}

// Mixed reports whether the plan sends one message to secured and unsecured
// foreign domains at once (draft section 6).
func (p *Plan) Mixed() bool { return p.Secured() && p.Unsecured() }

// Lookup is the part of the certificate store that policy needs.
type Lookup interface {
	Lookup(domain string) certstore.Match
}

// Classify makes the plan for a message from sender to rcpts. trusted is
// whether the client that handed it to us is in smtp.trusted_networks.
//
// Foreign recipients are sealed whenever a usable partner certificate
// exists, whatever the direction: the draft requires it for outbound mail,
// and doing it for relayed inbound mail too (a forward of a decrypted
// message, say) can only keep content from travelling in the clear.
func Classify(cfg *config.Config, certs Lookup, sender string, trusted bool, rcpts []string) *Plan {
	plan := &Plan{Direction: DirectionOf(cfg, sender, trusted)}
	index := map[string]int{} // domain -> position in plan.Groups
	for i, rcpt := range rcpts {
		domain, ok := Domain(rcpt)
		key := domain
		if !ok {
			key = "\x00" + domain // never the same group as a valid domain
		}
		gi, seen := index[key]
		if !seen {
			g := Group{Domain: domain, Action: Refuse}
			if ok {
				g = classifyDomain(cfg, certs, domain)
			}
			plan.Groups = append(plan.Groups, g)
			gi = len(plan.Groups) - 1
			index[key] = gi
		}
		plan.Groups[gi].Recipients = append(plan.Groups[gi].Recipients, i)
	}
	return plan
}

func classifyDomain(cfg *config.Config, certs Lookup, domain string) Group {
	g := Group{Domain: domain}
	if cfg.IsLocal(domain) {
		g.Action = Local
		return g
	}
	g.Policy = cfg.PartnerPolicy(domain)
	g.Match = certs.Lookup(domain)
	if g.Policy.RequirePQ {
		// Only the partner's ML-KEM and composite certificates are
		// recipients: mail recorded now stays confidential once RSA and
		// ECDH fall to a quantum computer.
		g.Match = g.Match.PostQuantumOnly()
	}
	switch {
	case len(g.Match.Certs) > 0:
		g.Action = Encrypt
	case g.Policy.Require || g.Policy.RequirePQ:
		// require_pq is a requirement of encryption too: without a
		// post-quantum certificate the mail waits, never goes in the clear.
		g.Action = Hold
	case g.Match.Domain != "":
		// The domain has certificates, but none is usable now (expired,
		// wrong key usage, untrusted). The partner expects encryption:
		// fail closed and hold until a usable one is installed or the
		// hold lifetime ends (RFC 8162 section 5; docs/threats.md section 3).
		g.Action = Hold
	default:
		g.Action = Pass
	}
	return g
}

// DirectionOf tells a message's direction from its envelope sender and the
// client that handed it to us. Only a trusted client makes mail outbound:
// from anyone else a local sender address is a claim, and believing it
// would skip the inbound step (decryption, the quarantine) for ciphertext
// that an outsider sent.
func DirectionOf(cfg *config.Config, sender string, trusted bool) Direction {
	if !trusted {
		return Inbound
	}
	if sender == "" {
		return Outbound
	}
	if d, ok := Domain(sender); ok && cfg.IsLocal(d) {
		return Outbound
	}
	return Inbound
}

// Domain returns the canonical domain of an address (the part after the
// last "@", in A-label form, lower case) and whether it is one. For an
// address whose domain does not canonicalise (not a valid IDNA name, an
// address literal, no "@") ok is false and domain is what was written,
// lower-cased, for messages: callers must treat it as matching nothing and
// must not fall back to treating it as a domain without a certificate.
func Domain(addr string) (domain string, ok bool) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 {
		return "", false
	}
	d := strings.TrimSuffix(addr[at+1:], ".")
	if c, err := smtp.CanonicalDomain(d); err == nil {
		return c, true
	}
	return strings.ToLower(d), false
}

// MixedRejection is the reply text for a message refused under
// mixed_recipients = "reject": it names the domains on each side so that
// the sender can split the message.
func MixedRejection(p *Plan) string {
	var secured, unsecured []string
	for _, g := range p.Groups {
		switch g.Action {
		case Encrypt, Hold:
			secured = append(secured, g.Domain)
		case Pass:
			unsecured = append(unsecured, g.Domain)
		}
	}
	return fmt.Sprintf("message would go encrypted to %s and unencrypted to %s; policy refuses mixed recipients, send separate messages",
		strings.Join(secured, ", "), strings.Join(unsecured, ", "))
}
