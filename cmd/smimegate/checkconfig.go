package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"

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
	if reportOwnWithoutKey(w, store) {
		return fmt.Errorf("%d own certificate(s) without a usable private key (listed above); as the user that runs serve, fix the key file or the passphrase", len(store.OwnWithoutKey()))
	}
	return reportSigning(w, cfg, store)
}
