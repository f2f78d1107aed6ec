package courier

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"strconv"
	"strings"
	"time"
)

// The SMTP dialogue is driven with net/smtp rather than emersion/go-smtp's
// client: go-smtp v0.25.1 has no exported StartTLS, and its
// NewClientStartTLS always says "EHLO localhost" before the handshake, so
// the configured HELO name could not be used on a TLS session. net/smtp
// handles the greeting, EHLO/HELO and STARTTLS; the transaction commands are
// written on its textproto connection, because MAIL and RCPT need the
// RFC 3461, 6152 and 6531 parameters that net/smtp cannot send.

// session is one open SMTP connection, between transactions or in one.
type session struct {
	client  *smtp.Client
	conn    *watchConn
	target  target
	tlsDesc string // "TLS1.3 verified", "TLS1.3", "none"
	key     string // pool key: the destination it may be reused for
	opened  time.Time
	idle    *time.Timer // set by the pool while the session waits for reuse
	// needReset: the session was reused and its server pipelines, so the
	// RSET goes in front of the next MAIL rather than on its own.
	needReset bool
}

// writeBuffer is the size of a session's write buffer: a whole sealed
// message of ordinary size goes out with its final dot in one write(2),
// where net/textproto's 4 KiB buffer took one call per 4 KiB.
const writeBuffer = 64 << 10

// bufferWrites puts a writeBuffer-sized buffer in front of the session's
// connection (after STARTTLS, which makes a new textproto.Conn). Each flush
// of it is one write to the connection.
func (s *session) bufferWrites() {
	s.client.Text.W = bufio.NewWriterSize(flushThrough{s.client.Text.W}, writeBuffer)
}

// flushThrough passes every write through a bufio.Writer to its
// connection at once: writes of at least the inner buffer's size go
// straight to the connection, smaller ones are flushed.
type flushThrough struct{ w *bufio.Writer }

func (f flushThrough) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.w.Flush()
	}
	return n, err
}

// failure is an outcome shared by every recipient of a transaction (or of
// an attempt that never got as far).
type failure struct {
	status   Status
	code     int // 0 when no server reply is behind it
	enhanced string
	text     string // the Result.Reply: the server's reply, or what went wrong here
	step     string // for the log: what the reply answered ("greeting", "EHLO")
	target   target // the host that failed, when one was tried
	answered bool   // a server answered: Host and TLS are known
	// nextHost says the next address may be tried (RFC 5321 section 5.1:
	// connection failures and greetings that refuse service).
	nextHost bool
	// dup: the content had left when the connection was lost, so the
	// server may have the message (Result.MaybeDuplicate).
	dup bool
}

func replyFailure(r reply) *failure {
	f := &failure{status: r.outcome(), code: r.code, enhanced: r.status(), text: r.line(), answered: true}
	if f.status == Delivered {
		// A 2xx where an error was expected (a confused server): retry.
		f.status, f.enhanced = Deferred, "4.5.0"
	}
	return f
}

// soften turns a permanent failure into a deferral, with the status code
// class to match, as Postfix does where a 5xx must not bounce mail (a
// greeting that refuses service, a STARTTLS that TLS policy needed).
func (f *failure) soften() *failure {
	if f.status == Failed {
		f.status = Deferred
		f.enhanced = "4" + f.enhanced[1:]
	}
	return f
}

func localFailure(status Status, enhanced, format string, args ...any) *failure {
	return &failure{status: status, enhanced: enhanced, text: sanitizeText(fmt.Sprintf(format, args...))}
}

// connect opens a session to the first target that takes one, in order.
func (c *Courier) connect(ctx context.Context, mode TLSMode, targets []target, log func(t target, f *failure)) (*session, *failure) {
	var last *failure
	for i, t := range targets {
		s, f := c.dialTarget(ctx, t, mode, mode)
		if f == nil {
			return s, nil
		}
		if mode == TLSOpportunistic && f.tlsHandshake() {
			// Opportunistic TLS that fails in the handshake falls back to
			// the clear on a new connection, as Postfix does: the peer
			// offered TLS it cannot do, and a stripped offer would have
			// had the same effect.
			log(t, f)
			s, f = c.dialTarget(ctx, t, TLSNone, mode)
			if f == nil {
				return s, nil
			}
		}
		f.target = t
		last = f
		if !f.nextHost || ctx.Err() != nil || i == len(targets)-1 {
			break
		}
		log(t, f)
	}
	if last == nil {
		last = localFailure(Deferred, "4.4.4", "no address to deliver to")
	}
	return nil, last
}

// tlsHandshake marks failures of the TLS handshake itself (as opposed to a
// missing offer or a refused STARTTLS command).
func (f *failure) tlsHandshake() bool { return f.enhanced == "4.7.5" && f.code == 0 }

// dialTarget connects to one address and gets the session ready for MAIL:
// greeting, EHLO, and STARTTLS as mode demands. policy is the route's mode,
// used to describe the failure when mode is the fallback.
func (c *Courier) dialTarget(ctx context.Context, t target, mode, policy TLSMode) (*session, *failure) {
	d := net.Dialer{Timeout: c.cfg.ConnectTimeout}
	var raw net.Conn
	var err error
	if c.dial != nil {
		raw, err = c.dial(ctx, t.addr)
	} else {
		raw, err = d.DialContext(ctx, "tcp", t.addr)
	}
	if err != nil {
		return nil, &failure{status: Deferred, enhanced: "4.4.1", text: sanitizeText(fmt.Sprintf("connect to %s[%s]: %v", t.host, t.addr, netReason(err))), nextHost: true}
	}
	wc := newWatchConn(raw, c.cfg.CommandTimeout)
	stop := context.AfterFunc(ctx, wc.abort)
	defer stop()
	s := &session{conn: wc, target: t, tlsDesc: "none", opened: time.Now()}
	fail := func(f *failure) (*session, *failure) {
		_ = wc.Close()
		return nil, f
	}

	// RFC 5321 section 3.1: the greeting. A server that refuses service
	// there (4xx or 5xx) is skipped for the next MX host, as Postfix does
	// with smtp_skip_5xx_greeting.
	s.client, err = smtp.NewClient(wc, t.host)
	if err != nil {
		if r, ok := asReply(err); ok {
			f := replyFailure(r).soften()
			f.nextHost = true
			f.step = "greeting"
			return fail(f)
		}
		return fail(s.lost("the greeting", err, true))
	}
	if err := s.client.Hello(c.cfg.HeloName); err != nil {
		if r, ok := asReply(err); ok {
			// A 4xx to EHLO/HELO is worth the next host; a 5xx is the
			// host's final word on us (Postfix bounces it too).
			f := replyFailure(r)
			f.nextHost = f.status == Deferred
			f.step = "EHLO"
			return fail(f)
		}
		return fail(s.lost("EHLO", err, true))
	}
	if mode == TLSNone {
		return s, nil
	}
	if ok, _ := s.client.Extension("STARTTLS"); !ok {
		if mode == TLSOpportunistic {
			return s, nil
		}
		return fail(&failure{status: Deferred, enhanced: "4.7.4", answered: true, nextHost: true,
			text: fmt.Sprintf("TLS is required, but was not offered by host %s[%s]", t.host, t.addr)})
	}
	verified := false
	err = s.client.StartTLS(c.tlsConfig(t.host, mode, &verified))
	if err != nil {
		if r, ok := asReply(err); ok {
			if mode == TLSOpportunistic {
				// RFC 3207 section 4: a refused STARTTLS leaves the
				// session in the clear; opportunistic TLS carries on there.
				return s, nil
			}
			f := replyFailure(r).soften()
			f.nextHost = true
			f.step = "STARTTLS, TLS " + policy.String()
			return fail(f)
		}
		if errors.Is(err, errAborted) {
			return fail(s.lost("STARTTLS", err, false))
		}
		// Anything else after the STARTTLS command is a handshake that did
		// not complete: a certificate that does not verify, no common
		// cipher, or a server that hangs up instead of negotiating.
		return fail(&failure{status: Deferred, enhanced: "4.7.5", nextHost: true,
			text: sanitizeText(fmt.Sprintf("TLS handshake with %s[%s] failed: %v", t.host, t.addr, err))})
	}
	st, _ := s.client.TLSConnectionState()
	s.tlsDesc = strings.ReplaceAll(tls.VersionName(st.Version), " ", "")
	if verified || mode == TLSVerify {
		s.tlsDesc += " verified"
	}
	return s, nil
}

// tlsConfig builds the client TLS configuration for a mode. Only
// TLSVerify rejects a certificate; the others still check it, to report
// whether the session was verified.
func (c *Courier) tlsConfig(host string, mode TLSMode, verified *bool) *tls.Config {
	cfg := &tls.Config{ServerName: host, RootCAs: c.cfg.RootCAs, MinVersion: tls.VersionTLS12}
	if mode == TLSVerify {
		return cfg
	}
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return nil
		}
		opts := x509.VerifyOptions{DNSName: host, Roots: c.cfg.RootCAs, Intermediates: x509.NewCertPool()}
		for _, ic := range cs.PeerCertificates[1:] {
			opts.Intermediates.AddCert(ic)
		}
		_, err := cs.PeerCertificates[0].Verify(opts)
		*verified = err == nil
		return nil
	}
	return cfg
}

// lost describes a connection that broke (or timed out) during a step.
func (s *session) lost(step string, err error, nextHost bool) *failure {
	return &failure{status: Deferred, enhanced: "4.4.2", nextHost: nextHost, answered: true,
		text: sanitizeText(fmt.Sprintf("lost connection with %s[%s] while %s: %v", s.target.host, s.target.addr, step, netReason(err)))}
}

// cmd sends one command and reads its reply. expect is a code or, as in
// net/textproto, a one-digit class (any 2xx counts as success, as Postfix
// counts it). A reply that is not as expected is returned with a non-nil
// error; a network failure returns the zero reply.
func (s *session) cmd(expect int, format string, args ...any) (reply, error) {
	text := s.client.Text
	id, err := text.Cmd(format, args...)
	if err != nil {
		return reply{}, err
	}
	text.StartResponse(id)
	defer text.EndResponse(id)
	code, msg, err := text.ReadResponse(expect)
	if err != nil {
		if r, ok := asReply(err); ok {
			return r, err
		}
		return reply{}, err
	}
	return parseReply(code, msg), nil
}

// ext reports an EHLO keyword and its parameter.
func (s *session) ext(name string) (bool, string) { return s.client.Extension(name) }

// sizeLimit is the SIZE the server announced (RFC 1870), 0 if none.
func (s *session) sizeLimit() int64 {
	ok, v := s.ext("SIZE")
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// reset readies a reused session for the next transaction (RFC 5321
// section 4.1.1.5); it doubles as the check that the server is still there.
func (s *session) reset() error {
	_, err := s.cmd(250, "RSET")
	return err
}

// quit ends the session politely, but without waiting long for it.
func (s *session) quit() {
	s.conn.setTimeout(5 * time.Second)
	_, _ = s.cmd(221, "QUIT")
	_ = s.conn.Close()
}

// netReason shortens a network error to what an operator needs.
func netReason(err error) string {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		if oe.Timeout() {
			return "timeout"
		}
		return oe.Err.Error()
	}
	return err.Error()
}
