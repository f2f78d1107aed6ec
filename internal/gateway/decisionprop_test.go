package gateway

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"smimegate/internal/cms"
	"smimegate/internal/smime"
)

// TestDecisionInvariants sends random messages (recipients in domains of
// every certificate state, a scripted outcome each, relay-first on or off,
// trusted or not) and checks, for every one, what must hold whatever the
// combination:
//   - a recipient whose domain has a usable certificate gets only
//     ciphertext that its key opens; one in a domain that is held gets
//     nothing; one in a plain or local domain gets the client's bytes;
//   - every recipient ends in exactly one place: delivered, pending in the
//     queue (its next hop deferred or gave no answer), held, reported in a
//     delivery status notification, or refused to the client;
//   - the client is refused only when the message was relayed first and
//     every recipient was refused for good (its server then reports it),
//     and a refused recipient gets no notification from us as well.
//
// The seed is fixed, so that a failure repeats.
func TestDecisionInvariants(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(17, 2026))
	domains := []string{validDomain, reqOKDomain, plainDomain, expiredDomain, requireDomain, ownDomain}
	outcomes := []outcome{delivered, deferred4xx, failed5xx, connLost, maybeDup, timedOut}
	for _, relayFirst := range []bool{true, false} {
		tb := newTable(t, tableOptions{relayFirst: relayFirst})
		for n := range 60 {
			script := map[string]outcome{}
			var to []string
			for i := range 1 + rng.IntN(4) {
				rcpt := fmt.Sprintf("r%d-%d-%t@%s", n, i, relayFirst, domains[rng.IntN(len(domains))])
				to = append(to, rcpt)
				script[rcpt] = outcomes[rng.IntN(len(outcomes))]
			}
			trusted := rng.IntN(2) == 0
			sender := "alice@example.org"
			if !trusted {
				sender = "someone@plain.test"
			}
			tb.fc.mu.Lock()
			tb.fc.script = script
			before := len(tb.fc.offers)
			tb.fc.mu.Unlock()
			sub := submission{trusted: trusted, from: sender, to: to, data: message(sender, to...)}
			r := tb.submit(sub)
			r.atReply -= before // the table's courier counts every message's
			desc := fmt.Sprintf("relay first %t, message %d from %s (trusted %t) to %v, script %v: told %q", relayFirst, n, sender, trusted, to, script, r.told)
			checkInvariants(t, tb, desc, sub, script, r, tb.fc.sent()[before:])
		}
	}
}

func checkInvariants(t *testing.T, tb *table, desc string, sub submission, script map[string]outcome, r received, offers []offer) {
	t.Helper()
	offered := map[string]int{}
	for _, o := range offers {
		for _, rcpt := range o.rcpts {
			offered[rcpt]++
			d := rcpt[strings.LastIndexByte(rcpt, '@')+1:]
			switch d {
			case validDomain, reqOKDomain:
				res := smime.Open(o.data, []cms.KeyPair{tb.keys[d]}, smime.OpenOptions{MaxSize: 1 << 20})
				if bytes.Contains(o.data, []byte(content)) || res.Outcome != smime.Opened || !bytes.Contains(res.Message, []byte(content)) {
					t.Errorf("%s: %s got something its key does not open to the content", desc, rcpt)
				}
			case expiredDomain, requireDomain:
				t.Errorf("%s: %s, held for encryption, was sent something", desc, rcpt)
			default:
				if !bytes.Equal(o.data, sub.data) {
					t.Errorf("%s: %s did not get the client's bytes", desc, rcpt)
				}
			}
		}
	}
	st := tb.stayed(r.id)
	refusedToClient := strings.HasPrefix(r.told, "5")
	allFailed := true
	for _, rcpt := range sub.to {
		d := rcpt[strings.LastIndexByte(rcpt, '@')+1:]
		if d == expiredDomain || d == requireDomain || script[rcpt] != failed5xx {
			allFailed = false
		}
	}
	switch {
	case refusedToClient && !(r.atReply > 0 && allFailed):
		t.Errorf("%s: refused to the client, though not relayed first with every recipient refused", desc)
	case !refusedToClient && r.told != "250":
		t.Errorf("%s: an unexpected reply", desc)
	case !refusedToClient && r.atReply > 0 && allFailed:
		t.Errorf("%s: every recipient was refused while the client waited, yet it was told 250", desc)
	}
	for _, rcpt := range sub.to {
		d := rcpt[strings.LastIndexByte(rcpt, '@')+1:]
		reported := slices.Contains(st.bounced, rcpt)
		queued := st.queued[rcpt]
		var want string
		switch {
		case d == expiredDomain || d == requireDomain:
			want = "held"
		case offered[rcpt] != 1:
			t.Errorf("%s: %s was offered %d times in one pass", desc, rcpt, offered[rcpt])
			continue
		case script[rcpt] == delivered:
			want = "delivered"
		case script[rcpt] == failed5xx && refusedToClient:
			want = "refused"
		case script[rcpt] == failed5xx:
			want = "reported"
		default:
			want = "pending"
		}
		var got []string
		if queued == "held" || queued == "pending" {
			got = append(got, queued)
		}
		if reported {
			got = append(got, "reported")
		}
		if len(got) == 0 {
			// Out of the queue without a report: delivered, or refused to
			// the client.
			got = append(got, map[bool]string{true: "refused", false: "delivered"}[refusedToClient])
		}
		if len(got) != 1 || got[0] != want {
			t.Errorf("%s: %s ended %v (queue state %q), want %s", desc, rcpt, got, queued, want)
		}
	}
}
