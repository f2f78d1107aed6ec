package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"smimegate/internal/config"
	"smimegate/internal/console"
	"smimegate/internal/gateway"
)

// Bounds of the admin listener's HTTP server. Its clients are operators,
// their browsers, the commands and Prometheus; none needs more.
const (
	adminReadHeaderTimeout = 10 * time.Second
	adminIdleTimeout       = 2 * time.Minute
	// adminMaxHeaderBytes: a request's header, cookie and token included,
	// fits in a few KiB; Go's default is 1 MiB.
	adminMaxHeaderBytes = 64 << 10
)

// startAdmin opens the admin listener (admin.listen, over TLS with
// admin.tls_cert), with the admin token from state_dir (made at the first
// start), and serves it until ctx ends and the returned server is shut
// down. The configuration has refused a listener off loopback without TLS.
func startAdmin(ctx context.Context, cfg *config.Config, gw *gateway.Gateway, logger *slog.Logger) (*http.Server, error) {
	token, status, why, err := console.LoadOrCreateToken(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	switch status {
	case console.TokenCreated:
		logger.Info("admin token made: the commands read it, `smimegate admin url` logs a browser in", "file", cfg.StateDir+"/"+console.TokenFile)
	case console.TokenReplaced:
		logger.Warn("admin token replaced by a new one: the old file could not be trusted", "file", cfg.StateDir+"/"+console.TokenFile, "why", why)
	}
	var tlsConfig *tls.Config
	if cfg.Admin.TLSCert != "" {
		pair, err := tls.LoadX509KeyPair(cfg.Admin.TLSCert, cfg.Admin.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("admin.tls_cert, admin.tls_key: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	handler, err := gw.AdminHandler(gateway.AdminOptions{Token: token, TLS: tlsConfig != nil})
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin.listen %s: %w", cfg.Admin.Listen, err)
	}
	if tlsConfig != nil {
		l = tls.NewListener(l, tlsConfig)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: adminReadHeaderTimeout,
		IdleTimeout:       adminIdleTimeout,
		MaxHeaderBytes:    adminMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	go handler.Run(ctx)
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("admin listener failed", "err", err)
		}
	}()
	return srv, nil
}
