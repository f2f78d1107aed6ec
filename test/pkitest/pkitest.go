// Package pkitest runs a certificate authority made with the openssl
// command for tests: `openssl req` makes the CA, `openssl ca` issues and
// revokes certificates and writes the CRL, which a loopback HTTP server of
// the test serves, and `openssl ocsp -port` is the OCSP responder, signing
// with a delegated responder certificate (RFC 6960 section 4.2.2.2).
//
// Every certificate the CA issues names the responder (authorityInfoAccess)
// and the CRL (cRLDistributionPoints) on loopback ports chosen when the CA
// is made, so that a test can stop and start them to make them unreachable.
package pkitest

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// CA is a running test certificate authority.
type CA struct {
	t    testing.TB
	Dir  string
	Cert *x509.Certificate
	// CertFile is the CA certificate (PEM), the trust anchor.
	CertFile string
	// OCSPURL and CRLURL are what issued certificates name.
	OCSPURL, CRLURL string

	ocspPort int
	crlLn    net.Listener
	crlSrv   *http.Server
	ocsp     *exec.Cmd
	ocspOut  *syncBuffer

	indexTime time.Time // the index's modification time last set

	mu      sync.Mutex
	crl     []byte
	crlDown bool
}

// Need skips the test when openssl is missing, or fails it under CI.
func Need(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("openssl is not installed")
		}
		t.Skip("openssl is not installed")
	}
}

// New makes a CA (EC P-256, named cn) and its delegated OCSP responder
// certificate, writes an empty CRL and serves it; the responder is not
// started (StartOCSP).
func New(t testing.TB, cn string) *CA {
	t.Helper()
	Need(t)
	dir := t.TempDir()
	ca := &CA{t: t, Dir: dir, CertFile: filepath.Join(dir, "ca.crt"), ocspPort: freePort(t)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ca.crlLn = ln
	ca.OCSPURL = fmt.Sprintf("http://127.0.0.1:%d", ca.ocspPort)
	ca.CRLURL = fmt.Sprintf("http://%s/ca.crl", ln.Addr())
	os.MkdirAll(filepath.Join(dir, "newcerts"), 0o700)
	write(t, filepath.Join(dir, "index.txt"), "")
	write(t, filepath.Join(dir, "crlnumber"), "01\n")
	write(t, filepath.Join(dir, "ca.cnf"), fmt.Sprintf(`[ ca ]
default_ca = CA_default
[ CA_default ]
dir = %s
database = $dir/index.txt
new_certs_dir = $dir/newcerts
certificate = $dir/ca.crt
private_key = $dir/ca.key
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
default_days = 365
default_crl_hours = 1
policy = policy_any
unique_subject = no
[ policy_any ]
commonName = supplied
[ ocsp_ext ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = critical, OCSPSigning
`, dir))
	ca.openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
		"-subj", "/CN="+cn, "-days", "3650", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
	ca.openssl("rand", "-hex", "-out", "serial", "16")
	ca.Cert = ReadCert(t, ca.CertFile)
	// The delegated responder.
	ca.openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "ocsp.key", "-out", "ocsp.csr", "-subj", "/CN="+cn+" OCSP responder")
	ca.openssl("ca", "-batch", "-config", "ca.cnf", "-extensions", "ocsp_ext", "-in", "ocsp.csr", "-out", "ocsp.crt", "-notext")
	ca.writeCRL()
	ca.crlSrv = &http.Server{Handler: http.HandlerFunc(ca.serveCRL), ReadHeaderTimeout: 5 * time.Second}
	go ca.crlSrv.Serve(ln)
	t.Cleanup(func() {
		ca.crlSrv.Close()
		ca.StopOCSP()
	})
	return ca
}

// Issue makes a domain certificate for domain with an RSA-2048 key, and
// returns the paths of the certificate and the key (PEM).
func (ca *CA) Issue(domain string) (certFile, keyFile string) {
	ca.t.Helper()
	base := filepath.Join(ca.Dir, domain)
	write(ca.t, base+".ext", fmt.Sprintf(`[ ext ]
basicConstraints = CA:FALSE
keyUsage = critical, keyEncipherment
extendedKeyUsage = emailProtection
subjectAltName = email:smg_encryptor@%s
authorityInfoAccess = OCSP;URI:%s
crlDistributionPoints = URI:%s
`, domain, ca.OCSPURL, ca.CRLURL))
	ca.openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", base+".key", "-out", base+".csr", "-subj", "/CN="+domain)
	ca.openssl("ca", "-batch", "-config", "ca.cnf", "-extfile", base+".ext", "-extensions", "ext", "-in", base+".csr", "-out", base+".crt", "-notext")
	return base + ".crt", base + ".key"
}

// Revoke revokes a certificate the CA issued (keyCompromise), writes a
// new CRL, and makes a running responder read its index again.
//
// openssl ocsp reads the index again when its modification time (in
// seconds) changed, and looks only before it waits for a request: the
// first request after a change still gets the old answer. So the index's
// time is moved on by a second, and the responder is asked once here.
func (ca *CA) Revoke(certFile string) {
	ca.t.Helper()
	ca.openssl("ca", "-config", "ca.cnf", "-revoke", certFile, "-crl_reason", "keyCompromise")
	index := filepath.Join(ca.Dir, "index.txt")
	if now := time.Now(); now.After(ca.indexTime) {
		ca.indexTime = now
	}
	ca.indexTime = ca.indexTime.Add(time.Second)
	if err := os.Chtimes(index, ca.indexTime, ca.indexTime); err != nil {
		ca.t.Fatal(err)
	}
	ca.writeCRL()
	if ca.ocsp != nil {
		ca.openssl("ocsp", "-issuer", "ca.crt", "-CAfile", "ca.crt", "-cert", certFile, "-url", ca.OCSPURL, "-no_nonce", "-timeout", "5")
	}
}

func (ca *CA) writeCRL() {
	ca.t.Helper()
	ca.openssl("ca", "-config", "ca.cnf", "-gencrl", "-out", "ca.crl.pem")
	ca.openssl("crl", "-in", "ca.crl.pem", "-outform", "DER", "-out", "ca.crl")
	der, err := os.ReadFile(filepath.Join(ca.Dir, "ca.crl"))
	if err != nil {
		ca.t.Fatal(err)
	}
	ca.mu.Lock()
	ca.crl = der
	ca.mu.Unlock()
}

func (ca *CA) serveCRL(w http.ResponseWriter, r *http.Request) {
	ca.mu.Lock()
	der, down := ca.crl, ca.crlDown
	ca.mu.Unlock()
	if down || r.URL.Path != "/ca.crl" {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	w.Write(der)
}

// SetCRLDown makes the CRL endpoint answer 503 (down) or serve again.
func (ca *CA) SetCRLDown(down bool) {
	ca.mu.Lock()
	ca.crlDown = down
	ca.mu.Unlock()
}

// StartOCSP starts `openssl ocsp` as the responder, answers valid for an
// hour, and waits until it accepts connections.
func (ca *CA) StartOCSP() {
	ca.t.Helper()
	ca.ocspOut = &syncBuffer{}
	ca.ocsp = exec.Command("openssl", "ocsp", "-index", "index.txt", "-port", fmt.Sprint(ca.ocspPort), "-rsigner", "ocsp.crt", "-rkey", "ocsp.key",
		"-CA", "ca.crt", "-nmin", "60", "-ignore_err")
	ca.ocsp.Dir = ca.Dir
	ca.ocsp.Stdout, ca.ocsp.Stderr = ca.ocspOut, ca.ocspOut
	if err := ca.ocsp.Start(); err != nil {
		ca.t.Fatal(err)
	}
	// Wait for its "waiting for OCSP client connections" rather than
	// probe the port: openssl ocsp 3.0 serves one connection at a time,
	// and one that closes without a request stalls it for good.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if strings.Contains(ca.ocspOut.String(), "waiting for OCSP client connections") {
			return
		}
		if time.Now().After(deadline) {
			ca.t.Fatalf("openssl ocsp did not listen: %s", ca.ocspOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// StopOCSP stops the responder, if it runs.
func (ca *CA) StopOCSP() {
	if ca.ocsp != nil && ca.ocsp.Process != nil {
		ca.ocsp.Process.Kill()
		ca.ocsp.Wait()
		ca.ocsp = nil
	}
}

func (ca *CA) openssl(args ...string) []byte {
	ca.t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = ca.Dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		ca.t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// ReadCert reads the first certificate of a PEM file.
func ReadCert(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return ReadCertPEM(t, data)
}

// ReadCertPEM reads the first certificate of PEM data.
func ReadCertPEM(t testing.TB, data []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(data)
	if b == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func write(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// syncBuffer collects a program's output while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
