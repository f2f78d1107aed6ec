// Package smtpd is smimegate's SMTP receiver: it accepts mail for the local
// domains from anyone and for any domain from the trusted networks, reads
// the DATA stream strictly, and answers 250 only once the message is
// committed to the spool, or once Options.Handoff has handed it on (the
// gateway's relay first).
//
// The dialogue is its own: one goroutine per connection runs the state
// machine of RFC 5321 section 4.1 (conn.go, session.go) over the
// connection's read and write buffers, with the shared wire rules of
// internal/smtp: the command and path grammar, the strict DATA reader, and
// the one reply type, smtp.Error, that the hooks return and the receiver
// writes as it is.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"smimegate/internal/config"
	"smimegate/internal/smtp"
	"smimegate/internal/spool"
)

// Checker is called at the end of the message (DATA's terminator, or BDAT
// LAST) with the complete envelope, before the message is committed.
// Returning an *smtp.Error refuses the message with that reply; any other
// error is answered 451 4.3.0 (try again later).
type Checker func(env *spool.Envelope) error

// Options are the hooks and overrides of a Server.
type Options struct {
	Logger *slog.Logger
	// Check runs at the end of the message, before the commit (see
	// Checker).
	Check Checker
	// OnQueued is called with the queue id after each commit, before the
	// 250 is sent.
	OnQueued func(id string)
	// Handoff, when set, takes every accepted message in place of the
	// commit: before it returns nil it must either have committed in
	// (in.Commit(env)) or have handed the message to every recipient's
	// next hop, and the client then gets its 250. An *smtp.Error is the
	// reply; any other error is answered as a failed commit is (451 or
	// 452). OnQueued is not called for it. It runs for DATA and for BDAT
	// LAST alike, with the same envelope.
	Handoff func(env *spool.Envelope, in *spool.Incoming) error
	// InMemory returns the size up to which the next message is received
	// into memory rather than into a spool file (spool.NewMessageInMemory),
	// for Handoff to pass on without storing it; 0: always a file.
	InMemory func() int
	// TLSConfig enables STARTTLS; if nil, smtp.tls_cert and smtp.tls_key
	// are loaded when set.
	TLSConfig *tls.Config
	// VerifyRecipient, when set, is asked at RCPT whether a recipient in a
	// local domain exists (smtp.verify_recipients: the gateway probes
	// relay.inbound, as Postfix's reject_unverified_recipient does), after
	// the relay and syntax checks and for trusted clients too. addr is the
	// address as the envelope will store it: the local part as written, the
	// canonical domain. nil accepts; an *smtp.Error with a 4xx or 5xx code is
	// the reply (550 5.1.1 for an unknown user, 450 4.1.1 when it cannot
	// tell now); any other error is answered 451 4.3.0. ctx ends at
	// smtp.command_timeout (or the end of the session, if sooner), when
	// the client disconnects and when the server shuts down; the hook must
	// return once it has ended. It is not asked about postmaster, which
	// RFC 5321 section 4.5.1 requires every domain to accept.
	VerifyRecipient func(ctx context.Context, addr string) error
}

// ErrServerClosed is Serve's answer once Shutdown has begun.
var ErrServerClosed = errors.New("smtpd: server closed")

// Server is the SMTP receiver.
type Server struct {
	cfg       *config.Config
	sp        *spool.Spool
	opts      Options
	log       *slog.Logger
	tlsConfig *tls.Config

	mu        sync.Mutex
	conns     map[*conn]struct{}
	total     int
	perClient map[netip.Addr]int
	listeners []net.Listener
	closing   bool
	wg        sync.WaitGroup // one per connection goroutine
}

// New returns a receiver for cfg that commits to sp.
func New(cfg *config.Config, sp *spool.Spool, opts Options) (*Server, error) {
	if cfg == nil || sp == nil {
		return nil, errors.New("smtpd: configuration and spool are required")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:       cfg,
		sp:        sp,
		opts:      opts,
		log:       logger,
		tlsConfig: opts.TLSConfig,
		conns:     map[*conn]struct{}{},
		perClient: map[netip.Addr]int{},
	}
	if s.tlsConfig == nil && cfg.SMTP.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.SMTP.TLSCert, cfg.SMTP.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("smtpd: smtp.tls_cert %s / smtp.tls_key %s: %w", cfg.SMTP.TLSCert, cfg.SMTP.TLSKey, err)
		}
		s.tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	return s, nil
}

// Serve accepts connections on l until Shutdown, and serves each on its
// own goroutine. It returns nil once Shutdown has closed l.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.isClosing() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// EMFILE and its kin pass: wait a little, as net/http does,
			// rather than end the listener or spin.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("smtpd: accept failed, retrying", "err", err, "in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		s.admit(nc)
	}
}

// admit enforces smtp.max_connections, smtp.max_connections_per_client
// (Postfix's process limit and smtpd_client_connection_count_limit, from
// whose count, as in Postfix, the trusted networks are exempt) and
// smtp.trusted_reserve (the slots only trusted clients may take), and
// starts the connection's goroutine.
func (s *Server) admit(nc net.Conn) {
	ap, _ := netip.ParseAddrPort(nc.RemoteAddr().String())
	addr := ap.Addr().Unmap()
	trusted := s.trusted(addr)
	s.mu.Lock()
	var refuse string
	switch {
	case s.closing:
		refuse = "421 4.3.2 Service shutting down, try again later"
	case s.total >= s.cfg.SMTP.MaxConnections:
		refuse = "421 4.3.2 Too many connections, try again later"
	case !trusted && s.total >= s.cfg.SMTP.MaxConnections-s.cfg.SMTP.TrustedReserve:
		// The last smtp.trusted_reserve slots are the internal servers':
		// an outsider with a few addresses could otherwise hold every
		// slot within the per-client limit and stop the outbound mail.
		refuse = fmt.Sprintf("421 4.7.0 Too many connections: the last %d of %d are kept for the trusted networks, try again later", s.cfg.SMTP.TrustedReserve, s.cfg.SMTP.MaxConnections)
	case !trusted && s.perClient[addr] >= s.cfg.SMTP.MaxConnectionsPerClient:
		refuse = "421 4.7.0 Too many connections from your address, try again later"
	}
	if refuse != "" {
		s.mu.Unlock()
		s.log.Info("smtpd: connection refused", "client", ap.String(), "reply", refuse)
		nc.SetWriteDeadline(time.Now().Add(s.cfg.SMTP.CommandTimeout.D()))
		nc.Write([]byte(refuse + "\r\n"))
		nc.Close()
		return
	}
	s.total++
	s.perClient[addr]++
	c := newConn(nc, s, ap, trusted)
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer s.forget(c, addr)
		c.serve()
	}()
}

// forget gives back a connection's slot once its goroutine is done.
func (s *Server) forget(c *conn, addr netip.Addr) {
	s.mu.Lock()
	delete(s.conns, c)
	s.total--
	if s.perClient[addr]--; s.perClient[addr] <= 0 {
		delete(s.perClient, addr)
	}
	s.mu.Unlock()
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

// Listen opens an SMTP listener on addr. Its connections get no TCP
// keep-alive probes: every read and write already has a deadline
// (smtp.command_timeout, smtp.min_data_rate), which is how a dead client is
// found, and setting the probes up cost four setsockopt calls per
// connection, one message each for a client like smtp-source.
func Listen(addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(context.Background(), "tcp", addr)
}

// Shutdown stops accepting, ends idle connections with 421 at once and the
// others after the message in progress, and waits for them until ctx ends;
// then it closes what is left and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for _, l := range s.listeners {
		l.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.beginShutdown()
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.conns {
		c.raw.Close()
	}
	s.mu.Unlock()
	<-done
	return ctx.Err()
}

// trusted reports whether a client address is in smtp.trusted_networks.
func (s *Server) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.cfg.SMTP.TrustedPrefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// inMemory is the size up to which the next message is received into
// memory: only with a Handoff to take it.
func (s *Server) inMemory() int {
	if s.opts.Handoff == nil || s.opts.InMemory == nil {
		return 0
	}
	return s.opts.InMemory()
}

// asReply returns err as the reply it carries, if it is an *smtp.Error.
func asReply(err error) (*smtp.Error, bool) {
	var e *smtp.Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}
