package postfixtest

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SourceOptions configures one run of smtp-source, Postfix's SMTP load
// generator.
type SourceOptions struct {
	Messages int    // -m: messages in all (default 1)
	Sessions int    // -s: parallel sessions (default 1)
	Size     int    // -l: body size in bytes (0: smtp-source's own small body)
	From, To string // -f, -t (defaults alice@example.org, bob@example.net)
	Subject  string // -S
	// Reuse sends a session's messages over one connection (-d); without
	// it smtp-source connects anew for each message.
	Reuse bool
}

// Source runs smtp-source against addr and fails t if it does not succeed.
// smtp-source returns once every message has had its reply.
func Source(t testing.TB, addr string, opts SourceOptions) {
	t.Helper()
	bin, err := command("smtp-source")
	if err != nil {
		unavailable(t, "%v", err)
	}
	if opts.Messages == 0 {
		opts.Messages = 1
	}
	if opts.Sessions == 0 {
		opts.Sessions = 1
	}
	if opts.From == "" {
		opts.From = "alice@example.org"
	}
	if opts.To == "" {
		opts.To = "bob@example.net"
	}
	args := []string{"-m", strconv.Itoa(opts.Messages), "-s", strconv.Itoa(opts.Sessions), "-f", opts.From, "-t", opts.To}
	if opts.Size > 0 {
		args = append(args, "-l", strconv.Itoa(opts.Size))
	}
	if opts.Subject != "" {
		args = append(args, "-S", opts.Subject)
	}
	if opts.Reuse {
		args = append(args, "-d")
	}
	args = append(args, addr)
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("postfixtest: smtp-source %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Count returns how many transactions the sink has received (files in Dir),
// cheaper than Messages for benchmarks.
func (s *Sink) Count() (int, error) {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return 0, fmt.Errorf("smtp-sink directory: %w", err)
	}
	return len(entries), nil
}

// WaitCount waits until the sink has received at least n transactions; it
// fails t after timeout.
func (s *Sink) WaitCount(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, err := s.Count()
		if err != nil {
			t.Fatalf("postfixtest: %v", err)
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfixtest: smtp-sink %s received %d messages within %v, want %d", s.Addr, got, timeout, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
