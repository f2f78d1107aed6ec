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
			Name: "smimegate_relay_first_total", Help: "Messages relayed first (queue.relay_first) by outcome: relayed (every recipient done, nothing stored), spooled (committed for what was left), refused (every next hop refused it for good; the client got the refusal), skipped (queued at once: a next hop of it did not answer at its last attempt)."}, []string{"outcome"}),
	}
	reg.MustRegister(m.received, m.decisions, m.deliveries, m.quarantined, m.bounces, m.relayFirst)
	return m
}
