package main

import (
	"fmt"
	"os"
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
	_, err = os.Stdout.Write(out)
	return err
}
