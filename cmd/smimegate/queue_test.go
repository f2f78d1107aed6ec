package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"smimegate/internal/spool"
)

// queueTestSetup makes a directory any user can reach, with a state_dir in
// it and a configuration naming it and admin (the admin.listen address,
// "127.0.0.1:1" when no test server is involved). It returns the
// configuration path and the state directory, which does not exist yet.
func queueTestSetup(t *testing.T, admin string) (cfgPath, state string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "queuetest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath = filepath.Join(dir, "smimegate.toml")
	cfg := "state_dir = \"state\"\nlocal_domains = [\"example.org\"]\nlog_level = \"warn\"\n" +
		"[relay]\ninbound = \"127.0.0.1:2700\"\n[admin]\nlisten = \"" + admin + "\"\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfgPath, filepath.Join(dir, "state")
}

// queueTestQuarantined makes a spool in state with one quarantined message
// and one queued one, and returns their ids.
func queueTestQuarantined(t *testing.T, state string) (quarantined, queued string) {
	t.Helper()
	sp, err := spool.Open(state, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	var ids []string
	for _, body := range []string{"Subject: held\r\n\r\nsealed\r\n", "Subject: queued\r\n\r\nplain\r\n"} {
		in, err := sp.NewMessage()
		if err != nil {
			t.Fatal(err)
		}
		in.Write([]byte(body))
		env := &spool.Envelope{Sender: "a@example.net", Recipients: []spool.Recipient{{Addr: "b@example.org"}}, Client: "192.0.2.1:25", Arrival: time.Now().UTC()}
		if err := in.Commit(env); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, env.ID)
	}
	env, err := sp.Load(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Quarantine(env, "no key for example.org"); err != nil {
		t.Fatal(err)
	}
	return ids[0], ids[1]
}

// queueTestAdmin is a loopback server in the place of a running gateway's
// admin API, which records every request it gets.
type queueTestAdmin struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string
}

func newQueueTestAdmin(t *testing.T, mux *http.ServeMux) *queueTestAdmin {
	a := &queueTestAdmin{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.seen = append(a.seen, r.Method+" "+r.URL.Path)
		a.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(a.Close)
	return a
}

func (a *queueTestAdmin) requests() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.seen...)
}

// queueTestGatewayRunning holds state_dir's gateway lock as a running
// gateway does, so that the commands go through the admin API.
func queueTestGatewayRunning(t *testing.T, state string) {
	t.Helper()
	unlock, err := lockStateDir(state)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(unlock)
}

// TestCommandsRefuseBadIDs: an argument that is not a queue id is a usage
// error before anything is done: no request reaches a running gateway, no
// file is touched on a stopped one. "../queue/ID" used to reach the admin
// API, whose ServeMux cleaned it into another message's URL.
func TestCommandsRefuseBadIDs(t *testing.T) {
	admin := newQueueTestAdmin(t, http.NewServeMux())
	cfgPath, state := queueTestSetup(t, admin.Listener.Addr().String())
	quarantined, queued := queueTestQuarantined(t, state)
	bad := [][]string{
		{"quarantine", "delete", "../queue/" + queued},
		{"quarantine", "release", "../queue/" + queued},
		{"quarantine", "show", "../queue/" + queued},
		{"queue", "delete", "../quarantine/" + quarantined},
		{"queue", "show", strings.ToUpper(queued)},
		{"queue", "delete", queued + "/"},
		{"queue", "delete", "%2e%2e"},
		{"queue", "delete", ""},
	}
	check := func(running bool) {
		for _, args := range bad {
			var e bytes.Buffer
			code := run(append(args, "-config", cfgPath), &e)
			if code != 2 || !strings.Contains(e.String(), "is not a queue id") {
				t.Errorf("running=%v %q: exit %d, %q; want a usage error", running, args, code, e.String())
			}
		}
	}
	check(false)
	queueTestGatewayRunning(t, state)
	check(true)
	if got := admin.requests(); len(got) > 0 {
		t.Errorf("the admin API got requests for ids that are none: %v", got)
	}
	sp, err := spool.Open(state, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if _, err := sp.Load(queued); err != nil {
		t.Errorf("the queued message: %v", err)
	}
	if _, err := sp.LoadQuarantined(quarantined); err != nil {
		t.Errorf("the quarantined message: %v", err)
	}
}

// TestCommandsRefuseRedirects: the commands never follow a redirect of the
// admin API; they fail and say where it pointed. The server here answers
// as Go's ServeMux does to a path it cleans.
func TestCommandsRefuseRedirects(t *testing.T) {
	mux := http.NewServeMux()
	var hit sync.Mutex
	target := 0
	mux.HandleFunc("POST /quarantine/{id}/delete", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/queue/"+r.PathValue("id")+"/delete", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("GET /quarantine/{id}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/queue/"+r.PathValue("id"), http.StatusMovedPermanently)
	})
	mux.HandleFunc("/queue/", func(w http.ResponseWriter, r *http.Request) {
		hit.Lock()
		target++
		hit.Unlock()
		w.Write([]byte(`{}`))
	})
	admin := newQueueTestAdmin(t, mux)
	cfgPath, state := queueTestSetup(t, admin.Listener.Addr().String())
	quarantined, _ := queueTestQuarantined(t, state)
	queueTestGatewayRunning(t, state)
	for _, args := range [][]string{{"quarantine", "delete", quarantined}, {"quarantine", "show", quarantined}} {
		var e bytes.Buffer
		code := run(append(args, "-config", cfgPath), &e)
		if code != 1 || !strings.Contains(e.String(), "redirecting to") || !strings.Contains(e.String(), "/queue/"+quarantined) {
			t.Errorf("%q: exit %d, %q; want a failure naming the redirect", args, code, e.String())
		}
	}
	hit.Lock()
	defer hit.Unlock()
	if target != 0 {
		t.Errorf("the commands followed %d redirects", target)
	}
}
