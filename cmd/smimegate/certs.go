package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"smimegate/internal/certstore"
	"smimegate/internal/config"
)

// maxPassphraseFile bounds what is read from certs.key_passphrase_file: a
// passphrase is one line.
const maxPassphraseFile = 4096

// certOptions turns [certs] into certificate store options, reading the
// passphrase for encrypted own keys from certs.key_passphrase_file or from
// the environment variable that certs.key_passphrase_env names.
func certOptions(cfg *config.Config, logger *slog.Logger) (certstore.Options, error) {
	opts := certstore.Options{
		OwnDir:      cfg.Certs.Own,
		PartnersDir: cfg.Certs.Partners,
		TrustDir:    cfg.Certs.TrustAnchors,
		Names:       cfg.Certs.Names,
		HostNames:   cfg.Certs.HostNames,
		// Canonical A-labels already: config validation made them so.
		AllowPublicSuffix: cfg.Certs.AllowPublicSuffix,
		Now:               time.Now,
		Logger:            logger,
	}
	file, env := cfg.Certs.KeyPassphraseFile, cfg.Certs.KeyPassphraseEnv
	switch {
	case file != "" && env != "":
		return opts, errors.New("certs: set only one of key_passphrase_file and key_passphrase_env")
	case file != "":
		p, err := readPassphraseFile(file, logger)
		if err != nil {
			return opts, fmt.Errorf("certs.key_passphrase_file: %w", err)
		}
		opts.Passphrase = p
	case env != "":
		v, ok := os.LookupEnv(env)
		if !ok || v == "" {
			return opts, fmt.Errorf("certs.key_passphrase_env names %s, which is not set or empty", env)
		}
		opts.Passphrase = []byte(v)
	}
	return opts, nil
}

// readPassphraseFile returns the first line of path without its line end,
// as `openssl -passin file:` reads it, so that one file serves both.
func readPassphraseFile(path string, logger *slog.Logger) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o077 != 0 && logger != nil {
		logger.Warn("the passphrase file is readable by others: chmod 600", "file", path, "mode", fmt.Sprintf("%04o", fi.Mode().Perm()))
	}
	data, err := io.ReadAll(io.LimitReader(f, maxPassphraseFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxPassphraseFile {
		return nil, fmt.Errorf("%s: longer than %d bytes; a passphrase file holds one line", path, maxPassphraseFile)
	}
	if i := bytes.IndexByte(data, '\n'); i >= 0 {
		data = data[:i]
	}
	data = bytes.TrimSuffix(data, []byte("\r"))
	if len(data) == 0 {
		return nil, fmt.Errorf("%s: the first line is empty", path)
	}
	return data, nil
}
