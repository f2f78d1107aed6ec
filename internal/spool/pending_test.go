package spool

import (
	"slices"
	"testing"
	"time"
)

// TestWaiting: a message the policy step has not run on waits for all its
// recipients; a routed one for its pending deliveries, held ones marked,
// with the earliest next attempt and the last delivery error.
func TestWaiting(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	received := &Envelope{Stage: StageReceived, Recipients: []Recipient{{Addr: "a@example.org"}, {Addr: "b@example.org"}}, NextAttempt: t0, LastError: "step failed"}
	if w := received.Waiting(); !slices.Equal(w.Recipients, []string{"a@example.org", "b@example.org"}) || !w.NextAttempt.Equal(t0) || w.LastError != "step failed" {
		t.Errorf("received: %+v", w)
	}
	routed := &Envelope{Stage: StageRouted, LastError: "", Versions: []Version{
		{Action: ActionPass, Recipients: []Delivery{{Recipient: Recipient{Addr: "done@example.org"}, State: Delivered}, {Recipient: Recipient{Addr: "later@example.org"}, State: Pending, NextAttempt: t0.Add(time.Hour), LastError: "451 try later"}}},
		{Action: ActionHold, Recipients: []Delivery{{Recipient: Recipient{Addr: "x@partner.example"}, State: Pending, NextAttempt: t0}}},
	}}
	w := routed.Waiting()
	if !slices.Equal(w.Recipients, []string{"later@example.org", "x@partner.example (held)"}) || !w.NextAttempt.Equal(t0) || w.LastError != "451 try later" {
		t.Errorf("routed: %+v", w)
	}
}
