package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the gateway's Prometheus counters, served on /metrics.
type Metrics struct {
	Registry    *prometheus.Registry
	received    prometheus.Counter
	decisions   *prometheus.CounterVec
	deliveries  *prometheus.CounterVec
	quarantined prometheus.Counter
	bounces     prometheus.Counter
	relayFirst  *prometheus.CounterVec
	// ownKeyUnavailable counts messages encrypted to one of our
	// certificates whose private key could not be loaded: they wait in the
	// queue, and this is what an alert should watch.
	ownKeyUnavailable prometheus.Counter
	// memoryWaits counts passes that had to wait for limits.memory.
	memoryWaits prometheus.Counter
	// quarantineFull counts messages that needed the quarantine while it
	// was full (kept in the queue) or were refused at DATA because of it.
	quarantineFull prometheus.Counter
	// verifications counts recipient verifications (smtp.verify_recipients) by result.
	verifications *prometheus.CounterVec
	// signatureMetrics are the domain signature counters (signature.go).
	signatureMetrics
}

// NewMetrics registers the gateway's metrics with reg (a new registry with
// the Go and process collectors when nil).
func NewMetrics(reg *prometheus.Registry) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &Metrics{
		Registry: reg,
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smimegate_messages_received_total", Help: "Messages accepted (answered 250): queued, or relayed first."}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smimegate_decisions_total", Help: "Policy decisions by action (encrypt, decrypt, pass, hold, quarantine, reject)."}, []string{"action"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smimegate_delivery_attempts_total", Help: "Recipient delivery attempts by outcome (delivered, deferred, bounced)."}, []string{"outcome"}),
		quarantined: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smimegate_quarantined_total", Help: "Inbound messages that could not be opened and were quarantined."}),
		bounces: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "smimegate_bounces_total", Help: "Delivery status notifications queued."}),
		relayFirst: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smimegate_relay_first_total", Help: "Messages relayed first (queue.relay_first) by outcome: relayed (every recipient done, nothing stored), spooled (committed for what was left), refused (every next hop refused it for good; the client got the refusal), skipped (queued at once: a next hop of it did not answer at its last attempt), encrypted_to_us (queued at once: inbound mail to be opened is committed before its 250, whatever it decrypts to), memory (queued at once: the memory budget was spent), discovery (queued at once: SMIMEA discovery had no answer for a domain yet)."}, []string{"outcome"}),
	}
	m.ownKeyUnavailable = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "smimegate_own_key_unavailable_total", Help: "Inbound messages encrypted to one of our certificates whose private key is not loaded (unreadable file, wrong passphrase): deferred, never passed."})
	m.memoryWaits = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "smimegate_memory_waits_total", Help: "Message passes that waited for the memory budget (limits.memory), or were queued instead of relayed first because of it."})
	m.quarantineFull = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "smimegate_quarantine_full_total", Help: "Messages that needed the quarantine while it was at quarantine.max_messages or max_bytes: refused at DATA with 452 4.3.1, or kept in the queue."})
	m.verifications = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "smimegate_recipient_verifications_total", Help: "Recipient verifications at RCPT time (smtp.verify_recipients) by result: accepted, refused, tempfail (the next hop could not answer), cached."}, []string{"result"})
	reg.MustRegister(m.received, m.decisions, m.deliveries, m.quarantined, m.bounces, m.relayFirst, m.ownKeyUnavailable, m.memoryWaits, m.quarantineFull, m.verifications)
	m.signatureMetrics = newSignatureMetrics(reg)
	return m
}
