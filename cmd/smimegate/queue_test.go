package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"smimegate/internal/config"
	"smimegate/internal/console"
	"smimegate/internal/gateway"
	"smimegate/internal/spool"
)

// queueTestAsUID makes this test binary take on the uid it names (and the
// same gid, no supplementary groups) before it runs the command line, so
// that a test started as root can run a command as a user that is neither
// root nor the owner of state_dir.
const queueTestAsUID = "SMIMEGATE_QUEUE_TEST_AS_UID"

func init() {
	v := os.Getenv(queueTestAsUID)
	if v == "" {
		return
	}
	uid, err := strconv.Atoi(v)
	if err == nil {
		err = syscall.Setgroups(nil)
	}
	if err == nil {
		err = syscall.Setgid(uid)
	}
	if err == nil {
		err = syscall.Setuid(uid)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "taking on uid", v+":", err)
		os.Exit(3)
	}
	os.Exit(run(os.Args[1:], os.Stderr))
}

// queueTestNobody is the owner the tests give state_dir: "nobody" on Debian
// and most others; queueTestStranger is a uid that owns nothing.
const (
	queueTestNobody   = 65534
	queueTestStranger = 65533
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

// queueTestRun runs the command line in a child process (this test binary
// as smimegate), as uid asUID unless it is negative, and returns its exit
// status and standard error.
func queueTestRun(t *testing.T, asUID int, args ...string) (code int, stderr string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, args...)
	if asUID >= 0 {
		cmd.Env = append(os.Environ(), queueTestAsUID+"="+strconv.Itoa(asUID))
	} else {
		cmd.Env = append(os.Environ(), cryptTestRunMain+"=1")
	}
	var e bytes.Buffer
	cmd.Stderr = &e
	if err := cmd.Run(); err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatal(err)
		}
	}
	return cmd.ProcessState.ExitCode(), e.String()
}

// queueTestOwners returns the files under dir that uid does not own.
func queueTestOwners(t *testing.T, dir string, uid int) []string {
	t.Helper()
	var wrong []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st := info.Sys().(*syscall.Stat_t); int(st.Uid) != uid || int(st.Gid) != uid {
			wrong = append(wrong, fmt.Sprintf("%s (%d:%d)", p, st.Uid, st.Gid))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return wrong
}

func queueTestChown(t *testing.T, dir string, uid int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, uid)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestRootCommandsActAsOwner: `quarantine release` and `queue flush` run as
// root, with the gateway stopped, on a state_dir that belongs to the
// gateway's user, write only files that user owns, and say whom they acted
// as. Before, the released envelope was root's, 0600, and the gateway's
// next start lost the message to corrupt/.
func TestRootCommandsActAsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("dropping privileges needs root; the refusal of other users is TestCommandsRefuseNonOwner")
	}
	cfgPath, state := queueTestSetup(t, "127.0.0.1:1")
	quarantined, _ := queueTestQuarantined(t, state)
	queueTestChown(t, state, queueTestNobody)

	for _, args := range [][]string{
		{"quarantine", "release", quarantined, "-config", cfgPath},
		{"queue", "flush", "-config", cfgPath},
	} {
		code, stderr := queueTestRun(t, -1, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, code, stderr)
		}
		if !strings.Contains(stderr, "acting as") || !strings.Contains(stderr, "uid 65534") || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: stderr %q, want one line saying it acts as uid 65534", args, stderr)
		}
		if wrong := queueTestOwners(t, state, queueTestNobody); len(wrong) > 0 {
			t.Errorf("%v left files the gateway's user does not own: %v", args, wrong)
		}
	}
	if _, err := os.Stat(filepath.Join(state, "queue", quarantined+".json")); err != nil {
		t.Errorf("the released message's envelope: %v", err)
	}
}

// TestCommandsRefuseNonOwner: a user who is neither root nor the owner of
// state_dir is refused with the owner's name, before anything is touched.
func TestCommandsRefuseNonOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making a state_dir of another user needs root")
	}
	cfgPath, state := queueTestSetup(t, "127.0.0.1:1")
	quarantined, _ := queueTestQuarantined(t, state)
	queueTestChown(t, state, queueTestNobody)
	code, stderr := queueTestRun(t, queueTestStranger, "quarantine", "release", quarantined, "-config", cfgPath)
	if code != 1 || !strings.Contains(stderr, "belongs to") || !strings.Contains(stderr, "uid 65534") {
		t.Errorf("as uid %d: exit %d, stderr %q; want exit 1 naming the owner, uid 65534", queueTestStranger, code, stderr)
	}
	if wrong := queueTestOwners(t, state, queueTestNobody); len(wrong) > 0 {
		t.Errorf("the refused command changed files: %v", wrong)
	}
}

// TestCommandsRefuseMissingStateDir: a command on a state_dir that does not
// exist says so and creates nothing (it would create it as whoever runs it).
func TestCommandsRefuseMissingStateDir(t *testing.T) {
	cfgPath, state := queueTestSetup(t, "127.0.0.1:1")
	var e bytes.Buffer
	if code := run([]string{"queue", "list", "-config", cfgPath}, &e); code != 1 || !strings.Contains(e.String(), "does not exist") {
		t.Errorf("queue list without state_dir: exit %d, %q", code, e.String())
	}
	if _, err := os.Lstat(state); err == nil {
		t.Errorf("queue list created state_dir %s", state)
	}
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
	sp, err := spool.OpenWith(state, spool.Options{Exclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	if _, _, _, err := console.LoadOrCreateToken(state); err != nil {
		t.Fatal(err)
	}
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

// TestQueueShowHeaderIsTheGateways: `queue show` on a stopped gateway shows
// the header section as the admin API of a running one does
// (gateway.HeaderSection, the blank line that ends it included), so the
// output does not depend on whether the gateway runs.
func TestQueueShowHeaderIsTheGateways(t *testing.T) {
	cfgPath, state := queueTestSetup(t, "127.0.0.1:1")
	quarantined, queued := queueTestQuarantined(t, state)
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	q := newQueueAccess(cfg)
	for area, c := range map[string]struct{ id, want string }{
		"queue":      {queued, "Subject: queued\r\n\r\n"},
		"quarantine": {quarantined, "Subject: held\r\n\r\n"},
	} {
		ewh, err := q.show(area, c.id)
		if err != nil {
			t.Fatal(err)
		}
		if ewh.Header != c.want || ewh.Header != string(gateway.HeaderSection([]byte(c.want+"body\r\n"))) {
			t.Errorf("%s show: header %q, want %q", area, ewh.Header, c.want)
		}
	}
}
