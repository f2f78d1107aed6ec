package courier

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"
)

// testPKI is a CA and a server certificate for mx.test, localhost and
// 127.0.0.1, made once per test binary (ECDSA: fast even under -race).
var testPKI = sync.OnceValue(func() *pki {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "courier test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(err)
	ca, err := x509.ParseCertificate(caDER)
	must(err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "mx.test"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		DNSNames:    []string{"mx.test", "localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	must(err)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &pki{roots: pool, cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
})

type pki struct {
	roots *x509.CertPool
	cert  tls.Certificate
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

// mta is an in-process go-smtp server whose replies a test scripts.
type mta struct {
	addr string
	srv  *smtp.Server

	mu       sync.Mutex
	msgs     []*received
	mails    int      // MAIL commands seen
	froms    []string // their reverse paths, in order
	mailErr  func(from string) error
	rcptErr  func(to string) error
	dataErr  func(data []byte) error
	dropData bool // close the connection once the final dot was read

	conns   atomic.Int32 // sessions opened
	datas   atomic.Int32 // DATA (or BDAT) transactions begun
	active  atomic.Int32
	maxConc atomic.Int32
}

type received struct {
	helo  string
	tls   bool
	from  string
	mopts smtp.MailOptions
	rcpts []string
	ropts []smtp.RcptOptions
	data  []byte
}

type mtaSession struct {
	m    *mta
	conn *smtp.Conn
	cur  *received
}

func (m *mta) NewSession(c *smtp.Conn) (smtp.Session, error) {
	m.conns.Add(1)
	n := m.active.Add(1)
	for {
		old := m.maxConc.Load()
		if n <= old || m.maxConc.CompareAndSwap(old, n) {
			break
		}
	}
	return &mtaSession{m: m, conn: c}, nil
}

func (s *mtaSession) Reset() { s.cur = nil }

func (s *mtaSession) Logout() error {
	s.m.active.Add(-1)
	return nil
}

func (s *mtaSession) Mail(from string, opts *smtp.MailOptions) error {
	s.m.mu.Lock()
	s.m.mails++
	s.m.froms = append(s.m.froms, from)
	f := s.m.mailErr
	s.m.mu.Unlock()
	if f != nil {
		if err := f(from); err != nil {
			return err
		}
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.cur = &received{helo: s.conn.Hostname(), tls: isTLS, from: from}
	if opts != nil {
		s.cur.mopts = *opts
	}
	return nil
}

func (s *mtaSession) Rcpt(to string, opts *smtp.RcptOptions) error {
	s.m.mu.Lock()
	f := s.m.rcptErr
	s.m.mu.Unlock()
	if f != nil {
		if err := f(to); err != nil {
			return err
		}
	}
	s.cur.rcpts = append(s.cur.rcpts, to)
	if opts == nil {
		opts = &smtp.RcptOptions{}
	}
	s.cur.ropts = append(s.cur.ropts, *opts)
	return nil
}

func (s *mtaSession) Data(r io.Reader) error {
	s.m.datas.Add(1)
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.m.mu.Lock()
	f, drop := s.m.dataErr, s.m.dropData
	s.m.mu.Unlock()
	if drop {
		_ = s.conn.Conn().Close()
		return errors.New("dropped")
	}
	if f != nil {
		if err := f(data); err != nil {
			return err
		}
	}
	s.cur.data = data
	s.m.mu.Lock()
	s.m.msgs = append(s.m.msgs, s.cur)
	s.m.mu.Unlock()
	return nil
}

func (m *mta) received() []*received {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*received(nil), m.msgs...)
}

func (m *mta) set(f func(m *mta)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f(m)
}

// startMTA runs a go-smtp server on a loopback port 0; configure may
// switch on extensions and TLS.
func startMTA(t testing.TB, configure func(*smtp.Server)) *mta {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveMTA(t, l, configure)
}

func serveMTA(t testing.TB, l net.Listener, configure func(*smtp.Server)) *mta {
	m := &mta{addr: l.Addr().String()}
	srv := smtp.NewServer(m)
	srv.Domain = "mx.test"
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.ErrorLog = quietLog{}
	if configure != nil {
		configure(srv)
	}
	m.srv = srv
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return m
}

type quietLog struct{}

func (quietLog) Printf(string, ...any) {}
func (quietLog) Println(...any)        {}

// withTLS makes the server offer STARTTLS with the test certificate.
func withTLS(s *smtp.Server) {
	s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{testPKI().cert}}
}

// rawServer accepts connections on l and runs script on each; for replies
// that go-smtp cannot be made to give (a refusing greeting).
func rawServer(t testing.TB, l net.Listener, script func(c net.Conn)) {
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				script(c)
			}()
		}
	}()
}

// freePort finds a loopback port that is free now. The small race with
// other processes is handled by the callers retrying.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

const sinkPath = "/usr/sbin/smtp-sink"

// sink is a running Postfix smtp-sink that dumps what it receives.
type sink struct {
	addr string
	dump string
	cmd  *exec.Cmd
}

// startSink runs smtp-sink with args on addr ("" picks a free port) and
// waits until it accepts connections.
func startSink(t testing.TB, addr string, args ...string) *sink {
	t.Helper()
	if _, err := os.Stat(sinkPath); err != nil {
		t.Skip("smtp-sink is not installed (Debian package postfix)")
	}
	for try := 0; try < 5; try++ {
		a := addr
		if a == "" {
			a = "127.0.0.1:" + strconv.Itoa(freePort(t))
		}
		dump := sinkDumpDir(t)
		full := []string{"-4", "-d", filepath.Join(dump, "%M%S.")}
		if os.Getuid() == 0 {
			// smtp-sink refuses to run as root without a user to become.
			full = append(full, "-u", "nobody")
		}
		full = append(full, args...)
		full = append(full, "inet:"+a, "20")
		cmd := exec.Command(sinkPath, full...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		s := &sink{addr: a, dump: dump, cmd: cmd}
		if waitListening(a, done) {
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-done
			})
			return s
		}
		_ = cmd.Process.Kill()
		<-done
		if addr != "" {
			t.Fatalf("smtp-sink on %s did not start: %s", a, stderr.String())
		}
	}
	t.Fatal("smtp-sink did not start on any port")
	return nil
}

// sinkDumpDir is a directory smtp-sink can write to after it has dropped
// its privileges (t.TempDir's parents are private to our user).
func sinkDumpDir(t testing.TB) string {
	dir, err := os.MkdirTemp("", "courier-sink-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

func waitListening(addr string, exited <-chan struct{}) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			// Read the greeting so smtp-sink sees an orderly session.
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 512)
			_, _ = c.Read(buf)
			_, _ = c.Write([]byte("QUIT\r\n"))
			_, _ = c.Read(buf)
			c.Close()
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// dumps returns the messages smtp-sink captured.
func (s *sink) dumps(t testing.TB) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(s.dump, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		// smtp-sink opens the file at MAIL; a transaction that never got
		// to DATA leaves it empty.
		if len(b) > 0 {
			out = append(out, string(b))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dnsServer answers from zone on a UDP loopback port 0.
func dnsServer(t testing.TB, zone map[string][]dns.RR, servfail map[string]bool) string {
	t.Helper()
	return countingDNSServer(t, zone, servfail, new(atomic.Int32))
}

// countingDNSServer is dnsServer counting the questions it is asked.
func countingDNSServer(t testing.TB, zone map[string][]dns.RR, servfail map[string]bool, queries *atomic.Int32) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		queries.Add(1)
		resp := new(dns.Msg)
		resp.SetReply(req)
		resp.Authoritative = true
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		switch {
		case servfail[name]:
			resp.Rcode = dns.RcodeServerFailure
		default:
			rrs, known := zone[name]
			if !known {
				resp.Rcode = dns.RcodeNameError
			}
			for _, rr := range rrs {
				if rr.Header().Rrtype == q.Qtype {
					resp.Answer = append(resp.Answer, rr)
				}
			}
		}
		_ = w.WriteMsg(resp)
	})
	srv := &dns.Server{PacketConn: pc, Handler: h}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

func rr(t testing.TB, s string) dns.RR {
	t.Helper()
	r, err := dns.NewRR(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// logBuffer collects log output safely from many goroutines.
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

// newCourier makes a courier with short timeouts and a captured log.
func newCourier(t testing.TB, cfg Config) (*Courier, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if cfg.HeloName == "" {
		cfg.HeloName = "gw.example.org"
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	if cfg.CommandTimeout == 0 {
		cfg.CommandTimeout = 10 * time.Second
	}
	c := New(cfg)
	t.Cleanup(c.Close)
	return c, logs
}

const testBody = "From: a@example.org\r\nTo: b@example.net\r\nSubject: courier test\r\nMessage-ID: <t1@example.org>\r\n\r\nSecret body line\r\n.leading dot\r\nlast line\r\n"

// newMessage makes a message whose bytes come from body.
func newMessage(id, from, body string, rcpts ...string) *Message {
	m := &Message{ID: id, From: from, Size: int64(len(body)),
		Open: func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }}
	for _, r := range rcpts {
		m.Recipients = append(m.Recipients, Rcpt{Addr: r})
	}
	return m
}

func deliver(t testing.TB, c *Courier, r Route, m *Message) []Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res := c.Deliver(ctx, r, m)
	if len(res) != len(m.Recipients) {
		t.Fatalf("Deliver returned %d results for %d recipients", len(res), len(m.Recipients))
	}
	return res
}

func wantStatus(t testing.TB, res []Result, want ...Status) {
	t.Helper()
	for i, r := range res {
		if r.Status != want[i] {
			t.Errorf("recipient %s: status %v (%s %q), want %v", r.Rcpt, r.Status, r.Enhanced.String(), r.Diagnostic(), want[i])
		}
	}
}

// refuseGoneAndFull makes m refuse recipients whose address starts with
// "gone" for good (550 5.1.1) and those starting with "full" for now
// (452 4.2.2).
func refuseGoneAndFull(m *mta) {
	m.rcptErr = func(to string) error {
		switch {
		case strings.HasPrefix(to, "gone"):
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
		case strings.HasPrefix(to, "full"):
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
		}
		return nil
	}
}
