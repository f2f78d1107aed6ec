// Package e2e runs the built smimegate binary against real peers: loopback
// SMTP sinks, `openssl cms`, and a second gateway. The tests look at the
// gateways only from outside: SMTP in, SMTP out, the command line, and the
// admin API and /metrics, through which they wait for what a gateway does
// on its own (a message held, quarantined, a certificate loaded) instead of
// for its log lines; a log line the operator reads is checked after its
// event.
package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"smimegate/internal/mailsink"
)

var (
	bin     string // the smimegate binary under test
	keysDir string // domain certificates made once for the whole package
)

// domains for which TestMain makes a key and certificate with `keygen`.
var keyDomains = []string{"example.org", "example.net", "sub.example.net", "secure.test", "other.example.net"}

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	tmp, err := os.MkdirTemp("", "smimegate-e2e-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(tmp)
	bin = filepath.Join(tmp, "smimegate")
	build := exec.Command("go", "build", "-o", bin, "smimegate/cmd/smimegate")
	if out, err := build.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("go build: %v\n%s", err, out)
	}
	keysDir = filepath.Join(tmp, "keys")
	for _, d := range keyDomains {
		dir := filepath.Join(keysDir, d)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return 0, err
		}
		out, err := exec.Command(bin, "keygen", "-domain", d, "-key", "rsa2048", "-out", dir).CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("keygen %s: %v\n%s", d, err, out)
		}
	}
	return m.Run(), nil
}

// keyFiles returns the certificate and key made for domain.
func keyFiles(domain string) (crt, key string) {
	dir := filepath.Join(keysDir, domain)
	return filepath.Join(dir, domain+".crt"), filepath.Join(dir, domain+".key")
}

// gateway is one running smimegate process.
type gateway struct {
	t       *testing.T
	dir     string
	cfgPath string
	smtp    string
	admin   string
	cmd     *exec.Cmd
	log     *syncBuffer
	exited  chan struct{}
	token   string // the admin token, once read
}

type gatewayOptions struct {
	domain   string   // local domain
	own      []string // domains whose key and certificate go into certs.own
	partners []string // domains whose certificate goes into certs.partners
	outbound string   // relay.outbound
	inbound  string   // relay.inbound
	trusted  string   // TOML array for smtp.trusted_networks; default all of loopback
	extra    string   // more TOML, appended
	listen   string   // smtp.listen; default a free loopback port

	smtpExtra string // more keys for [smtp]
	relayTLS  string // relay.tls; default "none"
	// spoolFirst sets queue.relay_first = false: every message is
	// committed to the spool before the 250 and delivered from there.
	spoolFirst bool
}

func startGateway(t *testing.T, o gatewayOptions) *gateway {
	t.Helper()
	dir := t.TempDir()
	for _, sub := range []string{"own", "partners"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range o.own {
		crt, key := keyFiles(d)
		copyFile(t, crt, filepath.Join(dir, "own", d+".crt"))
		copyFile(t, key, filepath.Join(dir, "own", d+".key"))
	}
	for _, d := range o.partners {
		crt, _ := keyFiles(d)
		copyFile(t, crt, filepath.Join(dir, "partners", d+".crt"))
	}
	// Quick retries, unless the test sets its own [queue].
	queue := "[queue]\nmin_backoff = \"1s\"\nmax_backoff = \"2s\"\n"
	if strings.Contains(o.extra, "[queue]") {
		queue = ""
	}
	if o.spoolFirst {
		if queue != "" {
			queue += "relay_first = false\n"
		} else {
			o.extra = strings.Replace(o.extra, "[queue]\n", "[queue]\nrelay_first = false\n", 1)
		}
	}
	if o.trusted == "" {
		o.trusted = `["127.0.0.0/8"]`
	}
	if o.relayTLS == "" {
		o.relayTLS = "none"
	}
	ownListen := o.listen == ""
	if ownListen {
		o.listen = freeAddr(t)
	}
	g := &gateway{t: t, dir: dir, cfgPath: filepath.Join(dir, "smimegate.toml"), smtp: o.listen, admin: freeAddr(t), log: &syncBuffer{}, exited: make(chan struct{})}
	// A port that freeAddr found free may be taken by another process
	// before the gateway binds it (the machine runs other tests too): the
	// gateway is then started again on new ports, a few times.
	for attempt := 1; ; attempt++ {
		g.writeConfig(o, queue)
		err := g.launch()
		if err == nil {
			break
		}
		if attempt == maxStartAttempts || !ownListen || !strings.Contains(g.log.String(), "address already in use") {
			t.Fatal(err)
		}
		g.smtp, g.admin, g.log = freeAddr(t), freeAddr(t), &syncBuffer{}
	}
	t.Cleanup(g.stop)
	return g
}

// maxStartAttempts bounds the restarts of startGateway on a port that was
// taken in between.
const maxStartAttempts = 3

// writeConfig writes the gateway's configuration file for o, on its
// current ports; queue is the [queue] section startGateway chose.
func (g *gateway) writeConfig(o gatewayOptions, queue string) {
	g.t.Helper()
	cfg := fmt.Sprintf(`hostname = "gw.%s"
state_dir = "state"
local_domains = ["%s"]

[smtp]
listen = ["%s"]
trusted_networks = %s
%s
[relay]
outbound = "%s"
inbound = "%s"
tls = "%s"

[certs]
own = "own"
partners = "partners"

%s
[admin]
listen = "%s"
%s
`, o.domain, o.domain, g.smtp, o.trusted, o.smtpExtra, o.outbound, o.inbound, o.relayTLS, queue, g.admin, o.extra)
	if err := os.WriteFile(g.cfgPath, []byte(cfg), 0o600); err != nil {
		g.t.Fatal(err)
	}
}

// start starts the gateway's process and waits until it listens for SMTP.
func (g *gateway) start() {
	g.t.Helper()
	if err := g.launch(); err != nil {
		g.t.Fatal(err)
	}
}

// launch is start, returning what went wrong.
func (g *gateway) launch() error {
	g.cmd = exec.Command(bin, "serve", "-config", g.cfgPath)
	g.cmd.Stdout = g.log
	g.cmd.Stderr = g.log
	if err := g.cmd.Start(); err != nil {
		return err
	}
	g.exited = make(chan struct{})
	exited := g.exited
	go func() { g.cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(waitTimeout)
	for {
		c, err := net.Dial("tcp", g.smtp)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-g.exited:
			return fmt.Errorf("gateway exited at start:\n%s", g.log.String())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gateway did not listen on %s:\n%s", g.smtp, g.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits; the log is shown if the test failed.
func (g *gateway) stop() {
	if g.cmd == nil || g.cmd.Process == nil {
		return
	}
	select {
	case <-g.exited:
	default:
		g.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-g.exited:
		case <-time.After(30 * time.Second):
			g.cmd.Process.Kill()
			<-g.exited
		}
	}
	if g.t.Failed() {
		g.t.Logf("log of gateway %s:\n%s", g.cfgPath, g.log.String())
	}
	g.cmd = nil
}

// kill stops the gateway with SIGKILL, as a crash would.
func (g *gateway) kill() {
	g.cmd.Process.Kill()
	<-g.exited
	g.cmd = nil
}

func (g *gateway) hup() { g.cmd.Process.Signal(syscall.SIGHUP) }

// run runs an operator command against this gateway's configuration;
// -config goes after the command's first word (cert show -config F D).
func (g *gateway) run(args ...string) (string, error) {
	args = append([]string{args[0], args[1], "-config", g.cfgPath}, args[2:]...)
	out, err := exec.Command(bin, args...).CombinedOutput()
	return string(out), err
}

// send submits a message over SMTP and returns the error of the
// transaction (an *textproto.Error for a 4xx/5xx reply).
func send(addr, from string, to []string, msg string) error {
	return smtp.SendMail(addr, nil, from, to, []byte(msg))
}

func mustSend(t *testing.T, addr, from string, to []string, msg string) {
	t.Helper()
	if err := send(addr, from, to, msg); err != nil {
		t.Fatalf("sending to %s: %v", addr, err)
	}
}

func startSink(t *testing.T) *mailsink.Sink {
	t.Helper()
	s, err := mailsink.Start("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func waitMessages(t *testing.T, s *mailsink.Sink, n int) []mailsink.Message {
	t.Helper()
	msgs, err := s.Wait(n, 30*time.Second)
	if err != nil {
		t.Fatalf("%v: got %d of %d", err, len(msgs), n)
	}
	return msgs
}

// opensslDecrypt opens a sealed message with `openssl cms -decrypt`.
func opensslDecrypt(t *testing.T, sealed []byte, domain string) ([]byte, error) {
	t.Helper()
	crt, key := keyFiles(domain)
	in := filepath.Join(t.TempDir(), "in.eml")
	if err := os.WriteFile(in, sealed, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("openssl", "cms", "-decrypt", "-in", in, "-recip", crt, "-inkey", key, "-binary")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("openssl cms -decrypt: %v: %s", err, stderr.String())
	}
	return out, nil
}

// opensslEncrypt seals a message to domain's certificate with openssl, as a
// partner gateway running OpenSSL would; args are extra options.
func opensslEncrypt(t *testing.T, msg []byte, domain string, args ...string) []byte {
	t.Helper()
	crt, _ := keyFiles(domain)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.eml")
	if err := os.WriteFile(in, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	cmdArgs := append([]string{"cms", "-encrypt", "-binary", "-in", in}, args...)
	if slices.Contains(args, "-keyopt") {
		// -keyopt applies to the certificate named by the -recip before it.
		cmdArgs = append([]string{"cms", "-encrypt", "-binary", "-in", in, "-recip", crt}, args...)
	} else {
		cmdArgs = append(cmdArgs, crt)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("openssl", cmdArgs...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("openssl %v: %v: %s", cmdArgs, err, stderr.String())
	}
	// OpenSSL ends its MIME lines in LF; SMTP carries CRLF.
	return crlf(out)
}

// crlf turns bare LF line ends into CRLF.
func crlf(b []byte) []byte {
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// header returns the header section of a message.
func header(msg []byte) string {
	h, _, _ := strings.Cut(string(msg), "\r\n\r\n")
	return h + "\r\n"
}

// withoutTrace strips the leading fields our gateways add (Received, and on
// inbound mail our Authentication-Results and Smimegate-* fields), so that
// what is left can be compared with what the sender sent.
func withoutTrace(msg []byte) []byte {
	for bytes.HasPrefix(msg, []byte("Received:")) || bytes.HasPrefix(msg, []byte("Authentication-Results:")) || bytes.HasPrefix(msg, []byte("Smimegate-")) {
		i := bytes.Index(msg, []byte("\r\n"))
		for i >= 0 && i+2 < len(msg) && (msg[i+2] == ' ' || msg[i+2] == '\t') {
			j := bytes.Index(msg[i+2:], []byte("\r\n"))
			if j < 0 {
				break
			}
			i += 2 + j
		}
		if i < 0 {
			break
		}
		msg = msg[i+2:]
	}
	return msg
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitTimeout bounds every wait for something the gateway does on its own.
const waitTimeout = 20 * time.Second

// A wait looks at the gateway's state through its admin API (an HTTP
// request on loopback) first after pollFirst, then at intervals that
// double up to pollMax: an event that comes at once is seen within
// milliseconds, and a long wait costs the gateway a few dozen listings,
// not hundreds.
const (
	pollFirst = 5 * time.Millisecond
	pollMax   = 50 * time.Millisecond
)

// logGrace bounds how long a log line may trail the event it reports: the
// gateway writes it before (or as) the state changes, but its output
// reaches the test through a pipe.
const logGrace = 2 * time.Second

// queued is a message as the admin API lists it (GET /queue, GET
// /quarantine): the fields the tests look at.
type queued struct {
	ID         string `json:"id"`
	Sender     string `json:"sender"`
	Stage      string `json:"stage"`
	Attempts   int    `json:"attempts"`
	LastError  string `json:"last_error"`
	Reason     string `json:"reason"`
	Recipients []struct {
		Addr string `json:"addr"`
	} `json:"recipients"`
	Versions []struct {
		Action     string `json:"action"`
		Domain     string `json:"domain"`
		Recipients []struct {
			Addr      string `json:"addr"`
			State     string `json:"state"`
			Attempts  int    `json:"attempts"`
			LastError string `json:"last_error"`
		} `json:"recipients"`
	} `json:"versions"`
}

// state returns where rcpt stands in m: "held", "pending", "delivered",
// "bounced", "waiting" (the policy step has not run or is to be retried),
// or "" when m is not for rcpt. lastError is the recipient's last error
// (the message's, while it waits).
func (m queued) state(rcpt string) (state, lastError string) {
	for _, v := range m.Versions {
		for _, d := range v.Recipients {
			if d.Addr != rcpt {
				continue
			}
			if v.Action == "hold" && d.State == "pending" {
				return "held", d.LastError
			}
			return d.State, d.LastError
		}
	}
	if m.Stage == "received" {
		for _, r := range m.Recipients {
			if r.Addr == rcpt {
				return "waiting", m.LastError
			}
		}
	}
	return "", ""
}

// attempts returns how often rcpt was attempted (or, held, looked at
// again) in m.
func (m queued) attempts(rcpt string) int {
	for _, v := range m.Versions {
		for _, d := range v.Recipients {
			if d.Addr == rcpt {
				return d.Attempts
			}
		}
	}
	return m.Attempts
}

// adminToken reads the token the gateway makes in its state directory at
// its first start (a restart keeps it); an error until it exists.
func (g *gateway) adminToken() (string, error) {
	if g.token == "" {
		b, err := os.ReadFile(filepath.Join(g.dir, "state", "admin.token"))
		if err != nil {
			return "", err
		}
		g.token = strings.TrimSpace(string(b))
	}
	return g.token, nil
}

// api GETs path from the gateway's admin API into out (JSON), or returns
// the body as text when out is a *string.
func (g *gateway) api(path string, out any) error {
	req, err := http.NewRequest("GET", "http://"+g.admin+path, nil)
	if err != nil {
		return err
	}
	if path != "/metrics" {
		token, err := g.adminToken()
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(body))
	}
	if s, ok := out.(*string); ok {
		*s = string(body)
		return nil
	}
	return json.Unmarshal(body, out)
}

// waitFor calls check every pollEvery until it returns true, failing the
// test with what and the gateway's log after waitTimeout; it also fails
// at once if the gateway exits.
func (g *gateway) waitFor(what string, check func() (bool, error)) {
	g.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for every := pollFirst; ; every = min(2*every, pollMax) {
		ok, err := check()
		if ok {
			return
		}
		select {
		case <-g.exited:
			g.t.Fatalf("%s: the gateway exited:\n%s", what, g.log.String())
		default:
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("%s (after %s; last error %v):\n%s", what, waitTimeout, err, g.log.String())
		}
		time.Sleep(every)
	}
}

// waitQueue waits until the queue, as the admin API lists it, satisfies
// ok, and returns that listing.
func (g *gateway) waitQueue(what string, ok func([]queued) bool) []queued {
	g.t.Helper()
	var q []queued
	g.waitFor(what, func() (bool, error) {
		q = nil
		if err := g.api("/queue", &q); err != nil {
			return false, err
		}
		return ok(q), nil
	})
	return q
}

// waitQuarantine is waitQueue for the quarantine.
func (g *gateway) waitQuarantine(what string, ok func([]queued) bool) []queued {
	g.t.Helper()
	var q []queued
	g.waitFor(what, func() (bool, error) {
		q = nil
		if err := g.api("/quarantine", &q); err != nil {
			return false, err
		}
		return ok(q), nil
	})
	return q
}

// waitRecipient waits until a queued message has rcpt in state (see
// queued.state) with a last error containing errPart, and returns it.
//
// It is called once the client has its reply, when the message is in the
// queue (committed before the 250) or done with: a listing without rcpt
// means it left the queue some other way (delivered, bounced,
// quarantined), and the wait fails at once rather than at waitTimeout.
func (g *gateway) waitRecipient(rcpt, state, errPart string) queued {
	g.t.Helper()
	var found queued
	var gone bool
	g.waitQueue(fmt.Sprintf("no queued message has %s %s (last error with %q)", rcpt, state, errPart), func(q []queued) bool {
		seen := false
		for _, m := range q {
			s, e := m.state(rcpt)
			if s != "" {
				seen = true
			}
			if s == state && strings.Contains(e, errPart) {
				found = m
				return true
			}
		}
		gone = !seen
		return gone
	})
	if gone {
		g.t.Fatalf("%s is not in the queue: it left instead of becoming %s\n%s", rcpt, state, g.log.String())
	}
	return found
}

// waitQuarantined waits until the quarantine holds n messages, and
// returns them. Like waitRecipient it is called once the clients have
// their replies: when the queue is empty and the quarantine holds fewer,
// nothing more can come and the wait fails at once.
func (g *gateway) waitQuarantined(n int) []queued {
	g.t.Helper()
	var q []queued
	what := fmt.Sprintf("the quarantine does not hold %d message(s)", n)
	g.waitFor(what, func() (bool, error) {
		// The queue first: a message that moves to the quarantine after
		// this listing is in the next one.
		var inQueue []queued
		if err := g.api("/queue", &inQueue); err != nil {
			return false, err
		}
		q = nil
		if err := g.api("/quarantine", &q); err != nil {
			return false, err
		}
		if len(q) != n && len(inQueue) == 0 {
			g.t.Fatalf("%s but %d, and the queue is empty:\n%s", what, len(q), g.log.String())
		}
		return len(q) == n, nil
	})
	return q
}

// waitEmptyQueue waits until the queue is empty.
func (g *gateway) waitEmptyQueue() {
	g.t.Helper()
	g.waitQueue("the queue is not empty", func(q []queued) bool { return len(q) == 0 })
}

// waitMetrics waits until the gateway's /metrics satisfy ok, and returns
// them.
func (g *gateway) waitMetrics(what string, ok func(metrics string) bool) string {
	g.t.Helper()
	var m string
	g.waitFor(what, func() (bool, error) {
		if err := g.api("/metrics", &m); err != nil {
			return false, err
		}
		return ok(m), nil
	})
	return m
}

// waitSample waits until /metrics has a line matching the regular
// expression re (anchored to a whole line).
func (g *gateway) waitSample(re string) string {
	g.t.Helper()
	r := regexp.MustCompile("(?m)^" + re + "$")
	return g.waitMetrics("/metrics never had "+re, r.MatchString)
}

// certSamples counts the certificates the running gateway has loaded (the
// smimegate_certificate_usable samples), to tell when a SIGHUP that
// changed the certificate directories has been applied.
func (g *gateway) certSamples() int {
	g.t.Helper()
	// The admin listener may start a moment after the SMTP one.
	m := g.waitMetrics("/metrics did not answer", func(string) bool { return true })
	return strings.Count(m, "\nsmimegate_certificate_usable{")
}

// hupCerts sends SIGHUP after the certificate directories changed by
// delta certificates, and waits until the gateway serves the new set.
func (g *gateway) hupCerts(delta int) {
	g.t.Helper()
	want := g.certSamples() + delta
	g.hup()
	g.waitMetrics(fmt.Sprintf("the reload did not bring %d certificate(s)", want), func(m string) bool {
		return strings.Count(m, "\nsmimegate_certificate_usable{") == want
	})
}

// hupConfig sends SIGHUP after a change of the configuration file alone,
// and waits for the reload to be done. Nothing the admin API shows
// changes with such a reload, so its log line is the event.
func (g *gateway) hupConfig() {
	g.t.Helper()
	n := strings.Count(g.log.String(), "msg=reloaded")
	g.hup()
	g.waitFor("the gateway did not reload", func() (bool, error) {
		return strings.Count(g.log.String(), "msg=reloaded") > n, nil
	})
}

// expectLog checks, once the event it reports has been seen through the
// admin API or a sink, that the gateway logged substr: the operator's
// account of it.
func (g *gateway) expectLog(substr string) {
	g.t.Helper()
	deadline := time.Now().Add(logGrace)
	for !strings.Contains(g.log.String(), substr) {
		if time.Now().After(deadline) {
			g.t.Fatalf("the gateway did not log %q:\n%s", substr, g.log.String())
		}
		time.Sleep(pollFirst)
	}
}

// waitLog waits until the gateway's log contains substr. It is for what
// only the log tells (a start-up check's result); a wait for anything the
// admin API or a sink shows uses those instead.
func (g *gateway) waitLog(substr string) {
	g.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !strings.Contains(g.log.String(), substr) {
		if time.Now().After(deadline) {
			g.t.Fatalf("the gateway never logged %q:\n%s", substr, g.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitRun runs an operator command until it succeeds with an output that
// ok accepts, and returns that output.
func (g *gateway) waitRun(what string, ok func(out string) bool, args ...string) string {
	g.t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		out, err := g.run(args...)
		if err == nil && ok(out) {
			return out
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("%s: %v\n%s", what, err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mustRun runs an operator command once, after the event it shows was
// waited for, and returns its output.
func (g *gateway) mustRun(args ...string) string {
	g.t.Helper()
	out, err := g.run(args...)
	if err != nil {
		g.t.Fatalf("smimegate %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}
