package courier

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"smimegate/internal/smtp"
)

// The SMTP dialogue is driven here rather than by net/smtp or
// emersion/go-smtp's client. go-smtp v0.25.1 has no exported StartTLS, and
// its NewClientStartTLS always says "EHLO localhost" before the handshake,
// so the configured HELO name could not be used on a TLS session. net/smtp
// reads replies through net/textproto, which bounds neither a line nor the
// number of lines, keeps every EHLO keyword a server cares to send for as
// long as the connection is pooled, and reads inside its own calls, where
// the courier cannot arm a deadline per reply. The dialogue is small: a
// greeting, EHLO or HELO, STARTTLS, and the transaction commands, which
// need the RFC 3461, 6152 and 6531 parameters in any case. What of SMTP the
// courier shares with the receiver (the reply type, the reply reader, the
// dot-stuffing writer, xtext, EHLO keywords) is in internal/smtp.

// session is one open SMTP connection, between transactions or in one.
type session struct {
	conn *watchConn // the TCP connection; a TLS session runs over it
	wire net.Conn   // what the dialogue reads and writes: conn or TLS
	tls  *tls.Conn  // the TLS client over conn, nil in the clear
	br   *bufio.Reader
	bw   *bufio.Writer
	// exts holds the EHLO keywords the courier acts on (knownExtensions)
	// with their parameters; the others are not kept.
	exts    smtp.Extensions
	timeout time.Duration // Config.CommandTimeout: each reply must arrive whole within it
	minRate int           // Config.MinDataRate, for the content
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

// knownExtensions are the EHLO keywords the courier acts on. A server may
// list as many as smtp.MaxReplyLines allows, but only these are kept while
// the connection waits in the pool.
var knownExtensions = []string{
	"STARTTLS",   // RFC 3207
	"PIPELINING", // RFC 2920
	"CHUNKING",   // RFC 3030
	"SIZE",       // RFC 1870
	"SMTPUTF8",   // RFC 6531
	"8BITMIME",   // RFC 6152
	"DSN",        // RFC 3461
}

// quitTimeout bounds the wait for the reply to QUIT, which only ends a
// session politely and never decides an outcome.
const quitTimeout = 5 * time.Second

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
		last = localFailure(Deferred, smtp.EnhancedCode{4, 4, 4}, "no address to deliver to")
	}
	return nil, last
}

// tlsHandshake marks failures of the TLS handshake itself (as opposed to a
// missing offer or a refused STARTTLS command).
func (f *failure) tlsHandshake() bool {
	return !f.remote && f.enhanced == faultCodes[faultTLS]
}

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
		reason := netReason(err)
		if ctx.Err() != nil {
			reason = cause(ctx).Error()
		}
		f := connFailure(faultDial, fmt.Sprintf("connect to %s[%s]: %s", t.host, t.addr, reason))
		f.nextHost = true
		return nil, f
	}
	wc := newWatchConn(raw, c.cfg.CommandTimeout)
	stop := abortOn(ctx, wc)
	defer stop()
	s := &session{conn: wc, wire: wc, timeout: c.cfg.CommandTimeout, minRate: c.cfg.MinDataRate, target: t, tlsDesc: "none", opened: time.Now(),
		br: bufio.NewReaderSize(wc, smtp.MaxReplyLine), bw: bufio.NewWriterSize(wc, writeBuffer)}
	fail := func(f *failure) (*session, *failure) {
		_ = wc.Close()
		return nil, f
	}

	// RFC 5321 section 3.1: the greeting. A server that refuses service
	// there (4xx or 5xx) is skipped for the next MX host, as Postfix does
	// with smtp_skip_5xx_greeting.
	r, _, err := s.readReply(s.timeout)
	if err != nil {
		return fail(s.lost("the greeting", err, true))
	}
	if r.Code != 220 {
		f := replyFailure(r).soften()
		f.nextHost = true
		f.step = "greeting"
		return fail(f)
	}
	if f := s.hello(c.cfg.HeloName, true); f != nil {
		return fail(f)
	}
	if mode == TLSNone {
		return s, nil
	}
	if ok, _ := s.ext("STARTTLS"); !ok {
		if mode == TLSOpportunistic {
			return s, nil
		}
		f := connFailure(faultNoTLS, fmt.Sprintf("TLS is required, but was not offered by host %s[%s]", t.host, t.addr))
		f.answered, f.nextHost = true, true
		return fail(f)
	}
	verified := false
	err = s.startTLS(c.tlsConfig(t.host, mode, &verified))
	if err != nil {
		// A reply of another class than 220 is the server's answer, not a
		// failure of the connection.
		if br, ok := err.(*smtp.Error); ok {
			if mode == TLSOpportunistic {
				// RFC 3207 section 4: a refused STARTTLS leaves the
				// session in the clear; opportunistic TLS carries on there.
				return s, nil
			}
			f := replyFailure(br).soften()
			f.nextHost = true
			f.step = "STARTTLS, TLS " + policy.String()
			return fail(f)
		}
		if errors.Is(err, errAborted) || errors.Is(err, errTooSlow) {
			return fail(s.lost("STARTTLS", err, false))
		}
		// Anything else after the STARTTLS command is a handshake that did
		// not complete: a certificate that does not verify, no common
		// cipher, or a server that hangs up instead of negotiating.
		f := connFailure(faultTLS, fmt.Sprintf("TLS handshake with %s[%s] failed: %v", t.host, t.addr, err))
		f.nextHost = true
		return fail(f)
	}
	// RFC 3207 section 4.2: the session starts over and the client asks
	// EHLO again. HELO cannot have offered STARTTLS, so there is no
	// falling back to it here.
	if f := s.hello(c.cfg.HeloName, false); f != nil {
		f.step = "EHLO after STARTTLS"
		return fail(f)
	}
	st := s.tls.ConnectionState()
	s.tlsDesc = strings.ReplaceAll(tls.VersionName(st.Version), " ", "")
	if verified || mode == TLSVerify {
		s.tlsDesc += " verified"
	}
	return s, nil
}

// hello sends EHLO and keeps the extensions the courier acts on. With
// fallback, a server that refuses EHLO with 5xx is asked HELO instead (RFC
// 5321 section 3.2) and offers no extensions.
func (s *session) hello(name string, fallback bool) *failure {
	if name == "" || strings.ContainsAny(name, "\r\n\t\x00 ") || len(name) > 255 {
		// Config.HeloName is the operator's, but it is written on the
		// command line: it must not be able to add a command to it.
		return localFailure(Deferred, smtp.EnhancedCode{4, 3, 5}, "HELO name %q is not usable in a command", name)
	}
	r, lines, err := s.cmd("EHLO " + name)
	if err != nil {
		return s.lost("EHLO", err, true)
	}
	step := "EHLO"
	if r.Positive() {
		s.exts = smtp.ParseEHLO(lines, knownExtensions...)
		return nil
	}
	if r.Permanent() && fallback {
		r, _, err = s.cmd("HELO " + name)
		if err != nil {
			return s.lost("HELO", err, true)
		}
		if r.Positive() {
			s.exts = smtp.Extensions{}
			return nil
		}
		step = "HELO"
	}
	// A 4xx to EHLO/HELO is worth the next host; a 5xx is the host's
	// final word on us (Postfix bounces it too).
	f := replyFailure(r)
	f.nextHost = f.status == Deferred
	f.step = step
	return f
}

// startTLS sends STARTTLS and, on a 220, runs the handshake over the
// session's connection. The handshake has one command timeout as a whole.
// A refusal is returned as the server's reply, an *smtp.Error.
func (s *session) startTLS(cfg *tls.Config) error {
	r, _, err := s.cmd("STARTTLS")
	if err != nil {
		return err
	}
	if r.Code != 220 {
		return r
	}
	tc := tls.Client(s.conn, cfg)
	s.conn.asked()
	s.conn.expect(s.timeout)
	if err := tc.Handshake(); err != nil {
		return err
	}
	// Whatever the server sent in the clear after its 220 is dropped with
	// the old buffer: nothing from before the handshake is believed (the
	// STARTTLS injection of CVE-2011-0411, seen from the client side).
	s.tls, s.wire = tc, tc
	s.br.Reset(tc)
	s.bw.Reset(tc)
	s.exts = smtp.Extensions{}
	return nil
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

// send writes command lines and flushes them: one write for a pipelined
// group. From then on the server may answer.
func (s *session) send(lines ...string) error {
	for _, l := range lines {
		if _, err := s.bw.WriteString(l); err != nil {
			return err
		}
		if _, err := s.bw.WriteString("\r\n"); err != nil {
			return err
		}
	}
	if err := s.bw.Flush(); err != nil {
		return err
	}
	s.conn.asked()
	return nil
}

// cmd sends one command and reads its reply within the command timeout. A
// reply of any class is returned with a nil error; the error is for the
// connection or the protocol. lines are the reply's texts, code stripped.
func (s *session) cmd(line string) (*smtp.Error, []string, error) {
	if err := s.send(line); err != nil {
		return nil, nil, err
	}
	return s.readReply(s.timeout)
}

// readReply reads one whole reply, which must have arrived within timeout
// of the moment the courier began to wait for it: the deadline is armed
// once and no byte the server sends moves it.
func (s *session) readReply(timeout time.Duration) (*smtp.Error, []string, error) {
	s.conn.expect(timeout)
	return smtp.ReadReply(s.br)
}

// ext reports an EHLO keyword (upper case) and its parameter.
func (s *session) ext(name string) (bool, string) {
	return s.exts.Has(name), s.exts.Param(name)
}

// sizeLimit is the SIZE the server announced (RFC 1870), 0 if none.
func (s *session) sizeLimit() int64 {
	n, _ := s.exts.Size()
	return n
}

// reset readies a reused session for the next transaction (RFC 5321
// section 4.1.1.5); it doubles as the check that the server is still there.
func (s *session) reset() error {
	r, _, err := s.cmd("RSET")
	if err == nil && !r.Positive() {
		err = r
	}
	return err
}

// quit ends the session politely, but without waiting long for it: the
// write and the reply each have quitTimeout.
func (s *session) quit() {
	s.conn.writeTimeout = quitTimeout
	if s.send("QUIT") == nil {
		_, _, _ = s.readReply(quitTimeout)
	}
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
