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
// started); the queue commands see the same lock as "a gateway runs".
func TestServeRefusesALockedStateDir(t *testing.T) {
	cfgPath, state := queueTestSetup(t, "127.0.0.1:1")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if spool.Locked(state) {
		t.Fatal("a state directory nobody opened is locked")
	}
	sp, err := spool.Open(state, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !spool.Locked(state) {
		t.Error("an open spool does not lock the state directory")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = serve(ctx, cfgPath, cfg, slog.New(slog.DiscardHandler), nil)
	if err == nil || !strings.Contains(err.Error(), "is locked") {
		t.Fatalf("serve beside an open spool: %v, want a refusal", err)
	}
	sp.Close()
	if spool.Locked(state) {
		t.Error("the lock outlives Close")
	}
	sp, err = spool.OpenWith(state, spool.Options{Exclusive: true})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	if _, err := spool.OpenWith(state, spool.Options{Exclusive: true}); !errors.Is(err, spool.ErrLocked) {
		t.Errorf("a second exclusive open: %v, want ErrLocked", err)
	}
}
