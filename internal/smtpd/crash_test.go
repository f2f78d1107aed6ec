package smtpd

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"smimegate/internal/config"
	"smimegate/internal/spool"
)

// childEnv, when set to a state directory, makes the test binary run as a
// plain receiver on that spool (see runChild) instead of running tests:
// the crash test kills that process with SIGKILL.
const childEnv = "SMTPD_TEST_CHILD"

func childConfig(dir string) (*config.Config, error) {
	return config.Parse(filepath.Join(dir, "smimegate.toml"), []byte(fmt.Sprintf(`hostname = "mx.example.org"
state_dir = %q
local_domains = ["example.org"]
[smtp]
listen = ["127.0.0.1:0"]
trusted_networks = ["127.0.0.1/32"]
[relay]
inbound = "127.0.0.1:1"
`, dir)))
}

// runChild serves SMTP on a loopback port until killed, and writes the port
// to STATE_DIR/addr once it listens.
func runChild() {
	dir := os.Getenv(childEnv)
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(3)
	}
	cfg, err := childConfig(dir)
	if err != nil {
		fail(err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sp, err := spool.Open(dir, logger)
	if err != nil {
		fail(err)
	}
	srv, err := New(cfg, sp, Options{Logger: logger})
	if err != nil {
		fail(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	tmp := filepath.Join(dir, "addr.tmp")
	if err := os.WriteFile(tmp, []byte(l.Addr().String()), 0o600); err != nil {
		fail(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "addr")); err != nil {
		fail(err)
	}
	fail(srv.Serve(l))
}

// startChild starts the receiver process and returns it with its address.
func startChild(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	os.Remove(filepath.Join(dir, "addr"))
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "addr"))
		if err == nil {
			return cmd, string(b)
		}
		if time.Now().After(deadline) {
			t.Fatal("the receiver process did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// acked is a message the receiver answered 250 for.
type acked struct{ id, marker string }

// hammer runs one SMTP session that sends messages until the connection
// breaks, reporting every 250 with its queue id.
func hammer(addr string, session int, ack func(acked)) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return
	}
	defer conn.Close()
	tp := textproto.NewConn(conn)
	if _, _, err := tp.ReadResponse(220); err != nil {
		return
	}
	if err := tp.PrintfLine("EHLO crash.example"); err != nil {
		return
	}
	if _, _, err := tp.ReadResponse(250); err != nil {
		return
	}
	body := strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n", 40)
	for i := 0; ; i++ {
		marker := fmt.Sprintf("crash-%d-%d-%d", session, i, rand.Int64())
		for _, c := range []struct {
			line string
			code int
		}{{"MAIL FROM:<a@example.net>", 250}, {"RCPT TO:<b@example.org>", 250}, {"DATA", 354}} {
			if tp.PrintfLine("%s", c.line) != nil {
				return
			}
			if _, _, err := tp.ReadResponse(c.code); err != nil {
				return
			}
		}
		w := tp.DotWriter()
		fmt.Fprintf(w, "Subject: %s\r\nMessage-ID: <%s@example.net>\r\n\r\n%s", marker, marker, body)
		if w.Close() != nil {
			return
		}
		_, msg, err := tp.ReadResponse(250)
		if err != nil {
			return
		}
		_, id, ok := strings.Cut(msg, "queued as ")
		if !ok {
			return
		}
		ack(acked{id: id, marker: marker})
	}
}

// TestCrashKill9 is the durability promise: every message that got a 250
// is in the spool after kill -9 at a random moment and a restart, whole.
func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills a receiver process several times")
	}
	dir := t.TempDir()
	var mu sync.Mutex
	var all []acked
	rounds := 6
	for round := range rounds {
		cmd, addr := startChild(t, dir)
		var wg sync.WaitGroup
		for s := range 20 {
			wg.Go(func() {
				hammer(addr, round*100+s, func(a acked) {
					mu.Lock()
					all = append(all, a)
					mu.Unlock()
				})
			})
		}
		// Kill at a random moment, mid-commit for some of the 20 sessions.
		time.Sleep(time.Duration(300+rand.IntN(1200)) * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
		wg.Wait()

		// Recover as the restarted gateway would, and check every ack.
		sp, err := spool.Open(dir, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("round %d: spool does not open after kill -9: %v", round, err)
		}
		mu.Lock()
		for _, a := range all {
			env, err := sp.Load(a.id)
			if err != nil {
				t.Errorf("round %d: message %s got a 250 and is gone: %v", round, a.id, err)
				continue
			}
			data, err := sp.ReadData(a.id, "")
			if err != nil || !strings.Contains(string(data), "Subject: "+a.marker+"\r\n") || int64(len(data)) != env.Size {
				t.Errorf("round %d: message %s is damaged (%d bytes, %v)", round, a.id, len(data), err)
			}
		}
		n := len(all)
		mu.Unlock()
		// Release the lock so that the next receiver process recovers.
		sp.Close()
		corrupt, _ := os.ReadDir(filepath.Join(dir, "corrupt"))
		for _, e := range corrupt {
			for _, a := range all {
				if strings.Contains(e.Name(), a.id) {
					t.Errorf("round %d: acknowledged message %s went to corrupt/", round, a.id)
				}
			}
		}
		t.Logf("round %d: %d messages acknowledged so far, %d files in corrupt/", round, n, len(corrupt))
	}
	if len(all) < 200 {
		t.Errorf("only %d messages were acknowledged in %d rounds; the test proves little", len(all), rounds)
	}
	// A last restart serves again on the recovered spool.
	_, addr := startChild(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if line, _ := bufio.NewReader(conn).ReadString('\n'); !strings.HasPrefix(line, "220 ") {
		t.Fatalf("restarted receiver greets with %q", line)
	}
}
