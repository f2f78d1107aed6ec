package gateway

import (
	"context"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"smimegate/internal/certstore"
)

// The most common outage of an encryption gateway is a certificate that
// expired unnoticed, the most common risk one that was revoked and is
// still used. So every certificate in use is a metric (its notAfter and
// whether it is usable, for alerts), and a certificate within 30 days of
// its expiry, or one of ours that is revoked, is a warning in the log once
// a day.

// certWatchEvery is how often the certificates are looked at for warnings.
const certWatchEvery = 10 * time.Minute

// certWarnEvery is how often one certificate's warning is repeated.
const certWarnEvery = 24 * time.Hour

// certificates returns every certificate of the store in force: own,
// partner and discovered ones.
func (g *Gateway) certificates() []*certstore.Cert {
	s := g.Certs()
	return append(s.All(), s.Discovered()...)
}

// watchCertificates logs the warnings of certWatch until ctx ends.
func (g *Gateway) watchCertificates(ctx context.Context) {
	w := newCertWatch(g.log, time.Now)
	t := time.NewTicker(certWatchEvery)
	defer t.Stop()
	for {
		w.check(g.certificates())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// certWatch remembers when each certificate was last warned about.
type certWatch struct {
	log    *slog.Logger
	now    func() time.Time
	warned map[string]time.Time
}

func newCertWatch(log *slog.Logger, now func() time.Time) *certWatch {
	return &certWatch{log: log, now: now, warned: map[string]time.Time{}}
}

// check warns, at most once per certWarnEvery and certificate, about each
// certificate that expires within certstore.ExpiresSoonWindow (or has
// expired), and about each of ours that is revoked.
func (w *certWatch) check(certs []*certstore.Cert) {
	now := w.now()
	seen := map[string]bool{}
	due := func(key string) bool {
		seen[key] = true
		last, ok := w.warned[key]
		if ok && now.Sub(last) < certWarnEvery {
			return false
		}
		w.warned[key] = now
		return true
	}
	for _, c := range certs {
		role := certRole(c)
		attrs := []any{"role", role, "domains", strings.Join(c.Domains, ","), "cert_sha256", c.Fingerprint, "source", c.Source, "file", c.File,
			"not_after", c.X509.NotAfter.UTC().Format(time.RFC3339)}
		left := c.X509.NotAfter.Sub(now)
		if left < certstore.ExpiresSoonWindow && due(c.Fingerprint+"/"+role+"/expiry") {
			days := int(math.Floor(left.Hours() / 24))
			switch {
			case left <= 0 && c.Own:
				w.log.Warn("own certificate has expired: partners can no longer encrypt to it; make and publish its successor (smimegate keygen)", attrs...)
			case left <= 0:
				w.log.Warn("partner certificate has expired: mail to its domain is held; ask the partner for its successor", attrs...)
			case c.Own:
				w.log.Warn("own certificate expires soon: make and publish its successor (smimegate keygen writes it beside the old one)", append(attrs, "days_left", days)...)
			default:
				w.log.Warn("partner certificate expires soon: ask the partner for its successor", append(attrs, "days_left", days)...)
			}
		}
		if c.Own && c.Status == certstore.Revoked && due(c.Fingerprint+"/revoked") {
			w.log.Warn("own certificate is revoked: partners that check revocation no longer encrypt to it; its key still opens mail encrypted to it", append(attrs, "reason", c.Reason)...)
		}
	}
	for k := range w.warned {
		if !seen[k] {
			delete(w.warned, k)
		}
	}
}

func certRole(c *certstore.Cert) string {
	if c.Own {
		return "own"
	}
	return "partner"
}

// certCollector serves the certificate metrics, computed at each scrape
// from the store in force.
type certCollector struct {
	g                         *Gateway
	notAfter, usable, revoked *prometheus.Desc
	mu                        sync.Mutex
}

func newCertCollector(g *Gateway) *certCollector {
	labels := []string{"domain", "fingerprint", "role", "source"}
	return &certCollector{
		g: g,
		notAfter: prometheus.NewDesc("smimegate_certificate_not_after_timestamp_seconds",
			"The notAfter of each domain certificate (own, partner, discovered), as a Unix time: alert well before it.", labels, nil),
		usable: prometheus.NewDesc("smimegate_certificate_usable",
			"1 if the certificate is usable now (a partner's: mail is encrypted to it; an own one: valid, not revoked, with its key), else 0.", labels, nil),
		revoked: prometheus.NewDesc("smimegate_own_certificates_revoked",
			"Own certificates that their issuer says are revoked (their key still opens mail): alert on anything above 0.", nil, nil),
	}
}

func (cc *certCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- cc.notAfter
	ch <- cc.usable
	ch <- cc.revoked
}

func (cc *certCollector) Collect(ch chan<- prometheus.Metric) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	seen := map[[4]string]bool{}
	revoked := 0
	for _, c := range cc.g.certificates() {
		if c.Own && c.Status == certstore.Revoked {
			revoked++
		}
		usable := 0.0
		if c.Usable() && (!c.Own || c.Key != nil) {
			usable = 1
		}
		domains := c.Domains
		if len(domains) == 0 {
			domains = []string{""}
		}
		for _, d := range domains {
			l := [4]string{d, c.Fingerprint, certRole(c), c.Source}
			if seen[l] {
				continue
			}
			seen[l] = true
			ch <- prometheus.MustNewConstMetric(cc.notAfter, prometheus.GaugeValue, float64(c.X509.NotAfter.Unix()), l[:]...)
			ch <- prometheus.MustNewConstMetric(cc.usable, prometheus.GaugeValue, usable, l[:]...)
		}
	}
	ch <- prometheus.MustNewConstMetric(cc.revoked, prometheus.GaugeValue, float64(revoked))
}
