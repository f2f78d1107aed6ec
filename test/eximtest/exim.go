// Package eximtest runs a throwaway, real Exim as an SMTP client for tests:
// messages given on its standard input are delivered, in the foreground,
// by Exim's smtp transport to one smarthost on loopback. Exim's client uses
// CHUNKING (RFC 3030) whenever the server offers it (the transport's
// hosts_try_chunking, set to * here), which makes it the BDAT client that
// Postfix's smtp client is not: Postfix implements BDAT in its server only.
//
// Exim cannot be installed beside Postfix (Debian's packages both provide
// mail-transport-agent and conflict), so the harness uses an unpacked
// exim4-daemon-light (`apt-get download` and `dpkg -x` into /opt/exim-peer,
// as .ci/run does) or an installed one. It never runs the binary as
// installed: Debian's exim4 is setuid root and looks up its compiled-in
// user Debian-exim before it reads any configuration. Each instance copies
// the binary (the copy is not setuid) into its own directory, runs it with
// nss_wrapper (Debian's libnss-wrapper) so that Debian-exim names the user
// the copy runs as, and gives it a configuration of its own (-C) with its
// own spool_directory and log_file_path. That user is the caller, or,
// where the caller is root (CI), the unprivileged uid of nobody: Exim
// refuses to deliver as root (its fixed never_users), and an unprivileged
// Exim is what its documentation describes for a client that only
// delivers to remote hosts.
//
// Without the binary or nss_wrapper the tests that use the harness are
// skipped, except under CI (the CI environment variable is set), where they
// fail: CI installs both, so a skip there would hide a broken setup.
package eximtest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// PeerDir is where .ci/run unpacks Debian's exim4-daemon-light.
const PeerDir = "/opt/exim-peer"

// submitTimeout bounds one submission with foreground delivery: Exim
// connects, delivers and returns in well under a second on loopback, but
// the CI machine is small and shared with -race test binaries, and a
// message of a few hundred kilobytes is sealed by the gateway while Exim
// waits for the reply to BDAT LAST.
const submitTimeout = 60 * time.Second

// maxOutput bounds what is kept of Exim's standard output and error per
// submission (its -v transcript names every SMTP command); a transcript
// larger than this is cut, which only shortens a failure's message.
const maxOutput = 1 << 20

// unavailable skips the test where Exim cannot run, and fails it under
// CI, where it must.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("eximtest: %s (CI is set, so this is a failure, not a skip)", msg)
	}
	t.Skipf("eximtest: %s", msg)
}

// Binary finds Exim: $EXIM_BINARY if set, else the unpacked package in
// PeerDir, else an installed exim4 or exim.
func Binary() (string, error) {
	if p := os.Getenv("EXIM_BINARY"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("EXIM_BINARY: %w", err)
		}
		return p, nil
	}
	for _, p := range []string{filepath.Join(PeerDir, "usr/sbin/exim4"), "/usr/sbin/exim4", "/usr/sbin/exim"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	for _, name := range []string{"exim4", "exim"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("exim is not installed (Debian: apt-get download exim4-daemon-light && dpkg -x exim4-daemon-light_*.deb " + PeerDir + ")")
}

// nssWrapper finds Debian's libnss-wrapper.
func nssWrapper() (string, error) {
	matches, _ := filepath.Glob("/usr/lib/*/libnss_wrapper.so")
	matches2, _ := filepath.Glob("/usr/lib/libnss_wrapper.so")
	matches = append(matches, matches2...)
	if len(matches) == 0 {
		return "", errors.New("libnss_wrapper.so is not installed (Debian: apt-get install libnss-wrapper)")
	}
	return matches[0], nil
}

// runAs returns the uid and gid the instance runs as: the caller's, or
// nobody's where the caller is root.
func runAs() (uid, gid int, err error) {
	if os.Geteuid() != 0 {
		return os.Geteuid(), os.Getegid(), nil
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		return 0, 0, fmt.Errorf("user nobody, which an Exim started by root runs as: %w", err)
	}
	uid, err = strconv.Atoi(u.Uid)
	if err != nil {
		return 0, 0, fmt.Errorf("uid of nobody %q: %w", u.Uid, err)
	}
	gid, err = strconv.Atoi(u.Gid)
	if err != nil {
		return 0, 0, fmt.Errorf("gid of nobody %q: %w", u.Gid, err)
	}
	return uid, gid, nil
}

// Options configures an Instance.
type Options struct {
	// Smarthost is the host:port (an IPv4 literal) every message goes to.
	Smarthost string
	// QualifyDomain completes unqualified addresses; "exim.invalid" if
	// empty.
	QualifyDomain string
	// Transport holds more options for the smtp transport, one per line,
	// e.g. "message_linelength_limit = 20000".
	Transport string
	// TLSCAFile, if set, makes STARTTLS required (hosts_require_tls) and
	// the server's certificate verified against the certificates in this
	// PEM file, its name included (tls_verify_hosts, whose name check
	// tls_verify_cert_hostnames is on for every host by default). Without
	// it the transport does not try TLS (hosts_avoid_tls).
	TLSCAFile string
}

// Instance is one configured Exim. It runs no daemon: each Submit is one
// process that delivers its message in the foreground.
type Instance struct {
	// Dir is the instance's root; the configuration, the spool and the
	// logs are inside it.
	Dir string
	// Exim is the instance's copy of the binary, Config its -C file.
	Exim   string
	Config string
	// Hostname is primary_hostname, unique to this instance.
	Hostname string

	env []string
	uid int
	gid int
	t   testing.TB
}

// Start configures an Exim instance for t and removes it when t ends,
// writing its logs to t's log if t has failed by then. Start skips t
// where Exim cannot run, and fails it there under CI.
func Start(t testing.TB, opts Options) *Instance {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		unavailable(t, "%v", err)
	}
	wrapper, err := nssWrapper()
	if err != nil {
		unavailable(t, "%v", err)
	}
	uid, gid, err := runAs()
	if err != nil {
		unavailable(t, "%v", err)
	}
	in, err := configure(bin, wrapper, uid, gid, opts)
	if err != nil {
		t.Fatalf("eximtest: %v", err)
	}
	in.t = t
	if out, err := in.command("-bV").CombinedOutput(); err != nil {
		os.RemoveAll(in.Dir)
		unavailable(t, "%s -bV: %v\n%s", bin, err, out)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("exim main log:\n%s", in.MainLog())
			if r := in.RejectLog(); r != "" {
				t.Logf("exim reject log:\n%s", r)
			}
		}
		os.RemoveAll(in.Dir)
	})
	return in
}

// configure lays out the instance's directory and writes its files.
func configure(bin, wrapper string, uid, gid int, opts Options) (_ *Instance, err error) {
	host, port, ok := strings.Cut(opts.Smarthost, ":")
	if !ok || host == "" || port == "" {
		return nil, fmt.Errorf("smarthost %q is not host:port", opts.Smarthost)
	}
	if opts.QualifyDomain == "" {
		opts.QualifyDomain = "exim.invalid"
	}
	// Directly in /tmp, searchable by all: the instance's user may be
	// nobody, who cannot reach into the caller's private TMPDIR.
	root, err := os.MkdirTemp("/tmp", "exim-")
	if err != nil {
		return nil, fmt.Errorf("temporary directory: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(root)
		}
	}()
	in := &Instance{
		Dir:      root,
		Exim:     filepath.Join(root, "exim"),
		Config:   filepath.Join(root, "exim.conf"),
		Hostname: strings.ToLower("exim" + filepath.Base(root)[len("exim-"):] + ".eximtest.invalid"),
		uid:      uid,
		gid:      gid,
	}
	for _, sub := range []string{"spool", "log"} {
		if err := os.Mkdir(filepath.Join(root, sub), 0o750); err != nil {
			return nil, err
		}
	}
	// A copy loses the setuid bit, so the dynamic loader honours
	// LD_PRELOAD, and the process keeps the uid it is started with.
	b, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", bin, err)
	}
	if err := os.WriteFile(in.Exim, b, 0o755); err != nil {
		return nil, err
	}
	passwd := fmt.Sprintf("Debian-exim:x:%d:%d:Exim:%s:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nroot:x:0:0:root:/root:/bin/false\n", uid, gid, root)
	group := fmt.Sprintf("Debian-exim:x:%d:\nnogroup:x:65534:\nroot:x:0:\n", gid)
	tls := "  hosts_avoid_tls = *"
	files := map[string]string{
		"passwd": passwd,
		"group":  group,
	}
	if opts.TLSCAFile != "" {
		// A copy the instance's user can read, whoever owns the original.
		ca, err := os.ReadFile(opts.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("TLS CA file: %w", err)
		}
		files["ca.pem"] = string(ca)
		tls = fmt.Sprintf("  hosts_require_tls = *\n  tls_verify_hosts = *\n  tls_verify_certificates = %s", filepath.Join(root, "ca.pem"))
	}
	files["exim.conf"] = in.config(host, port, tls, opts)
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(text), 0o644); err != nil {
			return nil, err
		}
	}
	if err := chownAll(root, uid, gid); err != nil {
		return nil, err
	}
	if err := os.Chmod(root, 0o755); err != nil {
		return nil, err
	}
	in.env = []string{
		"PATH=/usr/bin:/bin",
		"LD_PRELOAD=" + wrapper,
		"NSS_WRAPPER_PASSWD=" + filepath.Join(root, "passwd"),
		"NSS_WRAPPER_GROUP=" + filepath.Join(root, "group"),
	}
	return in, nil
}

// chownAll gives the instance's user its directory, where the caller is
// root and the user is not.
func chownAll(root string, uid, gid int) error {
	if os.Geteuid() != 0 {
		return nil
	}
	return filepath.Walk(root, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

// config returns the instance's runtime configuration: a smarthost client
// and nothing else (no local deliveries, no daemon).
func (in *Instance) config(host, port, tls string, opts Options) string {
	return fmt.Sprintf(`# eximtest: a smarthost client on loopback.
exim_user = Debian-exim
exim_group = Debian-exim
exim_path = %[1]s
spool_directory = %[2]s/spool
log_file_path = %[2]s/log/%%slog
pid_file_path = %[2]s/exim.pid
primary_hostname = %[3]s
qualify_domain = %[4]s
# The wrapper's variables must reach the Exim processes Exim starts itself
# (bounces), which would not find their user without them.
keep_environment = LD_PRELOAD : NSS_WRAPPER_PASSWD : NSS_WRAPPER_GROUP
# Messages are taken as given: no Sender: for a From: that is not the
# caller's, and the envelope sender of -f is kept (the caller is the Exim
# user, who is trusted).
local_from_check = false
# Bounces are not frozen: a test waits for them to arrive.
ignore_bounce_errors_after = 0s
timeout_frozen_after = 1d
log_selector = +smtp_confirmation +received_recipients +deliver_time +smtp_protocol_error
domainlist local_domains =

begin routers

smarthost:
  driver = manualroute
  domains = *
  route_list = * %[5]s::%[6]s byname
  self = send
  transport = remote_smtp
  no_more

begin transports

remote_smtp:
  driver = smtp
  port = %[6]s
  allow_localhost
  hosts_try_chunking = *
%[7]s
%[8]s

begin retry

# No queue runner runs: a temporarily failed message stays queued, which
# QueueCount shows.
* * F,1h,10m
`, in.Exim, in.Dir, in.Hostname, opts.QualifyDomain, host, port, tls, opts.Transport)
}

// command returns an exim command line for the instance, run as its user.
func (in *Instance) command(args ...string) *exec.Cmd {
	cmd := exec.Command(in.Exim, append([]string{"-C", in.Config}, args...)...)
	cmd.Env = in.env
	cmd.Dir = in.Dir
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(in.uid), Gid: uint32(in.gid)}}
	}
	return cmd
}

// boundedBuffer keeps the first maxOutput bytes written to it.
type boundedBuffer struct{ bytes.Buffer }

func (b *boundedBuffer) Write(p []byte) (int, error) {
	if room := maxOutput - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// Submission is what one Submit did.
type Submission struct {
	// ID is the message id Exim gave the message ("" if it took none).
	ID string
	// Transcript is Exim's -v output: the SMTP dialogue of the delivery,
	// each command Exim sent as "SMTP>> ..." and each reply as "SMTP<< ...".
	Transcript string
}

// Delivery returns the part of the transcript that delivers the
// submitted message itself: a bounce that Exim makes and delivers at once
// follows it in the transcript with a "delivering" line of its own.
func (s Submission) Delivery() string {
	start := strings.Index(s.Transcript, "delivering "+s.ID)
	if s.ID == "" || start < 0 {
		return ""
	}
	rest := s.Transcript[start:]
	if end := strings.Index(rest[1:], "\ndelivering "); end >= 0 {
		rest = rest[:end+1]
	}
	return rest
}

// Chunks returns the chunk sizes of the BDAT commands that delivered the
// submitted message, in order, and whether the last of them said LAST.
func (s Submission) Chunks() (sizes []int, last bool) {
	for _, m := range bdatLine.FindAllStringSubmatch(s.Delivery(), -1) {
		n, err := strconv.Atoi(m[1])
		if err != nil {
			continue
		}
		sizes = append(sizes, n)
		last = m[2] != ""
	}
	return sizes, last
}

// SentDATA tells whether the submitted message was delivered with a DATA
// command.
func (s Submission) SentDATA() bool { return dataLine.MatchString(s.Delivery()) }

var (
	bdatLine = regexp.MustCompile(`(?m)SMTP[^ ]*> BDAT (\d+)( LAST)?`)
	dataLine = regexp.MustCompile(`(?m)SMTP[^ ]*> DATA\s*$`)
	// The first "delivering" line names the message just received.
	deliveringLine = regexp.MustCompile(`(?m)^delivering (\S+)`)
)

// Submit gives msg to Exim on its standard input, envelope sender from and
// recipients to, as `exim -odf -oi -v -f from -- to...`: the message is
// delivered in the foreground (-odf), a line holding one dot is content,
// not the end (-oi), and Exim prints the SMTP dialogue (-v). Exim takes
// lines ending in LF or CRLF and sends CRLF. Submit returns once Exim has
// delivered, deferred or bounced the message; an error means Exim itself
// failed.
func (in *Instance) Submit(from string, to []string, msg []byte) (Submission, error) {
	return in.run(msg, append([]string{"-odf", "-oi", "-v", "-f", from, "--"}, to...)...)
}

// run runs Exim with args and stdin on its standard input, for at most
// submitTimeout.
func (in *Instance) run(stdin []byte, args ...string) (Submission, error) {
	cmd := in.command(args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out boundedBuffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return Submission{}, fmt.Errorf("exim: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(submitTimeout):
		_ = cmd.Process.Kill()
		<-done
		err = fmt.Errorf("did not return within %v", submitTimeout)
	}
	s := Submission{Transcript: out.String()}
	if m := deliveringLine.FindStringSubmatch(s.Transcript); m != nil {
		s.ID = m[1]
	}
	if err != nil {
		return s, fmt.Errorf("exim %s: %w\n%s", strings.Join(args, " "), err, tail(s.Transcript, 60))
	}
	return s, nil
}

// Enqueue gives msg to Exim as Submit does, but only queues it (-odq):
// RunQueue delivers it.
func (in *Instance) Enqueue(from string, to []string, msg []byte) (Submission, error) {
	return in.run(msg, append([]string{"-odq", "-oi", "-v", "-f", from, "--"}, to...)...)
}

// RunQueue delivers every queued message in a two-stage queue run
// (-qqff), in the foreground: the first stage routes them all, so that the
// second knows which go to the same host and sends them down one SMTP
// connection, one transaction after another. It returns Exim's -v
// transcript.
func (in *Instance) RunQueue() (string, error) {
	s, err := in.run(nil, "-qqff", "-v")
	return s.Transcript, err
}

// QueueCount returns the number of messages in Exim's queue (-bpc).
func (in *Instance) QueueCount() (int, error) {
	out, err := in.command("-bpc").Output()
	if err != nil {
		return 0, fmt.Errorf("exim -bpc: %w", err)
	}
	return strconv.Atoi(strings.TrimSpace(string(out)))
}

// MainLog returns Exim's main log.
func (in *Instance) MainLog() string { return in.readLog("mainlog") }

// RejectLog returns Exim's reject log.
func (in *Instance) RejectLog() string { return in.readLog("rejectlog") }

func (in *Instance) readLog(name string) string {
	b, err := os.ReadFile(filepath.Join(in.Dir, "log", name))
	if err != nil {
		return ""
	}
	return string(b)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}
