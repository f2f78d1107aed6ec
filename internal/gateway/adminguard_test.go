package gateway

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"smimegate/internal/config"
	"smimegate/internal/spool"
)

// lockedBuffer is a log destination the handlers of several requests
// write to at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// adminClient sends requests to the test admin listener and never follows
// a redirect, so that every answer is the listener's own.
type adminClient struct {
	t   *testing.T
	srv *httptest.Server
	c   *http.Client
}

type adminReq struct {
	method, path string
	host         string            // Host header; "" for the server's address
	token        bool              // send the admin token
	cookie       *http.Cookie      // send this session cookie
	ctype, body  string            // Content-Type and body
	header       map[string]string // further header fields
}

func (a *adminClient) do(r adminReq) (int, string, http.Header) {
	a.t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequest(r.method, a.srv.URL+r.path, body)
	if err != nil {
		a.t.Fatal(err)
	}
	if r.host != "" {
		req.Host = r.host
	}
	if r.token {
		req.Header.Set("Authorization", "Bearer "+testToken)
	}
	if r.cookie != nil {
		req.AddCookie(r.cookie)
	}
	if r.ctype != "" {
		req.Header.Set("Content-Type", r.ctype)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	resp, err := a.c.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// login gets a console session the way a browser does: a login code
// through the token, then the login URL.
func (a *adminClient) login() *http.Cookie {
	a.t.Helper()
	code, body, _ := a.do(adminReq{method: "POST", path: "/login-code", token: true})
	var lc struct{ Path string }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &lc) != nil || !strings.HasPrefix(lc.Path, "/login?t=") {
		a.t.Fatalf("POST /login-code: %d %s", code, body)
	}
	code, body, h := a.do(adminReq{method: "GET", path: lc.Path})
	if code != http.StatusSeeOther || h.Get("Location") != "/console/" {
		a.t.Fatalf("GET %s: %d %s, Location %q", lc.Path, code, body, h.Get("Location"))
	}
	resp := http.Response{Header: h}
	for _, c := range resp.Cookies() {
		if c.Name == "smimegate_session" {
			if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" {
				a.t.Errorf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/", c)
			}
			return &http.Cookie{Name: c.Name, Value: c.Value}
		}
	}
	a.t.Fatalf("the login set no session cookie: %v", h)
	return nil
}

// TestAdminGuardRefuses: requests without the token or a session, from
// another origin, for another Host, with a form body or another method are
// answered 403 and a log line, change nothing and read nothing: the queued
// and quarantined messages are still there, and no answer carries a byte
// of their envelopes or headers. The same requests done right then work,
// so the refusals are the guard's and not a broken route.
func TestAdminGuardRefuses(t *testing.T) {
	t.Parallel()
	var logBuf lockedBuffer
	srv, sp, queued, quarantined := adminTestGatewayLog(t, slog.New(slog.NewTextHandler(&logBuf, nil)))
	a := &adminClient{t: t, srv: srv, c: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	session := a.login()
	u, _ := url.Parse(srv.URL)
	evilHost := "rebind.attacker.example:" + u.Port()

	reads := []string{"/queue", "/queue/" + queued, "/quarantine", "/quarantine/" + quarantined,
		"/console/", "/console/queue", "/console/quarantine", "/console/quarantine/" + quarantined,
		"/console/certificates", "/console/partners", "/console/decisions", "/console/confirm/quarantine/release/" + quarantined}
	writes := []string{"/queue/flush", "/queue/" + queued + "/delete", "/quarantine/" + quarantined + "/release",
		"/quarantine/" + quarantined + "/delete", "/login-code", "/console/logout"}

	var cases []struct {
		name string
		req  adminReq
	}
	add := func(name string, r adminReq) {
		cases = append(cases, struct {
			name string
			req  adminReq
		}{name, r})
	}
	for _, p := range reads {
		add("unauthenticated read", adminReq{method: "GET", path: p})
		add("wrong token", adminReq{method: "GET", path: p, header: map[string]string{"Authorization": "Bearer " + strings.Repeat("0", 64)}})
		add("stale session", adminReq{method: "GET", path: p, cookie: &http.Cookie{Name: "smimegate_session", Value: "forged"}})
		add("rebinding read with token", adminReq{method: "GET", path: p, host: evilHost, token: true})
		add("rebinding read with session", adminReq{method: "GET", path: p, host: evilHost, cookie: session})
		add("IP not ours", adminReq{method: "GET", path: p, host: "192.0.2.1:" + u.Port(), token: true})
		add("no Host", adminReq{method: "GET", path: p, host: " ", token: true})
	}
	add("pprof without admin.pprof", adminReq{method: "GET", path: "/debug/pprof/", token: true})
	add("pprof profile without admin.pprof", adminReq{method: "GET", path: "/debug/pprof/profile", token: true})
	for _, p := range writes {
		add("unauthenticated write", adminReq{method: "POST", path: p})
		add("unauthenticated JSON write", adminReq{method: "POST", path: p, ctype: "application/json", body: "{}"})
		add("rebinding write", adminReq{method: "POST", path: p, host: evilHost, token: true})
		add("cross-site fetch", adminReq{method: "POST", path: p, cookie: session, ctype: "application/json", body: "{}",
			header: map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://attacker.example"}})
		add("same-site other origin", adminReq{method: "POST", path: p, cookie: session,
			header: map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://other.localhost:1"}})
		add("old browser, other Origin", adminReq{method: "POST", path: p, cookie: session,
			header: map[string]string{"Origin": "https://attacker.example"}})
		add("form", adminReq{method: "POST", path: p, cookie: session, ctype: "application/x-www-form-urlencoded", body: "x=1"})
		add("empty form", adminReq{method: "POST", path: p, cookie: session, ctype: "application/x-www-form-urlencoded"})
		add("multipart form", adminReq{method: "POST", path: p, token: true, ctype: "multipart/form-data; boundary=b", body: "--b--\r\n"})
		add("text/plain form", adminReq{method: "POST", path: p, cookie: session, ctype: "text/plain", body: "{}"})
		add("body without type", adminReq{method: "POST", path: p, token: true, body: "{}"})
		add("oversized JSON", adminReq{method: "POST", path: p, token: true, ctype: "application/json", body: strings.Repeat(" ", 5000)})
		add("PUT", adminReq{method: "PUT", path: p, token: true})
		add("DELETE", adminReq{method: "DELETE", path: p, token: true})
		add("OPTIONS preflight", adminReq{method: "OPTIONS", path: p, header: map[string]string{"Origin": "https://attacker.example", "Access-Control-Request-Method": "POST"}})
	}
	add("login code by session", adminReq{method: "POST", path: "/login-code", cookie: session})
	add("spent login code", adminReq{method: "GET", path: "/login?t=unknown"})

	for _, tc := range cases {
		code, body, h := a.do(tc.req)
		if code != http.StatusForbidden {
			t.Errorf("%s: %s %s (Host %q): %d, want 403", tc.name, tc.req.method, tc.req.path, tc.req.host, code)
		}
		for _, secret := range []string{"a@example.net", "b@example.org", "hidden@example.org", "Subject", queued, quarantined} {
			if strings.Contains(body, secret) {
				t.Errorf("%s: %s %s: the refusal carries %q", tc.name, tc.req.method, tc.req.path, secret)
			}
		}
		if h.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s: %s %s: answered with CORS headers", tc.name, tc.req.method, tc.req.path)
		}
	}
	if n := strings.Count(logBuf.String(), `msg="admin request refused"`); n < 20 {
		t.Errorf("%d refusals logged for %d refused requests (the first 20 at least must be)", n, len(cases))
	}
	// The log is rate-limited; the metric counts every refusal by reason.
	_, metrics, _ := a.do(adminReq{method: "GET", path: "/metrics"})
	for _, reason := range []string{"host", "unauthenticated", "cross_origin", "content_type", "method", "pprof_disabled", "token_required", "login_code", "body_too_large"} {
		if !strings.Contains(metrics, `smimegate_admin_requests_refused_total{reason="`+reason+`"}`) {
			t.Errorf("no refusal counted with reason %s", reason)
		}
	}
	if strings.Contains(logBuf.String(), "t=unknown") {
		t.Error("a login code reached the log")
	}
	if _, err := sp.Load(queued); err != nil {
		t.Fatalf("the queued message after the refused requests: %v", err)
	}
	if _, err := sp.LoadQuarantined(quarantined); err != nil {
		t.Fatalf("the quarantined message after the refused requests: %v", err)
	}

	// Done right, the same requests work: the token or the session, the
	// listener's Host (its address or localhost), no body or a JSON one,
	// the browser's own origin.
	for _, r := range []adminReq{
		{method: "GET", path: "/queue/" + queued, token: true},
		{method: "GET", path: "/quarantine/" + quarantined, host: "localhost:" + u.Port(), token: true},
		{method: "GET", path: "/console/quarantine/" + quarantined, cookie: session},
		{method: "POST", path: "/queue/flush", token: true},
		{method: "POST", path: "/queue/flush", cookie: session, ctype: "application/json; charset=utf-8", body: "{}",
			header: map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": srv.URL}},
		{method: "POST", path: "/queue/flush", cookie: session, ctype: "application/json", body: "{}", header: map[string]string{"Origin": srv.URL}},
	} {
		code, body, _ := a.do(r)
		if code != http.StatusOK {
			t.Errorf("%s %s (token %v, session %v): %d %s", r.method, r.path, r.token, r.cookie != nil, code, body)
		}
		if strings.HasSuffix(r.path, quarantined) && !strings.Contains(body, "hidden@example.org") {
			t.Errorf("GET %s does not show the header: %s", r.path, body)
		}
	}
	if code, body, _ := a.do(adminReq{method: "POST", path: "/quarantine/" + quarantined + "/release", cookie: session, ctype: "application/json", body: "{}",
		header: map[string]string{"Sec-Fetch-Site": "same-origin"}}); code != http.StatusOK {
		t.Fatalf("release from the console's own page: %d %s", code, body)
	}
	if _, err := sp.LoadQuarantined(quarantined); err == nil {
		t.Error("the released message is still in the quarantine")
	}
	if envs, _ := sp.List(); len(envs) != 2 {
		t.Errorf("the queue after the release holds %d messages, want 2", len(envs))
	}
}

// TestAdminOpenEndpoints: /metrics and /healthz answer without the token
// (Prometheus scrapes them), for the listener's Host only.
func TestAdminOpenEndpoints(t *testing.T) {
	t.Parallel()
	srv, _, _, _ := adminTestGateway(t)
	a := &adminClient{t: t, srv: srv, c: http.DefaultClient}
	for _, p := range []string{"/metrics", "/healthz"} {
		if code, body, _ := a.do(adminReq{method: "GET", path: p}); code != http.StatusOK {
			t.Errorf("GET %s: %d %s", p, code, body)
		}
		if code, _, _ := a.do(adminReq{method: "GET", path: p, host: "attacker.example"}); code != http.StatusForbidden {
			t.Errorf("GET %s for another Host: %d, want 403", p, code)
		}
	}
	if _, body, _ := a.do(adminReq{method: "GET", path: "/metrics"}); !strings.Contains(body, "smimegate_admin_requests_refused_total") {
		t.Error("/metrics lacks smimegate_admin_requests_refused_total")
	}
}

// TestAdminIDsStillChecked: the guard comes first, and the API's own id
// check still holds behind it.
func TestAdminIDsStillChecked(t *testing.T) {
	t.Parallel()
	srv, _, queued, _ := adminTestGateway(t)
	a := &adminClient{t: t, srv: srv, c: http.DefaultClient}
	if code, _, _ := a.do(adminReq{method: "POST", path: "/queue/" + strings.ToUpper(queued) + "/delete", token: true}); code != http.StatusBadRequest {
		t.Errorf("an invalid id with the token: %d, want 400", code)
	}
	if !spool.ValidID(queued) {
		t.Fatal("test setup: not an id")
	}
}

// TestAdminPProf: with admin.pprof the profiler answers the token, and
// neither a console session (it shows the process's memory) nor anyone
// without credentials.
func TestAdminPProf(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.Admin.PProf = true
	srv, _, _, _ := adminTestGatewayConfig(t, slog.New(slog.DiscardHandler), cfg)
	a := &adminClient{t: t, srv: srv, c: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	session := a.login()
	if code, body, _ := a.do(adminReq{method: "GET", path: "/debug/pprof/", token: true}); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("pprof with the token: %d", code)
	}
	for _, r := range []adminReq{{method: "GET", path: "/debug/pprof/"}, {method: "GET", path: "/debug/pprof/goroutine", cookie: session},
		{method: "GET", path: "/debug/pprof/heap", host: "rebind.attacker.example", token: true}} {
		if code, _, _ := a.do(r); code != http.StatusForbidden {
			t.Errorf("pprof %s (token %v, session %v, Host %q): %d, want 403", r.path, r.token, r.cookie != nil, r.host, code)
		}
	}
}
