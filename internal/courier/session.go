package courier

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
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
// need the RFC 3461, 6152 and 6531 parameters in any case.

// session is one open SMTP connection, between transactions or in one.
type session struct {
	conn *watchConn // the TCP connection; a TLS session runs over it
	wire net.Conn   // what the dialogue reads and writes: conn or TLS
	tls  *tls.Conn  // the TLS client over conn, nil in the clear
	br   *bufio.Reader
	bw   *bufio.Writer
	// exts holds the EHLO keywords the courier acts on (knownExtensions)
	// with their parameters; the others are not kept.
	exts    map[string]string
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

// maxReplyLine bounds one reply line, CRLF included. RFC 5321 section
// 4.5.3.1.5 allows 512 octets; four times that is Postfix's
// line_length_limit, room for the long texts some servers put in a 550. It
// is also the size of the read buffer, so a longer line is refused before
// any of it is copied.
const maxReplyLine = 2048

// maxReplyLines bounds the lines of one reply. RFC 5321 section 4.2 sets no
// limit, but an EHLO reply has a line per extension (about fifteen at the
// largest providers) and the longest greetings and refusals seen run to a
// few dozen lines; a hundred lines of maxReplyLine bytes also stays below
// maxReadWithoutWrite.
const maxReplyLines = 100

// knownExtensions are the EHLO keywords the courier acts on. A server may
// list as many as maxReplyLines allows, but only these are kept while the
// connection waits in the pool.
var knownExtensions = map[string]bool{
	"STARTTLS":   true, // RFC 3207
	"PIPELINING": true, // RFC 2920
	"CHUNKING":   true, // RFC 3030
	"SIZE":       true, // RFC 1870
	"SMTPUTF8":   true, // RFC 6531
	"8BITMIME":   true, // RFC 6152
	"DSN":        true, // RFC 3461
}

// quitTimeout bounds the wait for the reply to QUIT, which only ends a
// session politely and never decides an outcome.
const quitTimeout = 5 * time.Second

// protocolError is a reply the courier cannot read as SMTP: too long, too
// many lines, or not a reply at all. The dialogue is out of step and the
// connection is closed.
type protocolError struct{ text string }

func (e *protocolError) Error() string { return e.text }

// badReply is a well-formed reply of another class than the command
// expected: the server's answer, not a failure of the connection.
type badReply struct{ r reply }

func (e *badReply) Error() string { return e.r.line() }

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
		reason := netReason(err)
		if ctx.Err() != nil {
			reason = cause(ctx).Error()
		}
		return nil, &failure{status: Deferred, enhanced: "4.4.1", text: sanitizeText(fmt.Sprintf("connect to %s[%s]: %s", t.host, t.addr, reason)), nextHost: true}
	}
	wc := newWatchConn(raw, c.cfg.CommandTimeout)
	stop := abortOn(ctx, wc)
	defer stop()
	s := &session{conn: wc, wire: wc, timeout: c.cfg.CommandTimeout, minRate: c.cfg.MinDataRate, target: t, tlsDesc: "none", opened: time.Now(),
		br: bufio.NewReaderSize(wc, maxReplyLine), bw: bufio.NewWriterSize(wc, writeBuffer)}
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
	if r.code != 220 {
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
		return fail(&failure{status: Deferred, enhanced: "4.7.4", answered: true, nextHost: true,
			text: fmt.Sprintf("TLS is required, but was not offered by host %s[%s]", t.host, t.addr)})
	}
	verified := false
	err = s.startTLS(c.tlsConfig(t.host, mode, &verified))
	if err != nil {
		if br, ok := err.(*badReply); ok {
			if mode == TLSOpportunistic {
				// RFC 3207 section 4: a refused STARTTLS leaves the
				// session in the clear; opportunistic TLS carries on there.
				return s, nil
			}
			f := replyFailure(br.r).soften()
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
		return fail(&failure{status: Deferred, enhanced: "4.7.5", nextHost: true,
			text: sanitizeText(fmt.Sprintf("TLS handshake with %s[%s] failed: %v", t.host, t.addr, err))})
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
		return localFailure(Deferred, "4.3.5", "HELO name %q is not usable in a command", name)
	}
	r, lines, err := s.cmd("EHLO " + name)
	if err != nil {
		return s.lost("EHLO", err, true)
	}
	step := "EHLO"
	if r.code/100 == 2 {
		s.exts = parseEHLO(lines)
		return nil
	}
	if r.code/100 == 5 && fallback {
		r, _, err = s.cmd("HELO " + name)
		if err != nil {
			return s.lost("HELO", err, true)
		}
		if r.code/100 == 2 {
			s.exts = map[string]string{}
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

// parseEHLO reads the extensions of an EHLO reply (RFC 5321 section
// 4.1.1.1): after the first line, one "keyword params" per line. Keywords
// are case-insensitive; only knownExtensions are kept.
func parseEHLO(lines []string) map[string]string {
	exts := map[string]string{}
	if len(lines) < 2 {
		return exts
	}
	for _, l := range lines[1:] {
		kw, params, _ := strings.Cut(l, " ")
		if kw = strings.ToUpper(kw); knownExtensions[kw] {
			exts[kw] = params
		}
	}
	return exts
}

// startTLS sends STARTTLS and, on a 220, runs the handshake over the
// session's connection. The handshake has one command timeout as a whole.
// A refusal is returned as a *badReply.
func (s *session) startTLS(cfg *tls.Config) error {
	r, _, err := s.cmd("STARTTLS")
	if err != nil {
		return err
	}
	if r.code != 220 {
		return &badReply{r}
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
	s.exts = nil
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

// lost describes a connection that broke, timed out, was given up on, or
// spoke something other than SMTP during a step.
func (s *session) lost(step string, err error, nextHost bool) *failure {
	var pe *protocolError
	var text string
	switch {
	case errors.Is(err, errTooSlow):
		text = fmt.Sprintf("gave up on %s[%s] while %s: %v", s.target.host, s.target.addr, step, err)
	case errors.As(err, &pe):
		text = fmt.Sprintf("protocol error from %s[%s] while %s: %v", s.target.host, s.target.addr, step, err)
	default:
		text = fmt.Sprintf("lost connection with %s[%s] while %s: %v", s.target.host, s.target.addr, step, netReason(err))
	}
	return &failure{status: Deferred, enhanced: "4.4.2", nextHost: nextHost, answered: true, text: sanitizeText(text)}
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
func (s *session) cmd(line string) (reply, []string, error) {
	if err := s.send(line); err != nil {
		return reply{}, nil, err
	}
	return s.readReply(s.timeout)
}

// readReply reads one whole reply, which must have arrived within timeout
// of the moment the courier began to wait for it: the deadline is armed
// once and no byte the server sends moves it.
func (s *session) readReply(timeout time.Duration) (reply, []string, error) {
	s.conn.expect(timeout)
	return readReplyFrom(s.br)
}

// readReplyFrom reads one reply (RFC 5321 section 4.2) from br, whose
// buffer must be maxReplyLine bytes. A line longer than maxReplyLine, more
// than maxReplyLines lines, a line that is not a reply line, and lines of
// one reply with different codes are protocol errors. lines are the texts
// of the lines, code stripped.
func readReplyFrom(br *bufio.Reader) (reply, []string, error) {
	code := 0
	var lines []string
	for n := 0; ; n++ {
		if n == maxReplyLines {
			return reply{}, nil, &protocolError{fmt.Sprintf("reply of more than %d lines", maxReplyLines)}
		}
		raw, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return reply{}, nil, &protocolError{fmt.Sprintf("reply line longer than %d bytes", maxReplyLine)}
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return reply{}, nil, err
		}
		line := strings.TrimSuffix(strings.TrimSuffix(string(raw), "\n"), "\r")
		c, more, text, ok := parseReplyLine(line)
		if !ok {
			return reply{}, nil, &protocolError{fmt.Sprintf("not a reply line: %q", line[:min(len(line), 40)])}
		}
		if n > 0 && c != code {
			return reply{}, nil, &protocolError{fmt.Sprintf("reply lines with codes %d and %d", code, c)}
		}
		code = c
		lines = append(lines, text)
		if !more {
			return parseReply(code, strings.Join(lines, "\n")), lines, nil
		}
	}
}

// parseReplyLine splits a reply line (RFC 5321 section 4.2): a three-digit
// code, then "-" for a line that is not the last, " " and text, or nothing.
// Codes below 100 are refused; 600 and above are kept, and classified as
// deferrals by reply.outcome.
func parseReplyLine(line string) (code int, more bool, text string, ok bool) {
	if len(line) < 3 {
		return 0, false, "", false
	}
	for i := 0; i < 3; i++ {
		if line[i] < '0' || line[i] > '9' {
			return 0, false, "", false
		}
		code = code*10 + int(line[i]-'0')
	}
	if code < 100 {
		return 0, false, "", false
	}
	switch {
	case len(line) == 3:
		return code, false, "", true
	case line[3] == ' ':
		return code, false, line[4:], true
	case line[3] == '-':
		return code, true, line[4:], true
	}
	return 0, false, "", false
}

// ext reports an EHLO keyword (upper case) and its parameter.
func (s *session) ext(name string) (bool, string) {
	v, ok := s.exts[name]
	return ok, v
}

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
	r, _, err := s.cmd("RSET")
	if err == nil && r.code/100 != 2 {
		err = &badReply{r}
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
