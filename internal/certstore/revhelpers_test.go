package certstore

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// testClock is a clock the tests move by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: testNow} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// testPKI is a CA with an OCSP responder and a CRL distribution point,
// served by a loopback HTTP server, whose answers the test changes.
type testPKI struct {
	t     testing.TB
	clock *testClock
	ca    *x509.Certificate
	key   crypto.Signer
	srv   *httptest.Server

	mu      sync.Mutex
	revoked map[string]time.Time // serial -> revocation time
	// ocspDown and crlDown make the endpoints answer 503.
	ocspDown, crlDown bool
	// ocspSigner signs OCSP responses (nil: the CA itself).
	ocspSigner    *x509.Certificate
	ocspSignerKey crypto.Signer
	// validity of the answers: nextUpdate = now + validity.
	validity  time.Duration
	ocspHits  int
	crlHits   int
	crlBody   func() []byte // replaces the CRL when set
	ocspBody  func(req *ocsp.Request) []byte
	crlBlocks chan struct{} // when set, the CRL endpoint waits for it
}

func newKeyP256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newTestPKI makes a root CA and starts its HTTP endpoints.
func newTestPKI(t testing.TB, clock *testClock) *testPKI {
	t.Helper()
	return newNamedPKI(t, clock, "Test Root CA")
}

// newNamedPKI is newTestPKI with a root CA named cn.
func newNamedPKI(t testing.TB, clock *testClock, cn string) *testPKI {
	t.Helper()
	p := &testPKI{t: t, clock: clock, key: newKeyP256(t), revoked: map[string]time.Time{}, validity: 24 * time.Hour}
	p.ca = p.selfSigned(cn)
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *testPKI) selfSigned(cn string) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serialCounter.Add(1)),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             testNow.Add(-365 * 24 * time.Hour),
		NotAfter:              testNow.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, p.key.Public(), p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func (p *testPKI) ocspURL() string { return p.srv.URL + "/ocsp" }
func (p *testPKI) crlURL() string  { return p.srv.URL + "/ca.crl" }

// issue makes a certificate signed by the CA; tmpl's blanks are filled in.
func (p *testPKI) issue(tmpl *x509.Certificate, pub crypto.PublicKey) *x509.Certificate {
	p.t.Helper()
	if tmpl.SerialNumber == nil {
		tmpl.SerialNumber = big.NewInt(serialCounter.Add(1))
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = testNow.Add(-24 * time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = testNow.Add(365 * 24 * time.Hour)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, pub, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		p.t.Fatal(err)
	}
	return c
}

// partner issues a domain certificate for domain that names the CA's
// responder and CRL.
func (p *testPKI) partner(domain string, key crypto.Signer) *x509.Certificate {
	return p.issue(&x509.Certificate{
		Subject:               pkix.Name{CommonName: domain},
		EmailAddresses:        []string{"smg_encryptor@" + domain},
		KeyUsage:              x509.KeyUsageKeyAgreement,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		BasicConstraintsValid: true,
		OCSPServer:            []string{p.ocspURL()},
		CRLDistributionPoints: []string{p.crlURL()},
	}, key.Public())
}

// intermediate makes a CA under this one, with its own endpoints.
func (p *testPKI) intermediate(clock *testClock) *testPKI {
	q := &testPKI{t: p.t, clock: clock, key: newKeyP256(p.t), revoked: map[string]time.Time{}, validity: 24 * time.Hour}
	q.srv = httptest.NewServer(http.HandlerFunc(q.serve))
	p.t.Cleanup(q.srv.Close)
	q.ca = p.issue(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "Test Intermediate CA"},
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		OCSPServer:            []string{p.ocspURL()},
		CRLDistributionPoints: []string{p.crlURL()},
	}, q.key.Public())
	return q
}

func (p *testPKI) revoke(c *x509.Certificate) {
	p.mu.Lock()
	p.revoked[c.SerialNumber.String()] = p.clock.Now().Add(-time.Minute)
	p.mu.Unlock()
}

func (p *testPKI) set(f func(p *testPKI)) {
	p.mu.Lock()
	f(p)
	p.mu.Unlock()
}

func (p *testPKI) hits() (ocspHits, crlHits int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ocspHits, p.crlHits
}

func (p *testPKI) serve(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/ocsp":
		p.mu.Lock()
		p.ocspHits++
		down := p.ocspDown
		p.mu.Unlock()
		if down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		req, err := ocsp.ParseRequest(body)
		if err != nil {
			w.Write(ocsp.MalformedRequestErrorResponse)
			return
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		w.Write(p.ocspResponse(req))
	case "/ca.crl":
		p.mu.Lock()
		p.crlHits++
		down, block := p.crlDown, p.crlBlocks
		p.mu.Unlock()
		if block != nil {
			<-block
		}
		if down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		w.Write(p.crl())
	default:
		http.NotFound(w, r)
	}
}

func (p *testPKI) ocspResponse(req *ocsp.Request) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ocspBody != nil {
		return p.ocspBody(req)
	}
	now := p.clock.Now()
	tmpl := ocsp.Response{Status: ocsp.Good, SerialNumber: req.SerialNumber, ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(p.validity)}
	if at, ok := p.revoked[req.SerialNumber.String()]; ok {
		tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = ocsp.Revoked, at, ocsp.KeyCompromise
	}
	signer, key := p.ca, p.key
	if p.ocspSigner != nil {
		signer, key = p.ocspSigner, p.ocspSignerKey
		tmpl.Certificate = signer
	}
	der, err := ocsp.CreateResponse(p.ca, signer, tmpl, key)
	if err != nil {
		p.t.Error(err)
	}
	return der
}

// crl is the CA's current CRL.
func (p *testPKI) crl() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.crlBody != nil {
		return p.crlBody()
	}
	now := p.clock.Now()
	var entries []x509.RevocationListEntry
	for s, at := range p.revoked {
		n, _ := new(big.Int).SetString(s, 10)
		entries = append(entries, x509.RevocationListEntry{SerialNumber: n, RevocationTime: at})
	}
	return p.makeCRL(now, entries, nil)
}

func (p *testPKI) makeCRL(now time.Time, entries []x509.RevocationListEntry, exts []pkix.Extension) []byte {
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(now.Unix()),
		ThisUpdate:                now.Add(-time.Minute),
		NextUpdate:                now.Add(p.validity),
		RevokedCertificateEntries: entries,
		ExtraExtensions:           exts,
	}, p.ca, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	return der
}

// revStore writes the CA as the trust anchor and the partner certificates
// (and chain certificates) into fresh directories and loads a Store that
// checks revocation with r.
func revStore(t testing.TB, clock *testClock, r *Revocation, anchors []*x509.Certificate, partners ...*x509.Certificate) *Store {
	t.Helper()
	own, part := testDirs(t)
	trust := filepath.Join(filepath.Dir(own), "anchors")
	if err := os.Mkdir(trust, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, trust, "ca.pem", certPEM(anchors...))
	writeFile(t, part, "partners.pem", certPEM(partners...))
	s, err := Load(Options{OwnDir: own, PartnersDir: part, TrustDir: trust, Now: clock.Now, Revocation: r})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newTestRevocation(t testing.TB, clock *testClock, mode RevocationMode, dir string) *Revocation {
	t.Helper()
	return NewRevocation(RevocationOptions{Mode: mode, Grace: 24 * time.Hour, MaxAge: 7 * 24 * time.Hour, Dir: dir, Now: clock.Now})
}
