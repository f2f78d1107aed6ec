package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"smimegate/internal/smtp"
)

// readBuffer is the size of the buffer in front of each connection. A
// command line (smtp.MaxCommandLine) fits many times over; DATA and BDAT
// are read through it in pieces of at most this size.
const readBuffer = 16 << 10

// writeBuffer is the size of the buffer the replies collect in until they
// are flushed (RFC 2920 section 3.1): the replies to a pipelined group of
// commands, a few hundred bytes, fit with room to spare; a longer reply
// (none of ours is) would be flushed as the buffer fills.
const writeBuffer = 4 << 10

// lingerBytes and lingerTime bound what is read and thrown away after the
// last reply before the socket is closed: closing with unread input makes
// the kernel send a reset, which can destroy the last reply (a 421 that
// says why) before the client reads it.
const (
	lingerBytes = 16 << 10
	lingerTime  = 100 * time.Millisecond
)

// The connections' buffers are recycled: one read buffer per connection
// was two thirds of the bytes the relay allocated (a new connection per
// message is what most clients make).
var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBuffer) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBuffer) }}
)

// conn is one SMTP connection and its session. One goroutine runs it
// (serve) and owns the socket, the read buffer and the write buffer: the
// command loop, DATA, BDAT and the STARTTLS switch all read through br, so
// a message stream is never seen by anything but the strict readers, and
// what was pipelined after a command stays where it is for the next one.
// Only beginShutdown and the recipient-verification watcher touch the
// connection from elsewhere, through mu and deadlines.
type conn struct {
	srv     *Server
	raw     net.Conn // the socket
	br      *bufio.Reader
	bw      *bufio.Writer
	client  netip.AddrPort
	trusted bool

	tlsState *tls.ConnectionState
	helo     string // argument of the last HELO/EHLO since the connection (or TLS) began
	greeted  bool   // a HELO/EHLO was seen since the connection (or TLS) began
	// sessionEnd is when the session ends however busy it is
	// (smtp.max_session_time from accept): no read waits past it, and the
	// first command after it is answered 421.
	sessionEnd time.Time
	lim        limits
	quit       bool // end the session once the replies are flushed
	tx         transaction

	mu       sync.Mutex // guards nc, idle and shutdown, which Shutdown touches
	nc       net.Conn   // the socket, or the TLS connection over it after STARTTLS
	idle     bool       // blocked waiting for a command
	shutdown bool
	// alive ends when the connection closes or the server shuts down; a
	// call that may block on the network on the client's behalf
	// (Options.VerifyRecipient) runs under it.
	alive context.Context
	kill  context.CancelFunc
}

func newConn(nc net.Conn, srv *Server, client netip.AddrPort, trusted bool) *conn {
	br := readers.Get().(*bufio.Reader)
	br.Reset(nc)
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(nc)
	alive, kill := context.WithCancel(context.Background())
	return &conn{srv: srv, raw: nc, nc: nc, br: br, bw: bw, client: client, trusted: trusted,
		sessionEnd: time.Now().Add(srv.cfg.SMTP.MaxSessionTime.D()), alive: alive, kill: kill}
}

// limits counts what smtp.error_limit and smtp.junk_command_limit bound,
// in this one place: every reply passes through replied, every junk
// command through junkCommand.
type limits struct {
	errors, junk int
	// closeWith is the 421 to send before the next command is read, once
	// the error limit is reached: the reply that reached it goes out
	// first, as it would have anyway.
	closeWith string
}

// replied counts a reply against the error limit (Postfix's
// smtpd_hard_error_limit): every 4xx and 5xx but the 421 that ends a
// session.
func (l *limits) replied(code, max int) {
	if code >= 400 && code != 421 {
		l.errors++
		if l.errors >= max && l.closeWith == "" {
			l.closeWith = "421 4.7.0 Too many errors, closing the connection"
		}
	}
}

// delivered clears the error count: the limit is on errors "without
// delivering mail", and a message was accepted.
func (l *limits) delivered() { l.errors = 0 }

// junkCommand counts a junk command (Postfix's smtpd_junk_command_limit)
// and reports whether the limit is exceeded.
func (l *limits) junkCommand(max int) bool {
	l.junk++
	return l.junk > max
}

// serve runs the session to its end and closes the connection.
func (c *conn) serve() {
	defer c.close()
	c.writeString("220 " + c.srv.cfg.Hostname + " ESMTP smimegate\r\n")
	for !c.quit {
		cmd, ok := c.next()
		if !ok {
			break
		}
		c.handle(cmd)
	}
	c.flush()
}

// next returns the next command, answering on its way what is not one
// (overlong lines, bare CR or LF, NUL), or false when the session is over:
// the error limit, Shutdown, max_session_time, the command timeout, or the
// client gone. Every such end but the last is told to the client with 421.
func (c *conn) next() (smtp.Command, bool) {
	for {
		if c.lim.closeWith != "" {
			c.writeString(c.lim.closeWith + "\r\n")
			return smtp.Command{}, false
		}
		if c.isShutdown() {
			c.writeString("421 4.3.2 Service shutting down, try again later\r\n")
			return smtp.Command{}, false
		}
		line, err := c.readLine()
		switch {
		case c.sessionOver():
			// Whether the command came in late or the read was cut at
			// the end of the session, the session is over.
			c.writeString("421 4.4.2 " + c.sessionOverText("") + "\r\n")
			return smtp.Command{}, false
		case err == nil:
		case errors.Is(err, errLineTooLong):
			c.reply(smtp.NewError(500, smtp.EnhancedCode{5, 5, 2}, fmt.Sprintf("Command line longer than %d bytes", smtp.MaxCommandLine)))
			continue
		case c.isShutdown():
			c.writeString("421 4.3.2 Service shutting down, try again later\r\n")
			return smtp.Command{}, false
		case isTimeout(err):
			c.writeString(fmt.Sprintf("421 4.4.2 No command for %s, closing the connection\r\n", c.srv.cfg.SMTP.CommandTimeout))
			return smtp.Command{}, false
		default:
			return smtp.Command{}, false // gone
		}
		cmd, err := smtp.ParseCommand(line)
		switch {
		case errors.Is(err, smtp.ErrCommandNUL):
			c.reply(smtp.NewError(500, smtp.EnhancedCode{5, 5, 2}, "NUL in command line"))
			continue
		case err != nil:
			c.reply(smtp.NewError(500, smtp.EnhancedCode{5, 5, 2}, "Command lines must end with CRLF, and contain no other CR or LF (RFC 5321 section 2.3.8)"))
			continue
		}
		return cmd, true
	}
}

var errLineTooLong = errors.New("command line too long")

// readLine returns the next line, CRLF included. A line longer than
// smtp.MaxCommandLine is consumed and reported as errLineTooLong. Before
// it may block, it flushes the replies held back (RFC 2920 section 3.1:
// the server may hold replies while more commands are waiting, and must
// send them before it waits for more) and sets the read deadline.
func (c *conn) readLine() ([]byte, error) {
	if !c.lineBuffered() {
		if err := c.flush(); err != nil {
			return nil, err
		}
		c.nc.SetReadDeadline(c.readDeadline(time.Now().Add(c.srv.cfg.SMTP.CommandTimeout.D())))
		if c.setIdle(true) {
			return nil, errShutdown
		}
		defer c.setIdle(false)
	}
	var line []byte
	tooLong := false
	for {
		seg, err := c.br.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(seg) > smtp.MaxCommandLine+2 {
				tooLong, line = true, nil
			} else if line == nil && err == nil {
				line = seg // the whole line in the buffer: no copy
			} else {
				line = append(line, seg...)
			}
		}
		if err == nil {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return nil, err
	}
	if tooLong {
		return nil, errLineTooLong
	}
	return line, nil
}

var errShutdown = errors.New("server shutting down")

// lineBuffered reports whether a whole line is already in the read buffer.
func (c *conn) lineBuffered() bool {
	n := c.br.Buffered()
	if n == 0 {
		return false
	}
	b, _ := c.br.Peek(n)
	return bytes.IndexByte(b, '\n') >= 0
}

// handle runs one command.
func (c *conn) handle(cmd smtp.Command) {
	junk := false
	switch cmd.Verb {
	case "NOOP", "RSET", "VRFY", "HELP", "EXPN":
		// The commands Postfix counts as junk: cheap for the client,
		// useless for mail, the tools of a slow scan.
		junk = true
	case "HELO", "EHLO":
		// RFC 5321 section 4.1.4 lets a client greet again, and each
		// greeting resets the session for a few bytes: an EHLO loop costs
		// the client nothing. The first greeting, and the one RFC 3207
		// section 4.2 requires after STARTTLS, are free; any other is junk.
		junk = c.greeted
	}
	if junk && c.lim.junkCommand(c.srv.cfg.SMTP.JunkCommandLimit) {
		c.writeString("421 4.7.0 Too many junk commands, closing the connection\r\n")
		c.quit = true
		return
	}
	switch cmd.Verb {
	case "HELO", "EHLO":
		c.greet(cmd.Verb, cmd.Arg)
	case "MAIL":
		c.mail(cmd.Arg)
	case "RCPT":
		c.rcpt(cmd.Arg)
	case "DATA":
		c.data(cmd.Arg)
	case "BDAT":
		c.bdat(cmd.Arg)
	case "RSET":
		c.resetTx()
		c.replyRaw(250, replyReset)
	case "NOOP":
		c.replyRaw(250, replyNoop)
	case "VRFY":
		// RFC 5321 section 3.5.3: a server that will not verify says 252,
		// which claims nothing about the address; 502 would tell clients
		// that the command every server SHOULD have (section 3.5.2) is
		// missing. Answering from the recipient check would make the
		// receiver an oracle for which addresses exist.
		c.replyRaw(252, replyVrfy)
	case "EXPN":
		// RFC 5321 section 3.5.2 lets EXPN be disabled; a list's members
		// are nobody else's business.
		c.reply(smtp.NewError(502, smtp.EnhancedCode{5, 5, 1}, "EXPN is not available"))
	case "HELP":
		c.reply(smtp.NewError(214, smtp.EnhancedCode{2, 0, 0}, "smimegate: see RFC 5321; commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP VRFY QUIT STARTTLS"))
	case "QUIT":
		c.replyRaw(221, replyQuit)
		c.quit = true
	case "STARTTLS":
		c.startTLS(cmd.Arg)
	default:
		if len(cmd.Verb) != 4 {
			c.reply(smtp.NewError(500, smtp.EnhancedCode{5, 5, 2}, "Syntax error, command unrecognized"))
		} else {
			c.reply(smtp.NewError(502, smtp.EnhancedCode{5, 5, 1}, fmt.Sprintf("%s is not implemented", smtp.Printable(cmd.Verb))))
		}
	}
}

// The replies every transaction sends, made once.
var (
	replyReset    = []byte("250 2.0.0 Reset, nothing pending\r\n")
	replyNoop     = []byte("250 2.0.0 OK, done nothing\r\n")
	replyVrfy     = []byte("252 2.5.0 Cannot VRFY the address, but will take mail for it and attempt delivery\r\n")
	replyQuit     = []byte("221 2.0.0 Bye\r\n")
	replySenderOK = []byte("250 2.1.0 Sender OK\r\n")
	replyRcptOK   = []byte("250 2.1.5 Recipient OK\r\n")
	replyGoAhead  = []byte("354 Start mail input; end with <CRLF>.<CRLF>\r\n")
)

// reply sends e as it is (smtp.Error.Lines) and counts it.
func (c *conn) reply(e *smtp.Error) {
	c.replyRaw(e.Code, e.Lines())
}

// replyRaw queues a reply already in wire form, whose code is code, and
// counts it against the error limit: every reply passes here.
func (c *conn) replyRaw(code int, wire []byte) {
	c.bw.Write(wire)
	c.lim.replied(code, c.srv.cfg.SMTP.ErrorLimit)
}

// writeString queues a reply that counts against nothing: the greeting,
// and the 421s that end a session.
func (c *conn) writeString(s string) {
	c.bw.WriteString(s)
}

// flush sends the replies held back, under the command timeout.
func (c *conn) flush() error {
	if c.bw.Buffered() == 0 {
		return nil
	}
	c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.SMTP.CommandTimeout.D()))
	return c.bw.Flush()
}

// setIdle marks the connection as waiting for a command, or not; it
// reports whether Shutdown has begun, in which case the caller must not
// wait. The read deadline is set before it: beginShutdown's deadline,
// if it comes after, is the one that holds.
func (c *conn) setIdle(idle bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.idle = idle
	return c.shutdown
}

func (c *conn) isShutdown() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.shutdown
}

// beginShutdown ends the connection at the next command: at once if it is
// waiting for one, after the reply to the message in progress otherwise.
func (c *conn) beginShutdown() {
	c.mu.Lock()
	c.shutdown = true
	idle, nc := c.idle, c.nc
	c.mu.Unlock()
	// A recipient verification in progress gives up: the answer to its
	// RCPT is a 451, and the connection ends at the next command.
	c.kill()
	if idle {
		nc.SetReadDeadline(time.Now())
	}
}

// close ends the connection: the replies are flushed, the client's unread
// input is drained within bounds (see lingerBytes), the socket is closed
// and the buffers go back to their pools. Only serve calls it, on the
// connection's goroutine.
func (c *conn) close() {
	c.kill()
	c.resetTx()
	c.flush()
	if tc, ok := c.nc.(*tls.Conn); ok {
		tc.SetWriteDeadline(time.Now().Add(lingerTime))
		tc.CloseWrite()
	}
	if tcp, ok := c.raw.(*net.TCPConn); ok {
		tcp.CloseWrite()
		tcp.SetReadDeadline(time.Now().Add(lingerTime))
		io.CopyN(io.Discard, tcp, lingerBytes)
	}
	c.raw.Close()
	c.br.Reset(nil)
	readers.Put(c.br)
	c.bw.Reset(nil)
	writers.Put(c.bw)
	c.br, c.bw = nil, nil
}

// startTLS implements the STARTTLS command (RFC 3207).
func (c *conn) startTLS(arg string) {
	switch {
	case c.srv.tlsConfig == nil:
		c.reply(smtp.NewError(502, smtp.EnhancedCode{5, 5, 1}, "STARTTLS is not available"))
		return
	case c.tlsState != nil:
		c.reply(smtp.NewError(503, smtp.EnhancedCode{5, 5, 1}, "TLS is already active"))
		return
	case arg != "":
		c.reply(smtp.NewError(501, smtp.EnhancedCode{5, 5, 4}, "STARTTLS takes no argument"))
		return
	}
	if n := c.br.Buffered(); n > 0 {
		// RFC 3207 section 4.2 and CVE-2011-0411: anything pipelined after
		// STARTTLS was sent in clear and must not be obeyed under TLS.
		c.br.Discard(n)
		c.srv.log.Warn("smtpd: discarded plaintext sent after STARTTLS (command injection attempt)", "client", c.client.String(), "bytes", n)
	}
	c.replyRaw(220, []byte("220 2.0.0 Ready to start TLS\r\n"))
	// The 220 must be out before the handshake, which waits for the
	// client's hello.
	if err := c.flush(); err != nil {
		c.quit = true
		return
	}
	tc := tls.Server(c.raw, c.srv.tlsConfig)
	ctx, cancel := context.WithDeadline(context.Background(), c.readDeadline(time.Now().Add(c.srv.cfg.SMTP.CommandTimeout.D())))
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		c.srv.log.Info("smtpd: TLS handshake failed", "client", c.client.String(), "err", err)
		c.quit = true
		return
	}
	st := tc.ConnectionState()
	c.tlsState = &st
	c.mu.Lock()
	c.nc = tc
	c.mu.Unlock()
	c.br.Reset(tc)
	c.bw.Reset(tc)
	// RFC 3207 section 4.2: forget everything learnt from the client before
	// TLS; it must say EHLO again.
	c.helo = ""
	c.greeted = false
	c.resetTx()
}

// readDeadline returns t, or the end of the session if that comes first;
// a zero t (no deadline) becomes the end of the session. Every read
// deadline goes through it, so that no read outlives the session.
func (c *conn) readDeadline(t time.Time) time.Time {
	if t.IsZero() || t.After(c.sessionEnd) {
		return c.sessionEnd
	}
	return t
}

// sessionOver reports whether smtp.max_session_time has passed.
func (c *conn) sessionOver() bool {
	return !time.Now().Before(c.sessionEnd)
}

// sessionOverText is the text of the 421 4.4.2 that ends a session at
// smtp.max_session_time; during names what was cut short, if anything.
func (c *conn) sessionOverText(during string) string {
	return fmt.Sprintf("Session longer than the limit of %s%s, closing the connection", c.srv.cfg.SMTP.MaxSessionTime, during)
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout()
}

// commandContext is the context of a call made on the client's behalf
// while a command waits for its reply: it ends at smtp.command_timeout (or
// the end of the session, if sooner), when the connection closes or the
// server shuts down, and, through watchClient, when the client goes away.
// The returned function must be called before the command loop reads again.
func (c *conn) commandContext() (context.Context, func()) {
	ctx, cancel := context.WithDeadline(c.alive, c.readDeadline(time.Now().Add(c.srv.cfg.SMTP.CommandTimeout.D())))
	stop := c.watchClient(cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// endsInQuit tells whether the unread input ends with a QUIT command
// line. A client that pipelines its commands up to QUIT (RFC 2920 section
// 3.1) may then shut down its sending side and go on reading the replies:
// Exim's smtp transport does so. The end of the stream after QUIT is
// therefore not the client going away; RFC 5321 section 4.1.1.10 has the
// server reply to everything up to QUIT before it closes. The octets of a
// BDAT chunk that happen to end so are taken alike, which costs nothing
// but the early cancellation: the call still ends at its own deadline.
// Only the watcher calls it, while it is the connection's only reader.
func endsInQuit(br *bufio.Reader) bool {
	buf, err := br.Peek(br.Buffered())
	if err != nil {
		return false
	}
	rest, ok := bytes.CutSuffix(buf, []byte("\r\n"))
	if !ok {
		return false
	}
	if i := bytes.LastIndexByte(rest, '\n'); i >= 0 {
		rest = rest[i+1:]
	}
	return bytes.EqualFold(rest, []byte("QUIT"))
}

// watchClient cancels a call when the client disconnects while it runs.
// The connection's goroutine is inside the call (its reply depends on the
// answer), so only another goroutine can see the socket close, and it may
// read, since nothing else does then: it peeks, which leaves pipelined
// commands in the buffer for the command loop, and stops at the first
// error; the end of the stream or a reset means the client is gone,
// unless the stream ended right after a QUIT (endsInQuit). The
// call's own deadline bounds the wait, so the watcher's reads have none; a
// client that has filled the read buffer with pipelined commands cannot be
// watched further, and the call then ends at that deadline. The returned
// stop function wakes the watcher (a read deadline in the past) and waits
// for it; the command loop sets its own deadline before its next read.
func (c *conn) watchClient(cancel context.CancelFunc) (stop func()) {
	br, nc := c.br, c.nc
	nc.SetReadDeadline(time.Time{})
	done := make(chan struct{})
	var woken atomic.Bool
	go func() {
		defer close(done)
		for {
			n := br.Buffered()
			if n >= br.Size() {
				return
			}
			if _, err := br.Peek(n + 1); err != nil {
				if !woken.Load() && !(errors.Is(err, io.EOF) && endsInQuit(br)) {
					cancel() // gone
				}
				return
			}
		}
	}()
	return func() {
		woken.Store(true)
		nc.SetReadDeadline(time.Now())
		<-done
	}
}
