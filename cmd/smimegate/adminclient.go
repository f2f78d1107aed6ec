package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"

	"smimegate/internal/config"
	"smimegate/internal/console"
)

// Bounds of the commands' admin API client.
const (
	// adminTimeout bounds one API call: the API answers from memory and
	// the spool, in milliseconds; a gateway that does not answer in this
	// time is reported rather than waited for.
	adminTimeout = 30 * time.Second
	// maxAdminAnswer bounds an answer read: a queue listing of many
	// thousand envelopes fits.
	maxAdminAnswer = 64 << 20
	// maxAdminCertFile bounds admin.tls_cert as read to pin it.
	maxAdminCertFile = 1 << 20
)

// adminClient calls a running gateway's admin API with the admin token
// from state_dir, over TLS pinned to admin.tls_cert when that is set.
type adminClient struct {
	listen string // admin.listen, for messages
	base   string // scheme://host:port
	token  string
	http   *http.Client
}

// newAdminClient reads the token (the caller acts as state_dir's owner
// already) and prepares the connection to admin.listen.
func newAdminClient(cfg *config.Config) (*adminClient, error) {
	if cfg.Admin.Listen == "" {
		return nil, errors.New("a gateway is running on this state_dir but admin.listen is empty: the queue can be changed only through it; set admin.listen")
	}
	token, err := console.ReadToken(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	host, port, err := net.SplitHostPort(cfg.Admin.Listen)
	if err != nil {
		return nil, fmt.Errorf("admin.listen %s: %w", cfg.Admin.Listen, err)
	}
	// A listener on every address is reached on loopback.
	if ip, err := netip.ParseAddr(host); host == "" || err == nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if err == nil && ip.Is6() {
			host = "::1"
		}
	}
	c := &adminClient{listen: cfg.Admin.Listen, base: "http://" + net.JoinHostPort(host, port), token: token}
	transport := &http.Transport{Proxy: nil, TLSHandshakeTimeout: 10 * time.Second}
	if cfg.Admin.TLSCert != "" {
		pinned, err := readPinnedCerts(cfg.Admin.TLSCert)
		if err != nil {
			return nil, err
		}
		c.base = "https://" + net.JoinHostPort(host, port)
		transport.TLSClientConfig = pinnedTLS(pinned)
	}
	c.http = &http.Client{
		Timeout:   adminTimeout,
		Transport: transport,
		// The API never redirects. A redirect is what Go's ServeMux answers
		// to a path it cleans ("/quarantine/../queue/ID/delete" becomes
		// "/queue/ID/delete"): following it would act on another URL than
		// the one the command built, so it is an error.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return c, nil
}

// readPinnedCerts reads the certificates of admin.tls_cert.
func readPinnedCerts(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("admin.tls_cert: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxAdminCertFile))
	if err != nil {
		return nil, fmt.Errorf("admin.tls_cert: %w", err)
	}
	var ders [][]byte
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			ders = append(ders, b.Bytes)
		}
	}
	if len(ders) == 0 {
		return nil, fmt.Errorf("admin.tls_cert %s: no PEM certificate", path)
	}
	return ders, nil
}

// pinnedTLS accepts exactly the gateway's own certificate, admin.tls_cert:
// the command and the gateway share the file, so no CA and no host name
// are needed to know it is the gateway, and no other certificate, however
// well issued, is accepted.
func pinnedTLS(pinned [][]byte) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by the pin below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the admin listener sent no certificate")
			}
			leaf := cs.PeerCertificates[0]
			for _, der := range pinned {
				if bytes.Equal(leaf.Raw, der) {
					return nil
				}
			}
			return fmt.Errorf("the admin listener's certificate (%s) is not the one in admin.tls_cert", leafName(leaf))
		},
	}
}

func leafName(c *x509.Certificate) string { return c.Subject.String() }

// do calls the API; out, if not nil, receives the JSON answer.
func (c *adminClient) do(method, path string, out any) error {
	req, err := http.NewRequest(method, c.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("the gateway's admin API (admin.listen %s): %w", c.listen, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return fmt.Errorf("the gateway's admin API (admin.listen %s) answered %s to %s %s, redirecting to %q: refused, nothing was done", c.listen, resp.Status, method, path, resp.Header.Get("Location"))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAdminAnswer))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.Unmarshal(body, &e)
		if e.Error == "" {
			e.Error = resp.Status + ": " + string(bytes.TrimSpace(body[:min(len(body), 300)]))
		}
		return errors.New(e.Error)
	}
	if out != nil {
		return json.Unmarshal(body, out)
	}
	return nil
}
