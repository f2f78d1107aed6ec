// Package certstore holds the domain certificates the gateway decides by:
// partner certificates to encrypt to, and our own certificates with their
// private keys to decrypt with (draft-ramsdell-enc-smime-gateway-00 section
// 4). It loads them from two directories, judges each one (validity period,
// key usage, key size, optionally trust), looks them up by domain, most
// specific first, and makes new domain keys and certificates.
//
// A Store never changes after it is built, so it is safe for concurrent use;
// Reload builds a new one from the old.
package certstore

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// DefaultNames are the local parts that mark a domain certificate: the
// draft's smg_encryptor and RFC 3183's domain-confidentiality-authority.
var DefaultNames = []string{"smg_encryptor", "domain-confidentiality-authority"}

// Options says where the certificates are and how to read them.
type Options struct {
	OwnDir, PartnersDir string
	TrustDir            string   // optional: partner certificates must chain to these
	Names               []string // local parts that mark a domain certificate; DefaultNames if empty
	HostNames           bool     // a subjectAltName dNSName or smtp:// URI also names a domain
	// AllowPublicSuffix lists public suffixes (canonical A-labels) that a
	// certificate may name all the same; a certificate naming any other
	// public suffix is refused at import and at load (certs.allow_public_suffix).
	AllowPublicSuffix []string
	Passphrase        []byte // for encrypted PKCS#8 / PKCS#12 own keys
	Now               func() time.Time
	Logger            *slog.Logger
	// Revocation, if set, checks certificates for revocation (only with
	// TrustDir: certificates trusted as imported are not checked, their
	// partner is who retires them). It outlives the Store.
	Revocation *Revocation
	// Discovery, if set, looks partner certificates up in DNS (SMIMEA,
	// RFC 8162) for domains without a usable local one.
	Discovery *Discovery
}

// Problem is a file, or a certificate in it, that cannot be used.
type Problem struct {
	File   string
	Reason string
}

func (p Problem) String() string { return p.File + ": " + p.Reason }

// Store is a loaded set of certificates. See the package comment.
type Store struct {
	opts Options
	// files are the files that loaded, by path, so that Reload can keep
	// the old version of one that a bad edit broke.
	files    map[string]*loadedFile
	own      []*Cert
	partners []*Cert
	byDomain map[string][]*Cert // partner certificates by each domain they name
	problems []Problem
	// ownFailed are the files of the own directory that failed to load,
	// or whose private key did: each may hold the key of an own
	// certificate, which pairOwn then names as the likely reason.
	ownFailed []Problem
	// roots and anchors are the trust anchors (nil without TrustDir),
	// intermediates (also chain) the CA certificates of the partner
	// directory: what discovered certificates, domain signatures
	// (signers.go) and harvested certificates (harvest.go) are verified
	// with.
	roots         *x509.CertPool
	anchors       []*x509.Certificate
	intermediates *x509.CertPool
	chain         *x509.CertPool
	chainCerts    []*x509.Certificate
	chainByFile   map[string][]*x509.Certificate // the CA certificates of each partner file
	// ownChain are the CA certificates that came with ours.
	ownChain []*x509.Certificate
	// signers are partner certificates that name a domain only as its
	// domain signer (RFC 3183 section 3.1.1): trusted to sign for it,
	// never encrypted to.
	signers []*Cert
	// discovered memoises the certificates built from SMIMEA records.
	discovered discoveredMemo
}

type loadedFile struct {
	kind    fileKind
	content *fileContent
}

// Load reads the own, partner and trust directories. Files that cannot be
// used are reported as Problems (and logged once); only a directory that
// cannot be read at all is an error, since then the gateway would silently
// send in the clear what it should encrypt.
func Load(opts Options) (*Store, error) {
	return load(opts, nil)
}

// Reload reads the directories again with the same options. A file that
// loaded before and no longer does (a bad edit) keeps its old version, so
// that no partner loses encryption and no key is lost; a file that was
// removed is dropped. On error the caller should keep using s.
func (s *Store) Reload() (*Store, error) {
	return load(s.opts, s)
}

func load(opts Options, prev *Store) (*Store, error) {
	if len(opts.Names) == 0 {
		opts.Names = DefaultNames
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.OwnDir == "" && opts.PartnersDir == "" {
		return nil, errors.New("neither an own nor a partner certificate directory is configured")
	}
	s := &Store{opts: opts, files: map[string]*loadedFile{}, byDomain: map[string][]*Cert{}}
	var roots *x509.CertPool
	if opts.TrustDir != "" {
		var err error
		if roots, err = s.loadTrustAnchors(opts.TrustDir); err != nil {
			return nil, err
		}
	}
	s.roots = roots
	for _, d := range []struct {
		dir  string
		kind fileKind
	}{{opts.OwnDir, ownFile}, {opts.PartnersDir, partnerFile}} {
		if d.dir == "" {
			continue
		}
		if err := s.readDir(d.dir, d.kind, prev); err != nil {
			return nil, err
		}
	}
	// Certificates learnt from verified domain signatures (harvest.go),
	// once there are any.
	if h := HarvestedDir(opts.PartnersDir); h != "" {
		if fi, err := os.Stat(h); err == nil && fi.IsDir() {
			if err := s.readDir(h, partnerFile, prev); err != nil {
				return nil, err
			}
		}
	}
	s.pairOwn()
	s.collectPartners(roots)
	s.ownChains()
	// Tracking first: it reads the revocation cache, which finish's
	// problems then reflect.
	s.trackRevocation()
	s.finish(prev)
	return s, nil
}

// listDir returns the regular files of dir in name order. Hidden files are
// skipped: `cert import` writes its temporary files as dot files.
func listDir(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("certificate directory %s: %w", dir, err)
	}
	var paths []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		paths = append(paths, filepath.Join(dir, e.Name()))
	}
	return paths, nil
}

// readFile reads one file of the store, bounded by maxFileSize.
func readFile(path string) ([]byte, fs.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fi, nil
	}
	if fi.Size() > maxFileSize {
		return nil, fi, fmt.Errorf("larger than %d bytes, which no certificate file is", maxFileSize)
	}
	data := make([]byte, fi.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return nil, fi, err
	}
	return data, fi, nil
}

func (s *Store) readDir(dir string, kind fileKind, prev *Store) error {
	paths, err := listDir(dir)
	if err != nil {
		return err
	}
	for _, path := range paths {
		data, fi, err := readFile(path)
		if err == nil && data == nil {
			continue // a directory, socket or the like
		}
		var fc *fileContent
		if err == nil {
			fc, err = parseFile(path, data, kind, s.opts.Passphrase)
			clear(data) // it may hold a private key
		}
		if err == nil {
			err = checkContent(fc, kind, s.opts.naming())
		}
		if err == nil && len(fc.keyErrors) > 0 {
			// Its certificates loaded but a key did not: for Reload that
			// is a bad edit like any other, and the old version stays.
			if old := prev.file(path); old != nil && old.kind == kind && len(old.content.keyErrors) == 0 {
				s.files[path] = old
				s.problem(path, strings.Join(fc.keyErrors, "; ")+"; keeping the version loaded before")
				continue
			}
			for _, ke := range fc.keyErrors {
				s.problem(path, ke)
				s.ownFailed = append(s.ownFailed, Problem{File: path, Reason: ke})
			}
		}
		if err != nil {
			if old := prev.file(path); old != nil && old.kind == kind {
				s.files[path] = old
				s.problem(path, err.Error()+"; keeping the version loaded before")
				continue
			}
			s.problem(path, err.Error())
			if kind == ownFile {
				s.ownFailed = append(s.ownFailed, Problem{File: path, Reason: failureReason(err)})
			}
			continue
		}
		if why := keyModeProblem(fi.Mode().Perm()); kind == ownFile && len(fc.keys) > 0 && why != "" {
			s.problem(path, why)
		}
		for _, n := range fc.notes {
			s.problem(path, n)
		}
		s.files[path] = &loadedFile{kind: kind, content: fc}
	}
	return nil
}

// failureReason is err without the file name that an *fs.PathError
// repeats ("permission denied" rather than "open /etc/...: permission
// denied"), for a reason that is prefixed with the file name already.
func failureReason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// checkContent refuses a file that parses but brings nothing the store can
// use, so that Reload treats it like a file that does not parse. A partner
// file whose domain certificates all name a public suffix is refused too,
// with that reason.
func checkContent(fc *fileContent, kind fileKind, n naming) error {
	if kind == ownFile {
		if len(fc.keys) == 0 && len(fc.certs) == 0 {
			return errors.New("no certificate or private key")
		}
		return nil
	}
	var refused []string
	for _, x := range fc.certs {
		c := newCert(x, "", n)
		switch {
		case len(c.Domains) == 0 && isSigningCert(x, n):
			// A domain's signing certificate: held to verify its
			// signatures (signers.go).
			return nil
		case len(c.Domains) == 0:
		case c.static == PublicSuffix:
			refused = append(refused, refusedSuffix(c))
		default:
			return nil
		}
	}
	if len(refused) > 0 {
		return errors.New(strings.Join(refused, "; "))
	}
	return fmt.Errorf("no domain certificate: no certificate names a mailbox %s@DOMAIN in subjectAltName, subject emailAddress or commonName", strings.Join(n.names, "@DOMAIN or "))
}

// refusedSuffix says why a certificate that names a public suffix is not
// used, and how to allow it.
func refusedSuffix(c *Cert) string {
	return fmt.Sprintf("%s is refused: it %s; it would capture the mail of every domain under it (list the suffix in certs.allow_public_suffix if that is intended)", c.Describe(), c.staticReason)
}

func (s *Store) file(path string) *loadedFile {
	if s == nil {
		return nil
	}
	return s.files[path]
}

func (s *Store) problem(file, reason string) {
	s.problems = append(s.problems, Problem{File: file, Reason: reason})
}

// loadTrustAnchors reads every certificate in dir as a trust anchor.
func (s *Store) loadTrustAnchors(dir string) (*x509.CertPool, error) {
	paths, err := listDir(dir)
	if err != nil {
		return nil, fmt.Errorf("trust anchors: %w", err)
	}
	pool := x509.NewCertPool()
	n := 0
	for _, path := range paths {
		data, _, err := readFile(path)
		if err == nil && data == nil {
			continue
		}
		var fc *fileContent
		if err == nil {
			fc, err = parseFile(path, data, partnerFile, nil)
		}
		if err != nil {
			s.problem(path, "trust anchor: "+err.Error())
			continue
		}
		for _, c := range fc.certs {
			pool.AddCert(c)
			s.anchors = append(s.anchors, c)
			n++
		}
	}
	if n == 0 {
		// Not an error: every partner certificate is then Untrusted,
		// which fails closed and is reported for each of them.
		s.problem(dir, "no trust anchor certificate in this directory: no partner certificate can be trusted")
	}
	return pool, nil
}

// sortedFiles returns the loaded files of one kind in path order, so that
// duplicates resolve the same way on every load.
func (s *Store) sortedFiles(kind fileKind) []string {
	var paths []string
	for p, f := range s.files {
		if f.kind == kind {
			paths = append(paths, p)
		}
	}
	slices.Sort(paths)
	return paths
}
