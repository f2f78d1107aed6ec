package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/mail"
	"os"
	"strings"
	"time"

	"smimegate/internal/certstore"
	"smimegate/internal/cms"
	"smimegate/internal/config"
	"smimegate/internal/gateway"
	"smimegate/internal/smime"
	"smimegate/internal/smtp"
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
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	logger := newLogger(stderr, cfg.LogLevel)
	store, err := loadStore(cfg, logger)
	if err != nil {
		return err
	}

	// Fail closed (shared/spec/STANDARDS.md section 5): without a usable
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
	fs := newFlagSet("decrypt", "[-config FILE] < sealed > message")
	fs.SetOutput(stderr)
	cfgPath := configFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q (the message is read from standard input)", errUsage, fs.Arg(0))
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	logger := newLogger(stderr, cfg.LogLevel)
	store, err := loadStore(cfg, logger)
	if err != nil {
		return err
	}
	// Our keys, expired certificates included: mail sealed before the
	// expiry may still be in flight. A certificate whose key could not be
	// loaded stays in with a nil Key, so that mail to it is reported as
	// waiting for the key rather than as not for us.
	var keys []cms.KeyPair
	for _, c := range store.Own() {
		keys = append(keys, cms.KeyPair{Cert: c.X509, Key: c.Key})
	}
	msg, err := readMessage(stdin, cfg.SMTP.MaxMessageBytes, 0)
	if err != nil {
		return err
	}
	sender := senderDomain(msg)
	opts := smime.OpenOptions{
		Allow3DES: cfg.Policy.Allow3DES,
		// policy.require_aead, or the sender's [policy.partners] entry.
		RequireAEAD: cfg.PartnerPolicy(sender).RequireAEAD,
		MaxSize:     cfg.SMTP.MaxMessageBytes,
	}
	// Every header the SMTP receiver accepts can be inspected.
	if cfg.SMTP.MaxHeaderBytes > smime.DefaultMaxHeaderBytes {
		opts.MaxHeaderBytes = cfg.SMTP.MaxHeaderBytes
	}
	r := smime.Open(msg, keys, opts)
	switch r.Outcome {
	case smime.Opened:
		// The outer trace fields first, as the gateway writes them
		// (RFC 5321 section 4.4: they must not be deleted).
		if _, err := stdout.Write(r.Trace); err != nil {
			return fmt.Errorf("writing standard output: %w", err)
		}
		if _, err := stdout.Write(r.Message); err != nil {
			return fmt.Errorf("writing standard output: %w", err)
		}
		logger.Info("opened", "direction", "inbound", "action", "decrypt", "sender_domain", sender,
			"fingerprint", certstore.Fingerprint(r.Info.Cert), "cipher", r.Info.Cipher, "key_transport", r.Info.KeyTransport, "size", len(r.Message))
		return nil
	case smime.NotEncrypted:
		return errors.New("not encrypted: no part of the message is CMS encrypted content; the gateway relays such mail unaltered")
	case smime.NotForUs:
		return fmt.Errorf("not for us: %s is encrypted, but to none of our %d own certificate(s) in %s; the gateway relays such mail unaltered", r.Where, len(keys), cfg.Certs.Own)
	case smime.KeyUnavailable:
		return fmt.Errorf("key unavailable: the message is encrypted to our certificate, whose private key is not loaded; the gateway would keep it queued and raise an alarm: %w", r.Err)
	default:
		return fmt.Errorf("failed: the message is encrypted but cannot be opened, the gateway would quarantine it: %w", r.Err)
	}
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

// senderDomain is the domain of the message's From address, "" if there is
// none that parses: it selects the sender's [policy.partners] entry.
func senderDomain(msg []byte) string {
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		return ""
	}
	a, err := mail.ParseAddress(m.Header.Get("From"))
	if err != nil {
		return ""
	}
	at := strings.LastIndexByte(a.Address, '@')
	if at < 0 {
		return ""
	}
	d, err := smtp.CanonicalDomain(a.Address[at+1:])
	if err != nil {
		return ""
	}
	return d
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
