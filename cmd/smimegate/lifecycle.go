package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"time"

	"smimegate/internal/certstore"
	"smimegate/internal/config"
)

// The certificate lifecycle of a running gateway: revocation checking
// (certs.revocation, with certs.trust_anchors) and SMIMEA discovery
// ([discovery] smimea), whose answers live in state_dir/revocation and
// state_dir/discovery. `serve` owns them and refreshes them in the
// background; the commands that show certificates read the same caches
// without writing them.

// reloadCheckTimeout bounds the revocation check of a SIGHUP: every
// fetch has its own timeout, so this only bounds how long a reload waits
// for many slow ones before the new certificates take effect.
const reloadCheckTimeout = 30 * time.Second

// discoveryCommandWait bounds the SMIMEA lookups of `cert show` and
// `encrypt`.
const discoveryCommandWait = 20 * time.Second

// lifecycle is the revocation checker and discovery of one process.
type lifecycle struct {
	rev  *certstore.Revocation
	disc *certstore.Discovery // nil without [discovery] smimea
}

func revocationMode(cfg *config.Config) certstore.RevocationMode {
	m, err := certstore.ParseRevocationMode(cfg.Certs.Revocation)
	if err != nil {
		return certstore.RevocationStrict // validated already; never relax on a surprise
	}
	return m
}

// newLifecycle makes the revocation checker and, when configured, the
// discovery for cfg. Only serve writes the caches and fetches revocation
// answers; the other commands (cert list and show, check-config, encrypt)
// read the caches, and those that ask DNS (cert show, encrypt) keep its
// answers in memory.
func newLifecycle(cfg *config.Config, logger *slog.Logger, serve bool) lifecycle {
	readOnly := !serve
	lc := lifecycle{rev: certstore.NewRevocation(certstore.RevocationOptions{
		Mode:     revocationMode(cfg),
		Grace:    cfg.Certs.RevocationGrace.D(),
		MaxAge:   cfg.Certs.RevocationMaxAge.D(),
		Dir:      filepath.Join(cfg.StateDir, "revocation"),
		ReadOnly: readOnly,
		Offline:  readOnly,
		Logger:   logger,
	})}
	if cfg.Discovery.SMIMEA {
		lc.disc = certstore.NewDiscovery(certstore.DiscoveryOptions{
			Server:   cfg.Discovery.DNSServer,
			Names:    cfg.Certs.Names,
			Dir:      filepath.Join(cfg.StateDir, "discovery"),
			ReadOnly: readOnly,
			Logger:   logger,
		})
	}
	return lc
}

// apply hands the lifecycle to certificate store options.
func (lc lifecycle) apply(opts *certstore.Options) {
	opts.Revocation = lc.rev
	if lc.disc != nil {
		opts.Discovery = lc.disc
	}
}

// run refreshes revocation answers and SMIMEA answers until ctx ends.
func (lc lifecycle) run(ctx context.Context) {
	go lc.rev.Run(ctx)
	if lc.disc != nil {
		go lc.disc.Run(ctx)
	}
}

// recheck applies a reloaded configuration's revocation policy and checks
// every certificate again at once (SIGHUP), within reloadCheckTimeout.
func (lc lifecycle) recheck(ctx context.Context, cfg *config.Config) {
	lc.rev.SetPolicy(revocationMode(cfg), cfg.Certs.RevocationGrace.D(), cfg.Certs.RevocationMaxAge.D())
	if cfg.Certs.TrustAnchors == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, reloadCheckTimeout)
	defer cancel()
	lc.rev.CheckNow(ctx)
}
