package certstore

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Import is a partner certificate file that has been validated and is ready
// to be copied into the partner directory.
type Import struct {
	Source string
	Certs  []*Cert // the domain certificates, judged as of now
	// Signers are certificates that name a domain only as its domain
	// signer (RFC 3183 section 3.1.1): held to verify its signatures,
	// never encrypted to (signers.go).
	Signers []*Cert
	Chain   []*x509.Certificate // CA certificates that came with them
	Dest    string              // where Commit writes, in the partner directory
	Exists  bool                // Dest already holds exactly these certificates
	data    []byte              // PEM of Certs then Chain
}

// PrepareImport reads and validates a partner certificate file (PEM, DER or
// PKCS#7) for `cert import`. It refuses, with an error naming the file and
// the reason, a file that holds a private key, no domain certificate, a
// certificate that names a public suffix not in opts.AllowPublicSuffix, or
// a domain certificate that is not usable now (expired, not yet valid,
// wrong key usage, bad key, or untrusted when trust anchors are
// configured). One
// bad certificate refuses the whole file: a partial import would leave the
// operator believing that all of it is in force.
//
// The file is stored normalised as PEM, named after its first domain and
// fingerprint, so that importing the same certificate twice is harmless and
// a rotation adds a file instead of replacing one.
func PrepareImport(opts Options, path string) (*Import, error) {
	if len(opts.Names) == 0 {
		opts.Names = DefaultNames
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PartnersDir == "" {
		return nil, errors.New("no partner directory is configured (certs.partners)")
	}
	data, fi, err := readFile(path)
	if err == nil && fi != nil && !fi.Mode().IsRegular() {
		err = errors.New("not a regular file")
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	fc, err := parseFile(path, data, partnerFile, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(fc.notes) > 0 {
		// The only note a partner file gets is a private key: refuse
		// rather than guess that the operator meant only the certificate.
		return nil, fmt.Errorf("%s: holds a private key; import only the partner's certificate", path)
	}
	im := &Import{Source: path}
	chain := x509.NewCertPool()
	for _, x := range fc.certs {
		c := newCert(x, path, opts.naming())
		if len(c.Domains) == 0 && isSigningCert(x, opts.naming()) {
			im.Signers = append(im.Signers, newCert(x, path, signerNaming(opts.naming())))
			continue
		}
		if len(c.Domains) == 0 {
			im.Chain = append(im.Chain, x)
			chain.AddCert(x)
			continue
		}
		im.Certs = append(im.Certs, c)
	}
	if len(im.Certs) == 0 && len(im.Signers) == 0 {
		return nil, fmt.Errorf("%s: names no domain: no certificate has a mailbox %s@DOMAIN in subjectAltName, subject emailAddress or commonName", path, strings.Join(opts.Names, "@DOMAIN or "))
	}
	var roots *x509.CertPool
	if opts.TrustDir != "" {
		s := &Store{opts: opts}
		if roots, err = s.loadTrustAnchors(opts.TrustDir); err != nil {
			return nil, err
		}
	}
	now := opts.Now()
	for i, c := range im.Certs {
		if c.static == PublicSuffix {
			return nil, fmt.Errorf("%s: %s; not imported", path, refusedSuffix(c))
		}
		if roots != nil && c.static == Valid {
			c.verifyChain(roots, chain, now, opts.TrustDir)
		}
		e := c.evaluated(now)
		if !e.Usable() {
			return nil, fmt.Errorf("%s: %s is %s (%s); not imported", path, c.Describe(), e.Status, e.Reason)
		}
		im.Certs[i] = e
	}
	if err := checkSigners(im.Signers, roots, chain, now, opts.TrustDir); err != nil {
		return nil, fmt.Errorf("%s: %w; not imported", path, err)
	}
	var b bytes.Buffer
	for _, c := range append(slices.Clone(im.Certs), im.Signers...) {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.X509.Raw})
	}
	for _, x := range im.Chain {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: x.Raw})
	}
	im.data = b.Bytes()
	first := append(slices.Clone(im.Certs), im.Signers...)[0]
	im.Dest = filepath.Join(opts.PartnersDir, first.Domains[0]+"-"+first.Fingerprint[:16]+".pem")
	if old, err := os.ReadFile(im.Dest); err == nil && bytes.Equal(old, im.data) {
		im.Exists = true
	}
	return im, nil
}

// Commit writes the validated certificates into the partner directory
// (created if missing). A running gateway picks them up at its next reload
// (SIGHUP).
func (im *Import) Commit() error {
	if im.Exists {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(im.Dest), 0o755); err != nil {
		return err
	}
	return WriteFile(im.Dest, im.data, 0o644, true)
}
