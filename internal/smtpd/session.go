package smtpd

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"smimegate/internal/spool"
)

// maxReceived is the hop count beyond which a message is taken to be
// looping. RFC 5321 section 6.3 suggests at least 100; Postfix's
// hopcount_limit is 50. We take the RFC's figure: a gateway is one more
// hop than the MTAs around it expect.
const maxReceived = 100

// session is one SMTP session: go-smtp calls it for MAIL, RCPT and DATA.
// Every decision that needs the raw command line (routing tricks that
// go-smtp's parser would hide, ORCPT as given) uses wireConn.lastLine.
type session struct {
	srv     *Server
	w       *wireConn
	trusted bool

	hasMail  bool
	sender   string // the reverse-path as stored: canonical domain, "" for <>
	mailOpts smtp.MailOptions
	rcpts    []spool.Recipient
	// envelopeBytes is what rcpts hold in memory, as recipientBytes counts
	// it, against the bound of charge.
	envelopeBytes int
}

func (s *Server) newSession(c *smtp.Conn) (smtp.Session, error) {
	w, ok := c.Conn().(*wireConn)
	if !ok {
		return nil, errors.New("smtpd: connection was not accepted through Serve")
	}
	sess := &session{srv: s, w: w, trusted: s.trusted(w.client.Addr())}
	s.mu.Lock()
	s.conns[w] = sess
	s.mu.Unlock()
	return sess, nil
}

func smtpErr(code int, enhanced [3]int, msg string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode(enhanced), Message: msg}
}

// argOf returns what follows "VERB FROM:" / "VERB TO:" in the raw line.
func argOf(line, prefix string) (string, bool) {
	if len(line) < 5+len(prefix) || !strings.EqualFold(line[5:5+len(prefix)], prefix) {
		return "", false
	}
	return line[5+len(prefix):], true
}

// Mail handles MAIL FROM (RFC 5321 section 4.1.1.2).
func (s *session) Mail(_ string, opts *smtp.MailOptions) error {
	if s.w.tlsState != nil && s.w.helo == "" {
		return smtpErr(503, [3]int{5, 5, 1}, "Send EHLO first: STARTTLS discarded the earlier greeting (RFC 3207 section 4.2)")
	}
	if s.hasMail {
		return smtpErr(503, [3]int{5, 5, 1}, "Nested MAIL command")
	}
	arg, _ := argOf(s.w.lastLine, "FROM:")
	p, err := parsePath(arg, true)
	if err != nil {
		return smtpErr(501, [3]int{5, 1, 7}, "Bad sender address syntax: "+err.Error())
	}
	if p.UTF8 && !opts.UTF8 {
		return smtpErr(553, [3]int{5, 6, 7}, "Sender address: "+errNeedUTF8.Error())
	}
	// The null sender and an address literal have no domain to
	// canonicalise; either is a foreign sender to the policy. Any other
	// domain must have the one form every later stage compares.
	sender := p.Mailbox()
	if !p.Null && !p.Literal {
		d, err := canonicalDomain(p.Domain)
		if err != nil {
			s.srv.log.Info("smtpd: sender refused", "client", s.w.client.String(), "trusted", s.trusted,
				"sender", printable(p.Mailbox()), "err", err)
			return smtpErr(553, [3]int{5, 1, 7}, "Sender address rejected: "+invalidDomain(p.Domain, err))
		}
		sender = p.Local + "@" + d
	}
	if err := p.checkSyntax(opts.UTF8); err != nil {
		return smtpErr(501, [3]int{5, 1, 7}, "Bad sender address syntax: "+err.Error())
	}
	s.sender, s.mailOpts, s.hasMail = sender, *opts, true
	s.rcpts, s.envelopeBytes = nil, 0
	return nil
}

// invalidDomain is the reason given for a domain that has no canonical
// form: the domain as the client wrote it, and which rule it breaks.
func invalidDomain(d string, err error) string {
	if errors.Is(err, errNumericDomain) {
		return fmt.Sprintf("domain %s is not a valid domain name: %v", printable(d), err)
	}
	return fmt.Sprintf("domain %s is not a valid IDNA domain name (RFC 5891)", printable(d))
}

// errLiteralRecipient refuses an address literal as a recipient from every
// client: the policy is decided by the recipient's domain (draft section
// 5), and an IP address has none, so whatever we did with it would be a
// guess: sealed for nobody, or sent in the clear past the policy.
var errLiteralRecipient = smtpErr(553, [3]int{5, 1, 3}, "Recipient address rejected: a domain-encryption gateway cannot apply policy to an address literal")

// Rcpt handles RCPT TO (RFC 5321 section 4.1.1.3) and is where relay
// control happens.
func (s *session) Rcpt(_ string, opts *smtp.RcptOptions) error {
	if !s.hasMail {
		return smtpErr(503, [3]int{5, 5, 1}, "Send MAIL first")
	}
	arg, _ := argOf(s.w.lastLine, "TO:")
	p, err := parsePath(arg, false)
	if err != nil {
		return s.refuseRcpt(arg, smtpErr(501, [3]int{5, 1, 3}, "Bad recipient address syntax: "+err.Error()))
	}
	if p.Literal {
		return s.refuseRcpt(arg, errLiteralRecipient)
	}
	if !s.trusted {
		if trick := p.routingTrick(); trick != "" {
			return s.refuseRcpt(arg, smtpErr(554, [3]int{5, 7, 1}, "Relay access denied ("+trick+")"))
		}
	}
	if p.UTF8 && !s.mailOpts.UTF8 {
		return s.refuseRcpt(arg, smtpErr(553, [3]int{5, 6, 7}, "Recipient address: "+errNeedUTF8.Error()))
	}
	// Every client, trusted or not: a domain without a canonical form
	// would reach the policy as a string that matches no partner and no
	// local domain, and so leave unsealed.
	domain, err := canonicalDomain(p.Domain)
	if err != nil {
		s.srv.log.Info("smtpd: recipient domain has no canonical form", "client", s.w.client.String(), "rcpt", printable(p.Mailbox()), "err", err)
		return s.refuseRcpt(arg, smtpErr(553, [3]int{5, 1, 3}, "Recipient address rejected: "+invalidDomain(p.Domain, err)))
	}
	if err := p.checkSyntax(s.mailOpts.UTF8); err != nil {
		return s.refuseRcpt(arg, smtpErr(501, [3]int{5, 1, 3}, "Bad recipient address syntax: "+err.Error()))
	}
	local := s.srv.cfg.IsLocal(domain)
	if !s.trusted && !local {
		return s.refuseRcpt(arg, smtpErr(554, [3]int{5, 7, 1}, "Relay access denied"))
	}
	// The address as it is stored and passed on: the local part as
	// written (RFC 5321 section 2.4: only the receiving host may interpret
	// it) and the canonical domain. A source route, which a trusted client
	// may still send, is left out: RFC 5321 section 4.1.1.3 says servers
	// SHOULD ignore it.
	r := spool.Recipient{Addr: p.Local + "@" + domain}
	for _, n := range opts.Notify {
		r.Notify = append(r.Notify, notifyValue(n))
	}
	// A copy: the value is a piece of the command line, which it would
	// otherwise keep in memory whole for as long as the transaction.
	r.ORcpt = strings.Clone(paramValue(p.Params, "ORCPT"))
	if e := s.charge(r); e != nil {
		return s.refuseRcpt(arg, e)
	}
	if local && s.srv.opts.VerifyRecipient != nil && !isPostmaster(p) {
		if e := s.verify(r.Addr); e != nil {
			s.envelopeBytes -= recipientBytes(r)
			return s.refuseRcpt(arg, e)
		}
	}
	s.rcpts = append(s.rcpts, r)
	return nil
}

// bytesPerRecipient is what one recipient may hold in memory on average
// over a transaction, so that smtp.max_recipients times it bounds the
// envelope. An address within RFC 5321's limits (a path of at most 256
// octets, section 4.5.3.1.3) held twice (go-smtp keeps its own copy), an
// ORCPT of the same length and the bookkeeping take under 1 KiB, so every
// envelope the standard allows fits; without the bound, max_recipients
// recipients with 2 KB command lines each could make one session hold
// several megabytes.
const bytesPerRecipient = 1 << 10

// recipientOverhead is the memory of a recipient beyond its strings: the
// spool.Recipient, the string and slice headers, go-smtp's slice entry.
const recipientOverhead = 128

func recipientBytes(r spool.Recipient) int {
	n := 2*len(r.Addr) + len(r.ORcpt) + recipientOverhead
	for _, v := range r.Notify {
		n += len(v)
	}
	return n
}

// charge counts a recipient against the transaction's memory bound; over
// it the recipient is refused as one too many (RFC 5321 section
// 4.5.3.1.10: 452, and the client sends the rest in another transaction).
func (s *session) charge(r spool.Recipient) *smtp.SMTPError {
	limit := s.srv.cfg.SMTP.MaxRecipients * bytesPerRecipient
	n := recipientBytes(r)
	if s.envelopeBytes+n > limit {
		return smtpErr(452, [3]int{4, 5, 3}, fmt.Sprintf("Too many recipients: together they would take more than %d bytes (%d recipients of %d bytes on average)", limit, s.srv.cfg.SMTP.MaxRecipients, bytesPerRecipient))
	}
	s.envelopeBytes += n
	return nil
}

// notifyValue is a NOTIFY value (RFC 3461 section 4.1) as a constant, not
// as a piece of the command line that would keep the whole line alive.
func notifyValue(n smtp.DSNNotify) string {
	switch n {
	case smtp.DSNNotifyNever:
		return "NEVER"
	case smtp.DSNNotifySuccess:
		return "SUCCESS"
	case smtp.DSNNotifyFailure:
		return "FAILURE"
	case smtp.DSNNotifyDelayed:
		return "DELAY"
	}
	return strings.Clone(string(n))
}

// isPostmaster reports whether a recipient is postmaster, which RFC 5321
// section 4.5.1 requires at every domain we serve ("MUST be supported"),
// case-insensitively: it is never refused as unknown.
func isPostmaster(p path) bool {
	return strings.EqualFold(p.Unquote, "postmaster")
}

// verify asks Options.VerifyRecipient about addr, under the command's
// context, and turns its answer into the RCPT reply: nil to accept.
func (s *session) verify(addr string) *smtp.SMTPError {
	ctx, done := s.w.commandContext()
	defer done()
	err := s.srv.opts.VerifyRecipient(ctx, addr)
	if err == nil {
		return nil
	}
	var rej *Reject
	if errors.As(err, &rej) && rej.Code >= 400 && rej.Code <= 599 {
		// The text may come from the internal server's reply: one line,
		// and an enhanced code of the reply's class (RFC 3463 section 2).
		enhanced := rej.Enhanced
		if enhanced[0] != rej.Code/100 {
			enhanced = [3]int{rej.Code / 100, 0, 0}
		}
		return smtpErr(rej.Code, enhanced, printable(rej.Message))
	}
	// Anything else, a Reject that would read as success included, is a
	// failure to verify: the client is to try again, never to take the
	// recipient as accepted.
	s.srv.log.Warn("smtpd: recipient verification failed", "client", s.w.client.String(), "rcpt", addr, "err", err)
	return smtpErr(451, [3]int{4, 3, 0}, "Recipient address verification failed temporarily, try again later")
}

func (s *session) refuseRcpt(arg string, e *smtp.SMTPError) error {
	sender := "<>"
	if s.hasMail {
		sender = s.sender
	}
	s.srv.log.Info("smtpd: recipient refused", "client", s.w.client.String(), "trusted", s.trusted,
		"sender", sender, "rcpt", printable(strings.TrimSpace(arg)), "reply", fmt.Sprintf("%d %d.%d.%d %s", e.Code, e.EnhancedCode[0], e.EnhancedCode[1], e.EnhancedCode[2], e.Message))
	return e
}

// paramValue returns the raw value of an ESMTP parameter, "" if absent.
func paramValue(params, key string) string {
	for _, f := range strings.Fields(params) {
		k, v, _ := strings.Cut(f, "=")
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return ""
}

// Data reads the message strictly, runs the Checker and commits it to the
// spool; only then is the 250 sent.
func (s *session) Data(r io.Reader) error {
	reply := s.data()
	// The DATA stream has been read here, from the connection; go-smtp's
	// own reader gets an empty message so that it, too, is done.
	s.w.eod = true
	io.Copy(io.Discard, r)
	return reply
}

func (s *session) data() *smtp.SMTPError {
	srv := s.srv
	cfg := srv.cfg.SMTP
	start := time.Now()
	if !s.hasMail || len(s.rcpts) == 0 {
		s.discardData()
		return smtpErr(503, [3]int{5, 5, 1}, "No valid recipients")
	}
	var in *spool.Incoming
	if mem := srv.inMemory(); mem > 0 {
		in = srv.sp.NewMessageInMemory(mem)
	} else {
		var err error
		if in, err = srv.sp.NewMessage(); err != nil {
			srv.log.Error("smtpd: cannot start a message in the spool", "err", err)
			s.discardData()
			return s.logResult("", 0, storageError(err))
		}
	}
	defer in.Abort()
	in.Write(s.received(in.ID, start))

	dr := &dataReader{
		br:  s.w.br,
		dst: in,
		lim: dataLimits{maxBytes: cfg.MaxMessageBytes, maxLine: cfg.MaxLineLength, maxHeader: cfg.MaxHeaderBytes, maxReceived: maxReceived},
	}
	dr.beforeFill = s.dataDeadline(start)
	reject, writeErr, netErr := dr.readData()
	s.w.conn().SetReadDeadline(s.w.readDeadline(time.Time{}))
	switch {
	case netErr != nil:
		var ne interface{ Timeout() bool }
		if errors.As(netErr, &ne) && ne.Timeout() {
			s.w.ended = true
			if s.w.sessionOver() {
				// The message was cut short: it is not accepted (in is
				// aborted), and the client learns why.
				text := s.w.sessionOverText(" during DATA; the message was not accepted")
				return s.logResult(in.ID, dr.size, smtpErr(421, [3]int{4, 4, 2}, text))
			}
			return s.logResult(in.ID, dr.size, smtpErr(421, [3]int{4, 4, 2}, fmt.Sprintf("Timeout or data slower than %d bytes/s, closing the connection", cfg.MinDataRate)))
		}
		s.w.ended = true
		s.logResult(in.ID, dr.size, smtpErr(421, [3]int{4, 4, 2}, "Connection lost during DATA: "+netErr.Error()))
		return smtpErr(421, [3]int{4, 4, 2}, "Connection error")
	case reject != nil:
		return s.logResult(in.ID, dr.size, smtpErr(reject.code, reject.enhanced, reject.msg))
	case writeErr != nil:
		srv.log.Error("smtpd: writing to the spool failed", "id", in.ID, "err", writeErr)
		return s.logResult(in.ID, dr.size, storageError(writeErr))
	}

	env := &spool.Envelope{
		ID:         in.ID,
		Sender:     s.sender,
		Recipients: s.rcpts,
		RET:        string(s.mailOpts.Return),
		EnvID:      s.mailOpts.EnvelopeID,
		SMTPUTF8:   s.mailOpts.UTF8,
		Body:       string(s.mailOpts.Body),
		Client:     s.w.client.String(),
		Helo:       printable(s.w.helo),
		Trusted:    s.trusted,
		TLS:        s.w.tlsState != nil,
		Arrival:    start.UTC(),
		Size:       in.Size(),
		Stage:      spool.StageReceived,
	}
	if srv.opts.Check != nil {
		if err := srv.opts.Check(env); err != nil {
			var rej *Reject
			if errors.As(err, &rej) {
				return s.logResult(in.ID, in.Size(), smtpErr(rej.Code, rej.Enhanced, rej.Message))
			}
			srv.log.Error("smtpd: message check failed", "id", in.ID, "err", err)
			return s.logResult(in.ID, in.Size(), smtpErr(451, [3]int{4, 3, 0}, "Temporary failure checking the message, try again later"))
		}
	}
	if srv.opts.Handoff != nil {
		if err := srv.opts.Handoff(env, in); err != nil {
			var rej *Reject
			if errors.As(err, &rej) {
				return s.logResult(in.ID, env.Size, smtpErr(rej.Code, rej.Enhanced, rej.Message))
			}
			srv.log.Error("smtpd: handing the message over failed", "id", in.ID, "err", err)
			return s.logResult(in.ID, env.Size, storageError(err))
		}
	} else {
		if err := in.Commit(env); err != nil {
			srv.log.Error("smtpd: committing to the spool failed", "id", in.ID, "err", err)
			return s.logResult(in.ID, in.Size(), storageError(err))
		}
		if srv.opts.OnQueued != nil {
			srv.opts.OnQueued(in.ID)
		}
	}
	// go-smtp sends an *SMTPError's code as it is, so a 250 can carry the
	// queue id, as Postfix's does.
	return s.logResult(in.ID, env.Size, smtpErr(250, [3]int{2, 0, 0}, "OK queued as "+in.ID))
}

// storageError is the reply when the spool cannot take the message: never
// a 250, and a 4xx so the client tries again (RFC 3463: 4.3.1 is "mail
// system full").
func storageError(err error) *smtp.SMTPError {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EFBIG) {
		return smtpErr(452, [3]int{4, 3, 1}, "Insufficient system storage, try again later")
	}
	return smtpErr(451, [3]int{4, 3, 0}, "Local error in processing, try again later")
}

// dataDeadline returns the function that moves the read deadline during
// DATA. As with Postfix's smtpd_min_data_rate, each byte received buys
// 1/min_data_rate seconds on top of the command timeout, and no single
// read may wait longer than the command timeout: a client that trickles
// its message is dropped. No read waits past the end of the session.
func (s *session) dataDeadline(start time.Time) func(int64) error {
	timeout := s.srv.cfg.SMTP.CommandTimeout.D()
	rate := int64(s.srv.cfg.SMTP.MinDataRate)
	return func(total int64) error {
		now := time.Now()
		deadline := now.Add(timeout)
		if rate > 0 {
			earned := start.Add(timeout + time.Duration(total*int64(time.Second)/rate))
			if earned.Before(deadline) {
				deadline = earned
			}
		}
		return s.w.conn().SetReadDeadline(s.w.readDeadline(deadline))
	}
}

// discardData reads a DATA stream to its end when there is nothing to store
// it in, so that the dialogue stays in step.
func (s *session) discardData() {
	dr := &dataReader{br: s.w.br, dst: io.Discard, lim: dataLimits{maxBytes: 1 << 62, maxLine: 1 << 30, maxHeader: 1 << 30, maxReceived: 1 << 30}}
	dr.beforeFill = s.dataDeadline(time.Now())
	if _, _, err := dr.readData(); err != nil {
		s.w.ended = true
	}
	s.w.conn().SetReadDeadline(s.w.readDeadline(time.Time{}))
}

// logResult writes the one line per transaction and returns e.
func (s *session) logResult(id string, size int64, e *smtp.SMTPError) *smtp.SMTPError {
	// The recipients as fmt would print the slice, "[a b]", built without
	// fmt: formatting slices through reflection was a tenth of the
	// relay's CPU in the log lines.
	var rcpts strings.Builder
	rcpts.WriteByte('[')
	for i, r := range s.rcpts {
		if i > 0 {
			rcpts.WriteByte(' ')
		}
		rcpts.WriteString(r.Addr)
	}
	rcpts.WriteByte(']')
	what := "smtpd: message accepted"
	if e.Code >= 400 {
		what = "smtpd: message refused"
	}
	s.srv.log.Info(what,
		"id", id, "client", s.w.client.String(), "trusted", s.trusted, "tls", s.w.tlsState != nil,
		"sender", s.sender, "rcpts", rcpts.String(), "size", size,
		"reply", replyText(e))
	return e
}

// replyText is the reply as the client sees it, "250 2.0.0 OK ...".
func replyText(e *smtp.SMTPError) string {
	b := make([]byte, 0, 16+len(e.Message))
	b = strconv.AppendInt(b, int64(e.Code), 10)
	for i, n := range e.EnhancedCode {
		if i == 0 {
			b = append(b, ' ')
		} else {
			b = append(b, '.')
		}
		b = strconv.AppendInt(b, int64(n), 10)
	}
	b = append(b, ' ')
	return string(append(b, e.Message...))
}

// forget drops the transaction and the greeting after STARTTLS.
func (s *session) forget() {
	s.Reset()
}

// Reset handles RSET, a new EHLO and the end of a transaction.
func (s *session) Reset() {
	s.hasMail = false
	s.sender = ""
	s.mailOpts = smtp.MailOptions{}
	s.rcpts, s.envelopeBytes = nil, 0
}

// Logout is called when the connection ends.
func (s *session) Logout() error { return nil }
