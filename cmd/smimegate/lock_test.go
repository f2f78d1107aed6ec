package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"smimegate/internal/config"
	"smimegate/internal/spool"
)

// TestServeRefusesALockedStateDir: the state directory has one lock, the
// spool's. A gateway started while a command on the stopped gateway has
// the spool open refuses to start, rather than run beside it with the
// spool's recovery skipped (with a lock of its own beside the spool's, it
// started). The queue commands take a holder that is a gateway, and only
// that, for a running gateway: another command that has the spool open
// does not send them to an admin API that is not there.
func TestServeRefusesALockedStateDir(t *testing.T) {
	cfgPath, state := queueTestSetup(t, "127.0.0.1:1")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if spool.GatewayRunning(state) {
		t.Fatal("a state directory nobody opened is locked")
	}
	sp, err := spool.Open(state, nil)
	if err != nil {
		t.Fatal(err)
	}
	if spool.GatewayRunning(state) {
		t.Error("a command's open spool is taken for a running gateway")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = serve(ctx, cfgPath, cfg, slog.New(slog.DiscardHandler), nil)
	if err == nil || !strings.Contains(err.Error(), "is locked") {
		t.Fatalf("serve beside an open spool: %v, want a refusal", err)
	}
	sp.Close()
	sp, err = spool.OpenWith(state, spool.Options{Exclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	if !spool.GatewayRunning(state) {
		t.Error("a gateway's spool is not taken for a running gateway")
	}
	if _, err := spool.OpenWith(state, spool.Options{Exclusive: true}); !errors.Is(err, spool.ErrLocked) {
		t.Errorf("a second exclusive open: %v, want ErrLocked", err)
	}
	sp.Close()
	if spool.GatewayRunning(state) {
		t.Error("a gateway that closed its spool still runs (the lock file stays, unheld)")
	}
}
