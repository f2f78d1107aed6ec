// Package console is the operator's side of the admin listener: the guard
// that every request passes (Host allow-list, no state change from another
// origin or by a form, the admin token or a console session), the one-time
// login links of `smimegate admin url`, and the console itself, server-made
// HTML pages over what the gateway hands it (Backend).
//
// The gateway's JSON API (queue and quarantine) is served behind the same
// guard; the console's buttons call it as the commands do.
package console

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"smimegate/internal/certstore"
	"smimegate/internal/config"
	"smimegate/internal/spool"
)

// Backend is what the console reads of the gateway.
type Backend interface {
	Config() *config.Config
	Certs() *certstore.Store
	// Queue and Quarantine list the messages, oldest first.
	Queue() ([]*spool.Envelope, error)
	Quarantine() ([]*spool.Envelope, error)
	// QuarantinedHeader returns a quarantined message's envelope and its
	// header section (never the body).
	QuarantinedHeader(id string) (*spool.Envelope, []byte, error)
	// Decisions returns the last decision log lines, oldest first.
	Decisions() []Decision
}

// Options configure the admin listener's handler.
type Options struct {
	// Listen is admin.listen; its host, Hostname and Hosts (admin.hosts)
	// are the Host header values answered, beside the connection's own
	// address.
	Listen   string
	Hostname string
	Hosts    []string
	// TLS says the listener serves HTTPS: the session cookie is Secure.
	TLS bool
	// MetricsAuth: /metrics and /healthz need the token or a session too.
	MetricsAuth bool
	// PProf serves /debug/pprof, to holders of the token.
	PProf bool
	// Token is the admin token (LoadOrCreateToken).
	Token string

	Backend Backend
	// API is the gateway's JSON API, served behind the guard.
	API http.Handler
	// Metrics serves /metrics; Gatherer is the same registry, read by the
	// overview; Registerer takes the console's own metrics.
	Metrics    http.Handler
	Gatherer   prometheus.Gatherer
	Registerer prometheus.Registerer

	Logger *slog.Logger
	// Now is the clock of login codes, sessions and the overview's
	// history; time.Now when nil.
	Now func() time.Time
}

// Server is the admin listener's handler.
type Server struct {
	opts    Options
	guard   *guard
	mux     *http.ServeMux
	history *history
	pages   *pages
}

// New returns the admin listener's handler.
func New(opts Options) (*Server, error) {
	if opts.Token == "" {
		return nil, errors.New("console: no admin token")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	g := &guard{
		log:    opts.Logger,
		token:  opts.Token,
		names:  map[string]bool{},
		exact:  map[string]bool{},
		tls:    opts.TLS,
		cop:    http.NewCrossOriginProtection(),
		logins: newLogins(opts.Now),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smimegate_admin_requests_refused_total",
			Help: "Requests to the admin listener answered 403, by reason: host (DNS rebinding), method, cross_origin, content_type (a form), unauthenticated, login_code, token_required, pprof_disabled, body_too_large."},
			[]string{"reason"}),
	}
	if err := opts.Registerer.Register(g.refused); err != nil {
		return nil, err
	}
	if h := strings.ToLower(strings.TrimSuffix(opts.Hostname, ".")); h != "" {
		g.names[h] = true
	}
	if host, _, err := net.SplitHostPort(opts.Listen); err == nil && host != "" {
		g.names[strings.ToLower(strings.Trim(host, "[]"))] = true
	}
	for _, h := range opts.Hosts {
		h = strings.ToLower(h)
		if _, _, err := net.SplitHostPort(h); err == nil {
			g.exact[h] = true
		} else {
			g.names[strings.TrimSuffix(strings.Trim(h, "[]"), ".")] = true
		}
	}
	s := &Server{opts: opts, guard: g, mux: http.NewServeMux()}
	s.history = newHistory(opts.Gatherer, opts.Now)
	s.pages = newPages(s)
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	open := func(h http.Handler) http.Handler {
		if s.opts.MetricsAuth {
			return s.authenticated(h)
		}
		return h
	}
	metrics := s.opts.Metrics
	if metrics == nil {
		metrics = http.NotFoundHandler()
	}
	s.mux.Handle("GET /metrics", open(metrics))
	s.mux.Handle("GET /healthz", open(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})))
	s.mux.HandleFunc("GET "+loginPath, s.login)
	s.mux.Handle("POST /login-code", s.tokenOnly(http.HandlerFunc(s.loginCode)))
	s.mux.Handle("POST /console/logout", s.authenticated(http.HandlerFunc(s.logout)))
	s.mux.Handle("GET /{$}", s.authenticated(http.RedirectHandler(consolePrefix, http.StatusSeeOther)))
	s.pages.routes(s.mux)

	// Go's profiler, for measuring where a busy gateway spends its time
	// (go tool pprof -H 'Authorization: Bearer TOKEN' ...): it shows the
	// stacks and memory of the process, so only the token opens it.
	if s.opts.PProf {
		s.mux.Handle("GET /debug/pprof/", s.tokenOnly(http.HandlerFunc(pprof.Index)))
		s.mux.Handle("GET /debug/pprof/profile", s.tokenOnly(http.HandlerFunc(pprof.Profile)))
		s.mux.Handle("GET /debug/pprof/trace", s.tokenOnly(http.HandlerFunc(pprof.Trace)))
	} else {
		s.mux.HandleFunc("/debug/pprof/", func(w http.ResponseWriter, r *http.Request) {
			s.guard.refuse(w, r, refusedPProf)
		})
	}
	if s.opts.API != nil {
		s.mux.Handle("/", s.authenticated(s.opts.API))
	}
}

// ServeHTTP checks the Host and, for anything but GET and HEAD, the rules
// of a state change, before any route is looked at: a refused request
// reaches no handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// Nothing the listener answers is to be cached, framed by another
	// page, sniffed as another type, or leak its URL to another site.
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	if !s.guard.checkHost(r) {
		s.guard.refuse(w, r, refusedHost)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if reason := s.guard.stateChange(r); reason != "" {
			s.guard.refuse(w, r, reason)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxPostBody)
	}
	s.mux.ServeHTTP(w, r)
}

// authenticated lets through requests with the token or a console session.
func (s *Server) authenticated(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.guard.hasToken(r) && !s.guard.hasSession(r) {
			if strings.HasPrefix(r.URL.Path, consolePrefix) || r.URL.Path == "/" {
				s.pages.refuseLogin(w, r)
				return
			}
			s.guard.refuse(w, r, refusedUnauthenticated)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// tokenOnly lets through requests with the token: what mints logins or
// reads the process's memory is not for a browser session.
func (s *Server) tokenOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.guard.hasToken(r) {
			reason := refusedUnauthenticated
			if s.guard.hasSession(r) {
				reason = refusedTokenOnly
			}
			s.guard.refuse(w, r, reason)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// LoginCode is the answer to POST /login-code.
type LoginCode struct {
	// Path is the login URL's path and query: /login?t=CODE.
	Path    string    `json:"path"`
	Expires time.Time `json:"expires"`
}

func (s *Server) loginCode(w http.ResponseWriter, r *http.Request) {
	code, exp := s.guard.logins.newCode()
	s.opts.Logger.Info("console login link made", "expires", exp.UTC().Format(time.RFC3339))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(LoginCode{Path: loginPath + "?t=" + code, Expires: exp})
}

// login spends a login code, sets the session cookie and sends the browser
// to the console. The code leaves the address bar with the redirect, and
// Referrer-Policy keeps it from any other site.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	session, exp, ok := s.guard.logins.useCode(r.URL.Query().Get("t"))
	if !ok {
		s.guard.refuse(w, r, refusedLoginCode)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     s.guard.cookieName(),
		Value:    session,
		Path:     "/",
		Expires:  exp,
		MaxAge:   int(SessionLifetime / time.Second),
		HttpOnly: true,
		Secure:   s.opts.TLS,
		SameSite: http.SameSiteStrictMode,
	})
	s.opts.Logger.Info("console session opened", "remote", r.RemoteAddr)
	http.Redirect(w, r, consolePrefix, http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(s.guard.cookieName()); err == nil {
		s.guard.logins.endSession(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: s.guard.cookieName(), Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: s.opts.TLS, SameSite: http.SameSiteStrictMode})
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte("{}\n"))
}

// NewLoginCode makes a login code as POST /login-code does, for tests.
func (s *Server) NewLoginCode() string {
	code, _ := s.guard.logins.newCode()
	return code
}
