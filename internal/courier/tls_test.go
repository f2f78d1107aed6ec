package courier

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"
)

func TestTLSRequiredWithoutSTARTTLSNeverSendsInClear(t *testing.T) {
	t.Parallel()
	m := startMTA(t, nil) // no TLSConfig: no STARTTLS offered
	for _, mode := range []TLSMode{TLSRequired, TLSVerify} {
		c, _ := newCourier(t, Config{RootCAs: testPKI().roots})
		res := deliver(t, c, Route{NextHop: m.addr, TLS: mode}, newMessage("T1", "a@example.org", testBody, "b@example.net"))
		wantStatus(t, res, Deferred)
		if res[0].Enhanced.String() != "4.7.4" || !strings.Contains(res[0].Diagnostic(), "TLS is required") {
			t.Errorf("%v: %+v", mode, res[0])
		}
	}
	m.mu.Lock()
	mails := m.mails
	m.mu.Unlock()
	if mails != 0 {
		t.Errorf("the server saw %d MAIL commands in the clear", mails)
	}
}

func TestTLSVerifyWithTestCA(t *testing.T) {
	t.Parallel()
	m := startMTA(t, withTLS)
	c, _ := newCourier(t, Config{RootCAs: testPKI().roots})
	// The route names the host by IP; the certificate has it as an IP SAN.
	res := deliver(t, c, Route{NextHop: m.addr, TLS: TLSVerify}, newMessage("T2", "a@example.org", testBody, "b@example.net"))
	wantStatus(t, res, Delivered)
	if res[0].TLS != "TLS1.3 verified" {
		t.Errorf("TLS = %q", res[0].TLS)
	}
	got := m.received()
	if len(got) != 1 || !got[0].tls || string(got[0].data) != testBody {
		t.Fatalf("server got %+v", got)
	}
	// The EHLO after STARTTLS uses our name as well.
	if got[0].helo != "gw.example.org" {
		t.Errorf("EHLO after TLS was %q", got[0].helo)
	}
}

func TestTLSVerifyRejectsUnknownCA(t *testing.T) {
	t.Parallel()
	m := startMTA(t, withTLS)
	c, _ := newCourier(t, Config{RootCAs: x509.NewCertPool()})
	res := deliver(t, c, Route{NextHop: m.addr, TLS: TLSVerify}, newMessage("T3", "a@example.org", testBody, "b@example.net"))
	wantStatus(t, res, Deferred)
	if res[0].Enhanced.String() != "4.7.5" || !strings.Contains(res[0].Diagnostic(), "certificate") {
		t.Errorf("%+v", res[0])
	}
	if len(m.received()) != 0 {
		t.Error("delivered over a connection whose certificate did not verify")
	}
}

func TestTLSVerifyChecksHostName(t *testing.T) {
	t.Parallel()
	m := startMTA(t, withTLS)
	_, port, _ := net.SplitHostPort(m.addr)
	// Both names lead to the same server; only mx.test is in its
	// certificate.
	zone := map[string][]dns.RR{
		"mx.test.":    {rr(t, "mx.test. 60 IN A 127.0.0.1")},
		"other.test.": {rr(t, "other.test. 60 IN A 127.0.0.1")},
	}
	c, _ := newCourier(t, Config{RootCAs: testPKI().roots, DNSServer: dnsServer(t, zone, nil)})
	res := deliver(t, c, Route{NextHop: "mx.test:" + port, TLS: TLSVerify}, newMessage("T4", "a@example.org", testBody, "b@example.net"))
	wantStatus(t, res, Delivered)
	if res[0].HostName != "mx.test" || res[0].TLS != "TLS1.3 verified" {
		t.Errorf("%+v", res[0])
	}
	res = deliver(t, c, Route{NextHop: "other.test:" + port, TLS: TLSVerify}, newMessage("T4b", "a@example.org", testBody, "b@example.net"))
	wantStatus(t, res, Deferred)
	if res[0].Enhanced.String() != "4.7.5" || !strings.Contains(res[0].Diagnostic(), "other.test") {
		t.Errorf("%+v", res[0])
	}
	if n := len(m.received()); n != 1 {
		t.Errorf("server received %d messages, want only the verified one", n)
	}
}

func TestOpportunisticTLS(t *testing.T) {
	t.Parallel()
	withTLSServer := startMTA(t, withTLS)
	c, _ := newCourier(t, Config{}) // opportunistic by default, system roots
	res := deliver(t, c, Route{NextHop: withTLSServer.addr}, newMessage("T5", "a@example.org", testBody, "b@example.net"))
	wantStatus(t, res, Delivered)
	if res[0].TLS != "TLS1.3" {
		t.Errorf("TLS = %q, want unverified TLS1.3", res[0].TLS)
	}
	if got := withTLSServer.received(); len(got) != 1 || !got[0].tls {
		t.Errorf("not sent over TLS: %+v", got)
	}
	// With the test CA the same session counts as verified.
	c2, _ := newCourier(t, Config{RootCAs: testPKI().roots})
	res = deliver(t, c2, Route{NextHop: withTLSServer.addr}, newMessage("T6", "a@example.org", testBody, "b@example.net"))
	if res[0].TLS != "TLS1.3 verified" {
		t.Errorf("TLS = %q", res[0].TLS)
	}

	plain := startMTA(t, nil)
	res = deliver(t, c, Route{NextHop: plain.addr}, newMessage("T7", "a@example.org", testBody, "b@example.net"))
	wantStatus(t, res, Delivered)
	if res[0].TLS != "none" {
		t.Errorf("TLS = %q", res[0].TLS)
	}
}

func TestOpportunisticFallsBackAfterFailedHandshake(t *testing.T) {
	t.Parallel()
	// The server offers STARTTLS but can only do TLS 1.0, which the
	// courier refuses: the handshake fails, and the message goes in the
	// clear on a second connection.
	m := startMTA(t, func(s *smtp.Server) {
		withTLS(s)
		s.TLSConfig.MaxVersion = tls.VersionTLS10
	})
	c, logs := newCourier(t, Config{})
	res := deliver(t, c, Route{NextHop: m.addr}, newMessage("T8", "a@example.org", testBody, "b@example.net"))
	wantStatus(t, res, Delivered)
	if res[0].TLS != "none" || m.conns.Load() != 2 {
		t.Errorf("TLS %q after %d connections", res[0].TLS, m.conns.Load())
	}
	if !strings.Contains(logs.String(), "TLS handshake") {
		t.Errorf("the failed handshake is not logged:\n%s", logs)
	}
	// Required TLS does not fall back.
	res = deliver(t, c, Route{NextHop: m.addr, TLS: TLSRequired}, newMessage("T9", "a@example.org", testBody, "b@example.net"))
	wantStatus(t, res, Deferred)
	if res[0].Enhanced.String() != "4.7.5" {
		t.Errorf("%+v", res[0])
	}
}

func TestParseTLSMode(t *testing.T) {
	for _, s := range []string{"none", "opportunistic", "required", "verify"} {
		m, err := ParseTLSMode(s)
		if err != nil || m.String() != s {
			t.Errorf("%s: %v %v", s, m, err)
		}
	}
	if _, err := ParseTLSMode("default"); err == nil {
		t.Error("default is not a configuration value")
	}
	if _, err := ParseTLSMode("dane"); err == nil || !strings.Contains(err.Error(), `"dane"`) {
		t.Errorf("error %v does not name the bad value", err)
	}
}
