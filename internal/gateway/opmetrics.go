package gateway

import (
	"maps"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"smimegate/internal/spool"
)

// The metrics the alert rules of dist/prometheus watch beside the
// counters: how old the queue's oldest message is, and which partner
// domains have no certificate that mail could be encrypted to.
var (
	queueOldestDesc = prometheus.NewDesc("smimegate_queue_oldest_message_timestamp_seconds",
		"When the oldest message in the queue arrived (Unix time); absent while the queue is empty. Alert on time() minus this.", nil, nil)
	partnerCertsDesc = prometheus.NewDesc("smimegate_partner_usable_certificates",
		"Usable certificates that mail to a partner domain (one with a certificate or a [policy.partners] entry) is encrypted to; 0 means it is held (require=\"true\") or sent in the clear.",
		[]string{"domain", "require"}, nil)
)

// opCollector computes those metrics at each scrape: from the scheduler's
// index (queue ids carry their arrival time) and from the certificates in
// memory, so a scrape reads no file.
type opCollector struct{ g *Gateway }

func (c opCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueOldestDesc
	ch <- partnerCertsDesc
}

func (c opCollector) Collect(ch chan<- prometheus.Metric) {
	if id := c.g.sched.oldest(); id != "" {
		if t, ok := spool.IDTime(id); ok {
			ch <- prometheus.MustNewConstMetric(queueOldestDesc, prometheus.GaugeValue, float64(t.UnixMicro())/1e6)
		}
	}
	st := c.g.state.Load()
	domains := map[string]bool{}
	for d := range st.cfg.Policy.Partners {
		domains[d] = true
	}
	for _, cert := range st.certs.All() {
		if !cert.Own {
			for _, d := range cert.Domains {
				domains[d] = true
			}
		}
	}
	for _, d := range slices.Sorted(maps.Keys(domains)) {
		if st.cfg.IsLocal(d) {
			continue
		}
		m := st.certs.Lookup(d)
		ch <- prometheus.MustNewConstMetric(partnerCertsDesc, prometheus.GaugeValue, float64(len(m.Certs)), d, strconv.FormatBool(st.cfg.PartnerPolicy(d).Require))
	}
}

// oldest returns the smallest queued id, which is the oldest message: ids
// sort by creation time (spool.NewID). "" when the queue is empty.
func (s *scheduler) oldest() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var min string
	consider := func(id string) {
		if min == "" || id < min {
			min = id
		}
	}
	for id := range s.due {
		consider(id)
	}
	for id := range s.busy {
		consider(id)
	}
	for _, id := range s.ready {
		consider(id)
	}
	return min
}
