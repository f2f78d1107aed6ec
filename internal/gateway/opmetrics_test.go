package gateway

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"smimegate/internal/certstore"
	"smimegate/internal/config"
	"smimegate/internal/spool"
)

// TestOperatorMetrics: the oldest queued message's arrival comes from its
// id and disappears with an empty queue (an alert on time() minus it must
// not fire then); a partner with a [policy.partners] entry and no
// certificate has 0 usable certificates, with its require flag.
func TestOperatorMetrics(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, d := range []string{"own", "partners"} {
		os.Mkdir(filepath.Join(dir, d), 0o700)
	}
	logger := slog.New(slog.DiscardHandler)
	store, err := certstore.Load(certstore.Options{OwnDir: filepath.Join(dir, "own"), PartnersDir: filepath.Join(dir, "partners"), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(filepath.Join(dir, "state"), logger)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	cfg := config.Default()
	cfg.LocalDomains = []string{"example.org"}
	cfg.Policy.Partners = map[string]config.Partner{"nocert.example": {Require: true}, "plain.example": {}, "sub.example.org": {}}
	g := New(cfg, store, sp, Options{Logger: logger})
	want := `
# HELP smimegate_partner_usable_certificates Usable certificates that mail to a partner domain (one with a certificate or a [policy.partners] entry) is encrypted to; 0 means it is held (require="true") or sent in the clear.
# TYPE smimegate_partner_usable_certificates gauge
smimegate_partner_usable_certificates{domain="nocert.example",require="true"} 0
smimegate_partner_usable_certificates{domain="plain.example",require="false"} 0
`
	if err := testutil.GatherAndCompare(g.metrics.Registry, strings.NewReader(want), "smimegate_partner_usable_certificates", "smimegate_queue_oldest_message_timestamp_seconds"); err != nil {
		t.Error(err)
	}
	first, second := spool.NewID(), spool.NewID()
	g.sched.schedule(second, time.Now().Add(time.Hour))
	g.sched.schedule(first, time.Now().Add(time.Hour))
	at, _ := spool.IDTime(first)
	n, err := testutil.GatherAndCount(g.metrics.Registry, "smimegate_queue_oldest_message_timestamp_seconds")
	if err != nil || n != 1 {
		t.Fatalf("oldest message metric: %d samples, %v", n, err)
	}
	mfs, _ := g.metrics.Registry.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "smimegate_queue_oldest_message_timestamp_seconds" {
			if got := mf.GetMetric()[0].GetGauge().GetValue(); got != float64(at.UnixMicro())/1e6 {
				t.Errorf("oldest arrival %v, want %v", got, float64(at.UnixMicro())/1e6)
			}
		}
	}
}
