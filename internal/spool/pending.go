package spool

import "time"

// Waiting is what the queue listings (`queue list`, the console's queue
// page) say a message waits for, so that the two never disagree.
type Waiting struct {
	// Recipients are those still to be delivered: every recipient of a
	// message the policy step has not run on, else the pending deliveries
	// of its versions, a held one marked " (held)".
	Recipients []string
	// NextAttempt is the earliest next attempt among them (zero: none
	// set).
	NextAttempt time.Time
	// LastError is the last error a pending delivery recorded, else the
	// policy step's.
	LastError string
}

// Waiting summarises env for a listing.
func (env *Envelope) Waiting() Waiting {
	w := Waiting{LastError: env.LastError}
	if env.Stage == StageReceived {
		for _, r := range env.Recipients {
			w.Recipients = append(w.Recipients, r.Addr)
		}
		w.NextAttempt = env.NextAttempt
	}
	for _, v := range env.Versions {
		for _, d := range v.Recipients {
			if d.State != Pending {
				continue
			}
			label := d.Addr
			if v.Action == ActionHold {
				label += " (held)"
			}
			w.Recipients = append(w.Recipients, label)
			if w.NextAttempt.IsZero() || d.NextAttempt.Before(w.NextAttempt) {
				w.NextAttempt = d.NextAttempt
			}
			if d.LastError != "" {
				w.LastError = d.LastError
			}
		}
	}
	return w
}
