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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxCommandLine bounds an SMTP command line, CRLF excluded. RFC 5321
// section 4.5.3.1.4 allows 512 octets, and extensions (SMTPUTF8 addresses,
// DSN parameters) push real lines further; Postfix's line_length_limit is
// 2048, and so is ours.
const maxCommandLine = 2048

// readBuffer is the size of the buffer in front of each connection.
const readBuffer = 16 << 10

// wireConn sits between the socket and go-smtp. go-smtp parses the commands
// and keeps the dialogue's state; wireConn owns the bytes:
//
//   - it hands go-smtp one complete, CRLF-terminated command line per Read,
//     so go-smtp's own buffer never holds bytes past the current command
//     and the DATA stream can be read here, strictly (see dataReader),
//     instead of by go-smtp's reader, which accepts bare LF;
//   - it does STARTTLS itself, so that the same strict reader works on the
//     decrypted stream, and discards whatever the client sent in clear
//     after the STARTTLS command (RFC 3207 section 4.2; CVE-2011-0411);
//   - it sees every command and every reply, so it enforces the error and
//     junk-command limits and drops the EHLO keywords we do not serve.
type wireConn struct {
	raw    net.Conn // the socket
	cur    net.Conn // the socket, or the TLS connection over it after STARTTLS
	srv    *Server
	br     *bufio.Reader
	client netip.AddrPort

	mu         sync.Mutex // guards the fields below that Shutdown touches
	idle       bool       // blocked waiting for a command
	shutdown   bool
	closeAfter string // a reply to send before ending the connection

	rest     []byte // part of the current command line go-smtp has not read yet
	eod      bool   // hand go-smtp an empty DATA stream (".\r\n") next
	lastLine string // the command line go-smtp is handling
	lastVerb string
	wbuf     []byte // reply bytes not yet forming a whole line (at most maxReplyLine)
	overlong bool   // the reply line being written outgrew maxReplyLine
	tlsState *tls.ConnectionState
	helo     string // argument of the last HELO/EHLO since the connection (or TLS) began
	greeted  bool   // a HELO/EHLO was seen since the connection (or TLS) began
	errors   int
	junk     int
	// sessionEnd is when the session ends however busy it is
	// (smtp.max_session_time from accept): no read waits past it, and the
	// first command after it is answered 421.
	sessionEnd time.Time
	ended      bool // io.EOF from now on
	closeOnce  sync.Once
	release    func() // gives back the connection slot
	// readDL is the read deadline go-smtp last set (before the clamp to
	// sessionEnd), to put back after watchClient has moved it.
	readDL time.Time
	// alive ends when the connection closes or the server shuts down; a
	// call that may block on the network on the client's behalf
	// (Options.VerifyRecipient) runs under it.
	alive context.Context
	kill  context.CancelFunc
}

func newWireConn(c net.Conn, srv *Server, client netip.AddrPort, release func()) *wireConn {
	br := readers.Get().(*bufio.Reader)
	br.Reset(c)
	alive, kill := context.WithCancel(context.Background())
	return &wireConn{raw: c, cur: c, srv: srv, br: br, client: client, release: release,
		sessionEnd: time.Now().Add(srv.cfg.SMTP.MaxSessionTime.D()), alive: alive, kill: kill}
}

// readers recycles the connections' read buffers: one per connection was
// two thirds of the bytes the relay allocated (a new connection per message
// is what most clients make).
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBuffer) }}

// Read gives go-smtp the next command line.
func (w *wireConn) Read(p []byte) (int, error) {
	n, err := w.read(p)
	if err != nil {
		w.releaseReader()
	}
	return n, err
}

// releaseReader gives the read buffer back to the pool once the connection
// is over. It runs only on the connection's goroutine, at the two points
// where go-smtp's loop meets its end: an error from Read, or from the
// SetReadDeadline before every command (which is how a connection closed
// after QUIT ends). That goroutine is the only one that reads through the
// buffer (commands, DATA in the session, the STARTTLS switch); Close, which
// Shutdown may call from elsewhere, never touches it.
func (w *wireConn) releaseReader() {
	if w.br != nil {
		w.br.Reset(nil)
		readers.Put(w.br)
		w.br = nil
	}
}

func (w *wireConn) read(p []byte) (int, error) {
	if w.br == nil {
		return 0, io.EOF
	}
	if w.eod {
		w.eod = false
		return copy(p, ".\r\n"), nil
	}
	if len(w.rest) > 0 {
		n := copy(p, w.rest)
		w.rest = w.rest[n:]
		return n, nil
	}
	for {
		if w.ended {
			return 0, io.EOF
		}
		if msg := w.takeCloseAfter(); msg != "" {
			w.writeLine(msg)
			w.ended = true
			return 0, io.EOF
		}
		line, err := w.readCommandLine()
		if err != nil && w.isShutdown() {
			w.writeLine("421 4.3.2 Service shutting down, try again later")
			w.ended = true
			return 0, io.EOF
		}
		if w.sessionOver() {
			// Whether the command came in late or the read was cut at
			// the end of the session, the session is over.
			w.writeLine("421 4.4.2 " + w.sessionOverText(""))
			w.ended = true
			return 0, io.EOF
		}
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				w.reply(500, "5.5.2", fmt.Sprintf("Command line longer than %d bytes", maxCommandLine))
				continue
			}
			return 0, err
		}
		if !w.checkCommand(line) {
			continue
		}
		line = w.postmasterLine(line)
		w.lastLine = string(line[:len(line)-2])
		n := copy(p, line)
		w.rest = line[n:]
		return n, nil
	}
}

var errLineTooLong = errors.New("command line too long")

// readCommandLine returns the next line, CRLF included. A line longer than
// maxCommandLine is consumed and reported as errLineTooLong.
func (w *wireConn) readCommandLine() ([]byte, error) {
	w.setIdle(true)
	defer w.setIdle(false)
	var line []byte
	tooLong := false
	for {
		seg, err := w.br.ReadSlice('\n')
		if !tooLong {
			if len(line)+len(seg) > maxCommandLine+2 {
				tooLong, line = true, nil
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

// knownVerbs are the commands go-smtp gets to see. Anything else is
// answered here, so that it counts against our limits rather than go-smtp's
// fixed one.
var knownVerbs = map[string]bool{
	"HELO": true, "EHLO": true, "MAIL": true, "RCPT": true, "DATA": true,
	"RSET": true, "NOOP": true, "QUIT": true, "VRFY": true,
}

// junkVerbs are the commands Postfix counts as junk (smtpd_junk_command_limit):
// cheap for the client, useless for mail, the tools of a slow scan.
var junkVerbs = map[string]bool{"NOOP": true, "RSET": true, "VRFY": true, "HELP": true, "EXPN": true}

// checkCommand applies the rules go-smtp does not: lines end in CRLF with
// no other CR or LF (RFC 5321 section 2.3.8), command verbs have the form
// of section 4.1.1, STARTTLS is ours, and the junk limit. It answers the
// lines it keeps from go-smtp and returns false for them.
func (w *wireConn) checkCommand(line []byte) bool {
	n := len(line)
	if n < 2 || line[n-2] != '\r' || bytes.IndexByte(line[:n-2], '\r') >= 0 {
		w.reply(500, "5.5.2", "Command lines must end with CRLF, and contain no other CR or LF (RFC 5321 section 2.3.8)")
		return false
	}
	text := line[:n-2]
	if bytes.IndexByte(text, 0) >= 0 {
		w.reply(500, "5.5.2", "NUL in command line")
		return false
	}
	verb, arg, _ := strings.Cut(string(text), " ")
	verb = strings.ToUpper(verb)
	junk := junkVerbs[verb]
	if verb == "HELO" || verb == "EHLO" {
		// RFC 5321 section 4.1.4 lets a client greet again, and each
		// greeting resets the session for a few bytes: an EHLO loop costs
		// the client nothing. The first greeting, and the one RFC 3207
		// section 4.2 requires after STARTTLS, are free; any other is junk.
		junk = w.greeted
		w.greeted = true
	}
	if junk {
		w.junk++
		if w.junk > w.srv.cfg.SMTP.JunkCommandLimit {
			w.writeLine("421 4.7.0 Too many junk commands, closing the connection")
			w.ended = true
			return false
		}
	}
	switch {
	case verb == "STARTTLS":
		w.startTLS(arg)
		return false
	case verb == "DATA" && arg == "" && w.noRecipients():
		// RFC 5321 section 3.3: with no MAIL, or no RCPT accepted, DATA
		// gets 503 or 554. go-smtp's own answer is 502 ("not
		// implemented"), and after STARTTLS it still holds the
		// recipients of the clear-text transaction RFC 3207 discards.
		if s := w.srv.sessionOf(w); s == nil || !s.hasMail {
			w.reply(503, "5.5.1", "Send MAIL first")
		} else {
			w.reply(554, "5.5.1", "No valid recipients")
		}
		return false
	case verb == "BDAT":
		// CHUNKING is not offered (it is removed from the EHLO reply):
		// one strict reader for one kind of message stream.
		w.reply(502, "5.5.1", "BDAT is not supported here, use DATA")
		return false
	case !knownVerbs[verb]:
		if len(verb) != 4 {
			w.reply(500, "5.5.2", "Syntax error, command unrecognized")
		} else {
			w.reply(502, "5.5.1", fmt.Sprintf("%s is not implemented", printable(verb)))
		}
		return false
	}
	w.lastVerb = verb
	if verb == "HELO" || verb == "EHLO" {
		h, _, _ := strings.Cut(strings.TrimSpace(arg), " ")
		w.helo = h
	}
	return true
}

// noRecipients reports whether the session has no transaction with an
// accepted recipient for a DATA to carry.
func (w *wireConn) noRecipients() bool {
	s := w.srv.sessionOf(w)
	return s == nil || !s.hasMail || len(s.rcpts) == 0
}

// postmasterLine rewrites "RCPT TO:<Postmaster>", the one address a client
// may send without a domain and that every server must accept (RFC 5321
// section 4.5.1), into postmaster at the first local domain, as Postfix
// appends $myorigin: go-smtp's parser refuses an address without a domain.
// Parameters after the address are kept.
func (w *wireConn) postmasterLine(line []byte) []byte {
	const bare = "RCPT TO:<POSTMASTER>"
	if len(line) < len(bare)+2 || !bytes.EqualFold(line[:len(bare)], []byte(bare)) || len(w.srv.cfg.LocalDomains) == 0 {
		return line
	}
	rest := line[len(bare):]
	if rest[0] != ' ' && rest[0] != '\r' {
		return line
	}
	return append([]byte("RCPT TO:<postmaster@"+w.srv.cfg.LocalDomains[0]+">"), rest...)
}

// startTLS implements the STARTTLS command (RFC 3207).
func (w *wireConn) startTLS(arg string) {
	switch {
	case w.srv.tlsConfig == nil:
		w.reply(502, "5.5.1", "STARTTLS is not available")
		return
	case w.tlsState != nil:
		w.reply(503, "5.5.1", "TLS is already active")
		return
	case strings.TrimSpace(arg) != "":
		w.reply(501, "5.5.4", "STARTTLS takes no argument")
		return
	}
	if n := w.br.Buffered(); n > 0 {
		// RFC 3207 section 4.2 and CVE-2011-0411: anything pipelined after
		// STARTTLS was sent in clear and must not be obeyed under TLS.
		w.br.Discard(n)
		w.srv.log.Warn("smtpd: discarded plaintext sent after STARTTLS (command injection attempt)", "client", w.client.String(), "bytes", n)
	}
	w.writeLine("220 2.0.0 Ready to start TLS")
	tc := tls.Server(w.raw, w.srv.tlsConfig)
	ctx, cancel := context.WithDeadline(context.Background(), w.readDeadline(time.Now().Add(w.srv.cfg.SMTP.CommandTimeout.D())))
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		w.srv.log.Info("smtpd: TLS handshake failed", "client", w.client.String(), "err", err)
		w.ended = true
		w.raw.Close()
		return
	}
	st := tc.ConnectionState()
	w.tlsState = &st
	w.mu.Lock()
	w.cur = tc
	w.mu.Unlock()
	w.br.Reset(tc)
	// RFC 3207 section 4.2: forget everything learnt from the client before
	// TLS; it must say EHLO again.
	w.helo = ""
	w.greeted = false
	w.lastVerb = ""
	if s := w.srv.sessionOf(w); s != nil {
		s.forget()
	}
}

// maxReplyLine bounds the part of a reply line held back while its line
// end has not come. go-smtp writes a whole line per flush, and the longest
// reply line there is quotes a command line (maxCommandLine), escaped by %q
// to at most four times its length, plus a sentence of ours; a line with no
// end past this bound is passed on as it comes rather than kept.
const maxReplyLine = 4*maxCommandLine + 1024

// Write takes go-smtp's replies, line by line: it drops the EHLO keywords we
// do not serve, counts errors and ends the connection when they are too many.
func (w *wireConn) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(w.wbuf)+len(p) <= maxReplyLine {
				w.wbuf = append(w.wbuf, p...)
				return n, nil
			}
			// An overlong line: what there is of it goes out now, the
			// rest as it comes, neither filtered nor counted.
			if err := w.writeReply(string(w.wbuf) + string(p)); err != nil {
				return 0, err
			}
			w.wbuf, w.overlong = nil, true
			return n, nil
		}
		line := string(w.wbuf) + string(p[:i+1])
		p = p[i+1:]
		w.wbuf = nil
		if w.overlong {
			w.overlong = false
			if err := w.writeReply(line); err != nil {
				return 0, err
			}
			continue
		}
		if w.lastVerb == "EHLO" && (line == "250-CHUNKING\r\n" || line == "250-STARTTLS\r\n" && w.tlsState != nil) {
			continue
		}
		if err := w.writeReply(line); err != nil {
			return 0, err
		}
		w.countReply(line)
	}
	return n, nil
}

func (w *wireConn) writeReply(s string) error {
	_, err := w.conn().Write([]byte(s))
	return err
}

// countReply applies the error limit (smtpd_hard_error_limit) to the final
// line of each reply. A message accepted for delivery clears the count, as
// the limit is on errors "without delivering mail".
func (w *wireConn) countReply(line string) {
	if len(line) < 4 || line[3] != ' ' {
		return
	}
	code, err := strconv.Atoi(line[:3])
	if err != nil {
		return
	}
	switch {
	case code == 250 && w.lastVerb == "DATA":
		w.errors = 0
	case code >= 400 && code != 421:
		w.errors++
		if w.errors >= w.srv.cfg.SMTP.ErrorLimit {
			w.setCloseAfter("421 4.7.0 Too many errors, closing the connection")
		}
	}
}

// reply answers a command that go-smtp never sees.
func (w *wireConn) reply(code int, enhanced, text string) {
	w.replyLine(fmt.Sprintf("%d %s %s", code, enhanced, text))
}

func (w *wireConn) replyLine(line string) {
	w.writeLine(line)
	w.countReply(line + "\r\n")
}

func (w *wireConn) writeLine(line string) {
	w.conn().SetWriteDeadline(time.Now().Add(w.srv.cfg.SMTP.CommandTimeout.D()))
	w.conn().Write([]byte(line + "\r\n"))
}

func (w *wireConn) setIdle(idle bool) {
	w.mu.Lock()
	w.idle = idle
	shut := w.shutdown
	w.mu.Unlock()
	if idle && shut {
		// Shutdown came while we were busy: do not wait for the client.
		w.conn().SetReadDeadline(time.Now())
	}
}

func (w *wireConn) isShutdown() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.shutdown
}

// beginShutdown ends the connection at the next command: at once if it is
// waiting for one, after the reply to the message in progress otherwise.
func (w *wireConn) beginShutdown() {
	w.mu.Lock()
	w.shutdown = true
	idle := w.idle
	w.mu.Unlock()
	// A recipient verification in progress gives up: the answer to its
	// RCPT is a 451, and the connection ends at the next command.
	w.kill()
	if idle {
		w.conn().SetReadDeadline(time.Now())
	}
}

func (w *wireConn) setCloseAfter(msg string) {
	w.mu.Lock()
	if w.closeAfter == "" {
		w.closeAfter = msg
	}
	w.mu.Unlock()
}

func (w *wireConn) takeCloseAfter() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := w.closeAfter
	w.closeAfter = ""
	return m
}

// Close closes the socket and gives back the connection slot, once.
func (w *wireConn) Close() error {
	var err error
	w.closeOnce.Do(func() {
		w.kill()
		c := w.conn()
		err = c.Close()
		if c != w.raw {
			w.raw.Close()
		}
		w.srv.forgetConn(w)
		if w.release != nil {
			w.release()
		}
	})
	return err
}

// printable makes client-supplied text safe for a reply or a log line.
func printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			b.WriteByte('?')
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// readDeadline returns t, or the end of the session if that comes first;
// a zero t (no deadline) becomes the end of the session. Every read
// deadline goes through it, so that no read outlives the session.
func (w *wireConn) readDeadline(t time.Time) time.Time {
	if t.IsZero() || t.After(w.sessionEnd) {
		return w.sessionEnd
	}
	return t
}

// commandContext is the context of a call made on the client's behalf
// while a command waits for its reply: it ends at smtp.command_timeout (or
// the end of the session, if sooner), when the connection closes or the
// server shuts down, and, through watchClient, when the client goes away.
// The returned function must be called before the command loop reads again.
func (w *wireConn) commandContext() (context.Context, func()) {
	ctx, cancel := context.WithDeadline(w.alive, w.readDeadline(time.Now().Add(w.srv.cfg.SMTP.CommandTimeout.D())))
	stop := w.watchClient(cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// watchClient cancels a call when the client disconnects while it runs.
// Nothing else reads from the connection then (the command's goroutine is
// in the call), so a watcher may: it peeks, which leaves pipelined commands
// where they are for the command loop, and stops at the first error; the
// end of the stream or a reset means the client is gone. The call's own
// deadline bounds the wait, so the watcher's reads have none; a client that
// has filled the read buffer with pipelined commands cannot be watched
// further, and the call then ends at that deadline. The returned stop
// function wakes the watcher (a read deadline in the past), waits for it,
// and puts back the read deadline go-smtp had set.
func (w *wireConn) watchClient(cancel context.CancelFunc) (stop func()) {
	br := w.br
	if br == nil {
		return func() {}
	}
	w.conn().SetReadDeadline(time.Time{})
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
				if !woken.Load() {
					cancel() // gone
				}
				return
			}
		}
	}()
	return func() {
		woken.Store(true)
		w.conn().SetReadDeadline(time.Now())
		<-done
		w.conn().SetReadDeadline(w.readDeadline(w.readDL))
	}
}

// sessionOver reports whether smtp.max_session_time has passed.
func (w *wireConn) sessionOver() bool {
	return !time.Now().Before(w.sessionEnd)
}

// sessionOverText is the text of the 421 4.4.2 that ends a session at
// smtp.max_session_time; during names what was cut short, if anything.
func (w *wireConn) sessionOverText(during string) string {
	return fmt.Sprintf("Session longer than the limit of %s%s, closing the connection", w.srv.cfg.SMTP.MaxSessionTime, during)
}

// conn returns the connection replies go to and commands come from.
func (w *wireConn) conn() net.Conn {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur
}

// The rest of net.Conn, for go-smtp.

func (w *wireConn) LocalAddr() net.Addr           { return w.raw.LocalAddr() }
func (w *wireConn) RemoteAddr() net.Addr          { return w.raw.RemoteAddr() }
func (w *wireConn) SetDeadline(t time.Time) error { return w.conn().SetDeadline(t) }
func (w *wireConn) SetReadDeadline(t time.Time) error {
	w.readDL = t
	err := w.conn().SetReadDeadline(w.readDeadline(t))
	if err != nil {
		w.releaseReader() // go-smtp ends the connection on this error
	}
	return err
}
func (w *wireConn) SetWriteDeadline(t time.Time) error { return w.conn().SetWriteDeadline(t) }
