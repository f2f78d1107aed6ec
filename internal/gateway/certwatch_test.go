package gateway

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"smimegate/internal/certstore"
	"smimegate/internal/config"
	"smimegate/internal/spool"
)

// certWatchStore makes a store with an own certificate that expires in 10
// days (its key beside it), a partner certificate that expires in 40 and
// one that expired, as of now.
func certWatchStore(t *testing.T, now time.Time) *certstore.Store {
	t.Helper()
	dir := t.TempDir()
	own, part := filepath.Join(dir, "own"), filepath.Join(dir, "partners")
	for _, d := range []string{own, part} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	gen := func(domain string, days int, issued time.Time) *certstore.Generated {
		g, err := certstore.Generate(certstore.KeygenOptions{Domains: []string{domain}, KeyType: "p256", Days: days, Now: func() time.Time { return issued }})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	o := gen("example.org", 30, now.Add(-20*24*time.Hour))
	os.WriteFile(filepath.Join(own, "example.org.crt"), o.CertPEM, 0o600)
	os.WriteFile(filepath.Join(own, "example.org.key"), o.KeyPEM, 0o600)
	os.WriteFile(filepath.Join(part, "example.net.crt"), gen("example.net", 40, now).CertPEM, 0o600)
	os.WriteFile(filepath.Join(part, "old.test.crt"), gen("old.test", 10, now.Add(-20*24*time.Hour)).CertPEM, 0o600)
	s, err := certstore.Load(certstore.Options{OwnDir: own, PartnersDir: part, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCertWatchWarnsDaily: a certificate within 30 days of its expiry (or
// past it) is warned about once a day, not at every look, and one with
// longer to go is not. The clock is moved by hand.
func TestCertWatchWarnsDaily(t *testing.T) {
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	store := certWatchStore(t, now)
	var logs lockedBuffer
	clock := now
	w := newCertWatch(slog.New(slog.NewTextHandler(&logs, nil)), func() time.Time { return clock })
	count := func(s string) int { return strings.Count(logs.String(), s) }

	w.check(store.All())
	if count("own certificate expires soon") != 1 || count("partner certificate has expired") != 1 || count("example.net") != 0 {
		t.Fatalf("first look:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "days_left=10") {
		t.Errorf("the warning should say how many days are left:\n%s", logs.String())
	}
	clock = clock.Add(12 * time.Hour)
	w.check(store.All())
	if count("own certificate expires soon") != 1 {
		t.Fatalf("warned again within a day:\n%s", logs.String())
	}
	clock = clock.Add(12 * time.Hour)
	w.check(store.All())
	if count("own certificate expires soon") != 2 || count("partner certificate has expired") != 2 {
		t.Fatalf("not warned again after a day:\n%s", logs.String())
	}
}

// TestCertificateMetrics: every certificate is a series of its notAfter
// and of whether it is usable, labelled by domain, fingerprint, role and
// source.
func TestCertificateMetrics(t *testing.T) {
	now := time.Now()
	store := certWatchStore(t, now)
	sp, err := spool.Open(t.TempDir(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	g := New(config.Default(), store, sp, Options{Logger: slog.New(slog.DiscardHandler)})
	families, err := g.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.Metric {
			var labels []string
			for _, l := range m.Label {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			got[f.GetName()+"{"+strings.Join(labels, ",")+"}"] = m.GetGauge().GetValue()
		}
	}
	var usable, notAfter int
	for k, v := range got {
		switch {
		case strings.HasPrefix(k, "smimegate_certificate_usable{domain=old.test,") && strings.Contains(k, "role=partner,source=file"):
			usable++
			if v != 0 {
				t.Errorf("%s = %v; an expired certificate is not usable", k, v)
			}
		case strings.HasPrefix(k, "smimegate_certificate_usable{domain=example.org,") && strings.Contains(k, "role=own"):
			usable++
			if v != 1 {
				t.Errorf("%s = %v", k, v)
			}
		case strings.HasPrefix(k, "smimegate_certificate_not_after_timestamp_seconds{domain=example.net,"):
			notAfter++
			if want := float64(now.Add(40 * 24 * time.Hour).Unix()); v != want {
				t.Errorf("%s = %v, want %v", k, v, want)
			}
		}
	}
	if usable != 2 || notAfter != 1 || got["smimegate_own_certificates_revoked{}"] != 0 {
		t.Errorf("series missing: %v", got)
	}
}
