package certstore

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Harvesting (certs.harvest): a valid domain signature carries the
// signer's certificates, and among them may be a new encryption
// certificate of the partner (a renewal, a key rotation), named by the
// signature's SMIMEEncryptionKeyPreference (RFC 8551 section 2.5.3) or by
// its domain names. Such a certificate is added to the partner store, in
// HarvestedDir, when it can be trusted as much as an imported one: it
// chains to the trust anchors, or it is issued under a CA certificate of
// that partner that we already hold. A self-signed stranger never is.

// harvestedSubdir is the directory under certs.partners for harvested
// certificates, so that the operator tells them from imported ones.
const harvestedSubdir = "harvested"

// MaxHarvestPerMessage bounds the certificates one message may add: a
// partner rotating its key sends one or two; more is noise, or an attack on
// the store's size.
const MaxHarvestPerMessage = 4

// HarvestedDir is where harvested certificates are kept for a partner
// directory; "" when there is none.
func HarvestedDir(partnersDir string) string {
	if partnersDir == "" {
		return ""
	}
	return filepath.Join(partnersDir, harvestedSubdir)
}

// Harvested reports whether c was harvested rather than imported.
func (c *Cert) Harvested() bool {
	return c.File != "" && filepath.Base(filepath.Dir(c.File)) == harvestedSubdir
}

// ErrHarvestRefused is wrapped by Harvest's refusals (not trusted, not of
// the signer's domain, unusable), as opposed to a failure to write.
var ErrHarvestRefused = errors.New("certificate not harvested")

// Harvest adds x, which came with a verified domain signature of domain,
// to the partner store as a harvested certificate, and returns the file
// it wrote ("" when we hold x already). x must be a usable encryption
// certificate (as `cert import` requires) naming only domain or its
// sub-domains, and chain, for emailProtection and now, to the trust anchors
// or to a CA certificate we hold for the partner, with intermediates from
// the message. source says where it came from, for the file's comment. The
// running store does not change: Reload picks the file up.
func (s *Store) Harvest(x *x509.Certificate, intermediates []*x509.Certificate, domain, source string, now time.Time) (string, error) {
	c := newCert(x, "", s.opts.naming())
	for _, set := range [][]*Cert{s.partners, s.own} {
		for _, h := range set {
			if h.Fingerprint == c.Fingerprint {
				return "", nil
			}
		}
	}
	if len(c.Domains) == 0 {
		return "", fmt.Errorf("%w: %s names no domain for encryption", ErrHarvestRefused, c.Describe())
	}
	for _, d := range c.Domains {
		if d != domain && !strings.HasSuffix(d, "."+domain) {
			return "", fmt.Errorf("%w: %s names %s, outside the signer's domain %s", ErrHarvestRefused, c.Describe(), d, domain)
		}
	}
	if c.static != Valid {
		return "", fmt.Errorf("%w: %s: %s", ErrHarvestRefused, c.Describe(), c.staticReason)
	}
	if e := c.evaluated(now); !e.Usable() {
		return "", fmt.Errorf("%w: %s is %s (%s)", ErrHarvestRefused, c.Describe(), e.Status, e.Reason)
	}
	if err := s.harvestTrust(x, intermediates, domain, now); err != nil {
		return "", fmt.Errorf("%w: %s: %v", ErrHarvestRefused, c.Describe(), err)
	}
	dir := HarvestedDir(s.opts.PartnersDir)
	if dir == "" {
		return "", errors.New("no partner directory is configured (certs.partners)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "Harvested by smimegate on %s from a verified domain signature of %s (%s).\n",
		now.UTC().Format(time.RFC3339), domain, sanitizeComment(source))
	pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: x.Raw})
	path := filepath.Join(dir, c.Domains[0]+"-"+c.Fingerprint[:16]+".pem")
	if err := WriteFile(path, b.Bytes(), 0o644, false); err != nil {
		if errors.Is(err, ErrExists) {
			return "", nil
		}
		return "", err
	}
	return path, nil
}

// harvestTrust checks the chain of a certificate to harvest: to the trust
// anchors when configured, else to a CA certificate in the files of the
// partner's certificates (its CA, shipped beside its certificate) or a
// held certificate of the domain that is itself a CA.
func (s *Store) harvestTrust(x *x509.Certificate, intermediates []*x509.Certificate, domain string, now time.Time) error {
	if s.roots != nil {
		return s.TrustSigner(x, intermediates, domain, now)
	}
	// Only CA certificates of this partner's own files: another partner's
	// CA says nothing about this domain.
	roots := x509.NewCertPool()
	n := 0
	for _, c := range s.partners {
		if !coversDomain(c.Domains, domain) {
			continue
		}
		for _, ca := range s.chainByFile[c.File] {
			roots.AddCert(ca)
			n++
		}
		if c.X509.BasicConstraintsValid && c.X509.IsCA {
			roots.AddCert(c.X509)
			n++
		}
	}
	if n == 0 {
		return errors.New("no trust anchors are configured and we hold no CA certificate of the partner to check it against")
	}
	pool := x509.NewCertPool()
	for _, c := range intermediates {
		pool.AddCert(c)
	}
	if _, err := x.Verify(x509.VerifyOptions{Roots: roots, Intermediates: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}}); err != nil {
		return fmt.Errorf("it is not issued under a certificate we hold: %v", err)
	}
	return nil
}

func coversDomain(domains []string, d string) bool {
	for _, s := range domains {
		if d == s || strings.HasSuffix(d, "."+s) {
			return true
		}
	}
	return false
}

// sanitizeComment keeps a source description printable and on one line.
func sanitizeComment(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			b[i] = ' '
		}
	}
	if len(b) > 200 {
		b = b[:200]
	}
	return string(b)
}
