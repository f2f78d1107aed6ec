package rig

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// SinkOptions configure a Sink.
type SinkOptions struct {
	// Check, if set, sees every message in full (the bytes are read into
	// memory for it) and returns an error for one that is not what the
	// benchmark expects, e.g. a message that should have been encrypted.
	// Without Check the bytes are read and dropped.
	Check func(from string, data []byte) error
	// Track records each message's arrival time under its envelope sender,
	// for the latency benchmark.
	Track bool
}

// Sink is the next hop of every benchmark: an SMTP server on loopback in the
// benchmark's own process that counts messages, checks them and can record
// when each arrived. The same sink serves smimegate and the reference, so its
// cost is in both figures.
type Sink struct {
	Addr string

	srv      *smtp.Server
	opts     SinkOptions
	mu       sync.Mutex
	count    int
	bytes    int64
	bad      int
	firstBad error
	arrivals map[string]time.Time
	arrived  chan struct{}
}

// StartSink starts a sink on a free loopback port; the harness stops it.
func StartSink(h *Harness, opts SinkOptions) *Sink {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		h.Fatalf("sink: %v", err)
	}
	s := &Sink{Addr: l.Addr().String(), opts: opts, arrivals: map[string]time.Time{}, arrived: make(chan struct{}, 1)}
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) {
		return &sinkSession{sink: s}, nil
	}))
	s.srv.Domain = "sink.bench.invalid"
	s.srv.MaxMessageBytes = 1 << 30
	s.srv.MaxRecipients = 10000
	s.srv.ReadTimeout = 5 * time.Minute
	s.srv.WriteTimeout = 5 * time.Minute
	s.srv.EnableSMTPUTF8 = true
	s.srv.EnableDSN = true
	go func() { _ = s.srv.Serve(l) }()
	h.Cleanup(func() { s.srv.Close() })
	return s
}

// Count returns how many messages arrived, good and bad.
func (s *Sink) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Bytes returns the message bytes received in all.
func (s *Sink) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// Bad returns how many messages failed Check, and the first failure.
func (s *Sink) Bad() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bad, s.firstBad
}

// Arrival returns when the message with envelope sender from arrived.
func (s *Sink) Arrival(from string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.arrivals[from]
	return t, ok
}

// ErrSinkTimeout is returned by WaitCount when the messages did not all come.
var ErrSinkTimeout = errors.New("timed out waiting for messages at the sink")

// WaitCount waits until at least n messages arrived and returns the time
// the n-th did (the end of a throughput run).
func (s *Sink) WaitCount(n int, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		got := s.count
		s.mu.Unlock()
		if got >= n {
			return time.Now(), nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			return time.Time{}, fmt.Errorf("%w: %d of %d within %v", ErrSinkTimeout, got, n, timeout)
		}
		// The channel wakes the waiter at each arrival; the short timer
		// only bounds a missed wake-up.
		select {
		case <-s.arrived:
		case <-time.After(min(left, 20*time.Millisecond)):
		}
	}
}

type sinkSession struct {
	sink *Sink
	from string
}

func (ss *sinkSession) Reset()        { ss.from = "" }
func (ss *sinkSession) Logout() error { return nil }

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}

func (ss *sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }

func (ss *sinkSession) Data(r io.Reader) error {
	s := ss.sink
	var n int64
	var checkErr error
	if s.opts.Check != nil {
		var buf bytes.Buffer
		m, err := buf.ReadFrom(r)
		if err != nil {
			return err
		}
		n = m
		checkErr = s.opts.Check(ss.from, buf.Bytes())
	} else {
		m, err := io.Copy(io.Discard, r)
		if err != nil {
			return err
		}
		n = m
	}
	now := time.Now()
	s.mu.Lock()
	s.count++
	s.bytes += n
	if checkErr != nil {
		s.bad++
		if s.firstBad == nil {
			s.firstBad = fmt.Errorf("message from %s: %w", ss.from, checkErr)
		}
	}
	if s.opts.Track {
		s.arrivals[ss.from] = now
	}
	s.mu.Unlock()
	select {
	case s.arrived <- struct{}{}:
	default:
	}
	return nil
}
