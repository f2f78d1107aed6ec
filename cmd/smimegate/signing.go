package main

import (
	"fmt"
	"io"
	"log/slog"
	"sort"

	"smimegate/internal/certstore"
	"smimegate/internal/config"
)

// signingEnabled reports whether any partner gets domain signatures
// (policy.sign, or sign = true for a partner), and for which entries.
func signingEnabled(cfg *config.Config) (bool, []string) {
	var entries []string
	for d, p := range cfg.Policy.Partners {
		if p.Sign != nil && *p.Sign {
			entries = append(entries, d)
		}
	}
	sort.Strings(entries)
	return cfg.Policy.Sign || len(entries) > 0, entries
}

// signingProblems lists what keeps the gateway from signing: own
// certificates that are never used to sign (no digitalSignature, a key
// that cannot sign), and, when signing is on, local domains for which no
// own certificate can sign (their mail to signing partners would wait in
// the queue). fatal is true for the latter.
func signingProblems(cfg *config.Config, store *certstore.Store) (notes []string, fatal []string) {
	for _, p := range store.OwnCannotSign() {
		notes = append(notes, p.String())
	}
	if on, _ := signingEnabled(cfg); on {
		for _, d := range cfg.LocalDomains {
			if _, err := store.OwnSigner(d); err != nil {
				fatal = append(fatal, fmt.Sprintf("%s: mail from it to partners with sign = true cannot be signed and waits in the queue: %v", d, err))
			}
		}
	}
	return notes, fatal
}

// reportSigning writes signingProblems for check-config, and returns an
// error when signing is on and a local domain cannot sign.
func reportSigning(w io.Writer, cfg *config.Config, store *certstore.Store) error {
	notes, fatal := signingProblems(cfg, store)
	for _, n := range notes {
		fmt.Fprintf(w, "  %s\n", n)
	}
	if len(fatal) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\ndomain signatures are on (policy.sign or a partner's sign = true), but:\n")
	for _, f := range fatal {
		fmt.Fprintf(w, "  %s\n", f)
	}
	return fmt.Errorf("%d local domain(s) without a certificate that can sign (listed above); make one with `smimegate keygen`, which sets digitalSignature", len(fatal))
}

// warnSigning logs signingProblems at start-up and at each reload.
func warnSigning(logger *slog.Logger, cfg *config.Config, store *certstore.Store) {
	notes, fatal := signingProblems(cfg, store)
	for _, n := range notes {
		logger.Warn("own certificate that is never used to sign", "problem", n)
	}
	for _, f := range fatal {
		logger.Error("domain signatures are on but cannot be made", "problem", f)
	}
}
