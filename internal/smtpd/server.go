// Package smtpd is smimegate's SMTP receiver: it accepts mail for the local
// domains from anyone and for any domain from the trusted networks, reads
// the DATA stream strictly, and answers 250 only once the message is
// committed to the spool, or once Options.Handoff has handed it on (the
// gateway's relay first).
//
// The protocol state machine is emersion/go-smtp's; the bytes under it go
// through wireConn (strict lines, STARTTLS, limits) and the message itself
// through dataReader (strict DATA). See wire.go for why.
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

	"github.com/emersion/go-smtp"

	"smimegate/internal/config"
	"smimegate/internal/spool"
)

// Checker is called after DATA with the complete envelope, before the
// message is committed. Returning a *Reject refuses the message with that
// reply; any other error is answered 451 4.3.0 (try again later).
type Checker func(env *spool.Envelope) error

// Reject is an SMTP reply with which a Checker refuses a message.
type Reject struct {
	Code     int
	Enhanced [3]int
	Message  string
}

func (r *Reject) Error() string {
	return fmt.Sprintf("%d %d.%d.%d %s", r.Code, r.Enhanced[0], r.Enhanced[1], r.Enhanced[2], r.Message)
}

// Options are the hooks and overrides of a Server.
type Options struct {
	Logger *slog.Logger
	// Check runs after DATA, before the commit (see Checker).
	Check Checker
	// OnQueued is called with the queue id after each commit, before the
	// 250 is sent.
	OnQueued func(id string)
	// Handoff, when set, takes every accepted message in place of the
	// commit: before it returns nil it must either have committed in
	// (in.Commit(env)) or have handed the message to every recipient's
	// next hop, and the client then gets its 250. An error is answered as a
	// failed commit is (451 or 452). OnQueued is not called for it.
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
	// canonical domain. nil accepts; a *Reject with a 4xx or 5xx code is
	// the reply (550 5.1.1 for an unknown user, 450 4.1.1 when it cannot
	// tell now); any other error is answered 451 4.3.0. ctx ends at
	// smtp.command_timeout (or the end of the session, if sooner), when
	// the client disconnects and when the server shuts down; the hook must
	// return once it has ended. It is not asked about postmaster, which
	// RFC 5321 section 4.5.1 requires every domain to accept.
	VerifyRecipient func(ctx context.Context, addr string) error
}

// Server is the SMTP receiver.
type Server struct {
	cfg       *config.Config
	sp        *spool.Spool
	opts      Options
	log       *slog.Logger
	tlsConfig *tls.Config
	gs        *smtp.Server

	mu        sync.Mutex
	conns     map[*wireConn]*session // live connections, and their session once EHLO made one
	total     int
	perClient map[netip.Addr]int
	listeners []net.Listener
	closing   bool
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
		conns:     map[*wireConn]*session{},
		perClient: map[netip.Addr]int{},
	}
	if s.tlsConfig == nil && cfg.SMTP.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.SMTP.TLSCert, cfg.SMTP.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("smtpd: smtp.tls_cert %s / smtp.tls_key %s: %w", cfg.SMTP.TLSCert, cfg.SMTP.TLSKey, err)
		}
		s.tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	gs := smtp.NewServer(smtp.BackendFunc(s.newSession))
	gs.Domain = cfg.Hostname
	gs.MaxMessageBytes = cfg.SMTP.MaxMessageBytes // SIZE in EHLO and at MAIL (RFC 1870)
	gs.MaxRecipients = cfg.SMTP.MaxRecipients
	gs.MaxLineLength = maxCommandLine + 2 // wireConn enforces it first
	gs.ReadTimeout = cfg.SMTP.CommandTimeout.D()
	gs.WriteTimeout = cfg.SMTP.CommandTimeout.D()
	gs.EnableSMTPUTF8 = true
	gs.EnableDSN = true
	// go-smtp only advertises STARTTLS; wireConn performs it.
	gs.TLSConfig = s.tlsConfig
	gs.ErrorLog = errorLog{logger}
	s.gs = gs
	return s, nil
}

// errorLog sends go-smtp's internal complaints (mostly connections that
// went away) to the debug level.
type errorLog struct{ l *slog.Logger }

func (e errorLog) Printf(format string, v ...any) { e.l.Debug("smtpd: " + fmt.Sprintf(format, v...)) }
func (e errorLog) Println(v ...any)               { e.l.Debug("smtpd: " + fmt.Sprint(v...)) }

// Serve accepts connections on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return smtp.ErrServerClosed
	}
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
	err := s.gs.Serve(&limitListener{Listener: l, s: s})
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
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

// ListenAndServe listens on every smtp.listen address and serves them all;
// it returns when one fails or after Shutdown.
func (s *Server) ListenAndServe() error {
	var ls []net.Listener
	for _, addr := range s.cfg.SMTP.Listen {
		l, err := Listen(addr)
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return fmt.Errorf("smtpd: smtp.listen %s: %w", addr, err)
		}
		ls = append(ls, l)
	}
	errs := make(chan error, len(ls))
	for _, l := range ls {
		s.log.Info("smtpd: listening", "addr", l.Addr().String(), "starttls", s.tlsConfig != nil)
		go func() { errs <- s.Serve(l) }()
	}
	var first error
	for range ls {
		if err := <-errs; err != nil && first == nil {
			first = err
			s.closeListeners()
		}
	}
	return first
}

// Shutdown stops accepting, ends idle connections with 421 at once and the
// others after the message in progress, and waits for them until ctx ends;
// then it closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	conns := make([]*wireConn, 0, len(s.conns))
	for w := range s.conns {
		conns = append(conns, w)
	}
	s.mu.Unlock()
	for _, w := range conns {
		w.beginShutdown()
	}
	err := s.gs.Shutdown(ctx)
	if errors.Is(err, smtp.ErrServerClosed) {
		err = nil
	}
	if ctx.Err() != nil {
		s.mu.Lock()
		for w := range s.conns {
			w.raw.Close()
		}
		s.mu.Unlock()
	}
	return err
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.listeners {
		l.Close()
	}
}

func (s *Server) sessionOf(w *wireConn) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns[w]
}

func (s *Server) forgetConn(w *wireConn) {
	s.mu.Lock()
	delete(s.conns, w)
	s.mu.Unlock()
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

// limitListener enforces smtp.max_connections,
// smtp.max_connections_per_client (Postfix's process limit and
// smtpd_client_connection_count_limit, from whose count, as in Postfix,
// the trusted networks are exempt) and smtp.trusted_reserve (the slots only
// trusted clients may take), and wraps each connection in a wireConn.
type limitListener struct {
	net.Listener
	s *Server
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		s := l.s
		ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
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
			// The last smtp.trusted_reserve slots are the internal
			// servers': an outsider with a few addresses could otherwise
			// hold every slot within the per-client limit and stop the
			// outbound mail.
			refuse = fmt.Sprintf("421 4.7.0 Too many connections: the last %d of %d are kept for the trusted networks, try again later", s.cfg.SMTP.TrustedReserve, s.cfg.SMTP.MaxConnections)
		case !trusted && s.perClient[addr] >= s.cfg.SMTP.MaxConnectionsPerClient:
			refuse = "421 4.7.0 Too many connections from your address, try again later"
		}
		if refuse != "" {
			s.mu.Unlock()
			s.log.Info("smtpd: connection refused", "client", ap.String(), "reply", refuse)
			c.Write([]byte(refuse + "\r\n"))
			c.Close()
			continue
		}
		s.total++
		s.perClient[addr]++
		var w *wireConn
		w = newWireConn(c, s, ap, func() {
			s.mu.Lock()
			s.total--
			if s.perClient[addr]--; s.perClient[addr] <= 0 {
				delete(s.perClient, addr)
			}
			s.mu.Unlock()
		})
		s.conns[w] = nil
		s.mu.Unlock()
		return w, nil
	}
}

// inMemory is the size up to which the next message is received into
// memory: only with a Handoff to take it.
func (s *Server) inMemory() int {
	if s.opts.Handoff == nil || s.opts.InMemory == nil {
		return 0
	}
	return s.opts.InMemory()
}
