package gateway

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"smimegate/internal/config"
	"smimegate/internal/courier"
	"smimegate/internal/policy"
	"smimegate/internal/smtp"
	"smimegate/internal/spool"
)

// hop is where one batch of recipients goes: the courier route and the
// version it carries. Recipients that share it travel in one transaction.
type hop struct {
	version int
	nextHop string
	domain  string // for "mx" only: the destination domain
	tls     string
}

// key names the destination, as the courier pools its connections.
func (h hop) key() string {
	if h.nextHop == "mx" {
		return "mx:" + h.domain
	}
	return h.nextHop
}

// routeFor returns the next hop and TLS mode for a recipient domain:
// relay.inbound for local domains, the most specific [relay.routes] entry,
// else relay.outbound.
func routeFor(cfg *config.Config, domain string) (next, tls string) {
	next = cfg.Relay.Outbound
	if cfg.IsLocal(domain) {
		next = cfg.Relay.Inbound
	} else {
		for d := domain; d != ""; d = config.Parent(d) {
			if h, ok := cfg.Relay.Routes[d]; ok {
				next = h
				break
			}
		}
	}
	tls = cfg.Relay.TLS
	for d := domain; d != ""; d = config.Parent(d) {
		if m, ok := cfg.Relay.RouteTLS[d]; ok {
			tls = m
			break
		}
	}
	return next, tls
}

// deliver attempts every recipient that is due, one transaction per next hop
// and version, records the outcomes with one envelope update, queues the
// bounces, and returns when the message next needs work.
//
// For a message relayed first (not in the spool, vs.stored false), the
// outcomes decide whether it goes to the spool at all: not when every
// recipient was delivered; not either when every recipient was refused for
// good, which deliver returns as a *smtp.Error for the client (its own
// server then bounces, and we send no backscatter). Anything else commits it
// before the bounces and the update. An error is returned only when that
// commit fails.
func (g *Gateway) deliver(ctx context.Context, env *spool.Envelope, force bool, vs *versions) (time.Time, error) {
	cfg := g.Config()
	now := time.Now()
	batches := map[hop][]int{}
	var order []hop
	bounced := map[int][]failure{} // version -> newly failed recipients
	for vi, v := range env.Versions {
		if v.Action == spool.ActionHold {
			continue
		}
		for ri, d := range v.Recipients {
			if d.State != spool.Pending || (!force && d.NextAttempt.After(now)) {
				continue
			}
			domain, ok := policy.Domain(d.Addr)
			if !ok {
				// Only a spool written before the policy refused such
				// domains holds one: it is bounced, never routed by a
				// name that does not canonicalise.
				reason := "the domain " + domain + " is not a valid IDNA domain name (RFC 5891)"
				dd := &env.Versions[vi].Recipients[ri]
				dd.State, dd.LastError = spool.Bounced, reason
				bounced[vi] = append(bounced[vi], ownFailure(*dd, smtp.EnhancedCode{5, 1, 3}, reason))
				continue
			}
			next, tls := routeFor(cfg, domain)
			h := hop{version: vi, nextHop: next, tls: tls}
			if next == "mx" {
				h.domain = domain
			}
			if _, ok := batches[h]; !ok {
				order = append(order, h)
			}
			batches[h] = append(batches[h], ri)
		}
	}
	if len(order) == 0 && len(bounced) == 0 {
		return g.finish(env, vs)
	}

	type outcome struct {
		h       hop
		idx     []int
		results []courier.Result
	}
	outcomes := make(chan outcome, len(order))
	if len(order) == 1 {
		// The common case needs no goroutine (nor its stack to grow).
		h := order[0]
		outcomes <- outcome{h, batches[h], g.attempt(ctx, env, h, batches[h], vs)}
	} else {
		for _, h := range order {
			go func() {
				outcomes <- outcome{h, batches[h], g.attempt(ctx, env, h, batches[h], vs)}
			}()
		}
	}
	var delayed []failure
	for range order {
		o := <-outcomes
		g.hops.observe(o.h.key(), o.results)
		v := &env.Versions[o.h.version]
		withhold := withholdReports(env, v)
		for k, res := range o.results {
			d := &v.Recipients[o.idx[k]]
			d.Attempts++
			d.LastHop = res.Host
			d.LastError = res.Diagnostic()
			switch res.Status {
			case courier.Delivered:
				d.State = spool.Delivered
				g.metrics.deliveries.WithLabelValues("delivered").Inc()
			case courier.Failed:
				d.State = spool.Bounced
				g.metrics.deliveries.WithLabelValues("bounced").Inc()
				if withhold {
					d.Withheld = true
					continue
				}
				bounced[o.h.version] = append(bounced[o.h.version], resultFailure(*d, &res))
			default:
				g.metrics.deliveries.WithLabelValues("deferred").Inc()
				if now.Sub(env.Arrival) >= cfg.Queue.Lifetime.D() {
					// RFC 3463: X.4.7, delivery time expired; the last
					// reply stays the diagnostic.
					d.State = spool.Bounced
					d.LastError = "queue lifetime expired; last error: " + res.Diagnostic()
					if withhold {
						d.Withheld = true
						continue
					}
					f := resultFailure(*d, &res)
					f.status = smtp.EnhancedCode{5, 4, 7}
					bounced[o.h.version] = append(bounced[o.h.version], f)
					continue
				}
				d.NextAttempt = now.Add(backoff(cfg, d.Attempts))
				if dw := cfg.Queue.DelayWarning.D(); dw > 0 && !withhold && !d.Warned && now.Sub(env.Arrival) >= dw {
					d.Warned = true
					f := resultFailure(*d, &res)
					f.delayed, f.version = true, o.h.version
					delayed = append(delayed, f)
				}
			}
		}
	}
	if !vs.stored && len(bounced) > 0 && allRefused(env) && !hasWithheld(env) {
		return time.Time{}, refusal(bounced)
	}
	if len(bounced) > 0 || len(delayed) > 0 {
		if err := vs.ensureStored(); err != nil {
			return time.Time{}, err
		}
	}
	for vi, failed := range bounced {
		if err := g.bounce(env, &env.Versions[vi], failed, false); err != nil {
			// The report must not be lost with the message: keep these
			// recipients pending, so that the next attempt (which will
			// most likely fail the same way) bounces them again.
			g.log.Error("cannot queue the bounce; the recipients stay queued and it will be tried again", "queue_id", env.ID, "err", err)
			keepForBounce(&env.Versions[vi], failed, now.Add(backoff(cfg, 1)))
		}
	}
	for _, f := range delayed {
		if err := g.bounce(env, &env.Versions[f.version], []failure{f}, true); err != nil {
			g.log.Error("cannot queue the delay warning", "queue_id", env.ID, "err", err)
		}
	}
	return g.finish(env, vs)
}

// attempt hands one batch to the courier.
func (g *Gateway) attempt(ctx context.Context, env *spool.Envelope, h hop, idx []int, vs *versions) []courier.Result {
	v := env.Versions[h.version]
	data := vs.bytes(v.Data)
	msg := &courier.Message{
		ID:       env.ID,
		From:     env.Sender,
		SMTPUTF8: env.SMTPUTF8,
		EightBit: env.Body == "8BITMIME" || env.Body == "BINARYMIME" || v.EightBit,
		RET:      env.RET,
		EnvID:    env.EnvID,
		Data:     data,
		Size:     int64(len(data)),
		StartBy:  vs.startBy,
		FinishBy: vs.finishBy,
		Open: func() (io.ReadCloser, error) {
			return vs.open(v.Data)
		},
	}
	for _, i := range idx {
		r := v.Recipients[i]
		msg.Recipients = append(msg.Recipients, courier.Rcpt{Addr: r.Addr, Notify: r.Notify, ORcpt: smtp.DecodeORcpt(r.ORcpt)})
	}
	mode, err := courier.ParseTLSMode(h.tls)
	if err != nil {
		// Validated with the configuration; never relax TLS on a surprise.
		mode = courier.TLSRequired
	}
	route := courier.Route{NextHop: h.nextHop, Domain: h.domain, TLS: mode}
	return g.courier.Deliver(ctx, route, msg)
}

// finish records the envelope and tells when the message next needs work:
// it leaves the queue once every recipient of every version is delivered or
// bounced. A message relayed first goes to the spool here if it is not
// done; the error is that commit's.
func (g *Gateway) finish(env *spool.Envelope, vs *versions) (time.Time, error) {
	next := nextDue(env)
	if next.IsZero() && hasWithheld(env) {
		if err := vs.ensureStored(); err != nil {
			return time.Time{}, err
		}
		return g.quarantineWithheld(env)
	}
	if next.IsZero() {
		if !vs.stored {
			g.log.Debug("done, relayed first", "queue_id", env.ID)
			return time.Time{}, nil
		}
		if err := g.spool.RemoveDone(env); err != nil {
			g.log.Error("cannot remove a finished message", "queue_id", env.ID, "err", err)
			return time.Now().Add(g.Config().Queue.MinBackoff.D()), nil
		}
		g.log.Debug("done", "queue_id", env.ID)
		return time.Time{}, nil
	}
	if err := vs.ensureStored(); err != nil {
		return time.Time{}, err
	}
	if vs.inMemory() {
		if err := vs.persist(env); err != nil {
			// The envelope on disk still says "received": the policy
			// step and the attempt will be repeated.
			g.log.Error("cannot write the versions to the spool; the message will be processed again", "queue_id", env.ID, "err", err)
			return time.Now().Add(g.Config().Queue.MinBackoff.D()), nil
		}
	}
	if err := g.spool.Update(env); err != nil {
		// The attempt's results are lost; the next attempt repeats it.
		g.log.Error("cannot record delivery results; the attempt will be repeated", "queue_id", env.ID, "err", err)
	}
	return next, nil
}

// withholdReports reports whether failures of version v go unreported to
// the sender: v is decrypted content and the client was not trusted. A
// report (or its absence, when the content could not be decrypted and went
// to the quarantine) would tell whoever wrote the ciphertext whether it
// decrypted: the padding oracle through the mail flow (docs/threats.md
// section 5). Such recipients go to the quarantine instead, where the operator sees
// the next hop's reason.
func withholdReports(env *spool.Envelope, v *spool.Version) bool {
	return v.Action == spool.ActionDecrypt && !env.Trusted
}

func hasWithheld(env *spool.Envelope) bool {
	for _, v := range env.Versions {
		for _, d := range v.Recipients {
			if d.Withheld {
				return true
			}
		}
	}
	return false
}

// quarantineWithheld moves a finished message whose withheld recipients
// (see withholdReports) were refused to the quarantine, for those
// recipients only: a release then runs the inbound step again for them and
// nobody else.
func (g *Gateway) quarantineWithheld(env *spool.Envelope) (time.Time, error) {
	q := *env
	q.Recipients = nil
	var why []string
	for _, v := range env.Versions {
		for _, d := range v.Recipients {
			if d.Withheld {
				q.Recipients = append(q.Recipients, d.Recipient)
				why = append(why, d.Addr+": "+d.LastError)
			}
		}
	}
	q.Stage = spool.StageReceived
	q.Versions = nil
	reason := "the next hop refused the decrypted message for good; no report to the untrusted sender (it would tell whether decryption worked): " + strings.Join(why, "; ")
	// Quarantine writes q (the original alone, these recipients alone) and
	// moves it; the versions left in the queue are removed with the move.
	if err := g.quarantine(&q, newVersions(g, env.ID), policy.Inbound, reason); err != nil {
		g.log.Error("cannot quarantine the refused recipients; retrying", "queue_id", env.ID, "err", err)
		return time.Now().Add(g.Config().Queue.MinBackoff.D()), nil
	}
	return time.Time{}, nil
}

// allRefused reports whether every recipient of every version was refused
// for good (none delivered, none pending or held).
func allRefused(env *spool.Envelope) bool {
	for _, v := range env.Versions {
		for _, d := range v.Recipients {
			if d.State != spool.Bounced {
				return false
			}
		}
	}
	return true
}

// refusal is the reply to a client whose message every next hop refused for
// good at a relay-first attempt: the first refusal (by address). It is
// built from the failure's fields, never from its text: the next hop's own
// code when the refusal was its reply (550 user unknown, 552 too big, 554
// refused), else RFC 5321's catch-all 554 with our reason; the enhanced
// status when it is of class 5 (RFC 3463 section 2), else 5.0.0.
func refusal(bounced map[int][]failure) *smtp.Error {
	var f failure
	for _, fs := range bounced {
		if len(fs) > 0 && (f.d.Addr == "" || fs[0].d.Addr < f.d.Addr) {
			f = fs[0]
		}
	}
	enh := smtp.EnhancedPermanent
	if f.status.Valid() && f.status[0] == 5 {
		enh = f.status
	}
	code := 554
	if f.fromHop && f.reply.Code >= 500 && f.reply.Code <= 559 {
		code = f.reply.Code
	}
	who := "the next hop"
	if f.remote != "" {
		who = f.remote
	}
	return &smtp.Error{Code: code, Enhanced: enh, Message: fmt.Sprintf("Refused by %s for %s: %s", who, f.d.Addr, f.diagnostic())}
}

// nextDue is the earliest time a pending recipient (or the policy step) is
// due; zero when nothing is pending.
func nextDue(env *spool.Envelope) time.Time {
	if env.Stage == spool.StageReceived {
		return env.NextAttempt // zero: now
	}
	var next time.Time
	for _, v := range env.Versions {
		for _, d := range v.Recipients {
			if d.State != spool.Pending {
				continue
			}
			t := d.NextAttempt
			if t.IsZero() {
				t = time.Now()
			}
			if next.IsZero() || t.Before(next) {
				next = t
			}
		}
	}
	return next
}

// backoff is the wait before attempt n+1: Postfix's doubling from
// queue.min_backoff up to queue.max_backoff.
func backoff(cfg *config.Config, attempts int) time.Duration {
	return courier.Backoff(attempts, cfg.Queue.MinBackoff.D(), cfg.Queue.MaxBackoff.D())
}

// retryHolds re-examines the held versions that are due: a certificate may
// have been imported (seal and deliver), the partner may no longer require
// encryption (pass), or the hold lifetime may be over (bounce).
func (g *Gateway) retryHolds(env *spool.Envelope, force bool) {
	st := g.state.Load()
	now := time.Now()
	changed := false
	for vi := range env.Versions {
		v := &env.Versions[vi]
		if v.Action != spool.ActionHold || !(force || holdDue(v, now)) {
			continue
		}
		changed = true
		grp := policy.Classify(st.cfg, st.certs, env.Sender, env.Trusted, []string{"x@" + v.Domain}).Groups[0]
		switch grp.Action {
		case policy.Encrypt:
			data, err := g.readOriginal(env.ID)
			if err == nil {
				var sealed spool.Version
				sealed, err = g.seal(env, data, true, v.Domain, grp.Match, grp.Policy, v.Recipients, newVersions(g, env.ID), false, &signPrep{})
				if err == nil {
					for i := range sealed.Recipients {
						sealed.Recipients[i].NextAttempt = time.Time{}
					}
					*v = sealed
					g.logDecision(env, policy.DirectionOf(st.cfg, env.Sender, env.Trusted), "encrypt", v.Domain, v.Fingerprints, v.Cipher, "certificate now available for held message")
					continue
				}
			}
			g.log.Error("cannot seal a held message; will retry", "queue_id", env.ID, "domain", v.Domain, "err", err)
			g.postponeHold(v, st.cfg)
		case policy.Hold:
			if now.Sub(env.Arrival) >= st.cfg.Queue.HoldLifetime.D() {
				g.expireHold(env, v, st.cfg, now)
				continue
			}
			g.postponeHold(v, st.cfg)
		default:
			// The domain would now go in the clear (its expired
			// certificate was removed, require was switched off), but this
			// message was held because policy decided it must be
			// encrypted. That decision is never undone silently: it stays
			// held until a usable certificate appears, the hold lifetime
			// ends (a bounce), or the operator says in so many words that
			// it may go in the clear (`smimegate queue release-plain ID`).
			if now.Sub(env.Arrival) >= st.cfg.Queue.HoldLifetime.D() {
				g.expireHold(env, v, st.cfg, now)
				continue
			}
			for i := range v.Recipients {
				v.Recipients[i].LastError = "held for encryption; " + v.Domain + " now has no certificate: only `smimegate queue release-plain " + env.ID + "` sends it in the clear"
			}
			g.log.Warn("held message stays held: its domain would now get it in the clear, which needs the operator's release-plain", "queue_id", env.ID, "domain", v.Domain)
			g.postponeHold(v, st.cfg)
		}
	}
	if changed {
		if err := g.spool.Update(env); err != nil {
			g.log.Error("cannot record the held message's state", "queue_id", env.ID, "err", err)
		}
	}
}

// expireHold bounces the recipients of a held version whose hold lifetime
// is over: a message that had to be encrypted and could not be is returned,
// never sent in the clear.
func (g *Gateway) expireHold(env *spool.Envelope, v *spool.Version, cfg *config.Config, now time.Time) {
	reason := "no usable certificate for " + v.Domain + ", which requires encryption; held until the hold lifetime expired"
	var failed []failure
	for i := range v.Recipients {
		if v.Recipients[i].State != spool.Pending {
			continue
		}
		v.Recipients[i].State = spool.Bounced
		v.Recipients[i].LastError = reason
		failed = append(failed, ownFailure(v.Recipients[i], smtp.EnhancedCode{5, 7, 1}, reason))
	}
	if err := g.bounce(env, v, failed, false); err != nil {
		g.log.Error("cannot queue the bounce; the recipients stay held and it will be tried again", "queue_id", env.ID, "err", err)
		keepForBounce(v, failed, now.Add(backoff(cfg, 1)))
		return
	}
	g.logDecision(env, policy.DirectionOf(cfg, env.Sender, env.Trusted), "bounce", v.Domain, nil, "", reason)
}

// ReleasePlain is the operator's explicit decision that the held versions
// of a queued message may go in the clear (`smimegate queue release-plain
// ID`): held recipients become ordinary pass recipients, due now. Nothing
// else ever turns a decision to encrypt into a plain delivery. It returns
// how many recipients were released.
func (g *Gateway) ReleasePlain(id string) (n int, err error) {
	g.sched.exclusive(id, func() {
		var env *spool.Envelope
		if env, err = g.spool.Load(id); err != nil {
			return
		}
		if n = ReleaseHeld(env); n == 0 {
			err = fmt.Errorf("message %s has no held recipients", id)
			return
		}
		err = g.spool.Update(env)
	})
	if err != nil {
		return 0, err
	}
	g.log.Warn("held recipients released in the clear by the operator", "queue_id", id, "recipients", n)
	g.metrics.decisions.WithLabelValues("release-plain").Inc()
	return n, nil
}

// ReleaseHeld turns the held versions of env into pass versions with their
// pending recipients due now, and returns how many recipients it released.
// It is ReleasePlain's change, shared with the command that edits a stopped
// gateway's spool.
func ReleaseHeld(env *spool.Envelope) int {
	n := 0
	for vi := range env.Versions {
		v := &env.Versions[vi]
		if v.Action != spool.ActionHold {
			continue
		}
		v.Action = spool.ActionPass
		for i := range v.Recipients {
			if v.Recipients[i].State == spool.Pending {
				v.Recipients[i].NextAttempt = time.Time{}
				v.Recipients[i].LastError = ""
				n++
			}
		}
	}
	return n
}

func holdDue(v *spool.Version, now time.Time) bool {
	for _, d := range v.Recipients {
		if d.State == spool.Pending && !d.NextAttempt.After(now) {
			return true
		}
	}
	return false
}

func (g *Gateway) postponeHold(v *spool.Version, cfg *config.Config) {
	for i := range v.Recipients {
		d := &v.Recipients[i]
		d.Attempts++
		d.NextAttempt = time.Now().Add(backoff(cfg, d.Attempts))
	}
}

// keepForBounce puts failed recipients back to pending, for when their
// bounce could not be queued.
func keepForBounce(v *spool.Version, failed []failure, next time.Time) {
	for _, f := range failed {
		for i := range v.Recipients {
			if v.Recipients[i].Addr == f.d.Addr && v.Recipients[i].State == spool.Bounced {
				v.Recipients[i].State = spool.Pending
				v.Recipients[i].NextAttempt = next
			}
		}
	}
}
