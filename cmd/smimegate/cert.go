package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"smimegate/internal/certstore"
	"smimegate/internal/config"
	"smimegate/internal/smtp"
)

const certSynopsis = "list | import FILE... | show DOMAIN   [-config FILE]"

// runCert is `smimegate cert list|import|show`: the domain certificates as
// the gateway sees them.
func runCert(args []string) error {
	return certCommand(args, os.Stdout, os.Stderr)
}

func certCommand(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: cert needs a subcommand: %s", errUsage, certSynopsis)
	}
	switch args[0] {
	case "list":
		return certList(args[1:], stdout)
	case "import":
		return certImport(args[1:], stdout, stderr)
	case "show":
		return certShow(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprintf(stderr, "usage: smimegate cert %s\n", certSynopsis)
		fmt.Fprintln(stderr, "  list          every domain certificate, most urgent first: domain(s), own/partner, subject, SHA-256 fingerprint, not-after,")
		fmt.Fprintln(stderr, "                days left (! within 30), source (file, smimea), revocation, status; then why each unusable one is")
		fmt.Fprintln(stderr, "  import FILE   validate partner certificates (PEM, DER, PKCS#7 .p7b/.p7c) and copy them into certs.partners")
		fmt.Fprintln(stderr, "  show DOMAIN   which certificate(s) mail to DOMAIN would be encrypted to, and why; with [discovery] smimea, asks DNS")
		return flag.ErrHelp
	}
	return fmt.Errorf("%w: unknown cert subcommand %q (%s)", errUsage, args[0], certSynopsis)
}

// certSetup parses the flags shared by the cert subcommands and loads the
// configuration.
func certSetup(name, synopsis string, args []string) (*config.Config, []string, error) {
	fs := newFlagSet("cert "+name, synopsis)
	cfgPath := configFlag(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return nil, nil, err
	}
	return cfg, pos, nil
}

// certLoad loads the store; problems go to logger (or only to the listing).
// Revocation and discovery are what serve last learnt (their caches in
// state_dir, read, never written).
func certLoad(cfg *config.Config, logger *slog.Logger) (*certstore.Store, error) {
	opts, err := certOptions(cfg, logger)
	if err != nil {
		return nil, err
	}
	newLifecycle(cfg, logger, false).apply(&opts)
	return certstore.Load(opts)
}

func certList(args []string, stdout io.Writer) error {
	cfg, rest, err := certSetup("list", "[-config FILE]", args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return fmt.Errorf("%w: cert list takes no arguments, got %q", errUsage, rest[0])
	}
	// The problems are part of the listing, so they are not logged too.
	store, err := certLoad(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	if err := writeCertTable(stdout, append(store.All(), store.Discovered()...), time.Now()); err != nil {
		return err
	}
	if r := store.Options().Revocation; r != nil && r.CacheProblem() != "" && cfg.Certs.TrustAnchors != "" {
		fmt.Fprintf(stdout, "\nnote: the revocation cache in %s cannot be read (%s): the statuses above are not what serve knows; run as the gateway's user\n",
			filepath.Join(cfg.StateDir, "revocation"), r.CacheProblem())
	}
	reportOwnWithoutKey(stdout, store)
	if ps := store.Problems(); len(ps) > 0 {
		fmt.Fprintf(stdout, "\n%d problem(s):\n", len(ps))
		for _, p := range ps {
			fmt.Fprintf(stdout, "  %s\n", p)
		}
	}
	return nil
}

// reportOwnWithoutKey says loudly which of our certificates have no usable
// private key, and reports whether there were any: mail encrypted to them
// cannot be opened until the key is readable.
func reportOwnWithoutKey(w io.Writer, store *certstore.Store) bool {
	without := store.OwnWithoutKey()
	if len(without) == 0 {
		return false
	}
	fmt.Fprintf(w, "\n%d own certificate(s) WITHOUT A USABLE PRIVATE KEY: mail encrypted to them cannot be opened:\n", len(without))
	for _, c := range without {
		fmt.Fprintf(w, "  %s: %s (sha256 %s): %s\n", c.File, c.X509.Subject, c.Fingerprint, c.Reason)
	}
	return true
}

func certImport(args []string, stdout, stderr io.Writer) error {
	cfg, files, err := certSetup("import", "[-config FILE] FILE...", args)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("%w: cert import needs at least one FILE", errUsage)
	}
	opts, err := certOptions(cfg, newLogger(stderr, cfg.LogLevel))
	if err != nil {
		return err
	}
	// Validate every file before copying any, so that a refusal leaves
	// the partner directory as it was.
	var imports []*certstore.Import
	var refused []error
	for _, f := range files {
		im, err := certstore.PrepareImport(opts, f)
		if err != nil {
			refused = append(refused, err)
			continue
		}
		imports = append(imports, im)
	}
	if len(refused) > 0 {
		if len(files) > 1 {
			refused = append(refused, errors.New("nothing imported"))
		}
		return errors.Join(refused...)
	}
	for _, im := range imports {
		if err := im.Commit(); err != nil {
			return fmt.Errorf("%s: %w", im.Source, err)
		}
		for _, c := range im.Certs {
			verb := "imported"
			if im.Exists {
				verb = "already present"
			}
			fmt.Fprintf(stdout, "%s: %s %s for %s (%s, sha256 %s, %s until %s) as %s\n", im.Source, verb, c.X509.Subject, strings.Join(c.Domains, ", "),
				c.KeyType(), c.Fingerprint, c.Status, c.X509.NotAfter.UTC().Format(time.DateOnly), im.Dest)
		}
		for _, c := range im.Signers {
			fmt.Fprintf(stdout, "%s: signing certificate %s for %s (sha256 %s, until %s) as %s: verifies their domain signatures, never encrypted to\n",
				im.Source, c.X509.Subject, strings.Join(c.Domains, ", "), c.Fingerprint, c.X509.NotAfter.UTC().Format(time.DateOnly), im.Dest)
		}
	}
	fmt.Fprintln(stdout, "a running gateway uses them after its next reload (SIGHUP)")
	return nil
}

func certShow(args []string, stdout, stderr io.Writer) error {
	cfg, rest, err := certSetup("show", "[-config FILE] DOMAIN", args)
	if err != nil {
		return err
	}
	if len(rest) != 1 {
		return fmt.Errorf("%w: cert show needs exactly one DOMAIN", errUsage)
	}
	domain, err := smtp.CanonicalDomain(rest[0])
	if err != nil {
		return fmt.Errorf("%q is not a domain: %w", rest[0], err)
	}
	store, err := certLoad(cfg, newLogger(stderr, "error"))
	if err != nil {
		return err
	}
	for _, c := range store.Own() {
		for _, d := range c.Domains {
			if d == domain {
				fmt.Fprintf(stdout, "own certificate for %s (its key opens inbound mail): %s\n", domain, certLine(c))
				revocationLine(stdout, c)
			}
		}
	}
	if cfg.IsLocal(domain) {
		fmt.Fprintf(stdout, "%s is a local domain: mail to it is delivered inbound, never encrypted by this gateway\n", domain)
		return nil
	}
	if cfg.Discovery.SMIMEA {
		ctx, cancel := context.WithTimeout(context.Background(), discoveryCommandWait)
		lines, err := store.ExplainDiscovery(ctx, domain)
		cancel()
		if err != nil {
			return err
		}
		if len(lines) > 0 {
			fmt.Fprintf(stdout, "SMIMEA lookup (RFC 8162; only DNSSEC-validated answers count) through %s:\n", resolverName(cfg))
		}
		for _, l := range lines {
			fmt.Fprintf(stdout, "  %s: %s", l.Owner, l.Outcome)
			if l.Why != "" {
				fmt.Fprintf(stdout, " (%s)", l.Why)
			}
			fmt.Fprintf(stdout, ", until %s\n", l.Until.UTC().Format(time.RFC3339))
			for _, r := range l.Records {
				fmt.Fprintf(stdout, "    %s\n", r)
			}
		}
	}
	m := store.Lookup(domain)
	pp := cfg.PartnerPolicy(domain)
	if pp.RequirePQ {
		m = m.PostQuantumOnly() // as the policy step does
	}
	switch {
	case m.Deferred != "" && !pp.Require:
		fmt.Fprintf(stdout, "mail to %s waits in the queue and is retried, never sent in the clear: %s\n", domain, m.Deferred)
	case len(m.Certs) > 0:
		fmt.Fprintf(stdout, "mail to %s is encrypted to %d certificate(s) of %s, with %s", domain, len(m.Certs), m.Domain, pp.Cipher)
		if m.Certs[0].X509.PublicKeyAlgorithm.String() == "RSA" {
			fmt.Fprintf(stdout, " and RSA %s", pp.RSAPadding)
		}
		fmt.Fprintln(stdout)
	case pp.RequirePQ:
		fmt.Fprintf(stdout, "mail to %s is held: no usable post-quantum (ML-KEM or composite) certificate, and policy.partners.%q has require_pq\n", domain, pp.Entry)
	case pp.Require:
		fmt.Fprintf(stdout, "mail to %s is held: no usable certificate, and policy.partners.%q requires encryption\n", domain, pp.Entry)
	case m.Domain != "":
		fmt.Fprintf(stdout, "mail to %s has no usable certificate: %s's are all unusable\n", domain, m.Domain)
	default:
		fmt.Fprintf(stdout, "mail to %s is not encrypted\n", domain)
	}
	fmt.Fprintf(stdout, "why: %s\n", m.Rule)
	for _, c := range m.Certs {
		fmt.Fprintf(stdout, "  use   %s\n", certLine(c))
		revocationLine(stdout, c)
	}
	for _, c := range m.Unusable {
		fmt.Fprintf(stdout, "  skip  %s: %s\n", certLine(c), c.Reason)
		revocationLine(stdout, c)
	}
	return nil
}

// revocationLine says under a certificate's line what is known of its
// revocation, when it is checked.
func revocationLine(w io.Writer, c *certstore.Cert) {
	// For a revoked certificate, or one whose status is unknown too long,
	// the reason on its line says it already.
	if c.Revocation.State != certstore.RevNotChecked && c.Status != certstore.Revoked && c.Status != certstore.RevocationUnknown {
		fmt.Fprintf(w, "        revocation: %s\n", c.Revocation.Summary())
	}
}

// resolverName names discovery's resolver for people.
func resolverName(cfg *config.Config) string {
	if cfg.Discovery.DNSServer == "" {
		return "the system resolver"
	}
	return cfg.Discovery.DNSServer
}

// certLine describes one certificate on one line.
func certLine(c *certstore.Cert) string {
	where := c.File
	if c.Source == certstore.SourceSMIMEA {
		where = "discovered: " + strings.TrimPrefix(c.File, "dns:")
	}
	return fmt.Sprintf("%s  %s  sha256 %s  not after %s  %s  (%s)", c.X509.Subject, c.KeyType(), c.Fingerprint,
		c.X509.NotAfter.UTC().Format(time.DateOnly), c.Status, where)
}
