package spool

import "time"

// Stage says which step a queued message waits for.
type Stage string

const (
	// StageReceived: the original as accepted over SMTP, waiting for the
	// policy step (classify, seal or open). A crash repeats that step.
	StageReceived Stage = "received"
	// StageRouted: the policy step has run; Versions lists the copies to
	// deliver and the state of each recipient.
	StageRouted Stage = "routed"
)

// Recipient is one envelope recipient as given at RCPT TO, with its DSN
// parameters (RFC 3461).
type Recipient struct {
	Addr   string   `json:"addr"`
	Notify []string `json:"notify,omitempty"` // NEVER, SUCCESS, FAILURE, DELAY
	ORcpt  string   `json:"orcpt,omitempty"`  // "rfc822;addr" as given
}

// DeliveryState is where one recipient of one version stands.
type DeliveryState string

const (
	Pending   DeliveryState = "pending"   // to be attempted (again) at NextAttempt
	Delivered DeliveryState = "delivered" // the next hop answered 2xx
	Bounced   DeliveryState = "bounced"   // failed for good; a DSN was queued (or not, for the null sender)
)

// Delivery is a recipient inside a version, with its delivery history.
type Delivery struct {
	Recipient
	State       DeliveryState `json:"state"`
	Attempts    int           `json:"attempts,omitempty"`
	NextAttempt time.Time     `json:"next_attempt,omitzero"`
	LastError   string        `json:"last_error,omitempty"` // last reply or connection error, for queue list and the DSN
	LastHop     string        `json:"last_hop,omitempty"`
	Warned      bool          `json:"warned,omitempty"` // a delay warning was sent
	// Withheld marks a recipient whose failure is not reported to the
	// sender: decrypted content from an untrusted client that the next hop
	// refused for good. A report would tell the sender that decryption
	// worked (an oracle); the message goes to the quarantine for these
	// recipients instead, once the rest of it is done.
	Withheld bool `json:"withheld,omitempty"`
}

// Version is one copy of a message that the policy step produced: the
// original for plain destinations, a sealed copy per secured domain, or the
// opened original of an inbound encrypted message.
type Version struct {
	// Data names the data file of this version, as returned by
	// VersionWriter.Commit; "" means the original as received.
	Data string `json:"data,omitempty"`
	// Action is what the policy step did (action.go).
	Action       Action   `json:"action"`
	Domain       string   `json:"domain,omitempty"`       // destination domain for encrypt/hold
	Fingerprints []string `json:"fingerprints,omitempty"` // certificates sealed to / opened with
	Cipher       string   `json:"cipher,omitempty"`
	// EightBit says the version's content has 8-bit bytes (an opened
	// message whose envelope said 7BIT): it is sent with BODY=8BITMIME.
	EightBit   bool       `json:"eight_bit,omitempty"`
	Recipients []Delivery `json:"recipients"`
}

// Envelope is everything the gateway knows about a queued message besides
// its bytes. It is committed as a JSON trailer of the original and, once
// it changes, stored as JSON beside the data and replaced atomically.
type Envelope struct {
	ID         string      `json:"id"`
	Sender     string      `json:"sender"` // "" is the null sender
	Recipients []Recipient `json:"recipients"`
	RET        string      `json:"ret,omitempty"`   // FULL or HDRS (RFC 3461)
	EnvID      string      `json:"envid,omitempty"` // RFC 3461 ENVID
	SMTPUTF8   bool        `json:"smtputf8,omitempty"`
	Body       string      `json:"body,omitempty"` // 7BIT, 8BITMIME or BINARYMIME as declared at MAIL

	Client  string    `json:"client"` // remote address (ip:port), or "local" for mail the gateway made
	Helo    string    `json:"helo,omitempty"`
	Trusted bool      `json:"trusted"` // client is in smtp.trusted_networks
	TLS     bool      `json:"tls,omitempty"`
	Arrival time.Time `json:"arrival"`
	Size    int64     `json:"size"`

	Stage    Stage     `json:"stage"`
	Versions []Version `json:"versions,omitempty"`

	// Policy-step retry state (held messages, temporary failures of the step).
	Attempts    int       `json:"attempts,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	LastError   string    `json:"last_error,omitempty"`

	// Reason is set for quarantined messages: why the message is held.
	Reason        string    `json:"reason,omitempty"`
	QuarantinedAt time.Time `json:"quarantined_at,omitzero"`
}
