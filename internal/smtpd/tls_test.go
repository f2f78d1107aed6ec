package smtpd

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/smtp"
	"net/textproto"
	"os/exec"
	"strings"
	"testing"
)

func tlsHarness(t *testing.T) (*harness, *tls.Config) {
	cert, key, pool := testTLS(t)
	h := newHarness(t, fmt.Sprintf("tls_cert = %q\ntls_key = %q", cert, key), Options{})
	return h, &tls.Config{RootCAs: pool, ServerName: "mx.example.org"}
}

// TestStartTLS: the upgrade works, forgets the clear-text greeting,
// discards what was pipelined after STARTTLS, and is recorded.
func TestStartTLS(t *testing.T) {
	t.Parallel()
	h, ccfg := tlsHarness(t)
	c := h.dial(untrustedIP)
	c.expect(220)
	if ehlo := c.cmd("EHLO x", 250); !strings.Contains(ehlo, "STARTTLS") {
		t.Fatalf("EHLO does not offer STARTTLS:\n%s", ehlo)
	}
	c.cmd("MAIL FROM:<before-tls@example.net>", 250)
	// The injection of CVE-2011-0411: a command after STARTTLS in the same
	// packet, which must not be executed inside the TLS session.
	c.send("STARTTLS\r\nRSET\r\n")
	c.expect(220)
	tc := tls.Client(c.conn, ccfg)
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c.conn = tc
	c.r = textproto.NewReader(bufio.NewReader(tc))
	// The greeting is forgotten: MAIL needs a new EHLO (RFC 3207 4.2).
	if msg := c.cmd("MAIL FROM:<a@example.net>", 503); !strings.Contains(msg, "EHLO") {
		t.Errorf("MAIL without EHLO after TLS: %q", msg)
	}
	ehlo := c.cmd("EHLO x", 250)
	if strings.Contains(ehlo, "STARTTLS") {
		t.Errorf("EHLO offers STARTTLS inside TLS:\n%s", ehlo)
	}
	// The transaction begun in clear is gone too.
	c.send("RCPT TO:<b@example.org>\r\n")
	if code, msg := c.reply(); code/100 != 5 {
		t.Errorf("RCPT of the transaction begun in clear: %d %s", code, msg)
	}
	c.cmd("STARTTLS", 503)
	c.cmd("MAIL FROM:<a@example.net>", 250)
	c.cmd("RCPT TO:<b@example.org>", 250)
	c.cmd("DATA", 354)
	c.send(message("tls") + ".\r\n")
	c.expect(250)
	list := h.queued()
	if len(list) != 1 || !list[0].TLS {
		t.Fatalf("queued %+v", list)
	}
	data, _ := h.sp.ReadData(list[0].ID, "")
	if !hasAll(string(data), "with ESMTPS id "+list[0].ID, "(TLS 1.3 ") {
		t.Errorf("Received field does not record TLS:\n%s", data)
	}
	if !strings.Contains(h.logs.String(), "discarded plaintext sent after STARTTLS") {
		t.Error("the injection attempt is not logged")
	}
}

func TestStartTLSNetSMTP(t *testing.T) {
	t.Parallel()
	h, ccfg := tlsHarness(t)
	c, err := smtp.Dial(h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.StartTLS(ccfg); err != nil {
		t.Fatal(err)
	}
	if err := c.Mail("a@example.net"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("b@example.org"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(message("netsmtp-tls")))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	if list := h.queued(); len(list) != 1 || !list[0].TLS {
		t.Fatalf("queued %+v", list)
	}
}

func TestStartTLSSwaks(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Skip("swaks is not installed")
	}
	h, _ := tlsHarness(t)
	out, err := exec.Command("swaks", "--server", h.addr, "--tls", "--from", "a@example.net", "--to", "b@example.org",
		"--header", "Subject: swaks over TLS").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	if list := h.queued(); len(list) != 1 || !list[0].TLS {
		t.Fatalf("queued %+v\n%s", list, out)
	}
}

// startTLS upgrades the client's connection.
func (c *rawClient) startTLS(pool *x509.CertPool) {
	c.t.Helper()
	c.cmd("STARTTLS", 220)
	tc := tls.Client(c.conn, &tls.Config{RootCAs: pool, ServerName: "mx.example.org"})
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.conn = tc
	c.r = textproto.NewReader(bufio.NewReader(tc))
}
