package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"smimegate/internal/certstore"
)

// keygenKEM makes an ML-KEM or composite domain key and its certificate,
// signed by the issuer in issuerCert and issuerKey or by a new domain
// issuer, which it writes to DIR/issuer/D.key and DIR/issuer/D.crt: a
// sub-directory, which the certificate store does not read, so that the
// issuer's signing key is not taken for a key of the gateway's.
func keygenKEM(opts certstore.KeygenOptions, issuerCert, issuerKey, out string, stdout io.Writer) error {
	kopts := certstore.KEMKeygenOptions{KeygenOptions: opts}
	if issuerCert != "" {
		cd, err := readKeygenInput(issuerCert)
		if err != nil {
			return fmt.Errorf("-issuer-cert: %w", err)
		}
		kd, err := readKeygenInput(issuerKey)
		if err != nil {
			return fmt.Errorf("-issuer-key: %w", err)
		}
		c, k, err := certstore.ParseKEMIssuer(cd, kd, opts.Passphrase)
		clear(kd)
		if err != nil {
			return err
		}
		kopts.IssuerCert, kopts.IssuerKey = c, k
	}
	g, err := certstore.GenerateKEM(kopts)
	if err != nil {
		return err
	}
	// As for other keys: a domain that has a key already gets the new
	// pair beside the old one (a rotation), never over it.
	base, rotated := rotationBase(out, g.Domain, time.Now())
	if base == "" {
		return fmt.Errorf("%s already holds %d key pairs for %s; move old ones away (a domain key is never overwritten)", out, maxRotationNames, g.Domain)
	}
	if rotated != "" {
		fmt.Fprintf(stdout, "%s has a key for %s already (%s): the new pair goes beside it; both decrypt\n", out, g.Domain, rotated)
	}
	files := []keygenOutput{
		{base + ".key", g.KeyPEM, 0o600, opts.KeyType + " private key", true},
		{base + ".crt", g.CertPEM, 0o644, opts.KeyType + " domain certificate, signed by " + g.Issuer.Subject.String(), false},
	}
	issuerBase, _ := rotationBase(filepath.Join(out, "issuer"), g.Domain, time.Now())
	if issuerBase == "" {
		return fmt.Errorf("%s already holds %d issuers for %s; move old ones away", filepath.Join(out, "issuer"), maxRotationNames, g.Domain)
	}
	if g.IssuerKeyPEM != nil {
		files = append(files,
			// The issuer's key signs certificates only: the gateway never
			// reads it, so it stays root's alone.
			keygenOutput{issuerBase + ".key", g.IssuerKeyPEM, 0o600, "the domain issuer's private key (ECDSA P-256)", false},
			keygenOutput{issuerBase + ".crt", g.IssuerCertPEM, 0o644, "the domain issuer's self-signed certificate", false})
	}
	if err := writeKeygenOutputs(files, stdout); err != nil {
		return err
	}
	c := g.Cert
	fmt.Fprintf(stdout, "names: %s\n", strings.Join(c.EmailAddresses, ", "))
	fmt.Fprintf(stdout, "sha256 fingerprint: %s\nvalid until: %s\n", certstore.Fingerprint(c), c.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(stdout, "keep %s and %s in certs.own; give %s to partner gateways (`smimegate cert import`)\n",
		filepath.Base(base+".key"), filepath.Base(base+".crt"), filepath.Base(base+".crt"))
	if g.IssuerKeyPEM != nil {
		fmt.Fprintf(stdout, "a partner that checks trust (certs.trust_anchors) adds issuer/%s.crt to its anchors; keep issuer/%s.key off the gateway: it signs the next certificate (`keygen -key %s -issuer-cert issuer/%s.crt -issuer-key issuer/%s.key`)\n",
			g.Domain, g.Domain, opts.KeyType, g.Domain, g.Domain)
	}
	return nil
}

// maxKeygenInput bounds an issuer file that keygen reads: a certificate
// or a key is a few kilobytes.
const maxKeygenInput = 1 << 20

func readKeygenInput(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeygenInput+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxKeygenInput {
		return nil, fmt.Errorf("%s: larger than %d bytes, which no certificate or key is", path, maxKeygenInput)
	}
	return data, nil
}
