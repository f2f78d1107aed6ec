// Package gateway is the loop that moves a message from the spool through
// the policy step (classify, seal, open) to the courier, and handles what
// follows: retries, holds, bounces and the quarantine.
//
// Queued work happens after the 250, from the spool: the policy step reads
// the original, writes the per-domain versions and commits them with one
// atomic envelope update, so a crash at any point repeats work rather than
// losing it. A small message is first relayed before the 250, from memory,
// by the same code (relayfirst.go); whatever it cannot finish there goes to
// the spool before the 250 and continues as queued work.
package gateway

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"smimegate/internal/certstore"
	"smimegate/internal/cms"
	"smimegate/internal/config"
	"smimegate/internal/console"
	"smimegate/internal/courier"
	"smimegate/internal/smtp"
	"smimegate/internal/spool"
)

// Gateway is a running gateway's processing side (the receiver is smtpd).
type Gateway struct {
	log     *slog.Logger
	spool   *spool.Spool
	courier Courier
	metrics *Metrics
	sched   *scheduler

	state atomic.Pointer[state]

	wg      sync.WaitGroup
	workers int
	stopped atomic.Bool
	// hardStop ends every delivery attempt, the workers' and those relayed
	// first: cancelled once the shutdown grace is over.
	hardStop   context.Context
	cancelHard context.CancelFunc
	inFlight   atomic.Int64 // passes over a message in progress (workers' and relay-first)
	hops       *hopHealth   // next hops that did not answer lately (relay first bypasses them)
	memory     *memoryBudget
	verify     *verifyCache
	// decisions keeps the last decision log lines for the console.
	decisions *console.DecisionLog
}

// state is what a reload replaces as a whole: configuration and certificates.
type state struct {
	cfg     *config.Config
	certs   *certstore.Store
	ownKeys []cms.KeyPair
	// ownCerts are ownKeys' certificates (keyless ones included), for
	// smime.Inspect at SMTP time.
	ownCerts []*x509.Certificate
	// signerCerts are the certificates we hold, for signers that leave
	// theirs out of their signatures.
	signerCerts []*x509.Certificate
}

// Courier is what the gateway asks of the next hops: *courier.Courier in
// the running gateway, a scripted fake in the gateway's own tests, which
// drive its decisions without a network.
type Courier interface {
	Deliver(ctx context.Context, r courier.Route, m *courier.Message) []courier.Result
	Verify(ctx context.Context, r courier.Route, addr string) courier.Result
}

// Options are the parts New does not make itself.
type Options struct {
	Logger  *slog.Logger
	Metrics *Metrics // nil: a private registry
	Courier Courier
}

// New returns a gateway over an open spool. It does not start work: Run does.
func New(cfg *config.Config, certs *certstore.Store, sp *spool.Spool, opts Options) *Gateway {
	g := &Gateway{
		log:     opts.Logger,
		spool:   sp,
		courier: opts.Courier,
		metrics: opts.Metrics,
		sched:   newScheduler(),
		workers: cfg.Relay.MaxConnections + 2*runtime.GOMAXPROCS(0),
	}
	g.hardStop, g.cancelHard = newHardStop()
	g.hops = newHopHealth()
	g.memory = newMemoryBudget(cfg.Limits.MemoryBytes)
	g.verify = newVerifyCache()
	if g.log == nil {
		g.log = slog.Default()
	}
	g.decisions = console.NewDecisionLog()
	g.log = slog.New(g.decisions.Handler(g.log.Handler()))
	if g.metrics == nil {
		g.metrics = NewMetrics(nil)
	}
	g.setState(cfg, certs)
	g.metrics.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "smimegate_queue_messages", Help: "Messages in the queue (received or routed, not yet done)."},
		func() float64 { return float64(g.Pending()) }))
	g.metrics.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "smimegate_memory_reserved_bytes", Help: "Bytes of the memory budget (limits.memory) reserved by messages being processed."},
		func() float64 { return float64(g.memory.inUse()) }))
	g.metrics.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "smimegate_memory_budget_bytes", Help: "The memory budget for messages being processed (limits.memory)."},
		func() float64 { return float64(g.memory.size()) }))
	g.metrics.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "smimegate_own_certificates_without_key", Help: "Own domain certificates whose private key is not loaded (unreadable, wrong passphrase): mail encrypted to them waits. Alert on anything above 0."},
		func() float64 { return float64(len(g.Certs().OwnWithoutKey())) }))
	g.metrics.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "smimegate_quarantine_messages", Help: "Messages in the quarantine (bounded by quarantine.max_messages)."},
		func() float64 { n, _ := g.spool.QuarantineUsage(); return float64(n) }))
	g.metrics.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "smimegate_quarantine_bytes", Help: "Bytes the quarantine takes on disk (bounded by quarantine.max_bytes)."},
		func() float64 { _, b := g.spool.QuarantineUsage(); return float64(b) }))
	g.metrics.Registry.MustRegister(opCollector{g})
	g.metrics.Registry.MustRegister(newCertCollector(g))
	return g
}

func (g *Gateway) setState(cfg *config.Config, certs *certstore.Store) {
	g.state.Store(newState(cfg, certs))
}

// Reload replaces configuration and certificates for all work that starts
// from now on (SIGHUP). Work in flight finishes with what it started with.
func (g *Gateway) Reload(cfg *config.Config, certs *certstore.Store) {
	g.setState(cfg, certs)
	g.memory.resize(cfg.Limits.MemoryBytes)
	g.log.Info("reloaded", "own_certs", len(certs.Own()), "certs", len(certs.All()), "problems", len(certs.Problems()))
}

// Config returns the configuration in force.
func (g *Gateway) Config() *config.Config { return g.state.Load().cfg }

// Certs returns the certificate store in force.
func (g *Gateway) Certs() *certstore.Store { return g.state.Load().certs }

// Run schedules everything already in the spool, then works until ctx is
// cancelled; it then lets work in flight finish (within the configured
// shutdown grace, after which deliveries are interrupted and simply stay
// queued) and returns.
func (g *Gateway) Run(ctx context.Context) error {
	envs, err := g.spool.List()
	if err != nil {
		return fmt.Errorf("reading the queue: %w", err)
	}
	for _, env := range envs {
		g.sched.schedule(env.ID, nextDue(env))
	}
	g.log.Info("queue loaded", "messages", len(envs))

	// Workers get their own context, cancelled only after the grace period,
	// so that a delivery in flight is not cut at the first signal.
	tickCtx, cancelTick := context.WithCancel(ctx)
	defer cancelTick()
	go g.sched.tick(tickCtx)
	go g.expireQuarantine(tickCtx)
	go g.watchCertificates(tickCtx)
	for range g.workers {
		g.wg.Add(1)
		go g.worker(g.hardStop)
	}

	<-ctx.Done()
	g.stopped.Store(true)
	g.sched.shutdown()
	// Deliveries in flight, the workers' and those relayed first in SMTP
	// sessions (which the receiver's own shutdown waits for), may finish
	// within the grace; then they are cut, and their recipients stay
	// queued. Cutting them earlier, once the workers are idle, would turn
	// relay-first deliveries whose content is on its way into possible
	// duplicates.
	grace := g.Config().Queue.ShutdownGrace.D()
	time.AfterFunc(grace, func() {
		if g.inFlight.Load() > 0 {
			g.log.Warn("shutdown grace expired: interrupting deliveries in flight; they stay queued", "grace", grace)
		}
		g.cancelHard()
	})
	g.wg.Wait()
	return nil
}

func (g *Gateway) worker(ctx context.Context) {
	defer g.wg.Done()
	for {
		id, force, ok := g.sched.next()
		if !ok {
			return
		}
		g.inFlight.Add(1)
		next := g.work(ctx, id, force)
		g.inFlight.Add(-1)
		g.sched.done(id, next)
	}
}

// quarantineExpiryEvery is how often quarantined messages older than
// quarantine.lifetime are deleted.
const quarantineExpiryEvery = 10 * time.Minute

// expireQuarantine deletes quarantined messages past quarantine.lifetime,
// at the start and then every quarantineExpiryEvery, until ctx ends.
func (g *Gateway) expireQuarantine(ctx context.Context) {
	t := time.NewTicker(quarantineExpiryEvery)
	defer t.Stop()
	for {
		n, err := g.spool.ExpireQuarantine(time.Now().Add(-g.Config().Quarantine.Lifetime.D()))
		if n > 0 {
			g.log.Info("quarantined messages past quarantine.lifetime deleted", "messages", n, "lifetime", g.Config().Quarantine.Lifetime.D())
		}
		if err != nil {
			g.log.Error("expiring the quarantine", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Enqueue asks for immediate work on a message just committed to the spool
// (the receiver's OnQueued).
func (g *Gateway) Enqueue(id string) {
	g.metrics.received.Inc()
	g.sched.schedule(id, time.Now())
}

// Flush makes every queued message due now.
func (g *Gateway) Flush() int { return g.sched.flush() }

// Delete removes a message from the queue for good.
func (g *Gateway) Delete(id string) error {
	g.sched.forget(id)
	if err := g.spool.Remove(id); err != nil {
		return err
	}
	g.log.Info("deleted by operator", "queue_id", id)
	return nil
}

// Release moves a quarantined message back to the queue, where the inbound
// step runs again (after the operator installed the right key, say).
func (g *Gateway) Release(id string) error {
	if err := g.spool.Release(id); err != nil {
		return err
	}
	g.log.Info("released from quarantine", "queue_id", id)
	g.sched.schedule(id, time.Now())
	return nil
}

// Pending returns the number of messages in the queue.
func (g *Gateway) Pending() int { return g.sched.pending() }

// Check is the receiver's hook, run after DATA and before the 250: it
// refuses a message that policy.mixed_recipients = "reject" forbids, so
// that nothing of it is sent and the sender's own server bounces it.
func (g *Gateway) Check(env *spool.Envelope) error {
	st := g.state.Load()
	if st.cfg.Policy.MixedRecipients != "reject" {
		return nil
	}
	plan := classify(st, env)
	if !plan.Mixed() || planDeferred(plan) {
		// Discovery has not answered for some domain: whether the
		// message is mixed is decided in the queue (which bounces it
		// then), not guessed here.
		return nil
	}
	g.metrics.decisions.WithLabelValues("reject").Inc()
	g.log.Info("decision", "queue_id", env.ID, "direction", string(plan.Direction), "action", "reject", "reason", "mixed secured and unsecured recipients")
	return &smtp.Error{Code: 550, Enhanced: [3]int{5, 7, 1}, Message: mixedRejection(plan)}
}

// errGone marks a message that disappeared from the queue while we worked
// (deleted by the operator).
var errGone = errors.New("message no longer queued")
