package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"smimegate/internal/certstore"
)

// keygenDomains collects repeated -domain flags.
type keygenDomains []string

func (d *keygenDomains) String() string { return strings.Join(*d, ",") }

func (d *keygenDomains) Set(v string) error {
	*d = append(*d, v)
	return nil
}

// runKeygen makes a domain key and a self-signed domain certificate (and,
// with -csr, a certificate signing request for a CA).
func runKeygen(args []string) error {
	return keygenCommand(args, os.Stdout)
}

func keygenCommand(args []string, stdout io.Writer) error {
	fs := newFlagSet("keygen", "-domain D [-domain D2 ...] [-key rsa3072|rsa2048|rsa4096|p256|p384|mlkem768|mlkem1024|mlkem768-x25519|mlkem768-p256|...] [-days N] [-csr | -csr-only] [-issuer-cert FILE -issuer-key FILE] [-passphrase-file FILE] -out DIR")
	var domains keygenDomains
	fs.Var(&domains, "domain", "domain `D` the certificate serves (repeat for several; the first names the files)")
	keyType := fs.String("key", certstore.KeyTypes[0], "key `type`: "+strings.Join(certstore.KeyTypes, ", ")+"; post-quantum (ML-KEM, composite recommended): "+strings.Join(certstore.KEMKeyTypes, ", "))
	days := fs.Int("days", certstore.DefaultValidityDays, "validity in `days`")
	out := fs.String("out", "", "`DIR` to write D.key (mode 0600) and D.crt into")
	csr := fs.Bool("csr", false, "also write DIR/D.csr, a certificate signing request to give to a CA")
	csrOnly := fs.Bool("csr-only", false, "write DIR/D.key and DIR/D.csr but no self-signed certificate")
	passFile := fs.String("passphrase-file", "", "encrypt the key with the first line of `FILE` (PKCS#8, PBES2 with AES-256)")
	issuerCert := fs.String("issuer-cert", "", "KEM keys: the CA certificate `FILE` that signs the new certificate (default: make a new domain issuer in DIR/issuer)")
	issuerKey := fs.String("issuer-key", "", "KEM keys: the private key `FILE` of -issuer-cert (decrypted with -passphrase-file if encrypted)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	kem := certstore.IsKEMKeyType(*keyType)
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	case len(domains) == 0:
		return fmt.Errorf("%w: -domain is required", errUsage)
	case *out == "":
		return fmt.Errorf("%w: -out is required", errUsage)
	case !slices.Contains(certstore.KeyTypes, *keyType) && !kem:
		return fmt.Errorf("%w: -key %q is not one of %s, %s", errUsage, *keyType, strings.Join(certstore.KeyTypes, ", "), strings.Join(certstore.KEMKeyTypes, ", "))
	case *days < 1:
		return fmt.Errorf("%w: -days must be positive", errUsage)
	case !kem && (*issuerCert != "" || *issuerKey != ""):
		return fmt.Errorf("%w: -issuer-cert and -issuer-key are for KEM keys; a %s certificate is self-signed", errUsage, *keyType)
	case kem && (*csr || *csrOnly):
		return fmt.Errorf("%w: a %s key cannot sign a certificate signing request (RFC 2986 section 3 wants the subject's signature); its certificate is signed by -issuer-cert or by a new domain issuer", errUsage, *keyType)
	case (*issuerCert == "") != (*issuerKey == ""):
		return fmt.Errorf("%w: -issuer-cert and -issuer-key go together", errUsage)
	}
	opts := certstore.KeygenOptions{Domains: domains, KeyType: *keyType, Days: *days}
	if *passFile != "" {
		p, err := readPassphraseFile(*passFile, nil)
		if err != nil {
			return fmt.Errorf("-passphrase-file: %w", err)
		}
		opts.Passphrase = p
	}
	if kem {
		return keygenKEM(opts, *issuerCert, *issuerKey, *out, stdout)
	}
	g, err := certstore.Generate(opts)
	if err != nil {
		return err
	}

	// A domain that has a key already gets the new pair beside the old
	// one (a rotation: both decrypt, README "Rotating our domain key"):
	// overwriting a domain key would lose the key that mail in flight is
	// encrypted to.
	base, rotated := rotationBase(*out, g.Domain, time.Now())
	if base == "" {
		return fmt.Errorf("%s already holds %d key pairs for %s; move old ones away (a domain key is never overwritten)", *out, maxRotationNames, g.Domain)
	}
	files := []keygenOutput{{base + ".key", g.KeyPEM, 0o600, "private key", true}}
	if !*csrOnly {
		files = append(files, keygenOutput{base + ".crt", g.CertPEM, 0o644, "self-signed domain certificate", false})
	}
	if *csr || *csrOnly {
		files = append(files, keygenOutput{base + ".csr", g.CSRPEM, 0o644, "certificate signing request", false})
	}
	if rotated != "" {
		fmt.Fprintf(stdout, "%s has a key for %s already (%s): the new pair goes beside it; both decrypt\n", *out, g.Domain, rotated)
	}
	if err := writeKeygenOutputs(files, stdout); err != nil {
		return err
	}
	c := g.Cert
	if rotated != "" && !*csrOnly {
		fmt.Fprintf(stdout, "rotation: give %s to partners now; keep %s until no mail is encrypted to it any more (smimegate cert list marks which is current)\n",
			filepath.Base(base+".crt"), filepath.Base(rotated))
	}
	fmt.Fprintf(stdout, "names: %s\n", strings.Join(c.EmailAddresses, ", "))
	if !*csrOnly {
		fmt.Fprintf(stdout, "sha256 fingerprint: %s\nvalid until: %s\n", certstore.Fingerprint(c), c.NotAfter.UTC().Format(time.RFC3339))
		fmt.Fprintf(stdout, "keep %s and %s in certs.own; give %s to partner gateways (`smimegate cert import`)\n",
			filepath.Base(base+".key"), filepath.Base(base+".crt"), filepath.Base(base+".crt"))
	} else {
		fmt.Fprintf(stdout, "have %s signed by a CA, then put the certificate beside %s in certs.own\n", filepath.Base(base+".csr"), filepath.Base(base+".key"))
	}
	return nil
}

// keygenOutput is one file that keygen writes.
type keygenOutput struct {
	path string
	data []byte
	perm os.FileMode
	what string
	// serviceKey marks a private key the gateway itself reads: run as
	// root into a directory of the service's group, it is written 0640
	// with that group (see serviceKeyGroup).
	serviceKey bool
}

// writeKeygenOutputs writes every file or none: it refuses before writing
// anything when one exists, since overwriting a domain key would lose the
// key that mail in flight is encrypted to, and removes what it wrote when
// a later file fails.
func writeKeygenOutputs(files []keygenOutput, stdout io.Writer) error {
	for _, f := range files {
		if _, err := os.Lstat(f.path); err == nil {
			return fmt.Errorf("%s exists; move it away or choose another -out (a domain key is never overwritten)", f.path)
		}
	}
	var written []string
	undo := func() {
		for _, p := range written {
			os.Remove(p)
		}
	}
	for _, f := range files {
		dir := filepath.Dir(f.path)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		keyGID, keyGroup, toGroup := serviceKeyGroup(dir)
		toGroup = toGroup && f.serviceKey
		if toGroup {
			f.perm = 0o640
			f.what = fmt.Sprintf("%s, mode 0640, group %s: run as root, so the key goes to the group of %s, which the gateway reads it as", f.what, keyGroup, dir)
		}
		if err := certstore.WriteFile(f.path, f.data, f.perm, false); err != nil {
			undo()
			if errors.Is(err, certstore.ErrExists) {
				return fmt.Errorf("%s appeared while keygen ran; nothing written", f.path)
			}
			return err
		}
		written = append(written, f.path)
		if toGroup {
			if err := giveKeyToGroup(f.path, keyGID); err != nil {
				undo()
				return err
			}
		}
		fmt.Fprintf(stdout, "wrote %s (%s)\n", f.path, f.what)
	}
	return nil
}

// maxRotationNames bounds the names tried for a new pair beside old ones.
const maxRotationNames = 100

// rotationBase returns the path without extension for a new key pair of
// domain in dir: DIR/D when no D.key, D.crt or D.csr exists, else the
// first of DIR/D-YYYYMMDD, DIR/D-YYYYMMDD-2 ... that is free, with the
// existing file that made the rotation ("" if none). It returns "" when
// maxRotationNames are taken.
func rotationBase(dir, domain string, now time.Time) (base, existing string) {
	taken := func(b string) string {
		for _, ext := range []string{".key", ".crt", ".csr"} {
			if _, err := os.Lstat(b + ext); err == nil {
				return b + ext
			}
		}
		return ""
	}
	plain := filepath.Join(dir, domain)
	existing = taken(plain)
	if existing == "" {
		return plain, ""
	}
	stem := plain + "-" + now.UTC().Format("20060102")
	for i := 1; i <= maxRotationNames; i++ {
		b := stem
		if i > 1 {
			b = fmt.Sprintf("%s-%d", stem, i)
		}
		if taken(b) == "" {
			return b, existing
		}
	}
	return "", existing
}
