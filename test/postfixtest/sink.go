package postfixtest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// SinkOptions configures a Sink.
type SinkOptions struct {
	// Args are extra smtp-sink options placed before the address, e.g.
	// {"-Q", "rcpt"} to answer RCPT with a hard error, {"-R", "data"} for a
	// soft one (see smtp-sink(1)).
	Args []string
}

// Sink is a running smtp-sink (Postfix's test SMTP server) on 127.0.0.1
// that keeps every message it receives as a file in Dir.
type Sink struct {
	Port int
	Addr string
	// Dir holds one file per mail transaction: smtp-sink's X-Client-Addr,
	// X-Helo-Args, X-Mail-Args and X-Rcpt-Args lines, a Received line, then
	// the message as it arrived. Lines end in LF, not CRLF: smtp-sink
	// writes each line without the CRLF it arrived with, so compare
	// messages with their line ends normalised.
	Dir string

	hostname string
	cmd      *exec.Cmd
	done     chan struct{}
	t        testing.TB
}

// StartSink starts smtp-sink for t and stops it at t's cleanup. Like Start,
// it skips t where smtp-sink is missing, except under CI.
func StartSink(t testing.TB, opts SinkOptions) *Sink {
	t.Helper()
	bin, err := command("smtp-sink")
	if err != nil {
		unavailable(t, "%v", err)
	}
	if os.Geteuid() == 0 {
		if _, _, err := postfixIDs(); err != nil {
			unavailable(t, "%v", err)
		}
	}
	var last error
	for attempt := 0; attempt < maxAttempts; attempt++ {
		s, err := startSink(bin, opts)
		if err == nil {
			s.t = t
			t.Cleanup(s.Stop)
			return s
		}
		last = err
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	t.Fatalf("postfixtest: smtp-sink: %v", last)
	return nil
}

func startSink(bin string, opts SinkOptions) (_ *Sink, err error) {
	root, err := makeRoot("sink-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(root)
		}
	}()
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Sink{
		Port:     port,
		Addr:     "127.0.0.1:" + strconv.Itoa(port),
		Dir:      filepath.Join(root, "mail"),
		hostname: "sink" + filepath.Base(root)[len("sink-"):] + ".postfixtest.invalid",
		done:     make(chan struct{}),
	}
	if err := os.Mkdir(s.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("mkdir: %w", err)
	}
	args := []string{"-h", s.hostname}
	// smtp-sink refuses to run as root without -u; as postfix it must be
	// able to write the dump directory.
	if os.Geteuid() == 0 {
		uid, gid, err := postfixIDs()
		if err != nil {
			return nil, err
		}
		if err := os.Chown(s.Dir, uid, gid); err != nil {
			return nil, fmt.Errorf("chown %s: %w", s.Dir, err)
		}
		args = append(args, "-u", "postfix")
	}
	// -d TEMPLATE: one file per transaction, named TEMPLATE plus a random
	// hexadecimal number. The backlog (last argument) is generous for the
	// benchmarks.
	args = append(args, opts.Args...)
	args = append(args, "-d", s.Dir+"/", s.Addr, "256")
	var stderr bytes.Buffer
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stderr = &stderr
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	var waitErr error
	go func() {
		waitErr = s.cmd.Wait()
		close(s.done)
	}()
	alive := func() error {
		select {
		case <-s.done:
			return fmt.Errorf("smtp-sink exited: %v: %s", waitErr, stderr.String())
		default:
			return nil
		}
	}
	if err := waitBanner(s.Addr, s.hostname, startTimeout, alive); err != nil {
		s.kill()
		if bytes.Contains(stderr.Bytes(), []byte("Address already in use")) {
			err = fmt.Errorf("%w: %v", errPortTaken, err)
		}
		return nil, err
	}
	return s, nil
}

// Messages returns the transactions received so far, oldest first. A file
// is complete once the client has had the 250 reply to its final dot
// (smtp-sink closes it before it answers); a file still being written may
// be cut short, so wait for the sender first, or use WaitMessages.
func (s *Sink) Messages() ([][]byte, error) {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, fmt.Errorf("smtp-sink directory: %w", err)
	}
	type file struct {
		mod  time.Time
		data []byte
	}
	var files []file
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			return nil, err
		}
		b, err := os.ReadFile(filepath.Join(s.Dir, e.Name()))
		if err != nil {
			return nil, err
		}
		files = append(files, file{info.ModTime(), b})
	}
	slices.SortStableFunc(files, func(a, b file) int { return a.mod.Compare(b.mod) })
	out := make([][]byte, len(files))
	for i, f := range files {
		out[i] = f.data
	}
	return out, nil
}

// WaitMessages waits until the sink holds at least n transactions and none
// has grown for a moment, and returns them; it fails t after timeout.
func (s *Sink) WaitMessages(t testing.TB, n int, timeout time.Duration) [][]byte {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var prev [][]byte
	for {
		msgs, err := s.Messages()
		if err != nil {
			t.Fatalf("postfixtest: %v", err)
		}
		if len(msgs) >= n && sameSizes(prev, msgs) {
			return msgs
		}
		prev = msgs
		if time.Now().After(deadline) {
			t.Fatalf("postfixtest: smtp-sink %s received %d messages within %v, want %d", s.Addr, len(msgs), timeout, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func sameSizes(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
	}
	return true
}

// Body returns the message in a dumped transaction: what follows smtp-sink's
// own X-* lines and its Received line.
func Body(dump []byte) []byte {
	rest := dump
	for bytes.HasPrefix(rest, []byte("X-")) {
		_, after, ok := bytes.Cut(rest, []byte("\n"))
		if !ok {
			return nil
		}
		rest = after
	}
	if !bytes.HasPrefix(rest, []byte("Received: ")) {
		return rest
	}
	// Skip the Received field and its folded continuation lines.
	_, rest, _ = bytes.Cut(rest, []byte("\n"))
	for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
		_, rest, _ = bytes.Cut(rest, []byte("\n"))
	}
	return rest
}

// Stop stops smtp-sink and removes its directory (after logging how many
// messages it held if the test failed). It is safe to call more than once.
func (s *Sink) Stop() {
	if s.cmd == nil {
		return
	}
	if s.t != nil && s.t.Failed() {
		if msgs, err := s.Messages(); err == nil {
			s.t.Logf("smtp-sink %s held %d messages", s.Addr, len(msgs))
		}
	}
	s.kill()
	os.RemoveAll(filepath.Dir(s.Dir))
	s.cmd = nil
}

func (s *Sink) kill() {
	select {
	case <-s.done:
	default:
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}
