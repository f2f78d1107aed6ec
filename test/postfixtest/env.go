// Package postfixtest starts throwaway, real Postfix instances and
// smtp-sink servers on loopback for tests and benchmarks.
//
// Each Instance is a complete Postfix of its own: its own config_directory,
// queue_directory and data_directory under a temporary directory, its own
// smtpd on a free 127.0.0.1 port and its own maillog_file, started with
// `postfix -c DIR start` and stopped (and removed) when the test ends. Any
// number of instances may run at once, beside each other and beside the
// system's Postfix, which they never touch.
//
// Postfix's master runs as root and drops to mail_owner postfix, so the
// harness needs root; without root or without Postfix the tests that use it
// are skipped, except under CI (the CI environment variable is set), where
// they fail: CI installs Postfix and runs as root, so a skip there would hide
// a broken setup.
package postfixtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// minMajor and minMinor are the oldest Postfix this harness supports:
// maillog_file, which keeps each instance's log apart from the system's,
// came with Postfix 3.4.
const (
	minMajor = 3
	minMinor = 4
)

// startTimeout bounds how long a start may take. Postfix starts in about a
// second, but the CI machine is small and shared with -race test binaries.
const startTimeout = 60 * time.Second

// unavailable skips the test where Postfix cannot run, and fails it under
// CI, where it must.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("postfixtest: %s (CI is set, so this is a failure, not a skip)", msg)
	}
	t.Skipf("postfixtest: %s", msg)
}

// command finds one of Postfix's programs, which Debian installs in
// /usr/sbin, a directory that is not on every user's PATH.
func command(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	p := filepath.Join("/usr/sbin", name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s is not installed (Debian: apt-get install postfix): %w", name, err)
	}
	return p, nil
}

// Version returns Postfix's mail_version, e.g. "3.7.11".
func Version() (string, error) {
	postconf, err := command("postconf")
	if err != nil {
		return "", err
	}
	out, err := exec.Command(postconf, "-d", "-h", "mail_version").Output()
	if err != nil {
		return "", fmt.Errorf("postconf -d mail_version: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// checkVersion tells whether version is at least minMajor.minMinor.
func checkVersion(version string) error {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return fmt.Errorf("cannot read Postfix version %q", version)
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return fmt.Errorf("cannot read Postfix version %q", version)
	}
	if major < minMajor || (major == minMajor && minor < minMinor) {
		return fmt.Errorf("Postfix %s is too old: maillog_file needs %d.%d or later", version, minMajor, minMinor)
	}
	return nil
}

// require checks that this process can run a Postfix instance, and skips
// or fails t if it cannot.
func require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "running a Postfix instance needs root (its master runs as root and drops to user postfix)")
	}
	v, err := Version()
	if err != nil {
		unavailable(t, "%v", err)
	}
	if err := checkVersion(v); err != nil {
		unavailable(t, "%v", err)
	}
	for _, name := range []string{"postfix", "postqueue"} {
		if _, err := command(name); err != nil {
			unavailable(t, "%v", err)
		}
	}
	if _, err := user.Lookup("postfix"); err != nil {
		unavailable(t, "no user postfix (installing Debian's postfix package creates it): %v", err)
	}
}

// postfixIDs returns the uid and gid of the mail_owner.
func postfixIDs() (uid, gid int, err error) {
	u, err := user.Lookup("postfix")
	if err != nil {
		return 0, 0, fmt.Errorf("user postfix: %w", err)
	}
	uid, err = strconv.Atoi(u.Uid)
	if err != nil {
		return 0, 0, fmt.Errorf("uid of postfix %q: %w", u.Uid, err)
	}
	gid, err = strconv.Atoi(u.Gid)
	if err != nil {
		return 0, 0, fmt.Errorf("gid of postfix %q: %w", u.Gid, err)
	}
	return uid, gid, nil
}

// freePort asks the kernel for a free ephemeral port on 127.0.0.1. Postfix
// and smtp-sink bind their own sockets, so the port is released again before
// they do; a start that then loses the race for it is retried with a new
// port (see maxAttempts).
func freePort() (int, error) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// maxAttempts bounds the retries after losing a port to another process.
const maxAttempts = 5

// errPortTaken marks a start that failed because a chosen port was taken
// between freePort and the bind.
var errPortTaken = errors.New("port taken")

// waitBanner connects to addr until it answers with a 220 greeting that
// contains token, which proves that the listener is the one just started and
// not another test's that happens to hold the port. alive is polled between
// attempts so that a server that died is reported at once.
func waitBanner(addr, token string, timeout time.Duration, alive func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if err := alive(); err != nil {
			return err
		}
		banner, err := readBanner(addr)
		if err == nil {
			if strings.HasPrefix(banner, "220") && strings.Contains(banner, token) {
				return nil
			}
			return fmt.Errorf("%s answered %q, not the server just started (%s): %w", addr, banner, token, errPortTaken)
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not answer within %v: %v", addr, timeout, last)
}

// readBanner reads the first line a server sends and says QUIT.
func readBanner(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return "", err
	}
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return "", fmt.Errorf("reading the greeting of %s: %w", addr, err)
	}
	line, _, _ := bytes.Cut(buf[:n], []byte("\n"))
	// Politeness only: the server logs a lost connection otherwise.
	_, _ = c.Write([]byte("QUIT\r\n"))
	return strings.TrimRight(string(line), "\r"), nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}

// makeRoot creates the temporary directory an instance or sink lives in,
// directly in /tmp whatever TMPDIR says. It is world-searchable (0755)
// because Postfix's daemons, running as postfix, must reach the queue inside
// it; t.TempDir's 0700, or a private TMPDIR, would shut them out. The path is
// short because Postfix's UNIX sockets live below it and a socket path is
// limited to 108 bytes.
func makeRoot(prefix string) (string, error) {
	dir, err := os.MkdirTemp("/tmp", prefix)
	if err != nil {
		return "", fmt.Errorf("temporary directory: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("chmod %s: %w", dir, err)
	}
	return dir, nil
}
