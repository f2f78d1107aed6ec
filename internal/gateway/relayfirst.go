package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"smimegate/internal/config"
	"smimegate/internal/courier"
	"smimegate/internal/policy"
	"smimegate/internal/smime"
	"smimegate/internal/smtp"
	"smimegate/internal/spool"
)

// Relay first (queue.relay_first, on by default) is how most mail crosses
// the gateway without touching its disk. A message of at most
// queue.relay_first_max_bytes is received into memory; while the client
// waits for the reply to its DATA, the policy step runs and every recipient
// is attempted at once, and the client's 250 follows the next hops' 250s.
// Only what is not done by then goes to the spool (committed as at any
// receipt, fsync included) before the 250: a deferred or held recipient, a
// bounce to queue, a message for the quarantine. So a 250 still means the
// message survives a crash: it is either in our spool or accepted by every
// next hop. It is what amavisd-new and Postfix's smtpd_proxy_filter do, and
// it saves the spool's file creation, fsyncs and read-back for the common
// case.
//
// The client waits for at most queue.relay_first_timeout before the
// content starts to flow (connection, greeting, TLS, envelope); past it the
// recipient is deferred with nothing sent and the message is committed.
// The whole attempt ends at twice the timeout: a next hop that has the
// content but dribbles its reply to the final dot is abandoned then, and
// the message is committed and retried from the spool (the next hop may
// have it: a possible duplicate, never a loss). When every recipient is refused for good, the client gets the
// refusal (5xx) instead of a 250 and a bounce: its own server reports it,
// and we send no backscatter.
//
// A crash after a next hop's 250 and before ours makes the client send the
// message again: a duplicate, never a loss, as with any MTA.
//
// A next hop that gave no answer at its last attempt is bypassed for a
// while (hopHealth): its messages are queued at once.

// InMemory is the receiver's InMemory: the largest message relayed first,
// 0 when relay-first is off or the gateway is stopping.
func (g *Gateway) InMemory() int {
	cfg := g.Config()
	if !cfg.Queue.RelayFirst || g.stopped.Load() {
		return 0
	}
	return int(cfg.Queue.RelayFirstMaxBytes)
}

// Handoff is the receiver's Handoff: it relays a message that is in memory
// first, and commits and queues every other one.
func (g *Gateway) Handoff(env *spool.Envelope, in *spool.Incoming) error {
	if err := g.checkQuarantineRoom(env, in); err != nil {
		return err
	}
	data, inMemory := in.Bytes()
	if !inMemory || g.stopped.Load() || !g.Config().Queue.RelayFirst {
		if err := in.Commit(env); err != nil {
			return err
		}
		g.Enqueue(env.ID)
		return nil
	}
	if g.mayNeedOpening(env, data) {
		// Encrypted to us (or not inspectable, which ends in the
		// quarantine): committed before the 250 and opened from the
		// queue, so that neither the reply nor its timing depends on
		// whether it decrypts (the padding oracle of RFC 3218; see
		// docs/threats.md section 5).
		if err := in.Commit(env); err != nil {
			return err
		}
		g.metrics.relayFirst.WithLabelValues("encrypted_to_us").Inc()
		g.Enqueue(env.ID)
		return nil
	}
	if d := g.discoveryPending(env); d != "" {
		// No SMIMEA answer cached for a domain: the queue asks DNS
		// before its policy step; this client does not wait for it.
		if err := in.Commit(env); err != nil {
			return err
		}
		g.metrics.relayFirst.WithLabelValues("discovery").Inc()
		g.log.Debug("not relayed first: SMIMEA discovery has no answer yet", "queue_id", env.ID, "domain", d)
		g.Enqueue(env.ID)
		return nil
	}
	if hop := g.unreachableHop(env); hop != "" {
		// Its next hop did not answer at the last attempt: do not make
		// this client wait for it too. The queue retries on its schedule.
		if err := in.Commit(env); err != nil {
			return err
		}
		g.metrics.relayFirst.WithLabelValues("skipped").Inc()
		g.log.Debug("not relayed first: the next hop did not answer recently", "queue_id", env.ID, "next_hop", hop)
		g.Enqueue(env.ID)
		return nil
	}
	reserved, ok := g.memory.tryAcquire(passMemory(int64(len(data))))
	if !ok {
		// The memory budget is spent: the message waits its turn in the
		// spool rather than holding this client and more memory.
		if err := in.Commit(env); err != nil {
			return err
		}
		g.metrics.memoryWaits.Inc()
		g.metrics.relayFirst.WithLabelValues("memory").Inc()
		g.Enqueue(env.ID)
		return nil
	}
	defer g.memory.release(reserved)
	received := *env // what the spool gets, should the message have to stay
	vs := newVersions(g, env.ID)
	vs.original = data
	vs.stored = false
	vs.store = func() error {
		e := received
		return in.Commit(&e)
	}
	// The content must have started within relay_first_timeout, and the
	// whole attempt, the next hop's reply to the final dot included, ends
	// within twice that: a next hop that dribbles its reply cannot hold the
	// client. Past it the message is committed (a duplicate is possible,
	// a loss is not) and the client gets its 250.
	timeout := g.Config().Queue.RelayFirstTimeout.D()
	vs.startBy = time.Now().Add(timeout)
	vs.finishBy = vs.startBy.Add(timeout)
	g.inFlight.Add(1)
	outcome, err := g.relayFirst(env, vs)
	g.inFlight.Add(-1)
	if outcome != "" {
		g.metrics.relayFirst.WithLabelValues(outcome).Inc()
	}
	if err == nil {
		g.metrics.received.Inc()
	}
	return err
}

// relayFirst runs the policy step and the first attempt of a message in
// memory; outcome is for the metrics.
func (g *Gateway) relayFirst(env *spool.Envelope, vs *versions) (outcome string, err error) {
	done, err := g.route(env, vs)
	if err != nil {
		// The policy step failed in memory (a certificate that cannot be
		// used, say): the worker retries it from the spool.
		if serr := vs.ensureStored(); serr != nil {
			return "", serr
		}
		g.sched.schedule(env.ID, g.routeFailed(env, err))
		return "spooled", nil
	}
	if done {
		return "spooled", nil // quarantined or refused: in the spool's hands already
	}
	next, err := g.deliver(g.hardStop, env, false, vs)
	vs.release()
	if err != nil {
		var rej *smtp.Error
		if errors.As(err, &rej) {
			return "refused", err
		}
		return "", err
	}
	if !next.IsZero() {
		g.sched.schedule(env.ID, next)
	}
	if vs.stored {
		return "spooled", nil
	}
	return "relayed", nil
}

// hasLocalRecipient reports whether the inbound step (smime.Open) runs for
// env: only recipients in a local domain are opened.
func hasLocalRecipient(cfg *config.Config, env *spool.Envelope) bool {
	for _, r := range env.Recipients {
		if d, ok := policy.Domain(r.Addr); ok && cfg.IsLocal(d) {
			return true
		}
	}
	return false
}

// mayNeedOpening reports, from public facts only (smime.Inspect does no
// private-key work), whether the inbound step would open or quarantine
// data: it names one of our certificates, or cannot be inspected.
func (g *Gateway) mayNeedOpening(env *spool.Envelope, data []byte) bool {
	st := g.state.Load()
	if !hasLocalRecipient(st.cfg, env) {
		return false
	}
	ins := smime.Inspect(data, st.ownCerts, openOptions(st.cfg))
	return ins.ForUs || ins.Err != nil
}

// checkQuarantineRoom refuses, while the quarantine is at its quota, a
// message that may need it: one the inbound step would open (it may fail
// to) or quarantine. The 452 depends only on what anyone can see of the
// message, never on whether it decrypts; mail that needs no opening still
// flows. A message too large to inspect within the memory budget now is
// refused the same way: it may be such a message.
func (g *Gateway) checkQuarantineRoom(env *spool.Envelope, in *spool.Incoming) error {
	full, why := g.quarantineFull()
	if !full || !hasLocalRecipient(g.Config(), env) {
		return nil
	}
	refuse := &smtp.Error{Code: 452, Enhanced: [3]int{4, 3, 1}, Message: "Insufficient system storage: the quarantine for mail that cannot be decrypted is full, try again later"}
	reserved, ok := g.memory.tryAcquire(2 * in.Size())
	if !ok {
		g.metrics.quarantineFull.Inc()
		return refuse
	}
	defer g.memory.release(reserved)
	data, err := in.ReadAll()
	if err != nil {
		return err
	}
	if g.mayNeedOpening(env, data) {
		g.metrics.quarantineFull.Inc()
		g.log.Warn("refused at DATA: the quarantine is full", "queue_id", env.ID, "quarantine", why)
		return refuse
	}
	return nil
}

// unreachableHop returns a next hop of env's recipients that did not
// answer at its last attempt (hopHealth), or "".
func (g *Gateway) unreachableHop(env *spool.Envelope) string {
	cfg := g.Config()
	for _, r := range env.Recipients {
		domain, ok := policy.Domain(r.Addr)
		if !ok {
			continue // refused by the policy step, never delivered
		}
		next, _ := routeFor(cfg, domain)
		if key := (hop{nextHop: next, domain: domain}).key(); g.hops.down(key) {
			return key
		}
	}
	return ""
}

// hopHealth remembers the next hops that did not answer at all (no
// connection, no greeting, a lost connection: a result without a server
// reply) at their last attempt, for hopDownFor. While a hop is remembered so,
// messages for it are queued at once instead of relayed first: during an
// outage of the internal mail server, clients would otherwise each wait
// queue.relay_first_timeout. Any attempt that gets a reply (a 250 from a
// queue run, say) forgets it.
type hopHealth struct {
	mu    sync.Mutex
	until map[string]time.Time
}

// hopDownFor is how long a silent hop is bypassed: after it, one relay-first
// attempt tries it again.
const hopDownFor = time.Minute

func newHopHealth() *hopHealth { return &hopHealth{until: map[string]time.Time{}} }

// observe records the results of one attempt at key.
func (h *hopHealth) observe(key string, results []courier.Result) {
	silent, answered := false, false
	for _, r := range results {
		switch {
		case r.Remote:
			answered = true
		case r.Status == courier.Deferred:
			silent = true
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case answered:
		delete(h.until, key)
	case silent:
		h.until[key] = time.Now().Add(hopDownFor)
	}
}

// down reports whether key is being bypassed now.
func (h *hopHealth) down(key string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	t, ok := h.until[key]
	if ok && time.Now().After(t) {
		delete(h.until, key)
		return false
	}
	return ok
}

// newHardStop makes the context of every delivery attempt, cancelled when
// the shutdown grace is over (see Run).
func newHardStop() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}
