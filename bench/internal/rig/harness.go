// Package rig is what the programs under bench/ share: a harness that lets
// them use test/postfixtest outside `go test`, the smimegate binary and its
// domain keys, gateway processes with their memory figures, a timestamping
// SMTP sink, and the load generators (Postfix's smtp-source and a Go sender).
package rig

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"testing"
)

// Harness is the testing.TB that test/postfixtest asks for, for a program
// that is not a test: cleanups run when the program ends (normally, after a
// failure, or on SIGINT/SIGTERM), so that no Postfix instance, gateway or
// sink outlives the benchmark.
type Harness struct {
	// The embedded interface is nil. It is there only because testing.TB has
	// an unexported method; every method postfixtest calls (Helper, Fatalf,
	// Skipf, Cleanup, Failed, Logf, TempDir) is defined below, so the nil is
	// never reached.
	testing.TB

	name     string
	mu       sync.Mutex
	cleanups []func()
	failed   bool
	tmp      string
	closed   bool
}

// New returns the harness of the benchmark called name. Its temporary
// directory lives in /tmp, where Postfix's unprivileged daemons can reach it.
func New(name string) *Harness {
	tmp, err := os.MkdirTemp("/tmp", "smgbench-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: temporary directory: %v\n", name, err)
		os.Exit(1)
	}
	h := &Harness{name: name, tmp: tmp}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "%s: %v: stopping everything this benchmark started\n", name, s)
		h.Close()
		os.Exit(2)
	}()
	return h
}

// Dir returns the harness's own temporary directory.
func (h *Harness) Dir() string { return h.tmp }

// Close runs the cleanups, newest first, and removes the temporary
// directory. It is safe to call more than once.
func (h *Harness) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	fns := h.cleanups
	h.cleanups = nil
	h.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
	os.RemoveAll(h.tmp)
}

// Helper does nothing: a program has no test frames to hide.
func (h *Harness) Helper() {}

// Name returns the benchmark's name.
func (h *Harness) Name() string { return h.name }

// Cleanup registers fn to run at Close.
func (h *Harness) Cleanup(fn func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cleanups = append(h.cleanups, fn)
}

// Failed reports whether Fatalf or Errorf was called.
func (h *Harness) Failed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failed
}

// Logf prints to standard error.
func (h *Harness) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, h.name+": "+format+"\n", args...)
}

// Log prints to standard error.
func (h *Harness) Log(args ...any) { h.Logf("%s", fmt.Sprint(args...)) }

// Errorf records a failure and goes on.
func (h *Harness) Errorf(format string, args ...any) {
	h.mu.Lock()
	h.failed = true
	h.mu.Unlock()
	h.Logf(format, args...)
}

// Error records a failure and goes on.
func (h *Harness) Error(args ...any) { h.Errorf("%s", fmt.Sprint(args...)) }

// Fatalf reports the failure, stops everything the benchmark started and
// exits with status 1. A benchmark has no partial result worth printing.
func (h *Harness) Fatalf(format string, args ...any) {
	h.Errorf(format, args...)
	h.Close()
	os.Exit(1)
}

// Fatal is Fatalf without a format.
func (h *Harness) Fatal(args ...any) { h.Fatalf("%s", fmt.Sprint(args...)) }

// Skipf is fatal too: a benchmark that cannot run its reference (Postfix
// missing, not root) has no ratio to report.
func (h *Harness) Skipf(format string, args ...any) {
	h.Fatalf("cannot run: "+format, args...)
}

// Skip is Skipf without a format.
func (h *Harness) Skip(args ...any) { h.Skipf("%s", fmt.Sprint(args...)) }

// TempDir returns a new directory under the harness's own.
func (h *Harness) TempDir() string {
	d, err := os.MkdirTemp(h.tmp, "d")
	if err != nil {
		h.Fatalf("temporary directory: %v", err)
	}
	return d
}
