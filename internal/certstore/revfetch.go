package certstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Bounds on what a revocation fetch may cost. The sources are named in
// certificates that partners and their CAs wrote, so everything they send
// is bounded before it is read.
const (
	// maxOCSPBytes bounds an OCSP response: one SingleResponse, a
	// signature and at most a responder certificate or two are a few
	// kilobytes; 64 KiB leaves room for a long chain.
	maxOCSPBytes = 64 << 10
	// maxCRLBytes bounds a CRL. A CA's CRL for domain and S/MIME
	// certificates is kilobytes to a few MiB (about 35 bytes an entry:
	// 16 MiB is some 480,000 revoked certificates). Beyond it the CRL is
	// refused with an error that says so, rather than held in memory.
	maxCRLBytes = 16 << 20
	// fetchTimeout bounds one HTTP fetch, connection and body included.
	fetchTimeout = 15 * time.Second
	// maxFetchRedirects bounds the redirects a fetch follows (a CRL moved
	// to a CDN is common; a loop is not followed).
	maxFetchRedirects = 3
	// maxSourcesPerCert bounds the OCSP responders and the CRL
	// distribution points tried for one certificate: each costs a fetch.
	maxSourcesPerCert = 4
)

// fetcher fetches OCSP responses and CRLs over HTTP (RFC 6960 appendix A,
// RFC 5280 section 4.2.1.13), with a timeout and a size bound on each.
type fetcher struct {
	client *http.Client
}

func newFetcher(client *http.Client) *fetcher {
	if client == nil {
		client = &http.Client{
			Timeout: fetchTimeout,
			Transport: &http.Transport{
				Proxy:                 http.ProxyFromEnvironment,
				DialContext:           (&net.Dialer{Timeout: fetchTimeout}).DialContext,
				TLSHandshakeTimeout:   fetchTimeout,
				ResponseHeaderTimeout: fetchTimeout,
				MaxIdleConns:          4,
				IdleConnTimeout:       time.Minute,
			},
		}
	}
	c := *client
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > maxFetchRedirects {
			return fmt.Errorf("more than %d redirects", maxFetchRedirects)
		}
		if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
			return fmt.Errorf("redirect to a %s URL", req.URL.Scheme)
		}
		return nil
	}
	return &fetcher{client: &c}
}

// fetchableURL reports whether u is a source the fetcher can use: http
// or https (an ldap:// distribution point is skipped).
func fetchableURL(u string) bool {
	p, err := url.Parse(u)
	return err == nil && (p.Scheme == "http" || p.Scheme == "https") && p.Host != ""
}

// errTooLarge marks a response that exceeds its bound.
var errTooLarge = errors.New("too large")

// get fetches u with GET (body nil) or POST, and returns at most limit
// bytes of its body; what is the response's name in errors ("CRL").
func (f *fetcher) get(ctx context.Context, what, u string, body []byte, contentType string, limit int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	method := http.MethodGet
	var rd io.Reader
	if body != nil {
		method, rd = http.MethodPost, bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, u, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is in the message already
		}
		return nil, fmt.Errorf("%s %s: %w", what, u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: HTTP status %s", what, u, resp.Status)
	}
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("%s %s: %w: %d bytes announced, more than the %s this gateway accepts; refused", what, u, errTooLarge, resp.ContentLength, sizeText(limit))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the response: %w", what, u, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s %s: %w: more than the %s this gateway accepts; refused", what, u, errTooLarge, sizeText(limit))
	}
	return data, nil
}

// sizeText writes a byte count for people.
func sizeText(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// sources returns the first maxSourcesPerCert fetchable URLs of us.
func sources(us []string) []string {
	var out []string
	for _, u := range us {
		if fetchableURL(u) && len(out) < maxSourcesPerCert {
			out = append(out, strings.TrimSpace(u))
		}
	}
	return out
}
