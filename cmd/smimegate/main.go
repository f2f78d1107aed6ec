// Command smimegate is an S/MIME domain-encryption gateway
// (draft-ramsdell-enc-smime-gateway-00): it encrypts mail to partner domains
// with their domain certificates and decrypts mail sent to ours.
//
// Each subcommand lives in its own file; this one only dispatches.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"smimegate/internal/config"
)

// command is one subcommand: its one-line summary and its entry point.
// run receives the arguments after the subcommand name and returns an error
// to print (the exit status is then 1, or 2 for usage errors).
type command struct {
	summary string
	run     func(args []string) error
}

var commands = map[string]command{}

// order is the order in which `smimegate -h` lists the commands.
var order = []string{"serve", "demo", "keygen", "cert", "queue", "quarantine", "admin", "encrypt", "decrypt", "check-config"}

func init() {
	commands = map[string]command{
		"serve":        {"run the gateway (SIGTERM drains, SIGHUP reloads certificates and configuration)", runServe},
		"demo":         {"two gateways and mail sinks on loopback: one message encrypted in transit, decrypted on arrival", runDemo},
		"keygen":       {"make a private key and its domain certificate (self-signed; for ML-KEM keys, signed by a domain issuer; optionally a CSR)", runKeygen},
		"cert":         {"list | import FILE... | show DOMAIN: the domain certificates", runCert},
		"queue":        {"list | show ID | flush | delete ID: the delivery queue", runQueue},
		"quarantine":   {"list | show ID | release ID | delete ID: messages that could not be opened", runQuarantine},
		"admin":        {"url: a link that logs a browser into the running gateway's console", runAdmin},
		"encrypt":      {"-to DOMAIN: seal a message from stdin as the gateway would, to stdout", runEncrypt},
		"decrypt":      {"open a sealed message from stdin as the gateway would, to stdout", runDecrypt},
		"check-config": {"validate the configuration and print the effective one", runCheckConfig},
	}
}

// errUsage marks an error caused by wrong arguments: exit status 2.
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "smimegate: unknown command %q (smimegate -h lists them)\n", args[0])
		return 2
	}
	if err := cmd.run(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "smimegate %s: %v\n", args[0], err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: smimegate COMMAND [flags]   (smimegate COMMAND -h for its flags)")
	fmt.Fprintln(w)
	for _, name := range order {
		fmt.Fprintf(w, "  %-13s %s\n", name, commands[name].summary)
	}
}

// newFlagSet returns a FlagSet for a subcommand that reports its own errors
// through the returned error rather than exiting.
func newFlagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("smimegate "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: smimegate %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and turns a flag error into a usage error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

// configFlag adds the -config flag every command that reads the
// configuration shares.
func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", config.DefaultFile, "configuration `FILE`")
}

// loadConfig reads the configuration, or explains what is missing.
func loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if errors.Is(err, config.ErrNoFile) {
		return nil, fmt.Errorf("%s does not exist; `smimegate serve` without a configuration explains how to write one, `smimegate check-config -config FILE` checks it", path)
	}
	return cfg, err
}

// newLogger returns the structured logger every long-running command uses:
// one line per event on stderr, key=value, at the configured level.
func newLogger(w io.Writer, level string) *slog.Logger {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		lv = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv}))
}

// actAsStateDirOwner makes this process act as the owner of state_dir
// before a command touches the spool's files. The gateway runs as that user
// (dist/smimegate.service); a file a command writes as anyone else, such as
// a root-owned 0600 envelope from `quarantine release` run as root, is one
// the gateway cannot read.
//
// Run as the owner it does nothing. Run as root on a state_dir that belongs
// to another user, it becomes that user for good, with the user's group and
// supplementary groups (or, for a uid without a passwd entry, the group of
// state_dir and none), and says so in one line on stderr. Run as anyone
// else it refuses, naming the owner. A state_dir that does not exist is
// refused too: a command would create it as whoever runs it, and no gateway
// has run with this configuration.
func actAsStateDirOwner(dir string, stderr io.Writer) error {
	st, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("state_dir %s does not exist: no gateway has run with this configuration (check state_dir and -config)", dir)
	}
	if err != nil {
		return fmt.Errorf("state_dir: %w", err)
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("state_dir %s: cannot tell its owner", dir)
	}
	owner, me := int(sys.Uid), os.Geteuid()
	if owner == me {
		return nil
	}
	name := "uid " + strconv.Itoa(owner)
	gid, groups := int(sys.Gid), []int{int(sys.Gid)}
	if u, err := user.LookupId(strconv.Itoa(owner)); err == nil {
		name = fmt.Sprintf("%s (uid %d)", u.Username, owner)
		if g, err := strconv.Atoi(u.Gid); err == nil {
			gid, groups = g, []int{g}
		}
		if ids, err := u.GroupIds(); err == nil {
			groups = groups[:0]
			for _, s := range ids {
				if g, err := strconv.Atoi(s); err == nil {
					groups = append(groups, g)
				}
			}
		}
	}
	if me != 0 {
		return fmt.Errorf("state_dir %s belongs to %s: run this command as that user (sudo -u) or as root, which acts as that user; as uid %d it would write files the gateway cannot read", dir, name, me)
	}
	// Supplementary groups, then the group, then the user: once the uid is
	// no longer 0 the others cannot be changed. On Linux Go applies each of
	// these to every thread of the process.
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("acting as %s, the owner of state_dir %s: setgroups: %w", name, dir, err)
	}
	if err := syscall.Setgid(gid); err != nil {
		return fmt.Errorf("acting as %s, the owner of state_dir %s: setgid %d: %w", name, dir, gid, err)
	}
	if err := syscall.Setuid(owner); err != nil {
		return fmt.Errorf("acting as %s, the owner of state_dir %s: setuid: %w", name, dir, err)
	}
	// Check all three ids of each kind: a saved uid of 0 would let the
	// process take root back.
	ru, eu, su := unix.Getresuid()
	rg, eg, sg := unix.Getresgid()
	if ru != owner || eu != owner || su != owner || rg != gid || eg != gid || sg != gid {
		return fmt.Errorf("acting as %s, the owner of state_dir %s: still uids %d/%d/%d, gids %d/%d/%d after dropping privileges", name, dir, ru, eu, su, rg, eg, sg)
	}
	fmt.Fprintf(stderr, "smimegate: running as root: acting as %s, group %d, the owner of state_dir %s, so that the gateway can read what this command writes\n", name, gid, dir)
	return nil
}
