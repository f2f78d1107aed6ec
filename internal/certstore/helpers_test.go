package certstore

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// RSA key generation is slow under -race, so the tests share a few keys
// made once per run.
var (
	testKeysOnce sync.Once
	testRSA      []*rsa.PrivateKey // 2048 bits
	testRSA1024  *rsa.PrivateKey
	testEC       []*ecdsa.PrivateKey // P-256
)

func rsaKey(t testing.TB, i int) *rsa.PrivateKey {
	t.Helper()
	makeTestKeys(t)
	return testRSA[i]
}

func ecKey(t testing.TB, i int) *ecdsa.PrivateKey {
	t.Helper()
	makeTestKeys(t)
	return testEC[i]
}

func makeTestKeys(t testing.TB) {
	testKeysOnce.Do(func() {
		for range 6 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			testRSA = append(testRSA, k)
		}
		k, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			panic(err)
		}
		testRSA1024 = k
		for range 3 {
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				panic(err)
			}
			testEC = append(testEC, k)
		}
	})
}

// testNow is the fixed "now" of the tests.
var testNow = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

var serialCounter atomic.Int64

// certSpec describes a test certificate; zero fields get sensible values.
type certSpec struct {
	emails    []string // subjectAltName rfc822Name
	dnsNames  []string // subjectAltName dNSName
	uris      []*url.URL
	subject   pkix.Name
	notBefore time.Time
	notAfter  time.Time
	usage     x509.KeyUsage // 0: keyEncipherment for RSA, keyAgreement for EC
	noUsage   bool          // leave the key usage extension out
	eku       []x509.ExtKeyUsage
	isCA      bool
	key       crypto.Signer // the certified key
	parent    *x509.Certificate
	parentKey crypto.Signer
}

func makeCert(t testing.TB, s certSpec) *x509.Certificate {
	t.Helper()
	if s.notBefore.IsZero() {
		s.notBefore = testNow.Add(-24 * time.Hour)
	}
	if s.notAfter.IsZero() {
		s.notAfter = testNow.Add(365 * 24 * time.Hour)
	}
	if s.usage == 0 && !s.noUsage {
		if _, ok := s.key.Public().(*rsa.PublicKey); ok {
			s.usage = x509.KeyUsageKeyEncipherment
		} else {
			s.usage = x509.KeyUsageKeyAgreement
		}
		if s.isCA {
			s.usage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
		}
	}
	if s.subject.CommonName == "" && len(s.subject.Names) == 0 && len(s.subject.ExtraNames) == 0 {
		s.subject.CommonName = "test " + big.NewInt(serialCounter.Add(1)).String()
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serialCounter.Add(1)),
		Subject:               s.subject,
		NotBefore:             s.notBefore,
		NotAfter:              s.notAfter,
		KeyUsage:              s.usage,
		ExtKeyUsage:           s.eku,
		EmailAddresses:        s.emails,
		DNSNames:              s.dnsNames,
		URIs:                  s.uris,
		BasicConstraintsValid: true,
		IsCA:                  s.isCA,
	}
	parent, parentKey := tmpl, s.key
	if s.parent != nil {
		parent, parentKey = s.parent, s.parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, s.key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func certPEM(cs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range cs {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

func keyPEM(t testing.TB, k crypto.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testDirs makes empty own and partner directories.
func testDirs(t testing.TB) (own, partners string) {
	t.Helper()
	d := t.TempDir()
	own, partners = filepath.Join(d, "own"), filepath.Join(d, "partners")
	for _, p := range []string{own, partners} {
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return own, partners
}

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func mustLoad(t testing.TB, opts Options) *Store {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return testNow }
	}
	s, err := Load(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// needTool skips a test when an external program is missing; CI installs
// them all, so a skip there is visible in the test output.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s is not installed", name)
	}
	return p
}

// run runs a program and fails the test with its output if it fails.
func run(t testing.TB, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

func problemsText(s *Store) string {
	var b strings.Builder
	for _, p := range s.Problems() {
		b.WriteString(p.String())
		b.WriteByte('\n')
	}
	return b.String()
}
