package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"smimegate/internal/policy"
	"smimegate/internal/spool"
)

// SMIMEA discovery ([discovery] smimea) asks DNS for the certificates of
// destination domains that have none locally. The certificate store's
// Lookup only reads what discovery has cached, so no SMTP session ever
// waits for DNS: a message whose domain has no cached answer yet is not
// relayed first but committed and queued, and the queue's policy step asks
// DNS first (discover), within discoveryWait. A lookup that fails (a
// resolver's SERVFAIL for a bogus zone, a timeout) never lets mail go in
// the clear: the policy step is retried later, or, for a partner with
// require = true, the mail is held as for any partner without a usable
// certificate.

// discoveryWait bounds how long one message's policy step waits for its
// domains' SMIMEA lookups.
const discoveryWait = 20 * time.Second

// foreignDomains are the distinct valid, non-local recipient domains of
// env (or of its held versions, with held).
func foreignDomains(st *state, env *spool.Envelope, held bool) []string {
	var out []string
	add := func(d string) {
		if d != "" && !st.cfg.IsLocal(d) && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	if held {
		for _, v := range env.Versions {
			if v.Action == spool.ActionHold {
				add(v.Domain)
			}
		}
		return out
	}
	for _, r := range env.Recipients {
		if d, ok := policy.Domain(r.Addr); ok {
			add(d)
		}
	}
	return out
}

// discover asks DNS what the SMIMEA cache lacks about domains. It returns
// an error naming the domains whose lookup failed and that would otherwise
// go in the clear; a failed domain with require = true is only logged (the
// policy step holds its mail).
//
// Whether discovery is on is the store's to say (it has a Discovery or
// not), not the configuration's: [discovery] takes effect at a restart,
// and a store that consults the cache must have it filled.
func (g *Gateway) discover(ctx context.Context, st *state, id string, domains []string) error {
	if len(domains) == 0 || st.certs.Options().Discovery == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, discoveryWait)
	defer cancel()
	var failed []string
	for _, d := range domains {
		err := st.certs.Discover(ctx, d)
		if err == nil {
			continue
		}
		if st.cfg.PartnerPolicy(d).Require {
			g.log.Warn("SMIMEA discovery failed for a partner that requires encryption: its mail is held", "queue_id", id, "domain", d, "reason", err)
			continue
		}
		g.log.Warn("SMIMEA discovery failed: the message waits and is retried, never sent in the clear", "queue_id", id, "domain", d, "reason", err)
		failed = append(failed, fmt.Sprintf("%s: %v", d, err))
	}
	if len(failed) > 0 {
		return errors.New("SMIMEA discovery failed for " + strings.Join(failed, "; "))
	}
	return nil
}

// discoveryDeferred returns an error when the plan has a domain that
// discovery could not answer for and that does not require encryption:
// holding it would keep it from ever going in the clear (a held message
// needs release-plain), sending it would skip a certificate it may have.
// The policy step is retried instead.
func discoveryDeferred(plan *policy.Plan) error {
	for _, grp := range plan.Groups {
		if grp.Action == policy.Hold && grp.Match.Deferred != "" && !grp.Policy.Require {
			return fmt.Errorf("%s: %s", grp.Domain, grp.Match.Deferred)
		}
	}
	return nil
}

// planDeferred reports whether some domain of the plan still waits for
// discovery.
func planDeferred(plan *policy.Plan) bool {
	return slices.ContainsFunc(plan.Groups, func(grp policy.Group) bool { return grp.Match.Deferred != "" })
}

// discoveryPending returns a recipient domain of env for which discovery
// has no answer cached, or "": such a message is not relayed first.
func (g *Gateway) discoveryPending(env *spool.Envelope) string {
	st := g.state.Load()
	for _, d := range foreignDomains(st, env, false) {
		if st.certs.DiscoveryPending(d) {
			return d
		}
	}
	return ""
}
