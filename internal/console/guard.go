package console

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The reasons a request is refused, as the log and the
// smimegate_admin_requests_refused_total metric name them.
const (
	refusedHost            = "host"            // a Host the listener does not answer: DNS rebinding
	refusedMethod          = "method"          // not GET, HEAD or POST
	refusedCrossOrigin     = "cross_origin"    // a browser says another origin sent it
	refusedContentType     = "content_type"    // a POST with a form or other non-JSON body
	refusedUnauthenticated = "unauthenticated" // neither the token nor a session
	refusedLoginCode       = "login_code"      // a login link unknown, spent or expired
	refusedPProf           = "pprof_disabled"  // /debug/pprof without admin.pprof = true
	refusedTokenOnly       = "token_required"  // a session where only the token will do
	refusedBodyTooLarge    = "body_too_large"  // a POST body beyond maxPostBody
)

const (
	// refusedLogLinesBurst refusals are logged in a row; then one line per
	// refusedLogLinesEvery, so that a flood of refused requests (a scanner,
	// a page that retries) cannot flood the log.
	refusedLogLinesBurst = 20
	refusedLogLinesEvery = time.Second
	// maxLoggedPathLength is how much of a refused path or Host reaches
	// the log line.
	maxLoggedPathLength = 200
	// maxPostBody bounds a state change's body: the API's POSTs carry no
	// body or "{}", nothing needs more.
	maxPostBody = 4 << 10
	// maxHostHeaderCompare: a Host longer than a DNS name (253) with a
	// port and brackets is refused without being parsed.
	maxHostHeaderCompare = 300

	sessionCookie = "smimegate_session"
	// secureSessionCookie is the cookie's name over TLS: the __Host-
	// prefix makes the browser insist on Secure, Path=/ and no Domain.
	secureSessionCookie = "__Host-smimegate_session"
	bearerPrefix        = "Bearer "
	loginPath           = "/login"
	consolePrefix       = "/console/"
	jsonContentType     = "application/json"
)

// guard is the part of the admin listener every request passes first: the
// Host allow-list, the rules for state changes, authentication, and the 403
// and log line of every refusal.
type guard struct {
	log     *slog.Logger
	token   string
	names   map[string]bool // host names (lower case, no port) the listener answers
	exact   map[string]bool // host:port values of admin.hosts
	tls     bool
	cop     *http.CrossOriginProtection
	logins  *logins
	refused *prometheus.CounterVec
	limiter logLimiter
}

// checkHost refuses a Host header that is not the listener's: a page of
// another site whose name an attacker pointed at 127.0.0.1 (DNS
// rebinding) sends its own name, and is answered nothing. An IP address is
// accepted when it is the address the connection came in on, since no
// rebinding can make a page's origin an IP literal; "localhost" is
// accepted on a loopback connection, since the browser resolves it itself.
func (g *guard) checkHost(r *http.Request) bool {
	h := strings.ToLower(r.Host)
	if h == "" || len(h) > maxHostHeaderCompare {
		return false
	}
	if g.exact[h] {
		return true
	}
	host := h
	if hp, _, err := net.SplitHostPort(h); err == nil {
		host = hp
	} else if strings.Contains(h, ":") && !strings.HasPrefix(h, "[") {
		// An IPv6 literal must be bracketed in Host (RFC 7230 section 5.4,
		// RFC 3986 section 3.2.2).
		return false
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if g.names[host] {
		return true
	}
	local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	var localIP netip.Addr
	if local != nil {
		if ap, err := netip.ParseAddrPort(local.String()); err == nil {
			localIP = ap.Addr().Unmap()
		}
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return localIP.IsValid() && ip.Unmap() == localIP
	}
	return host == "localhost" && localIP.IsLoopback()
}

// stateChange checks what only a state change must pass: the method is
// POST, no browser says another origin sent it, and the body is empty or
// JSON. A form (application/x-www-form-urlencoded, multipart/form-data,
// text/plain) is what a page of another site can send without asking; a
// JSON body cannot be sent across origins without a CORS preflight, which
// this listener never grants.
func (g *guard) stateChange(r *http.Request) (reason string) {
	if r.Method != http.MethodPost {
		return refusedMethod
	}
	if err := g.cop.Check(r); err != nil {
		return refusedCrossOrigin
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		if r.ContentLength != 0 {
			return refusedContentType
		}
		return ""
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != jsonContentType {
		return refusedContentType
	}
	if r.ContentLength > maxPostBody {
		return refusedBodyTooLarge
	}
	return ""
}

// hasToken tells whether the request carries the admin token.
func (g *guard) hasToken(r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	if len(auth) <= len(bearerPrefix) || !strings.EqualFold(auth[:len(bearerPrefix)], bearerPrefix) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(auth[len(bearerPrefix):])), []byte(g.token)) == 1
}

// hasSession tells whether the request carries an open console session.
func (g *guard) hasSession(r *http.Request) bool {
	c, err := r.Cookie(g.cookieName())
	return err == nil && g.logins.validSession(c.Value)
}

func (g *guard) cookieName() string {
	if g.tls {
		return secureSessionCookie
	}
	return sessionCookie
}

// refuse answers 403 and logs the refusal (at most refusedLogLinesBurst
// lines in a row, then one per refusedLogLinesEvery, so that a flood of
// refused requests cannot flood the log; the lines say how many were not
// logged). The path is logged without its query, which may hold a login
// code.
func (g *guard) refuse(w http.ResponseWriter, r *http.Request, reason string) {
	g.refused.WithLabelValues(reason).Inc()
	if ok, suppressed := g.limiter.allow(time.Now()); ok {
		path := r.URL.Path
		if len(path) > maxLoggedPathLength {
			path = path[:maxLoggedPathLength] + "..."
		}
		host := r.Host
		if len(host) > maxLoggedPathLength {
			host = host[:maxLoggedPathLength] + "..."
		}
		attrs := []any{"reason", reason, "method", r.Method, "path", path, "host", host, "remote", r.RemoteAddr}
		if suppressed > 0 {
			attrs = append(attrs, "not_logged_before", suppressed)
		}
		g.log.Warn("admin request refused", attrs...)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusForbidden)
	fmt.Fprintf(w, "403 forbidden: %s\n", refusalText[reason])
}

// refusalText is what a refused client reads: what was wrong, nothing more.
var refusalText = map[string]string{
	refusedHost:            "this listener does not answer that Host (add it to admin.hosts)",
	refusedMethod:          "only GET, HEAD and POST are served",
	refusedCrossOrigin:     "a request from another origin changes nothing",
	refusedContentType:     "a state change takes no body or a JSON one, never a form",
	refusedUnauthenticated: "the admin token (Authorization: Bearer) or a console session is required; `smimegate admin url` prints a login link",
	refusedLoginCode:       "this login link is spent or expired; run `smimegate admin url` again",
	refusedPProf:           "profiling is off (admin.pprof = false)",
	refusedTokenOnly:       "this needs the admin token (Authorization: Bearer), not a console session",
	refusedBodyTooLarge:    fmt.Sprintf("a state change carries at most %d bytes", maxPostBody),
}

// logLimiter is a token bucket for log lines.
type logLimiter struct {
	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int
}

func (l *logLimiter) allow(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last.IsZero() {
		l.tokens = refusedLogLinesBurst
	} else {
		l.tokens = min(refusedLogLinesBurst, l.tokens+now.Sub(l.last).Seconds()/refusedLogLinesEvery.Seconds())
	}
	l.last = now
	if l.tokens < 1 {
		l.suppressed++
		return false, 0
	}
	l.tokens--
	suppressed, l.suppressed = l.suppressed, 0
	return true, suppressed
}
