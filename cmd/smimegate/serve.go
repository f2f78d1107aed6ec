package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"syscall"

	"smimegate/internal/certstore"
	"smimegate/internal/config"
	"smimegate/internal/courier"
	"smimegate/internal/gateway"
	"smimegate/internal/smtpd"
	"smimegate/internal/spool"
)

// quickstart is what `serve` prints when there is no configuration file:
// one screen that says what to write, rather than an error.
const quickstart = `smimegate serve: no configuration file at %s

smimegate needs three things to run: the domain(s) it serves, where mail
goes next, and a domain certificate with its key. A minimal setup:

  1. Make the domain certificate and key (send the .crt to your partners):

       smimegate keygen -domain example.org -out /etc/smimegate/own

  2. Put the partners' domain certificates into /etc/smimegate/partners
     (smimegate cert import FILE... checks and copies them there).

  3. Write %s:

       hostname      = "gw.example.org"
       state_dir     = "/var/lib/smimegate"
       local_domains = ["example.org"]

       [relay]
       outbound = "mx"               # or host:port of your outbound relay
       inbound  = "10.0.0.5:25"      # your internal mail server

       [certs]
       own      = "/etc/smimegate/own"
       partners = "/etc/smimegate/partners"

  4. Check it and start:

       smimegate check-config -config %[2]s
       smimegate serve -config %[2]s

Every key, its default and its meaning: README.md ("Configuration").
To see two gateways at work first: smimegate demo
`

func runServe(args []string) error {
	fs := newFlagSet("serve", "[-config FILE]")
	cfgPath := configFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if errors.Is(err, config.ErrNoFile) {
		fmt.Fprintf(os.Stderr, quickstart, *cfgPath, *cfgPath)
		return errors.New("no configuration (see above)")
	}
	if err != nil {
		return err
	}
	logger := newLogger(os.Stderr, cfg.LogLevel)
	return serve(context.Background(), *cfgPath, cfg, logger, nil)
}

// serve runs a gateway until SIGTERM or SIGINT (or ctx ends). ready, if not
// nil, is closed once the listeners accept connections.
func serve(ctx context.Context, cfgPath string, cfg *config.Config, logger *slog.Logger, ready chan<- struct{}) error {
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	if err := serveAsStateDirOwner(cfg.StateDir); err != nil {
		return err
	}
	// The spool's lock is the state directory's one lock: held while the
	// gateway runs, so that two gateways never share a spool and the queue
	// commands know to go through the admin API.
	sp, err := spool.OpenWith(cfg.StateDir, spool.Options{Logger: logger, Exclusive: true})
	if errors.Is(err, spool.ErrLocked) {
		return fmt.Errorf("another smimegate is running with state_dir %s, or a queue command has its spool open (%s is locked)", cfg.StateDir, filepath.Join(cfg.StateDir, spool.LockFile))
	}
	if err != nil {
		return fmt.Errorf("opening the spool in %s: %w", cfg.StateDir, err)
	}
	// Deferred first, so run last: the lock goes when everything that
	// uses the spool has stopped.
	defer sp.Close()
	certOpts, err := certOptions(cfg, logger)
	if err != nil {
		return err
	}
	lc := newLifecycle(cfg, logger, true)
	lc.apply(&certOpts)
	store, err := certstore.Load(certOpts)
	if err != nil {
		return err
	}
	warnCerts(logger, cfg, store)

	cour := courier.New(courierConfig(cfg, logger))
	defer cour.Close()
	gw := gateway.New(cfg, store, sp, gateway.Options{Logger: logger, Courier: cour})

	// smtpd loads smtp.tls_cert and smtp.tls_key itself.
	opts := smtpd.Options{Logger: logger, Check: gw.Check, Handoff: gw.Handoff, InMemory: gw.InMemory}
	if cfg.SMTP.VerifyRecipients {
		// Only then: the receiver watches the client during each probe,
		// which costs a goroutine per local RCPT. [smtp] changes need a
		// restart, so the choice holds for the process.
		opts.VerifyRecipient = gw.VerifyRecipient
	}
	srv, err := smtpd.New(cfg, sp, opts)
	if err != nil {
		return err
	}

	// SIGHUP is caught before anything listens: its default action ends
	// the process, and a reload sent as soon as the port answers (by an
	// operator's script, or a test) must not kill the gateway.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// Listen first, so that a port in use is an error at start-up, not a
	// log line after the gateway claims to run.
	var listeners []net.Listener
	for _, addr := range cfg.SMTP.Listen {
		l, err := smtpd.Listen(addr)
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return fmt.Errorf("smtp.listen %s: %w", addr, err)
		}
		listeners = append(listeners, l)
	}
	var admin *http.Server
	if cfg.Admin.Listen != "" {
		if admin, err = startAdmin(ctx, cfg, gw, logger); err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return err
		}
	}

	gwDone := make(chan error, 1)
	go func() { gwDone <- gw.Run(ctx) }()
	lc.run(ctx)
	for _, l := range listeners {
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, smtpd.ErrServerClosed) {
				logger.Error("SMTP listener failed", "addr", l.Addr().String(), "err", err)
			}
		}()
	}
	logger.Info("smimegate running", "hostname", cfg.Hostname, "smtp", cfg.SMTP.Listen, "admin", cfg.Admin.Listen,
		"local_domains", cfg.LocalDomains, "state_dir", cfg.StateDir, "config", cfgPath)
	if ready != nil {
		close(ready)
	}

	for {
		select {
		case <-hup:
			reload(ctx, cfgPath, logger, gw, certOpts, lc)
			continue
		case <-ctx.Done():
		}
		break
	}

	logger.Info("shutting down: no new connections; attempts in flight may finish", "grace", cfg.Queue.ShutdownGrace.D())
	shutCtx, cancel := context.WithTimeout(context.Background(), cfg.Queue.ShutdownGrace.D())
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		logger.Warn("SMTP sessions cut at shutdown", "err", err)
	}
	err = <-gwDone
	if admin != nil {
		_ = admin.Shutdown(shutCtx)
	}
	logger.Info("stopped", "queued", gw.Pending())
	return err
}

// reload re-reads the configuration and the certificates (SIGHUP). A bad
// configuration is reported and the running one kept; certificate files
// that no longer load keep their previous version (certstore.Reload).
// Revocation is checked again at once, before the new certificates take
// effect; SMTP sessions meanwhile go on with the old ones.
func reload(ctx context.Context, cfgPath string, logger *slog.Logger, gw *gateway.Gateway, certOpts certstore.Options, lc lifecycle) {
	old := gw.Config()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		logger.Error("reload: configuration not reloaded, the running one stays in force", "err", err)
		cfg = old
	}
	for _, key := range restartOnly(old, cfg) {
		logger.Warn("reload: this change takes effect only after a restart", "key", key)
	}
	var store *certstore.Store
	newOpts, err := certOptions(cfg, logger)
	lc.apply(&newOpts)
	if err == nil && reflect.DeepEqual(optsKey(newOpts), optsKey(certOpts)) {
		store, err = gw.Certs().Reload()
	} else if err == nil {
		store, err = certstore.Load(newOpts)
	}
	if err != nil {
		logger.Error("reload: certificates not reloaded, the loaded ones stay in force", "err", err)
		store = gw.Certs()
	}
	lc.recheck(ctx, cfg)
	warnCerts(logger, cfg, store)
	gw.Reload(cfg, store)
}

// optsKey is the part of the certificate options that decides whether a
// reload can keep the old store's files.
func optsKey(o certstore.Options) [7]any {
	return [7]any{o.OwnDir, o.PartnersDir, o.TrustDir, fmt.Sprint(o.Names), o.HostNames, fmt.Sprint(o.AllowPublicSuffix), string(o.Passphrase)}
}

// restartOnly lists the changed keys that a reload cannot apply.
func restartOnly(a, b *config.Config) []string {
	var keys []string
	if !reflect.DeepEqual(a.SMTP, b.SMTP) {
		keys = append(keys, "[smtp]")
	}
	if a.StateDir != b.StateDir {
		keys = append(keys, "state_dir")
	}
	if !reflect.DeepEqual(a.Admin, b.Admin) {
		keys = append(keys, "[admin]")
	}
	if !reflect.DeepEqual(a.Discovery, b.Discovery) {
		keys = append(keys, "[discovery]")
	}
	if !reflect.DeepEqual(a.Relay, b.Relay) {
		keys = append(keys, "[relay] (connection settings; routes apply at once)")
	}
	return keys
}

// warnCerts says at start-up and at each reload what the certificates allow.
func warnCerts(logger *slog.Logger, cfg *config.Config, store *certstore.Store) {
	// An own certificate without its key is ours all the same: mail
	// encrypted to it waits in the queue (never passes) until the key can
	// be read. That needs the operator now.
	for _, c := range store.OwnWithoutKey() {
		logger.Error("own domain certificate without a usable private key: mail encrypted to it waits in the queue until the key is readable (fix, then SIGHUP)",
			"domains", c.Domains, "cert_sha256", c.Fingerprint, "file", c.File, "reason", c.Reason)
	}
	keyed := len(store.Own()) - len(store.OwnWithoutKey())
	if keyed == 0 {
		logger.Warn("no own domain certificate with its key: inbound mail encrypted to us cannot be recognised or opened", "certs.own", cfg.Certs.Own)
	}
	partners := 0
	for _, c := range store.All() {
		if !c.Own {
			partners++
		}
	}
	for _, c := range store.Own() {
		if c.Status == certstore.Revoked {
			logger.Warn("own domain certificate is revoked: partners that check revocation no longer encrypt to it; its key still opens mail encrypted to it",
				"domains", c.Domains, "cert_sha256", c.Fingerprint, "file", c.File, "reason", c.Reason)
		}
	}
	logger.Info("certificates", "own", keyed, "own_without_key", len(store.OwnWithoutKey()), "partner", partners, "problems", len(store.Problems()))
	warnSigning(logger, cfg, store)
}

// courierConfig maps [relay] onto the courier's settings.
func courierConfig(cfg *config.Config, logger *slog.Logger) courier.Config {
	mode, err := courier.ParseTLSMode(cfg.Relay.TLS)
	if err != nil {
		mode = courier.TLSRequired // validated already; never relax on a surprise
	}
	return courier.Config{
		HeloName:                    cfg.Relay.HeloName,
		TLS:                         mode,
		ConnectTimeout:              cfg.Relay.ConnectTimeout.D(),
		CommandTimeout:              cfg.Relay.CommandTimeout.D(),
		DataDoneTimeout:             cfg.Relay.DataDoneTimeout.D(),
		MaxConnections:              cfg.Relay.MaxConnections,
		MaxPerDestination:           cfg.Relay.MaxPerDestination,
		MaxRecipientsPerTransaction: cfg.Relay.MaxRecipientsPerTrans,
		DNSServer:                   cfg.Relay.DNSServer,
		Logger:                      logger,
	}
}

// serveAsStateDirOwner refuses to serve as root a state_dir that belongs to
// another user (the service user of dist/smimegate.service): every file the
// gateway then wrote would be root's, unreadable to the service at its next
// start, and recovery would have to leave those messages where they are.
func serveAsStateDirOwner(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && sys.Uid != 0 {
		return fmt.Errorf("state_dir %s belongs to uid %d, and serve runs as root: run it as that user (as the systemd unit does, with the capability to bind port 25), or give state_dir to root", dir, sys.Uid)
	}
	return nil
}
