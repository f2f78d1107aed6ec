package gateway

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"smimegate/internal/certstore"
	"smimegate/internal/cms"
)

// What happens to a message after its first pass: the decisions that a
// later pass, a reload or the operator make.

// reloadStore loads the table's certificate directories again and gives
// the gateway the new store, as SIGHUP does.
func (tb *table) reloadStore() {
	tb.t.Helper()
	store, err := certstore.Load(certstore.Options{OwnDir: filepath.Join(tb.dir, "own"), PartnersDir: filepath.Join(tb.dir, "partners")})
	if err != nil {
		tb.t.Fatal(err)
	}
	tb.g.Reload(tb.cfg, store)
}

// TestRelayFirstBypassesSilentHop: after a next hop gave no answer at all,
// the next client is not made to wait for it: its message is committed
// before the 250 and delivered from the queue.
func TestRelayFirstBypassesSilentHop(t *testing.T) {
	t.Parallel()
	const bob = "bob@valid.test"
	tb := newTable(t, tableOptions{relayFirst: true, script: map[string]outcome{bob: connLost}})
	first := tb.submit(from(true, "alice@example.org", bob)(tb))
	if first.told != "250" || first.atReply != 1 {
		t.Fatalf("first message: told %q after %d attempt(s), want 250 after its relay-first attempt", first.told, first.atReply)
	}
	tb.fc.mu.Lock()
	tb.fc.script[bob] = delivered
	tb.fc.mu.Unlock()
	second := tb.submit(from(true, "alice@example.org", bob)(tb))
	if second.told != "250" || second.atReply != 1 {
		t.Fatalf("second message: told %q after %d attempt(s) in all; want 250 with no relay-first attempt (the hop is down)", second.told, second.atReply)
	}
	if got := len(tb.fc.sent()); got != 2 {
		t.Fatalf("%d attempts; want the second message delivered from the queue", got)
	}
	if st := tb.stayed(second.id); len(st.queued) != 0 {
		t.Errorf("second message still queued: %v", st.queued)
	}
	if st := tb.stayed(first.id); st.queued[bob] != "pending" {
		t.Errorf("first message: %v, want it pending", st.queued)
	}
}

// TestHeldNeverLeavesInTheClear: a message held for encryption (its
// partner's only certificate expired) stays held when the certificate is
// removed, so that the domain would now be passed in the clear; only the
// operator's release-plain sends it so.
func TestHeldNeverLeavesInTheClear(t *testing.T) {
	t.Parallel()
	const rcpt = "x@expired.test"
	tb := newTable(t, tableOptions{relayFirst: true})
	r := tb.submit(from(true, "alice@example.org", rcpt)(tb))
	if st := tb.stayed(r.id); st.queued[rcpt] != "held" {
		t.Fatalf("not held: %v", st.queued)
	}
	if err := os.Remove(filepath.Join(tb.dir, "partners", expiredDomain+".crt")); err != nil {
		t.Fatal(err)
	}
	tb.reloadStore()
	tb.g.work(context.Background(), r.id, true)
	st := tb.stayed(r.id)
	if st.queued[rcpt] != "held" || !strings.Contains(st.lastError[rcpt], "release-plain") {
		t.Fatalf("after the certificate was removed: %v (%v); want it still held, naming release-plain", st.queued, st.lastError)
	}
	if n := len(tb.fc.sent()); n != 0 {
		t.Fatalf("%d transaction(s) sent for a held message", n)
	}
	if n, err := tb.g.ReleasePlain(r.id); err != nil || n != 1 {
		t.Fatalf("release-plain: %d, %v", n, err)
	}
	tb.g.work(context.Background(), r.id, false)
	tb.checkLeft(message("alice@example.org", rcpt), []byte(content), []left{{to: []string{rcpt}, how: plain}})
	if st := tb.stayed(r.id); len(st.queued) != 0 {
		t.Errorf("still queued after release-plain and delivery: %v", st.queued)
	}
}

// TestHeldSealedWhenCertificateArrives: a message held for a require =
// true partner is sealed to the certificate installed later, and leaves.
func TestHeldSealedWhenCertificateArrives(t *testing.T) {
	t.Parallel()
	const rcpt = "x@required.test"
	tb := newTable(t, tableOptions{relayFirst: true})
	r := tb.submit(from(true, "alice@example.org", rcpt)(tb))
	if st := tb.stayed(r.id); st.queued[rcpt] != "held" {
		t.Fatalf("not held: %v", st.queued)
	}
	g, err := certstore.Generate(certstore.KeygenOptions{Domains: []string{requireDomain}, KeyType: "p256", Days: 30})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(tb.dir, "partners", requireDomain+".crt"), g.CertPEM)
	tb.keys[requireDomain] = cms.KeyPair{Cert: g.Cert, Key: g.Key}
	tb.reloadStore()
	tb.g.work(context.Background(), r.id, true)
	tb.checkLeft(nil, []byte(content), []left{{to: []string{rcpt}, how: sealedFor, domain: requireDomain}})
	if st := tb.stayed(r.id); len(st.queued) != 0 {
		t.Errorf("still queued: %v", st.queued)
	}
}

// TestHoldLifetimeBounces: a held message whose hold lifetime is over is
// bounced to its sender, never sent. The arrival is moved back instead of
// the clock.
func TestHoldLifetimeBounces(t *testing.T) {
	t.Parallel()
	const rcpt = "x@required.test"
	tb := newTable(t, tableOptions{relayFirst: true})
	r := tb.submit(from(true, "alice@example.org", rcpt)(tb))
	env, err := tb.sp.Load(r.id)
	if err != nil {
		t.Fatal(err)
	}
	env.Arrival = env.Arrival.Add(-tb.cfg.Queue.HoldLifetime.D() - time.Minute)
	if err := tb.sp.Update(env); err != nil {
		t.Fatal(err)
	}
	tb.g.work(context.Background(), r.id, true)
	if n := len(tb.fc.sent()); n != 0 {
		t.Fatalf("%d transaction(s) sent for a held message", n)
	}
	st := tb.stayed(r.id)
	if len(st.queued) != 0 || len(st.bounced) != 1 || st.bounced[0] != rcpt {
		t.Fatalf("queued %v, bounced %v; want it gone and %s reported", st.queued, st.bounced, rcpt)
	}
}
