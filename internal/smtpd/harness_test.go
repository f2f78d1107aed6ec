package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"smimegate/internal/config"
	"smimegate/internal/spool"
)

// tlsFiles are a certificate and key made once for the package (an ECDSA
// key, which is quick to make even under -race).
var tlsFiles struct {
	once      sync.Once
	dir       string
	cert, key string
	pool      *x509.CertPool
	err       error
}

func testTLS(t testing.TB) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	tlsFiles.once.Do(func() {
		dir, err := os.MkdirTemp("", "smtpd-tls-")
		if err != nil {
			tlsFiles.err = err
			return
		}
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			tlsFiles.err = err
			return
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "mx.example.org"},
			DNSNames:     []string{"mx.example.org", "localhost"},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			tlsFiles.err = err
			return
		}
		kder, _ := x509.MarshalPKCS8PrivateKey(key)
		tlsFiles.dir = dir
		tlsFiles.cert = filepath.Join(dir, "cert.pem")
		tlsFiles.key = filepath.Join(dir, "key.pem")
		os.WriteFile(tlsFiles.cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
		os.WriteFile(tlsFiles.key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
		c, _ := x509.ParseCertificate(der)
		tlsFiles.pool = x509.NewCertPool()
		tlsFiles.pool.AddCert(c)
	})
	if tlsFiles.err != nil {
		t.Fatal(tlsFiles.err)
	}
	return tlsFiles.cert, tlsFiles.key, tlsFiles.pool
}

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		runChild()
		return
	}
	code := m.Run()
	if tlsFiles.dir != "" {
		os.RemoveAll(tlsFiles.dir)
	}
	os.Exit(code)
}

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

// testConfig is the configuration of a test server: trusted is 127.0.0.1
// only, so a client that dials from 127.0.0.2 is untrusted.
func testConfig(t testing.TB, stateDir string, extra string) *config.Config {
	t.Helper()
	toml := fmt.Sprintf(`hostname = "mx.example.org"
state_dir = %q
local_domains = ["example.org"]
[smtp]
listen = ["127.0.0.1:0"]
trusted_networks = ["127.0.0.1/32"]
%s
[relay]
inbound = "127.0.0.1:1"
`, stateDir, extra)
	cfg, err := config.Parse(filepath.Join(stateDir, "smimegate.toml"), []byte(toml))
	if err != nil {
		t.Fatalf("test configuration: %v", err)
	}
	return cfg
}

type harness struct {
	t    testing.TB
	cfg  *config.Config
	sp   *spool.Spool
	srv  *Server
	addr string
	logs *logBuffer
}

// newHarness starts a receiver on a loopback port with a fresh spool.
// smtpExtra is TOML for the [smtp] table.
func newHarness(t testing.TB, smtpExtra string, opts Options) *harness {
	t.Helper()
	return newHarnessIn(t, t.TempDir(), smtpExtra, opts)
}

// newHarnessIn is newHarness with the state directory given.
func newHarnessIn(t testing.TB, dir, smtpExtra string, opts Options) *harness {
	t.Helper()
	cfg := testConfig(t, dir, smtpExtra)
	h := &harness{t: t, cfg: cfg, logs: &logBuffer{}}
	logger := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sp, err := spool.Open(dir, logger)
	if err != nil {
		t.Fatal(err)
	}
	h.sp = sp
	t.Cleanup(func() { sp.Close() })
	if opts.Logger == nil {
		opts.Logger = logger
	}
	srv, err := New(cfg, sp, opts)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = l.Addr().String()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	})
	return h
}

// queued returns the envelopes in the spool.
func (h *harness) queued() []*spool.Envelope {
	h.t.Helper()
	list, err := h.sp.List()
	if err != nil {
		h.t.Fatal(err)
	}
	return list
}

// rawClient speaks SMTP byte by byte, for the tests that need to send what
// no well-behaved client library would.
type rawClient struct {
	t    testing.TB
	conn net.Conn
	r    *textproto.Reader
}

const (
	trustedIP   = "127.0.0.1"
	untrustedIP = "127.0.0.2"
)

func (h *harness) dial(from string) *rawClient {
	h.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	rc := &rawClient{t: h.t, conn: c, r: textproto.NewReader(bufio.NewReader(c))}
	return rc
}

// session dials and greets.
func (h *harness) session(from string) *rawClient {
	c := h.dial(from)
	c.expect(220)
	c.cmd("EHLO client.example.net", 250)
	return c
}

func (c *rawClient) send(s string) {
	c.t.Helper()
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// reply reads one reply, all its lines, and returns its code and text.
func (c *rawClient) reply() (int, string) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	code, msg, err := c.r.ReadResponse(0)
	if err != nil && code == 0 {
		c.t.Fatalf("reading reply: %v", err)
	}
	return code, msg
}

func (c *rawClient) expect(code int) string {
	c.t.Helper()
	got, msg := c.reply()
	if got != code {
		c.t.Fatalf("got %d %s, want %d", got, msg, code)
	}
	return msg
}

func (c *rawClient) cmd(line string, code int) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.expect(code)
}

// closed reports whether the server has closed the connection (reading
// gives EOF rather than a reply).
func (c *rawClient) closed() bool {
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.r.ReadLine()
	return err != nil
}

// message is a small valid message with a marker to find it by.
func message(marker string) string {
	return "From: <a@example.net>\r\nTo: <b@example.org>\r\nSubject: " + marker + "\r\nMessage-ID: <" + marker + "@example.net>\r\n\r\nBody of " + marker + ".\r\n"
}

func hasAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
