package rig

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Build compiles cmd/smimegate into the harness's directory and returns the
// binary's path. The benchmarks measure the real binary, as an operator
// runs it, not the packages in-process.
func Build(h *Harness) string {
	bin := filepath.Join(h.Dir(), "smimegate")
	out, err := exec.Command("go", "build", "-o", bin, "smimegate/cmd/smimegate").CombinedOutput()
	if err != nil {
		h.Fatalf("go build smimegate: %v\n%s", err, out)
	}
	return bin
}

// KeyFiles are a domain's certificate and private key as `smimegate keygen`
// wrote them.
type KeyFiles struct {
	Domain  string
	Cert    string
	Key     string
	KeyType string
}

// Keygen makes a domain key of keyType (rsa2048, p256, ...) and its
// self-signed certificate with `smimegate keygen`.
func Keygen(h *Harness, bin, domain, keyType string) KeyFiles {
	dir := filepath.Join(h.Dir(), "keys", keyType, domain)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		h.Fatalf("keys: %v", err)
	}
	out, err := exec.Command(bin, "keygen", "-domain", domain, "-key", keyType, "-out", dir).CombinedOutput()
	if err != nil {
		h.Fatalf("smimegate keygen -domain %s -key %s: %v\n%s", domain, keyType, err, out)
	}
	k := KeyFiles{Domain: domain, KeyType: keyType, Cert: filepath.Join(dir, domain+".crt"), Key: filepath.Join(dir, domain+".key")}
	return k
}

// GatewayOptions describe one smimegate process.
type GatewayOptions struct {
	Domain   string     // local_domains
	Own      []KeyFiles // certificates with keys, into certs.own
	Partners []KeyFiles // certificates only, into certs.partners
	Outbound string     // relay.outbound host:port
	Inbound  string     // relay.inbound host:port
	// SMTP is appended to the [smtp] table (limits such as
	// max_message_bytes), Extra to the end of the file.
	SMTP  string
	Extra string
	// StateParent, if set, is where the gateway's state_dir is made
	// instead of beside its configuration: a diagnosis knob (a tmpfs there
	// shows what the spool's file system costs), never a durable setup.
	StateParent string
}

// Gateway is a running smimegate process.
type Gateway struct {
	Addr  string // SMTP listener
	Admin string // admin listener (/metrics)
	Dir   string
	Log   string // the process's stderr and stdout
	// StateDir is state_dir, where the admin token is.
	StateDir string

	cmd    *exec.Cmd
	exited chan struct{}
}

// StartGateway writes a configuration, starts `smimegate serve` and waits
// until it greets on its SMTP port. The harness stops it at Close. The
// ports are ephemeral ones chosen just before the start; if another process
// takes one in between, the start is retried with new ones.
func StartGateway(h *Harness, bin string, o GatewayOptions) *Gateway {
	dir := h.TempDir()
	for _, sub := range []string{"own", "partners"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			h.Fatalf("gateway directory: %v", err)
		}
	}
	for _, k := range o.Own {
		copyFile(h, k.Cert, filepath.Join(dir, "own", k.Domain+".crt"))
		copyFile(h, k.Key, filepath.Join(dir, "own", k.Domain+".key"))
	}
	for _, k := range o.Partners {
		copyFile(h, k.Cert, filepath.Join(dir, "partners", k.Domain+".crt"))
	}
	stateDir := "state"
	if o.StateParent != "" {
		d, err := os.MkdirTemp(o.StateParent, "smgbench-state-")
		if err != nil {
			h.Fatalf("state_dir under %s: %v", o.StateParent, err)
		}
		h.Cleanup(func() { os.RemoveAll(d) })
		stateDir = d
	}
	const attempts = 5
	for attempt := 1; ; attempt++ {
		g, err := startGateway(h, bin, o, dir, stateDir)
		if err == nil {
			return g
		}
		if !errors.Is(err, errPortTaken) || attempt == attempts {
			h.Fatalf("%v", err)
		}
	}
}

// errPortTaken marks a start that lost one of its ports to another process.
var errPortTaken = errors.New("port taken by another process")

// startGateway makes one attempt at StartGateway with fresh ports.
func startGateway(h *Harness, bin string, o GatewayOptions, dir, stateDir string) (*Gateway, error) {
	g := &Gateway{Addr: FreeAddr(h), Admin: FreeAddr(h), Dir: dir, Log: filepath.Join(dir, "gateway.log"), exited: make(chan struct{})}
	g.StateDir = stateDir
	if !filepath.IsAbs(stateDir) {
		g.StateDir = filepath.Join(dir, stateDir)
	}
	hostname := "gw." + o.Domain
	cfg := fmt.Sprintf(`hostname = "%[8]s"
state_dir = "%[9]s"
local_domains = ["%[1]s"]

[smtp]
listen = ["%[2]s"]
trusted_networks = ["127.0.0.0/8"]
%[3]s

[relay]
outbound = "%[4]s"
inbound = "%[5]s"
tls = "none"

[certs]
own = "own"
partners = "partners"

[admin]
listen = "%[6]s"
# The benchmarks' -pprof flag profiles the gateway (with the admin token).
pprof = true

%[7]s
`, o.Domain, g.Addr, o.SMTP, o.Outbound, o.Inbound, g.Admin, o.Extra, hostname, stateDir)
	cfgPath := filepath.Join(dir, "smimegate.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("gateway configuration: %w", err)
	}
	logFile, err := os.Create(g.Log)
	if err != nil {
		return nil, fmt.Errorf("gateway log: %w", err)
	}
	g.cmd = exec.Command(bin, "serve", "-config", cfgPath)
	g.cmd.Stdout = logFile
	g.cmd.Stderr = logFile
	if err := g.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting smimegate: %w", err)
	}
	go func() {
		_ = g.cmd.Wait()
		logFile.Close()
		close(g.exited)
	}()
	h.Cleanup(g.Stop)
	deadline := time.Now().Add(60 * time.Second)
	for {
		banner, err := readBanner(g.Addr)
		if err == nil {
			// Only our gateway greets with its hostname; anything else
			// is another process that took the port first.
			if strings.HasPrefix(banner, "220 ") && strings.Contains(banner, hostname) {
				return g, nil
			}
			g.Stop()
			return nil, fmt.Errorf("%s greeted %q, not the gateway just started: %w", g.Addr, banner, errPortTaken)
		}
		select {
		case <-g.exited:
			log := g.tail()
			if strings.Contains(log, "address already in use") {
				return nil, fmt.Errorf("smimegate at start: %w:\n%s", errPortTaken, log)
			}
			return nil, fmt.Errorf("smimegate exited at start:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("smimegate did not listen on %s within a minute:\n%s", g.Addr, g.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readBanner reads a server's greeting line and says QUIT.
func readBanner(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("greeting of %s: %w", addr, err)
	}
	_, _ = c.Write([]byte("QUIT\r\n"))
	return strings.TrimRight(line, "\r\n"), nil
}

// PID returns the gateway's process id.
func (g *Gateway) PID() int { return g.cmd.Process.Pid }

// Stop sends SIGTERM and waits (SIGKILL after 30 s). It is safe to call
// more than once.
func (g *Gateway) Stop() {
	select {
	case <-g.exited:
		return
	default:
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
	case <-time.After(30 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.exited
	}
}

// tail returns the end of the gateway's log, for failure reports.
func (g *Gateway) tail() string {
	b, err := os.ReadFile(g.Log)
	if err != nil {
		return fmt.Sprintf("(log %s: %v)", g.Log, err)
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Memory reads the process's resident set from /proc/PID/status: VmRSS now
// and VmHWM, the peak since the process started, in bytes.
func (g *Gateway) Memory() (rss, peak int64, err error) {
	return ProcMemory(g.PID())
}

// ProcMemory reads VmRSS and VmHWM of pid, in bytes.
func ProcMemory(pid int) (rss, peak int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("memory of process %d: %w", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		// The kernel writes "  123456 kB".
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status %s %q: %w", pid, name, value, err)
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			peak = kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	if peak == 0 {
		return 0, 0, fmt.Errorf("/proc/%d/status has no VmHWM", pid)
	}
	return rss, peak, nil
}

// Metric returns the value of one sample of the gateway's /metrics, named
// as Prometheus writes it, e.g. `smimegate_decisions_total{action="encrypt"}`.
// A sample that does not exist yet counts 0.
func (g *Gateway) Metric(sample string) (float64, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + g.Admin + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("metrics of the gateway at %s: %w", g.Admin, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("metrics of the gateway at %s: %w", g.Admin, err)
	}
	for line := range bytes.SplitSeq(body, []byte("\n")) {
		name, value, ok := bytes.Cut(line, []byte(" "))
		if !ok || string(name) != sample {
			continue
		}
		v, err := strconv.ParseFloat(string(bytes.TrimSpace(value)), 64)
		if err != nil {
			return 0, fmt.Errorf("metric %s: %q: %w", sample, value, err)
		}
		return v, nil
	}
	return 0, nil
}

// MustMetric is Metric that fails the harness on error.
func (g *Gateway) MustMetric(h *Harness, sample string) float64 {
	v, err := g.Metric(sample)
	if err != nil {
		h.Fatalf("%v", err)
	}
	return v
}

// FreeAddr returns a free 127.0.0.1 address with an ephemeral port.
func FreeAddr(h *Harness) string {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		h.Fatalf("finding a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

func copyFile(h *Harness, from, to string) {
	b, err := os.ReadFile(from)
	if err != nil {
		h.Fatalf("copy: %v", err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		h.Fatalf("copy: %v", err)
	}
}
