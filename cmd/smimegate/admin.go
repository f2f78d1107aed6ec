package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"smimegate/internal/console"
	"smimegate/internal/spool"
)

const adminSynopsis = "url [-config FILE]"

// runAdmin is `smimegate admin url`: a login link for the console of the
// running gateway, made through its API with the admin token.
func runAdmin(args []string) error {
	return adminCommand(args, os.Stdout, os.Stderr)
}

func adminCommand(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "url" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprintf(stderr, "usage: smimegate admin %s\n  url   print a link that logs a browser into the console of the running gateway, once, within five minutes\n", adminSynopsis)
			return flag.ErrHelp
		}
		return fmt.Errorf("%w: say admin %s", errUsage, adminSynopsis)
	}
	fs := newFlagSet("admin url", "[-config FILE]")
	cfgPath := configFlag(fs)
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: admin url takes no arguments, got %q", errUsage, pos[0])
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	if cfg.Admin.Listen == "" {
		return errors.New("admin.listen is empty: the gateway serves no console")
	}
	// The token is the state_dir owner's (mode 0600): read it as that
	// owner, as the queue commands do.
	if err := actAsStateDirOwner(cfg.StateDir, stderr); err != nil {
		return err
	}
	if !spool.GatewayRunning(cfg.StateDir) {
		return fmt.Errorf("no gateway is running on state_dir %s: the console is part of a running gateway (smimegate serve)", cfg.StateDir)
	}
	c, err := newAdminClient(cfg)
	if err != nil {
		return err
	}
	var lc console.LoginCode
	if err := c.do("POST", "/login-code", &lc); err != nil {
		return err
	}
	if !strings.HasPrefix(lc.Path, "/login?t=") {
		return fmt.Errorf("the gateway answered an unexpected login path %q", lc.Path)
	}
	fmt.Fprintln(stdout, c.base+lc.Path)
	fmt.Fprintf(stderr, "smimegate: the link logs one browser in, once, until %s; the session lasts %s\n", lc.Expires.Local().Format(time.TimeOnly), console.SessionLifetime)
	return nil
}
