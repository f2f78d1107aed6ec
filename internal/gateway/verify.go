package gateway

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"smimegate/internal/courier"
	"smimegate/internal/policy"
	"smimegate/internal/smtp"
)

// Recipient verification (smtp.verify_recipients) asks the inbound next hop
// at RCPT time whether it accepts a recipient, the way Postfix's
// reject_unverified_recipient does, so that mail for unknown users is
// refused before any content is sent. For mail encrypted to us this matters
// beyond saving a bounce: a recipient refused only after decryption would
// make the outcome depend on whether the ciphertext opened.
//
// Answers are remembered: an accepted recipient for
// smtp.verify_positive_ttl, a refused one for smtp.verify_negative_ttl; a
// next hop that cannot answer now (4xx, no connection) is not remembered
// and the client is told to try again (450 4.1.1). Concurrent questions
// about one address share one probe. The cache is bounded by
// maxVerifyEntries; when it is full, expired entries go first, then
// arbitrary ones (each costs only a new probe).

// maxVerifyEntries bounds the cache: outsiders choose the addresses they
// ask about, so its size must not be theirs to choose. 100,000 entries of
// about 200 bytes is 20 MB at most.
const maxVerifyEntries = 100_000

type verifyCache struct {
	mu       sync.Mutex
	entries  map[string]verifyEntry
	inflight map[string]*verifyCall
}

type verifyEntry struct {
	rej     *smtp.Error // nil: accepted
	expires time.Time
}

type verifyCall struct {
	done chan struct{}
	rej  *smtp.Error
}

func newVerifyCache() *verifyCache {
	return &verifyCache{entries: map[string]verifyEntry{}, inflight: map[string]*verifyCall{}}
}

// VerifyRecipient is the receiver's Options.VerifyRecipient: nil accepts
// addr, a *smtp.Error is the reply to its RCPT.
func (g *Gateway) VerifyRecipient(ctx context.Context, addr string) error {
	cfg := g.Config()
	if !cfg.SMTP.VerifyRecipients {
		return nil
	}
	domain, ok := policy.Domain(addr)
	if !ok {
		return &smtp.Error{Code: 553, Enhanced: [3]int{5, 1, 3}, Message: "Recipient address rejected: not a valid domain"}
	}
	// The local part keeps its case (RFC 5321 section 2.4); the domain is
	// canonical.
	key := addr[:strings.LastIndexByte(addr, '@')+1] + domain
	c := g.verify
	now := time.Now()
	c.mu.Lock()
	if e, hit := c.entries[key]; hit && now.Before(e.expires) {
		c.mu.Unlock()
		g.metrics.verifications.WithLabelValues("cached").Inc()
		return rejectOrNil(e.rej)
	}
	if call, busy := c.inflight[key]; busy {
		c.mu.Unlock()
		select {
		case <-call.done:
			return rejectOrNil(call.rej)
		case <-ctx.Done():
			return &smtp.Error{Code: 450, Enhanced: [3]int{4, 1, 1}, Message: "Recipient address rejected: unverified address: verification did not finish, try again later"}
		}
	}
	call := &verifyCall{done: make(chan struct{})}
	c.inflight[key] = call
	c.mu.Unlock()

	next, tls := routeFor(cfg, domain)
	mode, err := courier.ParseTLSMode(tls)
	if err != nil {
		mode = courier.TLSRequired
	}
	res := g.courier.Verify(ctx, courier.Route{NextHop: next, Domain: domain, TLS: mode}, key)
	var ttl time.Duration
	switch res.Status {
	case courier.Delivered:
		ttl = cfg.SMTP.VerifyPositiveTTL.D()
		g.metrics.verifications.WithLabelValues("accepted").Inc()
	case courier.Failed:
		code, enh := 550, smtp.EnhancedCode{5, 1, 1}
		if res.Remote && res.Reply.Code >= 550 && res.Reply.Code <= 553 {
			code = res.Reply.Code
		}
		if e := res.Enhanced; e[0] == 5 {
			enh = e
		}
		call.rej = &smtp.Error{Code: code, Enhanced: enh, Message: "Recipient address rejected: undeliverable address: " + res.Diagnostic()}
		ttl = cfg.SMTP.VerifyNegativeTTL.D()
		g.metrics.verifications.WithLabelValues("refused").Inc()
	default:
		call.rej = &smtp.Error{Code: 450, Enhanced: [3]int{4, 1, 1}, Message: "Recipient address rejected: unverified address: " + res.Diagnostic()}
		g.metrics.verifications.WithLabelValues("tempfail").Inc()
	}
	c.mu.Lock()
	delete(c.inflight, key)
	if ttl > 0 {
		c.put(key, verifyEntry{rej: call.rej, expires: time.Now().Add(ttl)})
	}
	c.mu.Unlock()
	close(call.done)
	g.log.Debug("recipient verified", "rcpt", key, "next_hop", next, "reply", res.Diagnostic(), "code", strconv.Itoa(res.Reply.Code))
	return rejectOrNil(call.rej)
}

// put stores an entry, making room first if the cache is full; c.mu is held.
func (c *verifyCache) put(key string, e verifyEntry) {
	if len(c.entries) >= maxVerifyEntries {
		now := time.Now()
		for k, old := range c.entries {
			if now.After(old.expires) {
				delete(c.entries, k)
			}
		}
		for k := range c.entries {
			if len(c.entries) < maxVerifyEntries {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[key] = e
}

// rejectOrNil keeps a nil *smtp.Error from becoming a non-nil error.
func rejectOrNil(r *smtp.Error) error {
	if r == nil {
		return nil
	}
	return r
}
