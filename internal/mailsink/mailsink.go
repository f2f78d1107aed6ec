// Package mailsink is a loopback SMTP server that keeps every message it
// receives in memory: the next hop in the demo, the end-to-end tests and the
// benchmarks. It accepts everything (or answers with the reply a test sets)
// and keeps the bytes exactly as received.
package mailsink

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Message is one received message.
type Message struct {
	From string
	To   []string
	Data []byte
	// Opts are the MAIL FROM parameters (SMTPUTF8, BODY, RET, ENVID).
	Opts smtp.MailOptions
	// RcptOpts are the RCPT TO parameters, one per recipient.
	RcptOpts []smtp.RcptOptions
}

// Sink is a running SMTP sink.
type Sink struct {
	Addr string // host:port it listens on

	srv      *smtp.Server
	mu       sync.Mutex
	msgs     []Message
	arrived  chan struct{}
	reject   *smtp.SMTPError // reply to DATA when set
	rcpt     func(addr string) *smtp.SMTPError
	rcpts    int           // RCPT commands seen, accepted or not
	discard  bool          // count only, keep no bytes (benchmarks)
	delay    time.Duration // before the reply to DATA, after the message is kept
	received int
}

// Start listens on a free loopback port (or addr, if not empty).
func Start(addr string) (*Sink, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Sink{Addr: l.Addr().String(), arrived: make(chan struct{}, 1)}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &session{sink: s}, nil
	}))
	s.srv.Domain = "sink.localhost"
	s.srv.MaxMessageBytes = 1 << 30
	s.srv.MaxRecipients = 10000
	s.srv.ReadTimeout = time.Minute
	s.srv.WriteTimeout = time.Minute
	s.srv.EnableSMTPUTF8 = true
	s.srv.EnableDSN = true
	go func() { _ = s.srv.Serve(l) }()
	return s, nil
}

// Close stops the sink.
func (s *Sink) Close() error { return s.srv.Close() }

// Discard makes the sink count messages without keeping their bytes.
func (s *Sink) Discard() {
	s.mu.Lock()
	s.discard = true
	s.mu.Unlock()
}

// Reject makes the sink answer every DATA with err (nil: accept again).
func (s *Sink) Reject(err *smtp.SMTPError) {
	s.mu.Lock()
	s.reject = err
	s.mu.Unlock()
}

// RejectRcpt makes the sink answer RCPT TO:<addr> with fn(addr) when that is
// not nil: a next hop that knows its users (nil fn: accept everyone).
func (s *Sink) RejectRcpt(fn func(addr string) *smtp.SMTPError) {
	s.mu.Lock()
	s.rcpt = fn
	s.mu.Unlock()
}

// RcptCount returns how many RCPT commands the sink has seen.
func (s *Sink) RcptCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rcpts
}

// Delay makes the sink wait d before it answers a DATA whose message it
// has already kept: a next hop slow to reply to the final dot.
func (s *Sink) Delay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

// Messages returns a copy of the list of messages received so far.
func (s *Sink) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Count returns how many messages were received (also in discard mode).
func (s *Sink) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.received
}

// Wait waits until at least n messages arrived or the timeout passed, and
// returns the messages.
func (s *Sink) Wait(n int, timeout time.Duration) ([]Message, error) {
	deadline := time.Now().Add(timeout)
	for {
		if s.Count() >= n {
			return s.Messages(), nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return s.Messages(), errors.New("timed out waiting for messages at the sink")
		}
		select {
		case <-s.arrived:
		case <-time.After(min(left, 50*time.Millisecond)):
		}
	}
}

type session struct {
	sink     *Sink
	from     string
	opts     smtp.MailOptions
	to       []string
	rcptOpts []smtp.RcptOptions
}

func (s *session) Reset()        { s.from, s.to, s.rcptOpts = "", nil, nil }
func (s *session) Logout() error { return nil }

func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	s.from = from
	if opts != nil {
		s.opts = *opts
	}
	return nil
}

func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	s.sink.mu.Lock()
	fn := s.sink.rcpt
	s.sink.rcpts++
	s.sink.mu.Unlock()
	if fn != nil {
		if err := fn(to); err != nil {
			return err
		}
	}
	s.to = append(s.to, to)
	var o smtp.RcptOptions
	if opts != nil {
		o = *opts
	}
	s.rcptOpts = append(s.rcptOpts, o)
	return nil
}

func (s *session) Data(r io.Reader) error {
	s.sink.mu.Lock()
	reject, discard, delay := s.sink.reject, s.sink.discard, s.sink.delay
	s.sink.mu.Unlock()
	var buf bytes.Buffer
	var err error
	if discard {
		_, err = io.Copy(io.Discard, r)
	} else {
		_, err = buf.ReadFrom(r)
	}
	if err != nil {
		return err
	}
	if reject != nil {
		return reject
	}
	s.sink.mu.Lock()
	s.sink.received++
	if !discard {
		s.sink.msgs = append(s.sink.msgs, Message{From: s.from, To: s.to, Data: buf.Bytes(), Opts: s.opts, RcptOpts: s.rcptOpts})
	}
	s.sink.mu.Unlock()
	select {
	case s.sink.arrived <- struct{}{}:
	default:
	}
	time.Sleep(delay)
	return nil
}
