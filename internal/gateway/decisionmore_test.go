package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"smimegate/internal/spool"
)

// The decisions around the table's rows: what limits (memory, the
// quarantine's quota, the queue lifetime, a message that kills its pass)
// make of a message.

// TestRelayFirstFallsBackWhenMemoryIsSpent: with limits.memory spent, a
// small message is not relayed first (which would hold the client and more
// memory): it is committed before the 250 and delivered from the queue
// once memory is free.
func TestRelayFirstFallsBackWhenMemoryIsSpent(t *testing.T) {
	t.Parallel()
	tb := newTable(t, tableOptions{relayFirst: true})
	held, ok := tb.g.memory.tryAcquire(tb.g.memory.size())
	if !ok {
		t.Fatal("cannot take the whole budget")
	}
	in := tb.sp.NewMessageInMemory(int(tb.cfg.Queue.RelayFirstMaxBytes))
	data := message("alice@example.org", "bob@valid.test")
	in.Write(data)
	env := &spool.Envelope{ID: in.ID, Sender: "alice@example.org", Recipients: []spool.Recipient{{Addr: "bob@valid.test"}}, Trusted: true,
		Client: "192.0.2.1:4711", Arrival: time.Now().UTC(), Size: in.Size(), Stage: spool.StageReceived}
	if err := tb.g.Handoff(env, in); err != nil {
		t.Fatalf("told %s, want 250", replyOf(err))
	}
	if n := len(tb.fc.sent()); n != 0 {
		t.Fatalf("%d transaction(s) relayed first with the memory budget spent", n)
	}
	if st := tb.stayed(env.ID); st.queued["bob@valid.test"] != "waiting" {
		t.Fatalf("not committed as received: %v", st.queued)
	}
	tb.g.memory.release(held)
	tb.g.work(context.Background(), env.ID, false)
	tb.checkLeft(data, []byte(content), []left{{to: []string{"bob@valid.test"}, how: sealedFor, domain: validDomain}})
}

// TestQuarantineFullRefusesWhatMayNeedIt: at quarantine.max_messages,
// mail that the inbound step would open (it may fail to) or quarantine is
// refused with 452 4.3.1, the same reply whether or not it would decrypt;
// mail that needs no opening still flows.
func TestQuarantineFullRefusesWhatMayNeedIt(t *testing.T) {
	t.Parallel()
	tb := newTable(t, tableOptions{relayFirst: true, extra: "\n[quarantine]\nmax_messages = 1\n"})
	if r := tb.submit(submission{from: "mallory@plain.test", to: []string{"bob@example.org"}, data: garbled()}); r.told != "250" || tb.stayed(r.id).quarantined == "" {
		t.Fatalf("the first undecryptable message: told %s, quarantine %+v", r.told, tb.stayed(r.id))
	}
	for name, sub := range map[string]submission{
		"decryptable":   sealedTo(false, "partner@valid.test", ownDomain, "bob@example.org")(tb),
		"undecryptable": {from: "mallory@plain.test", to: []string{"bob@example.org"}, data: garbled()},
	} {
		if r := tb.submit(sub); !strings.HasPrefix(r.told, "452 4.3.1 ") {
			t.Errorf("%s, with the quarantine full: told %q, want 452 4.3.1", name, r.told)
		}
	}
	if n := len(tb.fc.sent()); n != 0 {
		t.Fatalf("%d transaction(s) sent", n)
	}
	if r := tb.submit(from(false, "mallory@plain.test", "bob@example.org")(tb)); r.told != "250" || len(tb.fc.sent()) != 1 {
		t.Errorf("plain mail with the quarantine full: told %q, %d sent; want it relayed", r.told, len(tb.fc.sent()))
	}
}

// TestQueueLifetimeBouncesDeferred: a recipient still deferred when the
// queue lifetime is over is bounced with 5.4.7 (RFC 3463: delivery time
// expired) and the next hop's last reply. The arrival is moved back
// instead of the clock.
func TestQueueLifetimeBouncesDeferred(t *testing.T) {
	t.Parallel()
	const bob = "bob@valid.test"
	tb := newTable(t, tableOptions{relayFirst: true, script: map[string]outcome{bob: deferred4xx}})
	r := tb.submit(from(true, "alice@example.org", bob)(tb))
	env, err := tb.sp.Load(r.id)
	if err != nil {
		t.Fatal(err)
	}
	env.Arrival = env.Arrival.Add(-tb.cfg.Queue.Lifetime.D() - time.Minute)
	if err := tb.sp.Update(env); err != nil {
		t.Fatal(err)
	}
	tb.g.work(context.Background(), r.id, true)
	st := tb.stayed(r.id)
	if len(st.queued) != 0 || len(st.bounced) != 1 || st.bounced[0] != bob {
		t.Fatalf("queued %v, bounced %v; want it gone and %s reported", st.queued, st.bounced, bob)
	}
	all, _ := tb.sp.List()
	for _, e := range all {
		if e.Sender != "" {
			continue
		}
		dsn, _ := tb.sp.ReadData(e.ID, "")
		if !strings.Contains(string(dsn), "Status: 5.4.7") || !strings.Contains(string(dsn), "451 4.3.0 partner's server busy") {
			t.Errorf("the report does not say 5.4.7 with the last reply:\n%s", dsn)
		}
	}
}

// TestPoisonMessageIsQuarantined: a message whose processing ended with
// the death of the gateway twice (its work marker outlived two passes) is
// quarantined, not processed a third time.
func TestPoisonMessageIsQuarantined(t *testing.T) {
	t.Parallel()
	tb := newTable(t, tableOptions{})
	in, err := tb.sp.NewMessage()
	if err != nil {
		t.Fatal(err)
	}
	in.Write(message("mallory@plain.test", "bob@example.org"))
	env := &spool.Envelope{Sender: "mallory@plain.test", Recipients: []spool.Recipient{{Addr: "bob@example.org"}}, Client: "192.0.2.1:4711",
		Arrival: time.Now().UTC(), Stage: spool.StageReceived}
	if err := in.Commit(env); err != nil {
		t.Fatal(err)
	}
	for range poisonStarts {
		if _, err := tb.sp.BeginWork(env.ID); err != nil {
			t.Fatal(err)
		}
	}
	tb.g.work(context.Background(), env.ID, false)
	if n := len(tb.fc.sent()); n != 0 {
		t.Fatalf("%d transaction(s) sent for a message that killed its passes", n)
	}
	if st := tb.stayed(env.ID); !strings.Contains(st.quarantined, "stopped the gateway") {
		t.Fatalf("not quarantined: %+v", st)
	}
}

// TestVerifyRecipientDecisions: smtp.verify_recipients asks the inbound
// next hop at RCPT time; a refusal is the client's 550 with the next hop's
// status, a next hop that cannot answer now is 450 4.1.1 and not
// remembered, and both answers are remembered for their TTLs.
func TestVerifyRecipientDecisions(t *testing.T) {
	t.Parallel()
	tb := newTable(t, tableOptions{script: map[string]outcome{"gone@example.org": failed5xx, "busy@example.org": deferred4xx},
		extra: "\n[smtp]\nverify_recipients = true\n"})
	ctx := context.Background()
	for _, c := range []struct{ addr, want string }{
		{"known@example.org", "250"},
		{"gone@example.org", "550 5.1.1 Recipient address rejected: undeliverable address: 550 5.1.1 user unknown"},
		{"busy@example.org", "450 4.1.1 "},
	} {
		if got := replyOf(tb.g.VerifyRecipient(ctx, c.addr)); !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: %q, want %q", c.addr, got, c.want)
		}
	}
	// The next hop changes its mind: the remembered answers stand, the
	// temporary failure is asked again.
	tb.fc.mu.Lock()
	tb.fc.script = map[string]outcome{"known@example.org": failed5xx}
	asked := tb.fc.verifies
	tb.fc.mu.Unlock()
	for _, c := range []struct{ addr, want string }{
		{"known@example.org", "250"},
		{"gone@example.org", "550 5.1.1 "},
		{"busy@example.org", "250"},
	} {
		if got := replyOf(tb.g.VerifyRecipient(ctx, c.addr)); !strings.HasPrefix(got, c.want) {
			t.Errorf("asked again, %s: %q, want %q", c.addr, got, c.want)
		}
	}
	if n := tb.fc.verifies - asked; n != 1 {
		t.Errorf("%d probe(s) for the second round, want 1 (only the one not remembered)", n)
	}
}
