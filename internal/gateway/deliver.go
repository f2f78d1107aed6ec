package gateway

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"smimegate/internal/config"
	"smimegate/internal/courier"
	"smimegate/internal/policy"
	"smimegate/internal/smtpd"
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
// good, which deliver returns as a *smtpd.Reject for the client (its own
// server then bounces, and we send no backscatter). Anything else commits it
// before the bounces and the update. An error is returned only when that
// commit fails.
func (g *Gateway) deliver(ctx context.Context, env *spool.Envelope, force bool, vs *versions) (time.Time, error) {
	cfg := g.Config()
	now := time.Now()
	batches := map[hop][]int{}
	var order []hop
	for vi, v := range env.Versions {
		if v.Action == "hold" {
			continue
		}
		for ri, d := range v.Recipients {
			if d.State != spool.Pending || (!force && d.NextAttempt.After(now)) {
				continue
			}
			domain := policy.Domain(d.Addr)
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
	if len(order) == 0 {
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
	bounced := map[int][]failure{} // version -> newly failed recipients
	var delayed []failure
	for range order {
		o := <-outcomes
		g.hops.observe(o.h.key(), o.results)
		v := &env.Versions[o.h.version]
		for k, res := range o.results {
			d := &v.Recipients[o.idx[k]]
			d.Attempts++
			d.LastHop = res.Host
			d.LastError = res.Reply
			switch res.Status {
			case courier.Delivered:
				d.State = spool.Delivered
				g.metrics.deliveries.WithLabelValues("delivered").Inc()
			case courier.Failed:
				d.State = spool.Bounced
				g.metrics.deliveries.WithLabelValues("bounced").Inc()
				bounced[o.h.version] = append(bounced[o.h.version], failure{d: *d, status: statusOf(res, "5.0.0"), diag: res.Reply, remote: res.HostName})
			default:
				g.metrics.deliveries.WithLabelValues("deferred").Inc()
				if now.Sub(env.Arrival) >= cfg.Queue.Lifetime.D() {
					// RFC 3463: X.4.7, delivery time expired; the last
					// reply stays the diagnostic.
					d.State = spool.Bounced
					d.LastError = "queue lifetime expired; last error: " + res.Reply
					bounced[o.h.version] = append(bounced[o.h.version], failure{d: *d, status: "5.4.7", diag: res.Reply, remote: res.HostName})
					continue
				}
				d.NextAttempt = now.Add(backoff(cfg, d.Attempts))
				if dw := cfg.Queue.DelayWarning.D(); dw > 0 && !d.Warned && now.Sub(env.Arrival) >= dw {
					d.Warned = true
					delayed = append(delayed, failure{d: *d, status: statusOf(res, "4.0.0"), diag: res.Reply, remote: res.HostName, delayed: true, version: o.h.version})
				}
			}
		}
	}
	if !vs.stored && len(bounced) > 0 && allRefused(env) {
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
		EightBit: env.Body == "8BITMIME" || env.Body == "BINARYMIME",
		RET:      env.RET,
		EnvID:    env.EnvID,
		Data:     data,
		Size:     int64(len(data)),
		StartBy:  vs.startBy,
		Open: func() (io.ReadCloser, error) {
			return vs.open(v.Data)
		},
	}
	for _, i := range idx {
		r := v.Recipients[i]
		msg.Recipients = append(msg.Recipients, courier.Rcpt{Addr: r.Addr, Notify: r.Notify, ORcpt: decodeORcpt(r.ORcpt)})
	}
	mode, err := courier.ParseTLSMode(h.tls)
	if err != nil {
		// Validated with the configuration; never relax TLS on a surprise.
		mode = courier.TLSRequired
	}
	route := courier.Route{NextHop: h.nextHop, Domain: h.domain, TLS: mode}
	return g.courier.Deliver(ctx, route, msg)
}

// statusOf returns the enhanced status of a reply, or def.
func statusOf(r courier.Result, def string) string {
	if r.Enhanced != "" {
		return r.Enhanced
	}
	return def
}

// finish records the envelope and tells when the message next needs work:
// it leaves the queue once every recipient of every version is delivered or
// bounced. A message relayed first goes to the spool here if it is not
// done; the error is that commit's.
func (g *Gateway) finish(env *spool.Envelope, vs *versions) (time.Time, error) {
	next := nextDue(env)
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
// good at a relay-first attempt: the first refusal's status and words.
func refusal(bounced map[int][]failure) *smtpd.Reject {
	var f failure
	for _, fs := range bounced {
		if len(fs) > 0 && (f.d.Addr == "" || fs[0].d.Addr < f.d.Addr) {
			f = fs[0]
		}
	}
	enh := [3]int{5, 0, 0}
	if c, err := parseStatus(f.status); err == nil && c[0] == 5 {
		enh = c
	}
	// The next hop's own code when its words start with one (550 user
	// unknown, 552 too big, 554 refused), else RFC 5321's catch-all.
	code := 554
	if n, err := strconv.Atoi(f.diag[:min(3, len(f.diag))]); err == nil && n >= 500 && n <= 559 {
		code = n
	}
	who := "the next hop"
	if f.remote != "" {
		who = f.remote
	}
	return &smtpd.Reject{Code: code, Enhanced: enh, Message: fmt.Sprintf("Refused by %s for %s: %s", who, f.d.Addr, f.diag)}
}

// parseStatus reads an RFC 3463 enhanced status code, "5.1.1".
func parseStatus(s string) ([3]int, error) {
	var c [3]int
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return c, fmt.Errorf("not an enhanced status code: %q", s)
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 {
			return c, fmt.Errorf("not an enhanced status code: %q", s)
		}
		c[i] = n
	}
	return c, nil
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
		if v.Action != "hold" || !(force || holdDue(v, now)) {
			continue
		}
		changed = true
		grp := policy.Classify(st.cfg, st.certs, env.Sender, env.Trusted, []string{"x@" + v.Domain}).Groups[0]
		switch grp.Action {
		case policy.Encrypt:
			data, err := g.readOriginal(env.ID)
			if err == nil {
				var sealed spool.Version
				sealed, err = g.seal(env, data, true, v.Domain, grp.Match, grp.Policy, v.Recipients, newVersions(g, env.ID), false)
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
				reason := "no usable certificate for " + v.Domain + ", which requires encryption; held until the hold lifetime expired"
				var failed []failure
				for i := range v.Recipients {
					v.Recipients[i].State = spool.Bounced
					v.Recipients[i].LastError = reason
					failed = append(failed, failure{d: v.Recipients[i], status: "5.7.1", diag: reason})
				}
				if err := g.bounce(env, v, failed, false); err != nil {
					g.log.Error("cannot queue the bounce; the recipients stay held and it will be tried again", "queue_id", env.ID, "err", err)
					keepForBounce(v, failed, now.Add(backoff(st.cfg, 1)))
					continue
				}
				g.logDecision(env, policy.DirectionOf(st.cfg, env.Sender, env.Trusted), "bounce", v.Domain, nil, "", reason)
				continue
			}
			g.postponeHold(v, st.cfg)
		default:
			// The policy no longer requires encryption for this domain.
			v.Action = "pass"
			for i := range v.Recipients {
				v.Recipients[i].NextAttempt = time.Time{}
				v.Recipients[i].LastError = ""
			}
			g.logDecision(env, policy.DirectionOf(st.cfg, env.Sender, env.Trusted), "pass", v.Domain, nil, "", "held message released: the domain no longer requires encryption")
		}
	}
	if changed {
		if err := g.spool.Update(env); err != nil {
			g.log.Error("cannot record the held message's state", "queue_id", env.ID, "err", err)
		}
	}
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

// receivedField is our trace header field for a copy that we rewrote
// (an opened inbound message), RFC 5321 section 4.4.
func receivedField(hostname string, env *spool.Envelope, note string) string {
	var b strings.Builder
	b.WriteString("Received: by ")
	b.WriteString(hostname)
	fmt.Fprintf(&b, " (smimegate, %s)\r\n\tid %s; %s\r\n", note, env.ID, time.Now().Format(time.RFC1123Z))
	return b.String()
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
