package rig

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"smimegate/internal/console"
)

// Perf is a `perf record` attached to one process: the gateway's binary has
// no pprof endpoint, and perf samples it as it runs, call graphs included
// (Go keeps frame pointers on amd64 and arm64).
type Perf struct {
	out  string
	cmd  *exec.Cmd
	done chan error
	once sync.Once
}

// StartPerf starts sampling pid at 999 Hz into out. The harness stops it at
// Close if Report was not called.
func StartPerf(h *Harness, pid int, out string) *Perf {
	bin, err := exec.LookPath("perf")
	if err != nil {
		h.Fatalf("-perf: perf is not installed (Debian: linux-perf): %v", err)
	}
	p := &Perf{out: out, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, "record", "-q", "-F", "999", "-g", "-p", strconv.Itoa(pid), "-o", out)
	if err := p.cmd.Start(); err != nil {
		h.Fatalf("starting perf: %v", err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	h.Cleanup(p.stop)
	// perf needs a moment to attach; samples before that are lost.
	time.Sleep(500 * time.Millisecond)
	return p
}

// stop ends the recording: perf writes its file on SIGINT.
func (p *Perf) stop() {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// Report stops sampling and returns perf's flat profile (self time by
// symbol, the top lines) and the same by shared object.
func (p *Perf) Report(lines int) (string, error) {
	p.stop()
	bySym, err := exec.Command("perf", "report", "-i", p.out, "--stdio", "--no-children", "-g", "none",
		"--sort", "symbol", "--percent-limit", "0.7").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("perf report: %w\n%s", err, bySym)
	}
	byDSO, err := exec.Command("perf", "report", "-i", p.out, "--stdio", "--no-children", "-g", "none",
		"--sort", "dso").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("perf report: %w\n%s", err, byDSO)
	}
	return firstLines(string(bySym), lines) + "\n" + firstLines(string(byDSO), 20), nil
}

func firstLines(s string, n int) string {
	out := ""
	for i, line := range splitLines(s) {
		if i >= n {
			break
		}
		out += line + "\n"
	}
	return out
}

func splitLines(s string) []string {
	var lines []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			if line := s[start:i]; len(line) > 0 && line[0] != '#' {
				lines = append(lines, line)
			}
			start = i + 1
		}
	}
	return lines
}

// FetchProfile saves a Go CPU profile of seconds from a gateway's admin
// listener (/debug/pprof/profile, which needs the admin token) into out.
func FetchProfile(gw *Gateway, seconds int, out string) error {
	token, err := console.ReadToken(gw.StateDir)
	if err != nil {
		return err
	}
	req, err := http.NewRequest("GET", fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", gw.Admin, seconds), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Request.URL, resp.Status)
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
