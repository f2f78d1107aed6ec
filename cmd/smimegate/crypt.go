package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"smimegate/internal/certstore"
	"smimegate/internal/cms"
	"smimegate/internal/config"
	"smimegate/internal/gateway"
	"smimegate/internal/smime"
	"smimegate/internal/smtp"
	"smimegate/internal/spool"
)

// runEncrypt is `smimegate encrypt -to DOMAIN`: the outbound transformation
// of the gateway, offline, from standard input to standard output.
func runEncrypt(args []string) error {
	return encryptCommand(args, os.Stdin, os.Stdout, os.Stderr)
}

// runDecrypt is `smimegate decrypt`: the inbound transformation, offline.
func runDecrypt(args []string) error {
	return decryptCommand(args, os.Stdin, os.Stdout, os.Stderr)
}

func encryptCommand(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlagSet("encrypt", "[-config FILE] -to DOMAIN < message > sealed")
	fs.SetOutput(stderr)
	cfgPath := configFlag(fs)
	to := fs.String("to", "", "destination `DOMAIN` (or an address in it): its partner certificate(s) and [policy.partners] entry are used")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *to == "" {
		return fmt.Errorf("%w: -to DOMAIN is required", errUsage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q (the message is read from standard input)", errUsage, fs.Arg(0))
	}
	// An address stands for its domain (draft-ramsdell section 4:
	// membership is the rightmost part of the address).
	d := *to
	if at := strings.LastIndexByte(d, '@'); at >= 0 {
		d = d[at+1:]
	}
	domain, err := smtp.CanonicalDomain(d)
	if err != nil {
		return fmt.Errorf("-to %q is not a valid domain: %w", *to, err)
	}
	cfg, logger, store, err := loadOffline(*cfgPath, stderr)
	if err != nil {
		return err
	}

	// Fail closed (docs/threats.md section 3): without a usable
	// certificate nothing is written, never the message in the clear. With
	// discovery, DNS is asked first, as the queue would.
	ctx, cancel := context.WithTimeout(context.Background(), discoveryCommandWait)
	store.Discover(ctx, domain) // a failure shows in the Match
	cancel()
	m := store.Lookup(domain)
	pp := cfg.PartnerPolicy(domain)
	if pp.RequirePQ {
		m = m.PostQuantumOnly() // as the policy step does
	}
	if len(m.Certs) == 0 {
		return noCertificateError(domain, m)
	}
	opts, fingerprints, err := gateway.SealOptions(cfg, m, pp)
	if err != nil {
		return fmt.Errorf("policy for %s: %w", domain, err)
	}

	msg, err := readMessage(stdin, cfg.SMTP.MaxMessageBytes, smime.SealSpare)
	if err != nil {
		return err
	}
	size := len(msg)
	signer := ""
	if pp.Sign {
		// As the gateway does: signed with our certificate of the From
		// domain (or of the first local domain), then encrypted; no
		// signature, no output.
		so, err := offlineSigner(cfg, store, msg)
		if err != nil {
			return fmt.Errorf("%s wants our domain signature (sign = true): %w", domain, err)
		}
		opts.Sign = so
		signer = certstore.Fingerprint(so.Signer.Cert)
	}
	w := bufio.NewWriterSize(stdout, 64<<10)
	if err := smime.Seal(w, msg, opts); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("writing standard output: %w", err)
	}
	logger.Info("sealed", "direction", "outbound", "action", "encrypt", "domain", domain,
		"cert_domain", m.Domain, "fingerprints", strings.Join(fingerprints, ","), "cipher", opts.Cipher.String(),
		"rsa_padding", pp.RSAPadding, "key_id", pp.KeyID, "policy_entry", pp.Entry, "size", size, "signed_by", signer)
	return nil
}

func decryptCommand(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return decryptAt(args, stdin, stdout, stderr, time.Now, spool.NewID)
}

// decryptAt is decryptCommand with the clock and the queue id (both in our
// Received field) given, so that a test can compare its output with the
// gateway's byte for byte.
func decryptAt(args []string, stdin io.Reader, stdout, stderr io.Writer, now func() time.Time, newID func() string) error {
	fs := newFlagSet("decrypt", "[-config FILE] [-sender ADDR] < sealed > message")
	fs.SetOutput(stderr)
	cfgPath := configFlag(fs)
	sender := fs.String("sender", "", "the envelope sender (MAIL FROM) the gateway would have seen, `ADDR`; none by default, as for a bounce")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q (the message is read from standard input)", errUsage, fs.Arg(0))
	}
	cfg, logger, store, err := loadOffline(*cfgPath, stderr)
	if err != nil {
		return err
	}
	msg, err := readMessage(stdin, cfg.SMTP.MaxMessageBytes, 0)
	if err != nil {
		return err
	}
	// The gateway's inbound step itself: the same keys (expired
	// certificates and those whose key is not loaded included), limits,
	// signature check, sender rules and fields.
	env := &spool.Envelope{ID: newID(), Sender: *sender}
	o := gateway.OpenInbound(cfg, store, env, msg, now())
	switch {
	case o.Ready():
		w := bufio.NewWriterSize(stdout, 64<<10)
		if _, err := o.WriteTo(w); err != nil {
			return fmt.Errorf("writing standard output: %w", err)
		}
		if err := w.Flush(); err != nil {
			return fmt.Errorf("writing standard output: %w", err)
		}
		logger.Info("opened", "direction", "inbound", "action", "decrypt", "queue_id", env.ID,
			"fingerprint", o.Fingerprint, "cipher", o.Info.Cipher, "key_transport", o.Info.KeyTransport, "size", o.Size())
		return nil
	case o.Outcome == smime.NotEncrypted:
		return errors.New("not encrypted: no part of the message is CMS encrypted content; the gateway relays such mail as it came (fields that claim to be ours removed, a partner's signature checked)")
	case o.Outcome == smime.NotForUs:
		return fmt.Errorf("not for us: %s is encrypted, but to none of our %d own certificate(s) in %s; the gateway relays such mail as it came (fields that claim to be ours removed, a partner's signature checked)", o.Where, len(store.Own()), cfg.Certs.Own)
	case o.Outcome == smime.KeyUnavailable:
		return fmt.Errorf("key unavailable: the message is encrypted to our certificate, whose private key is not loaded; the gateway would keep it queued and raise an alarm: %w", o.Err)
	case o.Outcome == smime.Failed:
		return fmt.Errorf("failed: the message is encrypted but cannot be opened, the gateway would quarantine it: %w", o.Err)
	default:
		return fmt.Errorf("quarantined: the message opened, but the gateway would quarantine it: %s", o.Quarantine)
	}
}

// loadOffline is what the offline transformations (encrypt, decrypt) start
// from: the configuration, a logger on stderr at its level, and the
// certificate store as serve loads it.
func loadOffline(cfgPath string, stderr io.Writer) (*config.Config, *slog.Logger, *certstore.Store, error) {
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return nil, nil, nil, err
	}
	logger := newLogger(stderr, cfg.LogLevel)
	store, err := loadStore(cfg, logger)
	if err != nil {
		return nil, nil, nil, err
	}
	return cfg, logger, store, nil
}

// loadStore loads the certificate store as `serve` does, and reports the
// files it had to skip so that a missing certificate is not a mystery.
func loadStore(cfg *config.Config, logger *slog.Logger) (*certstore.Store, error) {
	opts, err := certOptions(cfg, logger)
	if err != nil {
		return nil, err
	}
	// Revocation as serve last learnt it, and discovery (read-only).
	newLifecycle(cfg, logger, false).apply(&opts)
	store, err := certstore.Load(opts)
	if err != nil {
		return nil, fmt.Errorf("certificate store: %w", err)
	}
	return store, nil
}

// noCertificateError explains why mail to domain cannot be encrypted.
func noCertificateError(domain string, m certstore.Match) error {
	if m.Deferred != "" {
		return fmt.Errorf("no usable certificate for %s known yet (%s); refusing to write the message unencrypted", domain, m.Deferred)
	}
	if len(m.Unusable) == 0 {
		return fmt.Errorf("no partner certificate for %s (smimegate cert show %s explains the lookup); refusing to write the message unencrypted", domain, domain)
	}
	reasons := make([]string, 0, len(m.Unusable))
	for _, c := range m.Unusable {
		reasons = append(reasons, fmt.Sprintf("%s: %s", c.File, c.Reason))
	}
	return fmt.Errorf("no usable partner certificate for %s (%s); refusing to write the message unencrypted", domain, strings.Join(reasons, "; "))
}

// readMessage reads all of r, refusing more than limit bytes with an error
// rather than exhausting memory, into a buffer with spare bytes of unused
// capacity (Seal encrypts in place and appends the GCM tag). A regular file
// is read into a buffer of its exact size; a pipe grows one.
func readMessage(r io.Reader, limit int64, spare int) ([]byte, error) {
	size := int64(64 << 10)
	if f, ok := r.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > 0 {
			size = fi.Size() + 1 // +1 so that EOF is seen without growing
		}
	}
	if size > limit+1 {
		size = limit + 1
	}
	var b bytes.Buffer
	b.Grow(int(size) + spare)
	n, err := b.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading standard input: %w", err)
	}
	if n > limit {
		return nil, fmt.Errorf("the message on standard input is larger than smtp.max_message_bytes (%d bytes)", limit)
	}
	if n == 0 {
		return nil, errors.New("standard input is empty: give the message on standard input")
	}
	msg := b.Bytes()
	if cap(msg)-len(msg) < spare {
		msg = append(make([]byte, 0, len(msg)+spare), msg...)
	}
	return msg, nil
}

// offlineSigner finds our signing certificate for msg as the gateway's
// policy step does: the own certificate of a local From domain, else of
// the first local domain that has one.
func offlineSigner(cfg *config.Config, store *certstore.Store, msg []byte) (*smime.SignOptions, error) {
	var candidates []string
	for _, a := range smime.FromOf(msg).Addresses {
		if at := strings.LastIndexByte(a, '@'); at >= 0 {
			if d, err := smtp.CanonicalDomain(a[at+1:]); err == nil && cfg.IsLocal(d) {
				candidates = append(candidates, d)
			}
		}
	}
	var errs []string
	for _, d := range append(candidates, cfg.LocalDomains...) {
		sg, err := store.OwnSigner(d)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		return &smime.SignOptions{Signer: cms.Signer{Cert: sg.Cert.X509, Key: sg.Key, Chain: sg.Chain}, EncryptionCert: sg.Cert.X509, Time: time.Now()}, nil
	}
	return nil, errors.New(strings.Join(errs, "; "))
}
