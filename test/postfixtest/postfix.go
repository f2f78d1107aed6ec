package postfixtest

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// Options configures an Instance. MainCF values and MasterCF are text
// templates: {{port "NAME"}} stands for a free 127.0.0.1 port chosen for
// NAME (the same port wherever NAME recurs), {{.Dir}} for the instance's
// directory. The main smtpd's port is {{port "smtpd"}}.
type Options struct {
	// MainCF sets main.cf parameters over the harness's base (see
	// baseMainCF): relayhost, content_filter, mydestination, ...
	MainCF map[string]string

	// MasterCF holds master.cf entries. An entry whose service name and
	// type equal one of the base entries replaces it; so
	//
	//	127.0.0.1:{{port "smtpd"}} inet n - n - - smtpd -o content_filter=smtp:[127.0.0.1]:2525
	//
	// replaces the main smtpd. Other entries are added.
	MasterCF string
}

// Instance is a running Postfix.
type Instance struct {
	// Dir is the instance's root; ConfigDir, QueueDir and DataDir are
	// inside it.
	Dir       string
	ConfigDir string
	QueueDir  string
	DataDir   string
	// MailLog is the maillog_file every Postfix program of this instance
	// logs to.
	MailLog string
	// Port and Addr are the main smtpd's port and 127.0.0.1:Port.
	Port int
	Addr string
	// Hostname is myhostname, unique to this instance.
	Hostname string
	// Ports holds every port the templates asked for, "smtpd" included.
	Ports map[string]int

	t        testing.TB
	stopOnce sync.Once
}

// Start starts a Postfix instance for t and registers its Stop with
// t.Cleanup. Its maillog is written to t's log if t has failed by then.
// Start skips t where Postfix cannot run (not root, not installed), and
// fails it there under CI.
func Start(t testing.TB, opts Options) *Instance {
	t.Helper()
	require(t)
	var last error
	for attempt := 0; attempt < maxAttempts; attempt++ {
		in, err := start(opts)
		if err == nil {
			in.t = t
			t.Cleanup(in.Stop)
			return in
		}
		last = err
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	t.Fatalf("postfixtest: %v", last)
	return nil
}

// start makes, configures and starts one instance. On failure it leaves
// nothing behind and returns an error that carries the end of the maillog.
func start(opts Options) (_ *Instance, err error) {
	root, err := makeRoot("pf-")
	if err != nil {
		return nil, err
	}
	in := &Instance{
		Dir:       root,
		ConfigDir: filepath.Join(root, "etc"),
		QueueDir:  filepath.Join(root, "queue"),
		DataDir:   filepath.Join(root, "data"),
		MailLog:   filepath.Join(root, "maillog"),
		Hostname:  "pf" + filepath.Base(root)[len("pf-"):] + ".postfixtest.invalid",
		Ports:     map[string]int{},
	}
	in.Hostname = strings.ToLower(in.Hostname)
	defer func() {
		if err != nil {
			in.halt()
			os.RemoveAll(root)
		}
	}()
	if err := in.layout(); err != nil {
		return nil, err
	}
	if err := in.configure(opts); err != nil {
		return nil, err
	}
	postfix, err := command("postfix")
	if err != nil {
		return nil, err
	}
	// `postfix start` returns only once master has bound its sockets
	// (master -w), and fails if a bind failed.
	out, err := exec.Command(postfix, "-c", in.ConfigDir, "start").CombinedOutput()
	if err != nil {
		log := in.Log()
		if strings.Contains(log, "Address already in use") {
			err = errPortTaken
		}
		return nil, fmt.Errorf("postfix -c %s start: %w\n%s\nmaillog:\n%s", in.ConfigDir, err, out, tail(log, 40))
	}
	if err := waitBanner(in.Addr, in.Hostname, startTimeout, in.alive); err != nil {
		return nil, fmt.Errorf("postfix %s: %w\nmaillog:\n%s", in.Hostname, err, tail(in.Log(), 40))
	}
	return in, nil
}

// layout creates the directories with the owners Postfix insists on: the
// queue and configuration directories root's, the data directory postfix's.
// `postfix start` creates the queue's sub-directories itself.
func (in *Instance) layout() error {
	for _, d := range []string{in.ConfigDir, in.QueueDir, in.DataDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("mkdir: %w", err)
		}
	}
	uid, gid, err := postfixIDs()
	if err != nil {
		return err
	}
	if err := os.Chown(in.DataDir, uid, gid); err != nil {
		return fmt.Errorf("chown %s: %w", in.DataDir, err)
	}
	// Created here so that Log works before the first line is written.
	if err := os.WriteFile(in.MailLog, nil, 0o644); err != nil {
		return fmt.Errorf("maillog: %w", err)
	}
	return nil
}

// baseMainCF is what every instance starts from: a null client-and-relay
// that touches nothing outside its directory and does no DNS.
func (in *Instance) baseMainCF() map[string]string {
	return map[string]string{
		"compatibility_level":   "3.6",
		"config_directory":      in.ConfigDir,
		"queue_directory":       in.QueueDir,
		"data_directory":        in.DataDir,
		"mail_owner":            "postfix",
		"setgid_group":          "postdrop",
		"inet_interfaces":       "127.0.0.1",
		"inet_protocols":        "ipv4",
		"myhostname":            in.Hostname,
		"mydomain":              "postfixtest.invalid",
		"myorigin":              "$myhostname",
		"mydestination":         "",
		"mynetworks":            "127.0.0.0/8",
		"relay_domains":         "",
		"alias_maps":            "",
		"alias_database":        "",
		"local_recipient_maps":  "",
		"smtpd_banner":          "$myhostname ESMTP postfixtest",
		"maillog_file":          in.MailLog,
		"maillog_file_prefixes": in.Dir,
		// No reverse lookups of 127.0.0.1 and no MX lookups: next hops
		// are given as [address]:port.
		"smtpd_peername_lookup":  "no",
		"smtp_dns_support_level": "disabled",
		// A test's mail must not wait for Postfix's congestion throttle
		// or its five-minute retry timers.
		"in_flow_delay":        "0",
		"queue_run_delay":      "1s",
		"minimal_backoff_time": "1s",
		"maximal_backoff_time": "5s",
		"biff":                 "no",
	}
}

// baseMasterCF is Postfix's stock master.cf (3.7) without chroot, the
// services a relay uses, and postlogd for maillog_file. The main smtpd
// listens on 127.0.0.1:{{port "smtpd"}}.
const baseMasterCF = `127.0.0.1:{{port "smtpd"}} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`

// configure writes main.cf and master.cf, choosing the ports the templates
// name.
func (in *Instance) configure(opts Options) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	in.Ports["smtpd"] = port
	in.Port = port
	in.Addr = "127.0.0.1:" + strconv.Itoa(port)

	main := in.baseMainCF()
	for k, v := range opts.MainCF {
		if strings.ContainsAny(k, " =\n") || k == "" {
			return fmt.Errorf("main.cf parameter name %q is not valid", k)
		}
		r, err := in.render("main.cf "+k, v)
		if err != nil {
			return err
		}
		if strings.Contains(r, "\n") {
			return fmt.Errorf("main.cf %s: a value must be one line, got %q", k, r)
		}
		main[k] = r
	}
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(main)) {
		fmt.Fprintf(&b, "%s = %s\n", k, main[k])
	}
	if err := os.WriteFile(filepath.Join(in.ConfigDir, "main.cf"), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("main.cf: %w", err)
	}

	base, err := in.render("base master.cf", baseMasterCF)
	if err != nil {
		return err
	}
	extra, err := in.render("master.cf", opts.MasterCF)
	if err != nil {
		return err
	}
	master := mergeMasterCF(base, extra)
	if err := os.WriteFile(filepath.Join(in.ConfigDir, "master.cf"), []byte(master), 0o644); err != nil {
		return fmt.Errorf("master.cf: %w", err)
	}
	return nil
}

// render expands one template: {{port "NAME"}} and {{.Dir}}.
func (in *Instance) render(name, text string) (string, error) {
	var portErr error
	funcs := template.FuncMap{"port": func(name string) int {
		if p, ok := in.Ports[name]; ok {
			return p
		}
		p, err := freePort()
		if err != nil {
			portErr = err
		}
		in.Ports[name] = p
		return p
	}}
	tpl, err := template.New(name).Funcs(funcs).Option("missingkey=error").Parse(text)
	if err != nil {
		return "", fmt.Errorf("template %s: %w", name, err)
	}
	var b strings.Builder
	if err := tpl.Execute(&b, struct{ Dir string }{in.Dir}); err != nil {
		return "", fmt.Errorf("template %s: %w", name, err)
	}
	return b.String(), portErr
}

// masterEntry is one master.cf service with its continuation lines.
type masterEntry struct {
	key  string // "service type", e.g. "smtp unix" or "127.0.0.1:2525 inet"
	text string
}

// splitMasterCF cuts master.cf text into entries. A line that starts with
// white space continues the entry above it (master(5)); comments and blank
// lines are dropped.
func splitMasterCF(text string) []masterEntry {
	var entries []masterEntry
	for line := range strings.SplitSeq(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if len(entries) > 0 {
				entries[len(entries)-1].text += line + "\n"
			}
			continue
		}
		f := strings.Fields(line)
		key := f[0]
		if len(f) > 1 {
			key += " " + f[1]
		}
		entries = append(entries, masterEntry{key: key, text: line + "\n"})
	}
	return entries
}

// mergeMasterCF returns base with the entries of extra: those with the same
// service and type replace base's, the others are appended.
func mergeMasterCF(base, extra string) string {
	add := splitMasterCF(extra)
	replaced := map[string]bool{}
	for _, e := range add {
		replaced[e.key] = true
	}
	var b strings.Builder
	for _, e := range splitMasterCF(base) {
		if !replaced[e.key] {
			b.WriteString(e.text)
		}
	}
	for _, e := range add {
		b.WriteString(e.text)
	}
	return b.String()
}

// Log returns the instance's maillog so far.
func (in *Instance) Log() string {
	b, err := os.ReadFile(in.MailLog)
	if err != nil {
		return fmt.Sprintf("(maillog %s: %v)", in.MailLog, err)
	}
	return string(b)
}

// WaitLog waits until a line of the maillog matches re and returns that
// line; it fails the test, with the log, if none does within timeout.
func (in *Instance) WaitLog(t testing.TB, re *regexp.Regexp, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for line := range strings.SplitSeq(in.Log(), "\n") {
			if re.MatchString(line) {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfix %s: no maillog line matched %q within %v; maillog:\n%s", in.Hostname, re, timeout, tail(in.Log(), 60))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Set changes main.cf parameters of the running instance (postconf -e) and
// reloads it, returning once master has logged the reload. It serves the
// tests whose topology is circular: start Postfix, then the server it hands
// mail to, then point Postfix at that server's port.
func (in *Instance) Set(t testing.TB, params map[string]string) {
	t.Helper()
	postconf, err := command("postconf")
	if err != nil {
		t.Fatalf("postfixtest: %v", err)
	}
	args := []string{"-c", in.ConfigDir, "-e"}
	for _, k := range slices.Sorted(maps.Keys(params)) {
		args = append(args, k+"="+params[k])
	}
	if out, err := exec.Command(postconf, args...).CombinedOutput(); err != nil {
		t.Fatalf("postfixtest: postconf %s: %v: %s", strings.Join(args, " "), err, out)
	}
	before := strings.Count(in.Log(), "postfix/master[")
	postfix, err := command("postfix")
	if err != nil {
		t.Fatalf("postfixtest: %v", err)
	}
	if out, err := exec.Command(postfix, "-c", in.ConfigDir, "reload").CombinedOutput(); err != nil {
		t.Fatalf("postfixtest: postfix -c %s reload: %v: %s\nmaillog:\n%s", in.ConfigDir, err, out, tail(in.Log(), 40))
	}
	deadline := time.Now().Add(startTimeout)
	for !reloaded(in.Log(), before) {
		if time.Now().After(deadline) {
			t.Fatalf("postfixtest: %s did not log its reload; maillog:\n%s", in.Hostname, tail(in.Log(), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// reloaded tells whether master has logged "reload" after the first skip
// of its lines.
func reloaded(log string, skip int) bool {
	n := 0
	for line := range strings.SplitSeq(log, "\n") {
		if !strings.Contains(line, "postfix/master[") {
			continue
		}
		n++
		if n > skip && strings.Contains(line, ": reload -- ") {
			return true
		}
	}
	return false
}

// Queue returns `postqueue -p` for the instance: "Mail queue is empty" or
// the listing.
func (in *Instance) Queue() (string, error) {
	postqueue, err := command("postqueue")
	if err != nil {
		return "", err
	}
	out, err := exec.Command(postqueue, "-c", in.ConfigDir, "-p").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("postqueue -c %s -p: %w: %s", in.ConfigDir, err, out)
	}
	return string(out), nil
}

// Flush asks the instance to retry its deferred mail now (postqueue -f).
func (in *Instance) Flush() error {
	postqueue, err := command("postqueue")
	if err != nil {
		return err
	}
	out, err := exec.Command(postqueue, "-c", in.ConfigDir, "-f").CombinedOutput()
	if err != nil {
		return fmt.Errorf("postqueue -c %s -f: %w: %s", in.ConfigDir, err, out)
	}
	return nil
}

// Stop stops the instance and removes its directory; it is safe to call
// more than once and is called by t.Cleanup. If the test failed, the
// maillog is logged first.
func (in *Instance) Stop() {
	in.stopOnce.Do(func() {
		if in.t != nil && in.t.Failed() {
			in.t.Logf("postfix %s maillog (%s):\n%s", in.Hostname, in.MailLog, tail(in.Log(), 200))
		}
		in.halt()
		if err := os.RemoveAll(in.Dir); err != nil && in.t != nil {
			in.t.Logf("postfixtest: removing %s: %v", in.Dir, err)
		}
	})
}

// stopTimeout bounds the wait for master to exit after `postfix stop`.
const stopTimeout = 15 * time.Second

// halt stops master: `postfix stop` (SIGTERM, which master passes on to its
// children), then SIGKILL if it is still there after stopTimeout.
func (in *Instance) halt() {
	pid := in.masterPID()
	if pid <= 0 {
		return
	}
	if postfix, err := command("postfix"); err == nil {
		_ = exec.Command(postfix, "-c", in.ConfigDir, "stop").Run()
	}
	deadline := time.Now().Add(stopTimeout)
	for processExists(pid) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if processExists(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// masterPID reads master's pid file, 0 if there is none.
func (in *Instance) masterPID() int {
	b, err := os.ReadFile(filepath.Join(in.QueueDir, "pid", "master.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}

// alive reports an error once master has gone.
func (in *Instance) alive() error {
	if pid := in.masterPID(); pid > 0 && !processExists(pid) {
		return fmt.Errorf("postfix master (pid %d) exited", pid)
	}
	return nil
}

// processExists tells whether pid is a live process (not a zombie waiting
// to be reaped, which master becomes once it has exited).
func processExists(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name.
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}
