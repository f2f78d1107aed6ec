package console

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"smimegate/internal/certstore"
	"smimegate/internal/config"
	"smimegate/internal/spool"
)

// clock is a settable clock for the tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 4, 9, 30, 0, 0, time.UTC)} }

// TestLoginCodes: a code opens one session once, and not after
// loginCodeLifetime; a session ends after SessionLifetime; the counts stay
// within their bounds however many are made.
func TestLoginCodes(t *testing.T) {
	t.Parallel()
	c := newClock()
	l := newLogins(c.now)
	code, _ := l.newCode()
	s, _, ok := l.useCode(code)
	if !ok || !l.validSession(s) {
		t.Fatal("a fresh code did not open a session")
	}
	if _, _, ok := l.useCode(code); ok {
		t.Error("a code opened a second session")
	}
	late, _ := l.newCode()
	c.add(loginCodeLifetime)
	if _, _, ok := l.useCode(late); ok {
		t.Error("an expired code opened a session")
	}
	c.add(SessionLifetime - loginCodeLifetime - time.Second)
	if !l.validSession(s) {
		t.Error("the session ended early")
	}
	c.add(time.Second)
	if l.validSession(s) {
		t.Error("the session outlived SessionLifetime")
	}
	if l.validSession("") || l.validSession("forged") {
		t.Error("a forged session is valid")
	}
	var sessions []string
	for range 3 * maxSessions {
		code, _ := l.newCode()
		s, _, _ := l.useCode(code)
		sessions = append(sessions, s)
		l.newCode()
	}
	codes, open := l.counts()
	if codes > maxLoginCodes || open > maxSessions {
		t.Errorf("%d codes and %d sessions held, bounds %d and %d", codes, open, maxLoginCodes, maxSessions)
	}
	if !l.validSession(sessions[len(sessions)-1]) || l.validSession(sessions[0]) {
		t.Error("eviction did not drop the oldest session and keep the newest")
	}
	l.endSession(sessions[len(sessions)-1])
	if l.validSession(sessions[len(sessions)-1]) {
		t.Error("a session outlived its logout")
	}
}

// TestTokenFile: the token is made 0600 at the first start and kept after;
// a file readable by others, a symbolic link or a malformed file is
// replaced by a new token (the link's target untouched); the commands
// refuse a file that is not private.
func TestTokenFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, TokenFile)
	tok, st, _, err := LoadOrCreateToken(dir)
	if err != nil || st != TokenCreated || len(tok) != 64 {
		t.Fatalf("first start: %q %v %v", tok, st, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v (%v), want 0600", fi.Mode(), err)
	}
	again, st, _, err := LoadOrCreateToken(dir)
	if err != nil || st != TokenLoaded || again != tok {
		t.Fatalf("second start: %v %v, token changed %v", st, err, again != tok)
	}
	if got, err := ReadToken(dir); err != nil || got != tok {
		t.Fatalf("ReadToken: %v", err)
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadToken(dir); err == nil {
		t.Error("ReadToken took a token others can read")
	}
	replaced, st, why, err := LoadOrCreateToken(dir)
	if err != nil || st != TokenReplaced || replaced == tok || !strings.Contains(why, "0644") {
		t.Fatalf("readable token: %v %q %v, same token %v", st, why, err, replaced == tok)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("replaced token mode %v", fi.Mode())
	}

	target := filepath.Join(t.TempDir(), "elsewhere")
	if err := os.WriteFile(target, []byte(strings.Repeat("a", 64)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	if tok, st, _, err := LoadOrCreateToken(dir); err != nil || st != TokenReplaced || tok == strings.Repeat("a", 64) {
		t.Fatalf("symlinked token: %v %v", st, err)
	}
	if fi, _ := os.Lstat(path); fi.Mode()&os.ModeSymlink != 0 {
		t.Error("the symbolic link is still there")
	}
	if b, _ := os.ReadFile(target); string(b) != strings.Repeat("a", 64)+"\n" {
		t.Error("the link's target was changed")
	}

	for _, bad := range []string{"", "short\n", strings.Repeat("A", 64), strings.Repeat("a", 64) + "\n\n", strings.Repeat("a", 100000)} {
		if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, st, _, err := LoadOrCreateToken(dir); err != nil || st != TokenReplaced {
			t.Errorf("token file %.20q: %v %v, want replaced", bad, st, err)
		}
	}
}

// TestHistory: the last hour is the increase since the latest sample an
// hour old; the chart's bars add up the increases of their buckets; a
// counter reset counts from zero.
func TestHistory(t *testing.T) {
	t.Parallel()
	c := newClock()
	reg := prometheus.NewRegistry()
	recv := prometheus.NewCounter(prometheus.CounterOpts{Name: "smimegate_messages_received_total", Help: "x"})
	dec := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "smimegate_decisions_total", Help: "x"}, []string{"action"})
	reg.MustRegister(recv, dec)
	h := newHistory(reg, c.now)
	h.record() // 09:30, 0
	recv.Add(5)
	dec.WithLabelValues("encrypt").Add(2)
	dec.WithLabelValues("pass").Add(7)
	c.add(20 * time.Minute)
	h.record() // 09:50, 5
	recv.Add(3)
	c.add(50 * time.Minute)
	h.record() // 10:40, 8
	recv.Add(1)
	c.add(15 * time.Minute) // now 10:55, 9; an hour ago was 09:55
	rows := h.overview()
	accepted, sealed := rows[0], rows[1]
	if accepted.Total != 9 || accepted.LastHour != 4 || !accepted.Since.IsZero() {
		t.Errorf("accepted: total %v, last hour %v since %v; want 9 and 4 (since the 09:50 sample)", accepted.Total, accepted.LastHour, accepted.Since)
	}
	if sealed.Total != 2 {
		t.Errorf("sealed counts %v, want only action=encrypt (2)", sealed.Total)
	}
	var sum float64
	for _, b := range accepted.Bars {
		sum += b.Value
	}
	if sum != 9 || accepted.Max != 5 {
		t.Errorf("bars add up to %v with max %v, want 9 and 5: %+v", sum, accepted.Max, accepted.Bars)
	}
	if n := len(accepted.Bars); n != int(historyLength/chartBucket) {
		t.Errorf("%d bars", n)
	}
	if got := delta(2, 10); got != 2 {
		t.Errorf("a reset counter: delta %v, want 2", got)
	}
	for range maxSamples + 10 {
		h.record()
	}
	if len(h.ring) != maxSamples {
		t.Errorf("%d samples kept, bound %d", len(h.ring), maxSamples)
	}
}

// TestDecisionLog: decision lines are kept whatever the inner handler's
// level, with the attributes of With and groups; other lines are not; the
// ring keeps the last MaxDecisions; long values are cut.
func TestDecisionLog(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	l := NewDecisionLog()
	log := slog.New(l.Handler(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelError})))
	log.With("gw", "a").Info("decision", "queue_id", "q1", "action", "encrypt", slog.Group("g", "k", "v"))
	log.Info("delivery attempt", "queue_id", "q1")
	log.Warn("decision", "queue_id", "q2", "reason", strings.Repeat("x", 1000))
	lines := l.Lines()
	if len(lines) != 2 || lines[0].Get("gw") != "a" || lines[0].Get("action") != "encrypt" || lines[0].Get("g.k") != "v" {
		t.Fatalf("lines %+v", lines)
	}
	if r := lines[1].Get("reason"); len(r) > maxDecisionValue+3 {
		t.Errorf("a reason of %d bytes kept", len(r))
	}
	if out.Len() != 0 {
		t.Errorf("the inner handler at level error wrote %q", out.String())
	}
	for i := range MaxDecisions + 5 {
		log.Info("decision", "n", i)
	}
	lines = l.Lines()
	if len(lines) != MaxDecisions || lines[len(lines)-1].Get("n") != "204" || lines[0].Get("n") != "5" {
		t.Errorf("ring: %d lines, first %s, last %s", len(lines), lines[0].Get("n"), lines[len(lines)-1].Get("n"))
	}
}

// testBackend is the gateway's part as the console sees it, with content
// an outsider controls (sender, reasons, header) made hostile.
type testBackend struct {
	cfg   *config.Config
	store *certstore.Store
	now   func() time.Time
}

const hostile = `"><script>alert(1)</script><img src=x onerror=alert(2)>`

func (b *testBackend) Config() *config.Config  { return b.cfg }
func (b *testBackend) Certs() *certstore.Store { return b.store }
func (b *testBackend) Queue() ([]*spool.Envelope, error) {
	return []*spool.Envelope{{ID: "01aaaaaaaaaaaaaaaaaa", Sender: "x" + hostile + "@example.net", Arrival: b.now().Add(-2 * time.Hour),
		Stage: spool.StageRouted, Versions: []spool.Version{{Action: "hold", Recipients: []spool.Delivery{{Recipient: spool.Recipient{Addr: "r@partner.example"}, State: spool.Pending, LastError: "421 " + hostile}}}}}}, nil
}
func (b *testBackend) Quarantine() ([]*spool.Envelope, error) {
	return []*spool.Envelope{{ID: "01bbbbbbbbbbbbbbbbbb", Sender: hostile, Reason: "cannot decrypt: " + hostile, QuarantinedAt: b.now().Add(-time.Minute)}}, nil
}
func (b *testBackend) QuarantinedHeader(id string) (*spool.Envelope, []byte, error) {
	q, _ := b.Quarantine()
	if id != q[0].ID {
		return nil, nil, spool.ErrNotFound
	}
	return q[0], []byte("Subject: " + hostile + "\r\n"), nil
}
func (b *testBackend) Decisions() []Decision {
	return []Decision{{Time: b.now(), Level: slog.LevelWarn, Attrs: []Attr{{"queue_id", "01bbbbbbbbbbbbbbbbbb"}, {"action", "quarantine"}, {"reason", hostile}}}}
}

// testServer is a console over testBackend with a partner certificate
// that expires in 5 days, served on loopback.
func testServer(t testing.TB) (*httptest.Server, *Server, *clock) {
	t.Helper()
	c := newClock()
	dir := t.TempDir()
	for _, d := range []string{"own", "partners"} {
		os.Mkdir(filepath.Join(dir, d), 0o700)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "partner.example"},
		EmailAddresses: []string{"smg_encryptor@partner.example"}, NotBefore: c.now().Add(-time.Hour), NotAfter: c.now().Add(5 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageKeyAgreement}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "partners", "partner.crt"), der, 0o644); err != nil {
		t.Fatal(err)
	}
	store, err := certstore.Load(certstore.Options{OwnDir: filepath.Join(dir, "own"), PartnersDir: filepath.Join(dir, "partners"), Now: c.now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Policy.Partners = map[string]config.Partner{"partner.example": {Require: true}, "nocert.example": {Require: true}}
	s, err := New(Options{Token: strings.Repeat("c", 64), Backend: &testBackend{cfg: cfg, store: store, now: c.now}, Now: c.now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv, s, c
}

func get(t *testing.T, srv *httptest.Server, path string, token bool) (int, string, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.URL+path, nil)
	if token {
		req.Header.Set("Authorization", "Bearer "+strings.Repeat("c", 64))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// TestPagesEscapeAndRender: every page renders with its Content Security
// Policy, and what outsiders wrote (senders, reasons, header fields,
// decision lines) appears escaped, never as markup.
func TestPagesEscapeAndRender(t *testing.T) {
	t.Parallel()
	srv, _, _ := testServer(t)
	for _, p := range []string{"/console/", "/console/queue", "/console/quarantine", "/console/quarantine/01bbbbbbbbbbbbbbbbbb",
		"/console/certificates", "/console/partners", "/console/decisions", "/console/confirm/quarantine/release/01bbbbbbbbbbbbbbbbbb",
		"/console/confirm/queue/delete/01aaaaaaaaaaaaaaaaaa", "/console/confirm/queue/flush/all"} {
		code, body, h := get(t, srv, p, true)
		if code != http.StatusOK {
			t.Errorf("%s: %d %s", p, code, body)
			continue
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "form-action 'none'") {
			t.Errorf("%s: CSP %q", p, csp)
		}
		if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") {
			t.Errorf("%s: hostile markup rendered as markup", p)
		}
	}
	if _, body, _ := get(t, srv, "/console/quarantine", true); !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("the hostile reason is not shown escaped")
	}
	_, body, _ := get(t, srv, "/console/certificates", true)
	if !strings.Contains(body, `class="n days urgent"`) {
		t.Error("a certificate 5 days from its end is not marked urgent")
	}
	_, body, _ = get(t, srv, "/console/partners", true)
	if !strings.Contains(body, "nocert.example") || !strings.Contains(body, "mail is held") {
		t.Error("the partners page does not say that mail to a required partner without a certificate is held")
	}
	for _, p := range []string{"/console/confirm/queue/delete/NOTANID", "/console/confirm/queue/explode/01aaaaaaaaaaaaaaaaaa", "/console/quarantine/01cccccccccccccccccc"} {
		if code, _, _ := get(t, srv, p, true); code == http.StatusOK {
			t.Errorf("%s: 200", p)
		}
	}
	// The page the script posts from names the API URL, nothing else.
	_, body, _ = get(t, srv, "/console/confirm/quarantine/delete/01bbbbbbbbbbbbbbbbbb", true)
	if !strings.Contains(body, `data-post="/quarantine/01bbbbbbbbbbbbbbbbbb/delete"`) || !strings.Contains(body, "smimegate quarantine delete 01bbbbbbbbbbbbbbbbbb") {
		t.Error("the confirmation page lacks its API URL or the command for a browser without JavaScript")
	}
}

// TestLoginFlow: the link sets the cookie, redirects to the console and
// works once; the cookie is HttpOnly, SameSite=Strict and, over TLS,
// Secure with the __Host- prefix.
func TestLoginFlow(t *testing.T) {
	t.Parallel()
	srv, s, _ := testServer(t)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	code := s.NewLoginCode()
	resp, err := client.Get(srv.URL + "/login?t=" + code)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/" || resp.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("login: %s, Location %q", resp.Status, resp.Header.Get("Location"))
	}
	set := resp.Cookies()
	if len(set) != 1 || !set[0].HttpOnly || set[0].SameSite != http.SameSiteStrictMode || set[0].Secure {
		t.Fatalf("cookie %+v", set)
	}
	resp, _ = client.Get(srv.URL + "/login?t=" + code)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a spent code: %s", resp.Status)
	}
	s.guard.tls = true
	if n := s.guard.cookieName(); n != "__Host-smimegate_session" {
		t.Errorf("the cookie over TLS is %q", n)
	}
}

// TestRunSamples: Run takes a sample at once and stops with its context.
func TestRunSamples(t *testing.T) {
	t.Parallel()
	_, s, _ := testServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	for {
		s.history.mu.Lock()
		n := len(s.history.ring)
		s.history.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
}

// counts returns how many codes and sessions are held, for tests.
func (l *logins) counts() (codes, sessions int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.codes), len(l.sessions)
}
