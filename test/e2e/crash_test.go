package e2e

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"regexp"
	"sync"
	"testing"
	"time"
)

// TestCrashNeverLosesAcknowledgedMail sends messages over many sessions to a
// gateway that seals them for a partner, kills it with SIGKILL at random
// moments (while receiving, sealing and delivering), restarts it, and
// checks that every message that got a 250 arrives at the next hop, sealed.
func TestCrashNeverLosesAcknowledgedMail(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	transit, inner := startSink(t), startSink(t)
	org := startGateway(t, gatewayOptions{domain: "example.org", own: []string{"example.org"}, partners: []string{"example.net"}, outbound: transit.Addr, inbound: inner.Addr})

	const sessions = 20
	const kills = 4
	var mu sync.Mutex
	acked := map[string]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("crash-%d-%d", s, n)
				msg := fmt.Sprintf("From: <alice@example.org>\r\nTo: <bob@example.net>\r\nSubject: crash %s\r\nMessage-ID: <%s@e2e.test>\r\n\r\n%s\r\n%s\r\n", id, id, secretLine, bytes.Repeat([]byte("x"), 2000))
				if err := send(org.smtp, "alice@example.org", []string{"bob@example.net"}, msg); err != nil {
					time.Sleep(20 * time.Millisecond) // the gateway is down: try the next one
					continue
				}
				mu.Lock()
				acked[id] = true
				mu.Unlock()
			}
		}()
	}
	// Each kill comes at a random moment after some more messages were
	// acknowledged, so that every round has mail in all stages (being
	// received, sealed, delivered). Waiting for counts rather than for
	// times keeps the test meaningful on a slow or loaded machine.
	const perRound = 25
	waitAcked := func(n int) {
		deadline := time.Now().Add(2 * time.Minute)
		for len(snapshot(&mu, acked)) < n {
			if time.Now().After(deadline) {
				t.Fatalf("only %d of %d messages acknowledged in two minutes", len(snapshot(&mu, acked)), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for k := range kills {
		waitAcked((k + 1) * perRound)
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		org.kill()
		t.Logf("kill %d: %d acknowledged, %d at the next hop", k+1, len(snapshot(&mu, acked)), transit.Count())
		org.start()
	}
	waitAcked((kills + 1) * perRound)
	close(stop)
	wg.Wait()
	want := snapshot(&mu, acked)

	idRE := regexp.MustCompile(`(?m)^Message-ID: <(crash-[0-9]+-[0-9]+)@e2e\.test>`)
	deadline := time.Now().Add(90 * time.Second)
	for {
		seen := map[string]bool{}
		for _, m := range transit.Messages() {
			if bytes.Contains(m.Data, []byte(secretLine)) {
				t.Fatal("a message reached the next hop in the clear")
			}
			if sm := idRE.FindSubmatch(m.Data); sm != nil {
				seen[string(sm[1])] = true
			}
		}
		var missing []string
		for id := range want {
			if !seen[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			t.Logf("%d acknowledged messages all arrived sealed (%d copies at the next hop; duplicates are allowed after a crash)", len(want), transit.Count())
			break
		}
		if time.Now().After(deadline) {
			out, _ := org.run("queue", "list")
			t.Fatalf("%d of %d acknowledged messages never arrived, e.g. %v\nqueue:\n%s", len(missing), len(want), missing[:min(5, len(missing))], out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// A sample opens with the partner's key.
	msgs := transit.Messages()
	for _, m := range []int{0, len(msgs) / 2, len(msgs) - 1} {
		if _, err := opensslDecrypt(t, msgs[m].Data, "example.net"); err != nil {
			t.Errorf("copy %d does not open: %v", m, err)
		}
	}
}

func snapshot(mu *sync.Mutex, m map[string]bool) map[string]bool {
	mu.Lock()
	defer mu.Unlock()
	out := make(map[string]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}
