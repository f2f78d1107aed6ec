package spool

// Action is what the policy step did with a Version's recipients. It is
// stored as its string (the spool's JSON has always held these words, so
// older files read unchanged), and an envelope naming any other action is
// damaged: the courier would not know whether the copy may leave, so it is
// moved to corrupt/ at start-up rather than guessed at.
type Action string

const (
	// ActionPass: the original, relayed as it came (plain destinations,
	// mail to local recipients not encrypted to us).
	ActionPass Action = "pass"
	// ActionEncrypt: a copy sealed to the destination domain's
	// certificates.
	ActionEncrypt Action = "encrypt"
	// ActionDecrypt: the opened copy of an inbound message encrypted to
	// us.
	ActionDecrypt Action = "decrypt"
	// ActionHold: a destination that requires encryption has no usable
	// certificate yet; the policy step is retried for these recipients
	// and the courier skips them (nothing leaves in the clear).
	ActionHold Action = "hold"
	// ActionRefuse: a domain that does not canonicalise, bounced at once.
	ActionRefuse Action = "refuse"
)

// Valid reports whether a is one of the actions above.
func (a Action) Valid() bool {
	switch a {
	case ActionPass, ActionEncrypt, ActionDecrypt, ActionHold, ActionRefuse:
		return true
	}
	return false
}
