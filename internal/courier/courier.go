// Package courier is the SMTP client side of the gateway: it carries one
// version of a queued message to its next hop and says, per recipient, what
// became of it.
//
// The courier knows nothing of the spool or of cryptography. The queue
// runner (internal/gateway) decides what to send where and when to retry; the
// courier resolves the next hop (a fixed host:port, or DNS MX with the A/AAAA
// fallback of RFC 5321 section 5.1), negotiates STARTTLS according to the
// route's TLS mode, reuses connections per destination within limits, and
// classifies every reply as delivered, deferred or failed. It also builds
// RFC 3464 delivery status notifications and computes the retry backoff, so
// that the runner only has to store what it is told.
package courier

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"smimegate/internal/smtp"
)

// TLSMode says how hard the courier insists on STARTTLS (RFC 3207) with a
// next hop. The names are those of the relay.tls configuration key.
type TLSMode int

const (
	// TLSDefault means "whatever Config.TLS says"; it is the zero value so
	// that a Route without an explicit mode follows the global setting.
	TLSDefault TLSMode = iota
	// TLSNone never sends STARTTLS.
	TLSNone
	// TLSOpportunistic uses STARTTLS when the server offers it and does not
	// check the certificate; if the handshake fails the message goes in the
	// clear on a new connection (Postfix's "may" level).
	TLSOpportunistic
	// TLSRequired insists on STARTTLS but does not check the certificate
	// (Postfix's "encrypt" level). Without it the recipients are deferred.
	TLSRequired
	// TLSVerify insists on STARTTLS with a certificate that chains to
	// Config.RootCAs (or the system roots) and names the host we connected
	// to (Postfix's "verify" level).
	TLSVerify
)

var tlsModeNames = map[TLSMode]string{
	TLSDefault:       "default",
	TLSNone:          "none",
	TLSOpportunistic: "opportunistic",
	TLSRequired:      "required",
	TLSVerify:        "verify",
}

func (m TLSMode) String() string {
	if s, ok := tlsModeNames[m]; ok {
		return s
	}
	return fmt.Sprintf("TLSMode(%d)", int(m))
}

// ParseTLSMode turns a configuration value (none, opportunistic, required,
// verify) into a TLSMode.
func ParseTLSMode(s string) (TLSMode, error) {
	for m, name := range tlsModeNames {
		if m != TLSDefault && name == s {
			return m, nil
		}
	}
	return TLSDefault, fmt.Errorf("courier: unknown TLS mode %q (want none, opportunistic, required or verify)", s)
}

// Route is where one message version goes.
type Route struct {
	// NextHop is "host:port" (the host is resolved with A/AAAA only, never
	// MX) or "mx" for DNS MX delivery to Domain.
	NextHop string
	// Domain is the destination domain: the name looked up for "mx", and
	// part of the connection-reuse key either way.
	Domain string
	TLS    TLSMode
}

// Rcpt is one envelope recipient with its RFC 3461 DSN parameters.
type Rcpt struct {
	Addr string
	// Notify is the NOTIFY list (NEVER, or some of SUCCESS, FAILURE, DELAY).
	Notify []string
	// ORcpt is the ORCPT parameter in decoded form, "addr-type;address"
	// (for example "rfc822;user@example.org"). The courier xtext-encodes it
	// again when it passes it on (RFC 3461 section 4.2, RFC 6533 section 3).
	ORcpt string
}

// Message is one version of a queued message, ready to be carried.
type Message struct {
	ID         string // queue id, for the log
	From       string // envelope sender; "" is the null sender
	Recipients []Rcpt
	// Open returns the message bytes (CRLF line ends, as spooled). It is
	// called once per transaction, so a retry on another host starts over.
	Open func() (io.ReadCloser, error)
	// Data, when set, is the whole content in memory, used instead of
	// Open; it is sent with BDAT where the server allows (RFC 3030).
	Data []byte
	Size int64
	// SMTPUTF8 is set when the message needs RFC 6531 (UTF-8 header or
	// envelope); EightBit when its body is 8BITMIME (RFC 6152).
	SMTPUTF8, EightBit bool
	// RET and EnvID are the RFC 3461 MAIL parameters, passed on when the
	// next hop offers DSN.
	RET, EnvID string
	// StartBy, when set, is when the attempt gives up unless it has begun
	// sending the content: a connection not had, a greeting, TLS, MAIL,
	// RCPT or DATA not answered by then makes the recipients Deferred with
	// nothing sent. Content already on its way is finished (within
	// DataDoneTimeout, and FinishBy when set), so StartBy alone never makes
	// a duplicate.
	StartBy time.Time
	// FinishBy, when set, is an absolute deadline for the whole attempt of
	// this message: every transaction, the content and the reply to the
	// final dot (or to BDAT LAST) included. When it passes the attempt is
	// abandoned: the connection is closed, never reused, and every
	// recipient without an outcome yet is Deferred with a Reply saying
	// that the next hop did not answer in time. Those whose content had
	// left in full (the final dot written) have MaybeDuplicate set: the
	// next hop may have the message. The gateway sets it for relay-first
	// attempts, so that the client gets its answer in bounded time.
	FinishBy time.Time
}

// Status is what became of one recipient in one attempt.
type Status int

const (
	// Delivered: the next hop took responsibility (2xx after the final dot).
	Delivered Status = iota + 1
	// Deferred: try again later (4xx, connection failures, TLS policy).
	Deferred
	// Failed: permanent (5xx, or a local decision such as 5.6.7).
	Failed
)

func (s Status) String() string {
	switch s {
	case Delivered:
		return "delivered"
	case Deferred:
		return "deferred"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// Result is the outcome for one recipient.
type Result struct {
	Rcpt   string
	Status Status
	// Reply is the reply that decided the outcome, in the one type every
	// package carries SMTP outcomes in. With Remote, it is the next hop's
	// own: its code, the enhanced code it sent (zero if it sent none, or
	// one of another class than the code), and its text on one line,
	// sanitised (smtp.SanitizeText). Without, the courier made it for an
	// outcome no server replied: a connection, TLS, DNS or time failure
	// (4.4.x, 4.7.x, RFC 3463), or a decision of its own (5.1.3 for an
	// address it will not send, 5.6.7 for SMTPUTF8 the hop lacks, 5.3.4
	// for a message larger than the hop's SIZE), with the code a server
	// would have given for it.
	Reply smtp.Error
	// Remote reports whether Reply came from the next hop.
	Remote bool
	// Enhanced is the RFC 3463 status to report for the recipient (in a
	// DSN's Status field): always set, and always of Status's class. It is
	// Reply's enhanced code, or its class's X.0.0 when the server sent
	// none; a refusal that only defers (a greeting that refuses service, a
	// STARTTLS that TLS policy needed) has its class made 4.
	Enhanced smtp.EnhancedCode
	// Host is the host:port that answered, "" if none did; HostName is the
	// name it was reached by (the MX or relay host), for Remote-MTA.
	Host, HostName string
	// TLS describes the connection: "TLS1.3 verified", "TLS1.3" or "none".
	TLS string
	// MaybeDuplicate is set when the final dot (or BDAT LAST with the
	// content) was written in full and no reply was had: the connection
	// was lost, the reply did not come within DataDoneTimeout, or FinishBy
	// passed. The next hop may have the message although it never said so;
	// the status is Deferred. Never set by Verify.
	MaybeDuplicate bool
}

// Diagnostic is the outcome on one line, as the log, the queue and a
// DSN's human-readable part give it: the next hop's reply as it sent it
// ("550 5.1.1 no such user"), or the courier's own words. It never
// contains CR or LF.
func (r *Result) Diagnostic() string {
	if r.Remote {
		return r.Reply.Error()
	}
	return r.Reply.Message
}

// Config tunes the courier. Zero values take the defaults named beside
// each field (Postfix's parameter names in parentheses).
type Config struct {
	// HeloName is the name sent in EHLO/HELO. Default "localhost".
	HeloName string
	// TLS is the mode for routes whose TLS is TLSDefault. Default
	// opportunistic.
	TLS TLSMode
	// ConnectTimeout bounds the TCP connect (smtp_connect_timeout = 30s).
	ConnectTimeout time.Duration
	// CommandTimeout bounds each reply of the dialogue, greeting and TLS
	// handshake included, as a whole: the reply must have arrived
	// completely this long after the courier began to wait for it, however
	// the server spreads its bytes (smtp_helo_timeout etc. = 300s, with
	// Postfix's smtp_per_request_deadline). It also bounds each write, and
	// a whole Verify.
	CommandTimeout time.Duration
	// DataDoneTimeout bounds the wait for the reply to the final dot (or
	// to BDAT LAST) as a whole (smtp_data_done_timeout = 600s; RFC 5321
	// section 4.5.3.2.6 says 10 minutes).
	DataDoneTimeout time.Duration
	// MinDataRate, in bytes per second, is the least rate at which the
	// next hop must take message content: each byte written earns 1/rate
	// seconds on top of CommandTimeout, counted from the start of the
	// content (Postfix's smtp_min_data_rate = 500). Without it a server
	// that reads a few bytes a minute holds a large message for days.
	MinDataRate int
	// IdleTimeout is how long an unused connection is kept for reuse
	// (smtp_connection_cache_time_limit = 2s).
	IdleTimeout time.Duration
	// MaxReuseTime stops reusing a connection this long after it was opened
	// (smtp_connection_reuse_time_limit = 300s).
	MaxReuseTime time.Duration
	// MaxConnections caps open connections in total (default 100);
	// MaxPerDestination caps them per destination (default 20,
	// default_destination_concurrency_limit).
	MaxConnections, MaxPerDestination int
	// MaxRecipientsPerTransaction splits larger recipient lists into
	// several transactions (smtp_destination_recipient_limit = 50).
	MaxRecipientsPerTransaction int
	// MaxMXAddresses caps how many addresses of one destination are tried
	// in one attempt (smtp_mx_address_limit = 5).
	MaxMXAddresses int
	// DNSServer, "host:port", is the server the resolver asks; "" uses the
	// system resolver.
	DNSServer string
	// MXPort is the port for MX delivery; 0 means 25. Tests set it.
	MXPort int
	// RootCAs verifies certificates in TLSVerify mode; nil means the
	// system roots.
	RootCAs *x509.CertPool
	// Logger gets one line per delivery attempt. Default: slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.HeloName == "" {
		c.HeloName = "localhost"
	}
	if c.TLS == TLSDefault {
		c.TLS = TLSOpportunistic
	}
	setDuration(&c.ConnectTimeout, 30*time.Second)
	setDuration(&c.CommandTimeout, 300*time.Second)
	setDuration(&c.DataDoneTimeout, 600*time.Second)
	setInt(&c.MinDataRate, 500)
	setDuration(&c.IdleTimeout, 2*time.Second)
	setDuration(&c.MaxReuseTime, 300*time.Second)
	setInt(&c.MaxConnections, 100)
	setInt(&c.MaxPerDestination, 20)
	setInt(&c.MaxRecipientsPerTransaction, 50)
	setInt(&c.MaxMXAddresses, 5)
	setInt(&c.MXPort, 25)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

func setDuration(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

func setInt(n *int, def int) {
	if *n <= 0 {
		*n = def
	}
}

// Courier delivers messages. It is safe for concurrent use; connections are
// shared between concurrent Deliver calls through its pool.
type Courier struct {
	cfg      Config
	resolver *net.Resolver
	pool     *pool
	log      *slog.Logger
	// dial replaces the TCP dial when set; the fuzz tests use it to talk
	// to a scripted server over net.Pipe without using up ports.
	dial func(ctx context.Context, addr string) (net.Conn, error)
}

// New returns a courier with cfg completed by the defaults.
func New(cfg Config) *Courier {
	cfg.setDefaults()
	return &Courier{
		cfg:      cfg,
		resolver: newResolver(cfg.DNSServer),
		pool:     newPool(cfg.MaxConnections, cfg.MaxPerDestination, cfg.IdleTimeout),
		log:      cfg.Logger,
	}
}

// Close ends every idle connection with QUIT and makes later Deliver calls
// defer their recipients. Connections in use are closed when their
// transaction ends.
func (c *Courier) Close() {
	c.pool.close()
}

// errClosed is the reason given when Deliver is called after Close.
var errClosed = errors.New("courier: closed")
