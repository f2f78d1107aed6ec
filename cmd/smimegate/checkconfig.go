package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"

	"smimegate/internal/certstore"
	"smimegate/internal/config"
)

func runCheckConfig(args []string) error {
	fs := newFlagSet("check-config", "[-config FILE]")
	cfgPath := configFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	out, err := cfg.Effective()
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stdout, "# effective configuration of %s: every key, defaults included\n", *cfgPath)
	if _, err := os.Stdout.Write(out); err != nil {
		return err
	}
	for _, w := range configWarnings(cfg) {
		fmt.Fprintf(os.Stderr, "warning: %s\n", w)
	}
	return checkCerts(cfg, os.Stderr)
}

// checkCerts loads the certificate store as serve would and reports its
// problems on w. An own certificate without a usable private key fails the
// check: the gateway would run, but hold the mail encrypted to it.
func checkCerts(cfg *config.Config, w io.Writer) error {
	store, err := loadStore(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	ps := store.Problems()
	fmt.Fprintf(w, "certificates: %d own, %d in all, %d problem(s)\n", len(store.Own()), len(store.All()), len(ps))
	for _, p := range ps {
		fmt.Fprintf(w, "  %s\n", p)
	}
	// What serve says at start-up beside the problems.
	if len(store.Own()) == len(store.OwnWithoutKey()) {
		fmt.Fprintf(w, "warning: no own domain certificate with its key in %s: inbound mail encrypted to us cannot be recognised or opened\n", cfg.Certs.Own)
	}
	for _, c := range store.Own() {
		if c.Status == certstore.Revoked {
			fmt.Fprintf(w, "warning: own certificate %s (sha256 %s) is revoked: %s\n", strings.Join(c.Domains, ","), c.Fingerprint, c.Reason)
		}
	}
	if reportOwnWithoutKey(w, store) {
		return fmt.Errorf("%d own certificate(s) without a usable private key (listed above); as the user that runs serve, fix the key file or the passphrase", len(store.OwnWithoutKey()))
	}
	return reportSigning(w, cfg, store)
}

// maxTrustedBits: a trusted network wider than a /8 (16 million
// addresses) is almost certainly a mistake (0.0.0.0/0 makes an open
// relay of the gateway's outbound path).
const maxTrustedBits = 8

// configWarnings are the settings that validate but are likely mistakes.
func configWarnings(cfg *config.Config) []string {
	var ws []string
	if cfg.Admin.Listen != "" && !loopbackAddr(cfg.Admin.Listen) {
		ws = append(ws, fmt.Sprintf("admin.listen %s is not a loopback address: the admin API and /metrics are reachable from the network (over TLS, with the token; keep both safe, or listen on 127.0.0.1)", cfg.Admin.Listen))
	}
	for _, p := range cfg.SMTP.TrustedPrefixes {
		if p.Bits() < maxTrustedBits {
			ws = append(ws, fmt.Sprintf("smtp.trusted_networks %s is wider than a /%d: every client in it may relay mail out through the gateway", p, maxTrustedBits))
		}
	}
	if cfg.Discovery.SMIMEA && cfg.Discovery.DNSServer == "" {
		ws = append(ws, "discovery.smimea with the system resolver: only answers it marks DNSSEC-validated (AD) count, so it must validate, and the path to it must be trusted (loopback or a protected network)")
	}
	if cfg.Discovery.SMIMEA && cfg.Discovery.DNSServer != "" && !loopbackAddr(cfg.Discovery.DNSServer) {
		ws = append(ws, fmt.Sprintf("discovery.dns_server %s is not on loopback: its AD bit is believed, so the network path to it must be protected", cfg.Discovery.DNSServer))
	}
	return ws
}

// loopbackAddr reports whether host:port names a loopback address.
func loopbackAddr(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
