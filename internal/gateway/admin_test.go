package gateway

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"smimegate/internal/certstore"
	"smimegate/internal/config"
	"smimegate/internal/spool"
)

// adminTestGateway returns the admin API of a gateway over a real spool,
// served on loopback, with one queued and one quarantined message.
func adminTestGateway(t *testing.T) (srv *httptest.Server, sp *spool.Spool, queued, quarantined string) {
	t.Helper()
	return adminTestGatewayLog(t, slog.New(slog.DiscardHandler))
}

// adminTestGatewayLog is adminTestGateway with the gateway logging to logger.
func adminTestGatewayLog(t *testing.T, gwLogger *slog.Logger) (srv *httptest.Server, sp *spool.Spool, queued, quarantined string) {
	t.Helper()
	return adminTestGatewayConfig(t, gwLogger, config.Default())
}

// adminTestGatewayConfig is adminTestGatewayLog with the configuration cfg.
func adminTestGatewayConfig(t *testing.T, gwLogger *slog.Logger, cfg *config.Config) (srv *httptest.Server, sp *spool.Spool, queued, quarantined string) {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"own", "partners"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	logger := slog.New(slog.DiscardHandler)
	store, err := certstore.Load(certstore.Options{OwnDir: filepath.Join(dir, "own"), PartnersDir: filepath.Join(dir, "partners"), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	sp, err = spool.Open(filepath.Join(dir, "state"), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	var ids []string
	for range 2 {
		in, err := sp.NewMessage()
		if err != nil {
			t.Fatal(err)
		}
		in.Write([]byte("Subject: x\r\nBcc: hidden@example.org\r\n\r\nbody\r\n"))
		env := &spool.Envelope{Sender: "a@example.net", Recipients: []spool.Recipient{{Addr: "b@example.org"}}, Client: "192.0.2.1:25", Arrival: time.Now().UTC()}
		if err := in.Commit(env); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, env.ID)
	}
	env, err := sp.Load(ids[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Quarantine(env, "no key"); err != nil {
		t.Fatal(err)
	}
	g := New(cfg, store, sp, Options{Logger: gwLogger})
	h, err := g.AdminHandler(AdminOptions{Token: testToken})
	if err != nil {
		t.Fatal(err)
	}
	srv = httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, sp, ids[0], ids[1]
}

// testToken is the admin token of the tests' gateways.
const testToken = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// TestAdminRefusesBadIDs: every handler that takes an id answers 400 for
// one that is not a queue id, and does nothing; a path the ServeMux cleans
// ("..") is answered with a redirect that reaches no handler, which is why
// the commands refuse redirects. Valid ids still work.
func TestAdminRefusesBadIDs(t *testing.T) {
	t.Parallel()
	srv, sp, queued, quarantined := adminTestGateway(t)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct{ method, path string }{
		{"GET", "/queue/" + strings.ToUpper(queued)},
		{"GET", "/queue/" + queued + "x"},
		{"POST", "/queue/" + queued[:19] + "/delete"},
		{"POST", "/queue/%2e%2e%2fquarantine%2f" + quarantined + "/delete"},
		{"POST", "/queue/" + queued + "%2f/delete"},
		{"GET", "/quarantine/" + quarantined + "%00"},
		{"GET", "/quarantine/..%2fqueue%2f" + queued},
		{"POST", "/quarantine/" + strings.ToUpper(quarantined) + "/release"},
		{"POST", "/quarantine/%2e%2e%2fqueue%2f" + queued + "/delete"},
		{"POST", "/quarantine/x/delete"},
	} {
		code, body := do(tc.method, tc.path)
		var e struct{ Error string }
		if code != http.StatusBadRequest || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, "is not a queue id") {
			t.Errorf("%s %s: %d %s; want 400 saying it is not a queue id", tc.method, tc.path, code, body)
		}
	}
	// The attack of issue 13: the mux redirects, no handler runs.
	if code, _ := do("POST", "/quarantine/../queue/"+queued+"/delete"); code < 300 || code > 399 {
		t.Errorf("POST /quarantine/../queue/ID/delete: %d, want the mux's redirect", code)
	}
	if _, err := sp.Load(queued); err != nil {
		t.Fatalf("the queued message after the refused requests: %v", err)
	}
	if _, err := sp.LoadQuarantined(quarantined); err != nil {
		t.Fatalf("the quarantined message after the refused requests: %v", err)
	}
	// Valid ids reach the spool.
	if code, body := do("GET", "/queue/"+queued); code != http.StatusOK {
		t.Errorf("GET /queue/ID: %d %s", code, body)
	}
	if code, body := do("GET", "/quarantine/"+quarantined); code != http.StatusOK {
		t.Errorf("GET /quarantine/ID: %d %s", code, body)
	}
	if code, body := do("POST", "/quarantine/"+quarantined+"/delete"); code != http.StatusOK {
		t.Errorf("POST /quarantine/ID/delete: %d %s", code, body)
	}
	if code, body := do("POST", "/queue/"+queued+"/delete"); code != http.StatusOK {
		t.Errorf("POST /queue/ID/delete: %d %s", code, body)
	}
	if envs, _ := sp.List(); len(envs) != 0 {
		t.Errorf("queue after the delete: %d messages", len(envs))
	}
}
