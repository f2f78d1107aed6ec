package console

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The history of the overview: the counters that /metrics serves, sampled
// every sampleEvery and kept for historyLength, so that the overview says
// what happened in the last hour and draws the last hours without a
// Prometheus server.
const (
	sampleEvery = time.Minute
	// historyLength is what the chart shows: a working morning.
	historyLength = 6 * time.Hour
	// maxSamples bounds the ring: one per minute over historyLength.
	maxSamples = int(historyLength/sampleEvery) + 1
	// chartBucket is the width of one bar of the chart.
	chartBucket = 15 * time.Minute
)

// series is one line of the overview: a name for the operator and the
// metric samples that make it (their sum).
type series struct {
	Name   string
	Help   string
	metric string
	label  string // label name to match, "" for none
	value  string // label value to match
}

// overviewSeries are the overview's counters, each read from the metric
// that Prometheus scrapes, so that the console and the dashboards agree.
var overviewSeries = []series{
	{"accepted", "messages answered 250", "smimegate_messages_received_total", "", ""},
	{"sealed", "messages encrypted to a partner", "smimegate_decisions_total", "action", "encrypt"},
	{"opened", "inbound messages decrypted", "smimegate_decisions_total", "action", "decrypt"},
	{"quarantined", "inbound messages that could not be opened", "smimegate_quarantined_total", "", ""},
	{"deferred", "delivery attempts answered 4xx or failed", "smimegate_delivery_attempts_total", "outcome", "deferred"},
	{"bounced", "recipients given up (5xx or queue lifetime)", "smimegate_delivery_attempts_total", "outcome", "bounced"},
}

// sample is the overview counters at one time.
type sample struct {
	at     time.Time
	values []float64 // in overviewSeries order
}

// history is a ring of samples.
type history struct {
	gather prometheus.Gatherer
	now    func() time.Time
	mu     sync.Mutex
	ring   []sample // oldest first, at most maxSamples
}

func newHistory(g prometheus.Gatherer, now func() time.Time) *history {
	return &history{gather: g, now: now}
}

// read gathers the overview counters now.
func (h *history) read() []float64 {
	out := make([]float64, len(overviewSeries))
	if h.gather == nil {
		return out
	}
	mfs, err := h.gather.Gather()
	if err != nil && len(mfs) == 0 {
		return out
	}
	byName := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		byName[mf.GetName()] = mf
	}
	for i, s := range overviewSeries {
		mf := byName[s.metric]
		if mf == nil {
			continue
		}
		for _, m := range mf.GetMetric() {
			if s.label != "" && !hasLabel(m, s.label, s.value) {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				out[i] += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[i] += m.GetGauge().GetValue()
			}
		}
	}
	return out
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue() == value
		}
	}
	return false
}

// record takes a sample at the clock's time.
func (h *history) record() {
	s := sample{at: h.now(), values: h.read()}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ring = append(h.ring, s)
	if len(h.ring) > maxSamples {
		h.ring = append(h.ring[:0], h.ring[len(h.ring)-maxSamples:]...)
	}
}

// run samples every sampleEvery until ctx ends.
func (h *history) run(ctx context.Context) {
	h.record()
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.record()
		}
	}
}

// Run keeps the overview's history until ctx ends.
func (s *Server) Run(ctx context.Context) { s.history.run(ctx) }

// overviewRow is one counter of the overview.
type overviewRow struct {
	Name, Help string
	Total      float64
	LastHour   float64
	// Since says over what the LastHour column counts when the history is
	// younger than an hour ("since 10:42").
	Since time.Time
	Bars  []bar
	Max   float64
}

// bar is one bucket of the chart.
type bar struct {
	Start time.Time
	Value float64
}

// overview returns the counters now, their increase over the last hour and
// per chartBucket over historyLength.
func (h *history) overview() []overviewRow {
	now := h.now()
	cur := h.read()
	h.mu.Lock()
	ring := append([]sample(nil), h.ring...)
	h.mu.Unlock()
	rows := make([]overviewRow, len(overviewSeries))
	// base is the latest sample at least an hour old, or the oldest one.
	base := -1
	for i, s := range ring {
		if !s.at.After(now.Add(-time.Hour)) {
			base = i
		}
	}
	if base < 0 && len(ring) > 0 {
		base = 0
	}
	nBuckets := int(historyLength / chartBucket)
	start := now.Truncate(chartBucket).Add(-time.Duration(nBuckets-1) * chartBucket)
	for i, s := range overviewSeries {
		r := overviewRow{Name: s.Name, Help: s.Help, Total: cur[i], LastHour: cur[i]}
		if base >= 0 {
			r.LastHour = delta(cur[i], ring[base].values[i])
			if ring[base].at.After(now.Add(-time.Hour)) {
				r.Since = ring[base].at
			}
		}
		// Each bar is the increase between the last sample before the
		// bucket and the last sample in it (or now, for the current one).
		r.Bars = make([]bar, nBuckets)
		for b := range r.Bars {
			r.Bars[b].Start = start.Add(time.Duration(b) * chartBucket)
		}
		prev, prevOK := 0.0, false
		for _, smp := range ring {
			b := int(smp.at.Sub(start) / chartBucket)
			if smp.at.Before(start) {
				prev, prevOK = smp.values[i], true
				continue
			}
			if b >= nBuckets {
				break
			}
			if prevOK {
				r.Bars[b].Value += delta(smp.values[i], prev)
			}
			prev, prevOK = smp.values[i], true
		}
		if prevOK {
			r.Bars[nBuckets-1].Value += delta(cur[i], prev)
		}
		for _, b := range r.Bars {
			r.Max = max(r.Max, b.Value)
		}
		rows[i] = r
	}
	return rows
}

// delta is a counter's increase; a counter that went down was reset (the
// registry is new), and then counts from zero.
func delta(now, before float64) float64 {
	if now < before {
		return now
	}
	return now - before
}
