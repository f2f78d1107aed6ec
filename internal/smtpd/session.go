package smtpd

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"smimegate/internal/smtp"
	"smimegate/internal/spool"
)

// maxReceived is the hop count beyond which a message is taken to be
// looping. RFC 5321 section 6.3 suggests at least 100; Postfix's
// hopcount_limit is 50. We take the RFC's figure: a gateway is one more
// hop than the MTAs around it expect.
const maxReceived = 100

// transaction is what MAIL begins and RSET, a greeting, STARTTLS or the
// end of a message forgets (RFC 5321 section 4.1.4).
type transaction struct {
	hasMail bool
	sender  string // the reverse-path as stored: canonical domain, "" for <>
	mail    mailParams
	rcpts   []spool.Recipient
	// envelopeBytes is what rcpts hold in memory, as recipientBytes counts
	// it, against the bound of charge.
	envelopeBytes int
	// bdat is the message BDAT chunks are arriving for, nil before the
	// first; bdatFailed is set once a BDAT of the transaction was refused,
	// after which every BDAT and DATA is refused until RSET (RFC 3030
	// section 3).
	bdat       *bdatMessage
	bdatFailed bool
	chunked    bool // a BDAT was seen: the message comes in chunks
}

// resetTx forgets the transaction, aborting a BDAT message in progress.
func (c *conn) resetTx() {
	if c.tx.bdat != nil {
		c.tx.bdat.in.Abort()
	}
	c.tx = transaction{}
}

// greet handles HELO and EHLO (RFC 5321 section 4.1.1.1).
func (c *conn) greet(verb, arg string) {
	h, _, _ := strings.Cut(strings.TrimSpace(arg), " ")
	if h == "" {
		c.reply(smtp.NewError(501, smtp.EnhancedCode{5, 5, 4}, verb+" needs the client's domain or address literal (RFC 5321 section 4.1.1.1)"))
		return
	}
	c.helo, c.greeted = h, true
	// RFC 5321 section 4.1.4: a greeting resets the state as RSET does.
	c.resetTx()
	if verb == "HELO" {
		c.reply(smtp.NewError(250, smtp.EnhancedCode{}, c.srv.cfg.Hostname))
		return
	}
	cfg := c.srv.cfg.SMTP
	lines := []string{
		c.srv.cfg.Hostname,
		"PIPELINING", // RFC 2920
		"SIZE " + strconv.FormatInt(cfg.MaxMessageBytes, 10), // RFC 1870
		"8BITMIME",            // RFC 6152
		"ENHANCEDSTATUSCODES", // RFC 2034
		"SMTPUTF8",            // RFC 6531
		"DSN",                 // RFC 3461
		"CHUNKING",            // RFC 3030
		"LIMITS RCPTMAX=" + strconv.Itoa(cfg.MaxRecipients), // RFC 9422
	}
	if c.srv.tlsConfig != nil && c.tlsState == nil {
		lines = append(lines, "STARTTLS") // RFC 3207
	}
	// BINARYMIME (RFC 3030 section 3) is not offered: a binary body has
	// bare CRs, LFs and NULs, which are what the strict readers refuse
	// (they are how SMTP smuggling works), the S/MIME sealing works on RFC
	// 5322 text, and a next hop without BINARYMIME would need the body
	// converted; 8BITMIME carries all the mail that is text.
	c.reply(smtp.NewError(250, smtp.EnhancedCode{}, strings.Join(lines, "\n")))
}

// mailParams are the MAIL parameters the receiver takes.
type mailParams struct {
	size  int64  // SIZE (RFC 1870), 0 if not given
	body  string // BODY (RFC 6152): "", "7BIT" or "8BITMIME"
	utf8  bool   // SMTPUTF8 (RFC 6531)
	ret   string // RET (RFC 3461): "", "FULL" or "HDRS"
	envID string // ENVID (RFC 3461), xtext-decoded
}

// maxEnvID is the longest ENVID, decoded: RFC 3461 section 4.4 says "100
// characters".
const maxEnvID = 100

// parseMailParams checks the ESMTP parameters of MAIL. RFC 5321 section
// 4.1.1.11: a parameter the server does not recognise, or did not offer,
// gets 555.
func (c *conn) parseMailParams(s string) (mailParams, *smtp.Error) {
	var mp mailParams
	params, err := smtp.ParseParams(s)
	if err != nil {
		return mp, smtp.NewError(501, smtp.EnhancedCode{5, 5, 4}, "Bad MAIL parameters: "+err.Error())
	}
	bad := func(what string) *smtp.Error {
		return smtp.NewError(501, smtp.EnhancedCode{5, 5, 4}, "Bad MAIL parameter: "+what)
	}
	for _, p := range params {
		switch p.Keyword {
		case "SIZE":
			n, err := strconv.ParseInt(p.Value, 10, 64)
			if err != nil || n < 0 || strings.TrimLeft(p.Value, "0123456789") != "" {
				return mp, bad("SIZE must be a number of octets (RFC 1870 section 6)")
			}
			if n > c.srv.cfg.SMTP.MaxMessageBytes {
				return mp, smtp.NewError(552, smtp.EnhancedCode{5, 3, 4}, fmt.Sprintf("Message size exceeds the limit of %d bytes", c.srv.cfg.SMTP.MaxMessageBytes))
			}
			mp.size = n
		case "BODY":
			switch v := strings.ToUpper(p.Value); v {
			case "7BIT", "8BITMIME":
				mp.body = v
			case "BINARYMIME":
				return mp, smtp.NewError(555, smtp.EnhancedCode{5, 5, 4}, "BODY=BINARYMIME is not offered here (RFC 3030 section 3); send 8BITMIME")
			default:
				return mp, bad("BODY must be 7BIT or 8BITMIME (RFC 6152)")
			}
		case "SMTPUTF8":
			if p.HasValue {
				return mp, bad("SMTPUTF8 takes no value (RFC 6531 section 3.4)")
			}
			mp.utf8 = true
		case "RET":
			switch v := strings.ToUpper(p.Value); v {
			case "FULL", "HDRS":
				mp.ret = v
			default:
				return mp, bad("RET must be FULL or HDRS (RFC 3461 section 4.3)")
			}
		case "ENVID":
			v, err := smtp.DecodeXtext(p.Value)
			if err != nil || v == "" || len(v) > maxEnvID || !printableASCII(v) {
				return mp, bad(fmt.Sprintf("ENVID must be xtext of printable ASCII, at most %d characters (RFC 3461 section 4.4)", maxEnvID))
			}
			mp.envID = v
		default:
			return mp, smtp.NewError(555, smtp.EnhancedCode{5, 5, 4}, fmt.Sprintf("MAIL parameter %s is not offered here", smtp.Printable(p.Keyword)))
		}
	}
	return mp, nil
}

// rcptParams are the RCPT parameters of RFC 3461 section 4.
type rcptParams struct {
	notify []string
	orcpt  string
}

func parseRcptParams(s string) (rcptParams, *smtp.Error) {
	var rp rcptParams
	params, err := smtp.ParseParams(s)
	if err != nil {
		return rp, smtp.NewError(501, smtp.EnhancedCode{5, 5, 4}, "Bad RCPT parameters: "+err.Error())
	}
	bad := func(what string) *smtp.Error {
		return smtp.NewError(501, smtp.EnhancedCode{5, 5, 4}, "Bad RCPT parameter: "+what)
	}
	for _, p := range params {
		switch p.Keyword {
		case "NOTIFY":
			n, ok := notifyValues(p.Value)
			if !ok {
				return rp, bad("NOTIFY must be NEVER, or a list of SUCCESS, FAILURE and DELAY (RFC 3461 section 4.1)")
			}
			rp.notify = n
		case "ORCPT":
			if !validORcpt(p.Value) {
				return rp, bad("ORCPT must be addr-type;xtext (RFC 3461 section 4.2)")
			}
			// A copy: the value is a piece of the command line, which it
			// would otherwise keep in memory whole for as long as the
			// transaction.
			rp.orcpt = strings.Clone(p.Value)
		default:
			return rp, smtp.NewError(555, smtp.EnhancedCode{5, 5, 4}, fmt.Sprintf("RCPT parameter %s is not offered here", smtp.Printable(p.Keyword)))
		}
	}
	return rp, nil
}

// notifyValues parses NOTIFY (RFC 3461 section 4.1): NEVER alone, or each
// of SUCCESS, FAILURE and DELAY at most once, as constants rather than
// pieces of the command line.
func notifyValues(v string) ([]string, bool) {
	var out []string
	for n := range strings.SplitSeq(v, ",") {
		var k string
		switch strings.ToUpper(n) {
		case "NEVER":
			k = "NEVER"
		case "SUCCESS":
			k = "SUCCESS"
		case "FAILURE":
			k = "FAILURE"
		case "DELAY":
			k = "DELAY"
		default:
			return nil, false
		}
		for _, o := range out {
			if o == k {
				return nil, false
			}
		}
		out = append(out, k)
	}
	for _, o := range out {
		if o == "NEVER" && len(out) > 1 {
			return nil, false
		}
	}
	return out, true
}

// validORcpt checks ORCPT's form (RFC 3461 section 4.2): an addr-type
// atom, ";", and the address as xtext ("rfc822") or as RFC 6533's
// utf-8-addr ("utf-8", whose \x{...} forms are printable ASCII too); it is
// stored as written, to be passed on as written. RFC 3461's 500
// characters bind the client; the command line and the envelope's memory
// bound (charge) are what bound it here, as before.
func validORcpt(v string) bool {
	typ, addr, ok := strings.Cut(v, ";")
	if !ok || typ == "" || addr == "" {
		return false
	}
	for i := 0; i < len(typ); i++ {
		c := typ[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	if strings.EqualFold(typ, "rfc822") {
		_, err := smtp.DecodeXtext(addr)
		return err == nil
	}
	return true
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

// mail handles MAIL FROM (RFC 5321 section 4.1.1.2).
func (c *conn) mail(arg string) {
	switch {
	case c.helo == "" && c.tlsState != nil:
		c.reply(smtp.NewError(503, smtp.EnhancedCode{5, 5, 1}, "Send EHLO first: STARTTLS discarded the earlier greeting (RFC 3207 section 4.2)"))
		return
	case c.helo == "":
		c.reply(smtp.NewError(503, smtp.EnhancedCode{5, 5, 1}, "Send HELO or EHLO first (RFC 5321 section 4.1.4)"))
		return
	case c.tx.hasMail:
		c.reply(smtp.NewError(503, smtp.EnhancedCode{5, 5, 1}, "Nested MAIL command"))
		return
	}
	rest, ok := smtp.CutPrefixFold(arg, "FROM:")
	if !ok {
		c.reply(smtp.NewError(501, smtp.EnhancedCode{5, 5, 2}, "Syntax: MAIL FROM:<address> [parameters]"))
		return
	}
	p, err := smtp.ParsePath(rest, true)
	if err != nil {
		c.reply(smtp.NewError(501, smtp.EnhancedCode{5, 1, 7}, "Bad sender address syntax: "+err.Error()))
		return
	}
	mp, e := c.parseMailParams(p.Params)
	if e != nil {
		c.reply(e)
		return
	}
	if p.UTF8 && !mp.utf8 {
		c.reply(smtp.NewError(553, smtp.EnhancedCode{5, 6, 7}, "Sender address: "+smtp.ErrNeedUTF8.Error()))
		return
	}
	// The null sender and an address literal have no domain to
	// canonicalise; either is a foreign sender to the policy. Any other
	// domain must have the one form every later stage compares.
	sender := p.Mailbox()
	if !p.Null && !p.Literal {
		d, err := smtp.CanonicalDomain(p.Domain)
		if err != nil {
			c.srv.log.Info("smtpd: sender refused", "client", c.client.String(), "trusted", c.trusted,
				"sender", smtp.Printable(p.Mailbox()), "err", err)
			c.reply(smtp.NewError(553, smtp.EnhancedCode{5, 1, 7}, "Sender address rejected: "+invalidDomain(p.Domain, err)))
			return
		}
		sender = p.Local + "@" + d
	}
	if err := p.CheckSyntax(mp.utf8); err != nil {
		c.reply(smtp.NewError(501, smtp.EnhancedCode{5, 1, 7}, "Bad sender address syntax: "+err.Error()))
		return
	}
	c.tx = transaction{hasMail: true, sender: sender, mail: mp}
	c.replyRaw(250, replySenderOK)
}

// invalidDomain is the reason given for a domain that has no canonical
// form: the domain as the client wrote it, and which rule it breaks.
func invalidDomain(d string, err error) string {
	if errors.Is(err, smtp.ErrNumericDomain) {
		return fmt.Sprintf("domain %s is not a valid domain name: %v", smtp.Printable(d), smtp.ErrNumericDomain)
	}
	return fmt.Sprintf("domain %s is not a valid IDNA domain name (RFC 5891)", smtp.Printable(d))
}

// errLiteralRecipient refuses an address literal as a recipient from every
// client: the policy is decided by the recipient's domain (draft section
// 5), and an IP address has none, so whatever we did with it would be a
// guess: sealed for nobody, or sent in the clear past the policy.
var errLiteralRecipient = smtp.NewError(553, smtp.EnhancedCode{5, 1, 3}, "Recipient address rejected: a domain-encryption gateway cannot apply policy to an address literal")

// rcpt handles RCPT TO (RFC 5321 section 4.1.1.3) and is where relay
// control happens.
func (c *conn) rcpt(arg string) {
	if !c.tx.hasMail {
		c.reply(smtp.NewError(503, smtp.EnhancedCode{5, 5, 1}, "Send MAIL first"))
		return
	}
	if c.tx.bdat != nil || c.tx.bdatFailed {
		c.reply(smtp.NewError(503, smtp.EnhancedCode{5, 5, 1}, "RCPT after BDAT: the recipients are complete once the message has begun (RFC 3030 section 3)"))
		return
	}
	rest, ok := smtp.CutPrefixFold(arg, "TO:")
	if !ok {
		c.reply(smtp.NewError(501, smtp.EnhancedCode{5, 5, 2}, "Syntax: RCPT TO:<address> [parameters]"))
		return
	}
	if e := c.recipient(rest); e != nil {
		c.refuseRcpt(rest, e)
		return
	}
	c.replyRaw(250, replyRcptOK)
}

// recipient checks one forward-path and adds it to the transaction, or
// returns the refusal.
func (c *conn) recipient(arg string) *smtp.Error {
	cfg := c.srv.cfg
	p, err := smtp.ParsePath(arg, false)
	if err != nil {
		return smtp.NewError(501, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax: "+err.Error())
	}
	if len(c.tx.rcpts) >= cfg.SMTP.MaxRecipients {
		return smtp.NewError(452, smtp.EnhancedCode{4, 5, 3}, fmt.Sprintf("Too many recipients: at most %d per transaction", cfg.SMTP.MaxRecipients))
	}
	rp, e := parseRcptParams(p.Params)
	if e != nil {
		return e
	}
	if p.Postmaster {
		// RFC 5321 section 4.5.1: postmaster without a domain reaches
		// postmaster at the first local domain, as Postfix appends
		// $myorigin.
		if len(cfg.LocalDomains) == 0 {
			return smtp.NewError(550, smtp.EnhancedCode{5, 1, 1}, "No local domain to take mail for <Postmaster>")
		}
		p.Domain = cfg.LocalDomains[0]
	}
	if p.Literal {
		return errLiteralRecipient
	}
	if !c.trusted {
		if trick := p.RoutingTrick(); trick != "" {
			return smtp.NewError(554, smtp.EnhancedCode{5, 7, 1}, "Relay access denied ("+trick+")")
		}
	}
	if p.UTF8 && !c.tx.mail.utf8 {
		return smtp.NewError(553, smtp.EnhancedCode{5, 6, 7}, "Recipient address: "+smtp.ErrNeedUTF8.Error())
	}
	// Every client, trusted or not: a domain without a canonical form
	// would reach the policy as a string that matches no partner and no
	// local domain, and so leave unsealed.
	domain, err := smtp.CanonicalDomain(p.Domain)
	if err != nil {
		c.srv.log.Info("smtpd: recipient domain has no canonical form", "client", c.client.String(), "rcpt", smtp.Printable(p.Mailbox()), "err", err)
		return smtp.NewError(553, smtp.EnhancedCode{5, 1, 3}, "Recipient address rejected: "+invalidDomain(p.Domain, err))
	}
	if err := p.CheckSyntax(c.tx.mail.utf8); err != nil {
		return smtp.NewError(501, smtp.EnhancedCode{5, 1, 3}, "Bad recipient address syntax: "+err.Error())
	}
	local := cfg.IsLocal(domain)
	if !c.trusted && !local {
		return smtp.NewError(554, smtp.EnhancedCode{5, 7, 1}, "Relay access denied")
	}
	// The address as it is stored and passed on: the local part as
	// written (RFC 5321 section 2.4: only the receiving host may interpret
	// it) and the canonical domain. A source route, which a trusted client
	// may still send, is left out: RFC 5321 section 4.1.1.3 says servers
	// SHOULD ignore it.
	r := spool.Recipient{Addr: p.Local + "@" + domain, Notify: rp.notify, ORcpt: rp.orcpt}
	if e := c.charge(r); e != nil {
		return e
	}
	if local && c.srv.opts.VerifyRecipient != nil && !isPostmaster(p) {
		if e := c.verify(r.Addr); e != nil {
			c.tx.envelopeBytes -= recipientBytes(r)
			return e
		}
	}
	c.tx.rcpts = append(c.tx.rcpts, r)
	return nil
}

// bytesPerRecipient is what one recipient may hold in memory on average
// over a transaction, so that smtp.max_recipients times it bounds the
// envelope. An address within RFC 5321's limits (a path of at most 256
// octets, section 4.5.3.1.3), an ORCPT of the same length and the
// bookkeeping take under 1 KiB, so every envelope the standard allows
// fits; without the bound, max_recipients recipients with 2 KB command
// lines each could make one session hold several megabytes.
const bytesPerRecipient = 1 << 10

// recipientOverhead is the memory of a recipient beyond its strings: the
// spool.Recipient, the string and slice headers.
const recipientOverhead = 128

func recipientBytes(r spool.Recipient) int {
	// The address counts twice, as it did when the receiver's library
	// kept a copy of its own: the bound stays what operators know.
	n := 2*len(r.Addr) + len(r.ORcpt) + recipientOverhead
	for _, v := range r.Notify {
		n += len(v)
	}
	return n
}

// charge counts a recipient against the transaction's memory bound; over
// it the recipient is refused as one too many (RFC 5321 section
// 4.5.3.1.10: 452, and the client sends the rest in another transaction).
func (c *conn) charge(r spool.Recipient) *smtp.Error {
	limit := c.srv.cfg.SMTP.MaxRecipients * bytesPerRecipient
	n := recipientBytes(r)
	if c.tx.envelopeBytes+n > limit {
		return smtp.NewError(452, smtp.EnhancedCode{4, 5, 3}, fmt.Sprintf("Too many recipients: together they would take more than %d bytes (%d recipients of %d bytes on average)", limit, c.srv.cfg.SMTP.MaxRecipients, bytesPerRecipient))
	}
	c.tx.envelopeBytes += n
	return nil
}

// isPostmaster reports whether a recipient is postmaster, which RFC 5321
// section 4.5.1 requires at every domain we serve ("MUST be supported"),
// case-insensitively: it is never refused as unknown.
func isPostmaster(p smtp.Path) bool {
	return p.Postmaster || strings.EqualFold(p.Unquote, "postmaster")
}

// verify asks Options.VerifyRecipient about addr, under the command's
// context, and turns its answer into the RCPT reply: nil to accept.
func (c *conn) verify(addr string) *smtp.Error {
	// The call may take a while: the replies held back go out first, for
	// a pipelining client may wait for them before it sends more (RFC
	// 2920 section 3.1).
	c.flush()
	ctx, done := c.commandContext()
	defer done()
	err := c.srv.opts.VerifyRecipient(ctx, addr)
	if err == nil {
		return nil
	}
	if rej, ok := asReply(err); ok && rej.Code >= 400 && rej.Code <= 599 {
		// The text may come from the internal server's reply: one line,
		// and an enhanced code of the reply's class (RFC 3463 section 2).
		enhanced := rej.Enhanced
		if enhanced[0] != rej.Code/100 {
			enhanced = smtp.EnhancedCode{rej.Code / 100, 0, 0}
		}
		return smtp.NewError(rej.Code, enhanced, smtp.Printable(rej.Message))
	}
	// Anything else, a reply that would read as success included, is a
	// failure to verify: the client is to try again, never to take the
	// recipient as accepted.
	c.srv.log.Warn("smtpd: recipient verification failed", "client", c.client.String(), "rcpt", addr, "err", err)
	return smtp.NewError(451, smtp.EnhancedCode{4, 3, 0}, "Recipient address verification failed temporarily, try again later")
}

func (c *conn) refuseRcpt(arg string, e *smtp.Error) {
	c.srv.log.Info("smtpd: recipient refused", "client", c.client.String(), "trusted", c.trusted,
		"sender", c.tx.sender, "rcpt", smtp.Printable(strings.TrimSpace(arg)), "reply", e.Error())
	c.reply(e)
}

// begin starts a message in the spool for DATA or the first BDAT chunk,
// with our Received field on top.
func (c *conn) begin(start time.Time) (*spool.Incoming, *smtp.Error) {
	var in *spool.Incoming
	if mem := c.srv.inMemory(); mem > 0 {
		in = c.srv.sp.NewMessageInMemory(mem)
	} else {
		var err error
		if in, err = c.srv.sp.NewMessage(); err != nil {
			c.srv.log.Error("smtpd: cannot start a message in the spool", "err", err)
			return nil, c.logResult("", 0, storageError(err))
		}
	}
	in.Write(c.received(in.ID, start))
	return in, nil
}

// messageLimits are the bounds of one message, DATA or BDAT.
func (c *conn) messageLimits() smtp.Limits {
	cfg := c.srv.cfg.SMTP
	return smtp.Limits{MaxBytes: cfg.MaxMessageBytes, MaxLine: cfg.MaxLineLength, MaxHeader: cfg.MaxHeaderBytes, MaxReceived: maxReceived}
}

// data handles DATA (RFC 5321 section 4.1.1.4): the message is read
// strictly (smtp.DotReader), checked, and committed or handed off; only
// then is the 250 sent.
func (c *conn) data(arg string) {
	switch {
	case arg != "":
		c.reply(smtp.NewError(501, smtp.EnhancedCode{5, 5, 4}, "DATA takes no argument"))
		return
	case !c.tx.hasMail:
		// RFC 5321 section 3.3: with no MAIL, or no RCPT accepted, DATA
		// gets 503 or 554.
		c.reply(smtp.NewError(503, smtp.EnhancedCode{5, 5, 1}, "Send MAIL first"))
		return
	case c.tx.bdat != nil || c.tx.bdatFailed:
		c.reply(smtp.NewError(503, smtp.EnhancedCode{5, 5, 1}, "DATA after BDAT in the same transaction (RFC 3030 section 3); send RSET"))
		return
	case len(c.tx.rcpts) == 0:
		c.reply(smtp.NewError(554, smtp.EnhancedCode{5, 5, 1}, "No valid recipients"))
		return
	}
	start := time.Now()
	in, e := c.begin(start)
	if e != nil {
		c.reply(e)
		c.resetTx()
		return
	}
	defer in.Abort()
	c.replyRaw(354, replyGoAhead)
	if c.flush() != nil {
		c.quit = true
		return
	}
	dr := &smtp.DotReader{R: c.br, Dst: in, Lim: c.messageLimits(), BeforeFill: c.dataDeadline(start)}
	reject, writeErr, netErr := dr.Read()
	var reply *smtp.Error
	switch {
	case netErr != nil:
		reply = c.cut(in.ID, dr.Total, "DATA", netErr)
	case reject != nil:
		reply = c.logResult(in.ID, dr.Size, reject)
	case writeErr != nil:
		c.srv.log.Error("smtpd: writing to the spool failed", "id", in.ID, "err", writeErr)
		reply = c.logResult(in.ID, dr.Size, storageError(writeErr))
	default:
		reply = c.finish(in, start)
	}
	c.reply(reply)
	c.resetTx()
	c.flush()
}

// cut is the reply to a message cut short by the network: a timeout
// (command_timeout, min_data_rate or the session's end) or the client gone.
// The session ends with it.
func (c *conn) cut(id string, size int64, verb string, netErr error) *smtp.Error {
	c.quit = true
	if isTimeout(netErr) {
		if c.sessionOver() {
			// The message was cut short: it is not accepted (in is
			// aborted), and the client learns why.
			return c.logResult(id, size, smtp.NewError(421, smtp.EnhancedCode{4, 4, 2}, c.sessionOverText(" during "+verb+"; the message was not accepted")))
		}
		return c.logResult(id, size, smtp.NewError(421, smtp.EnhancedCode{4, 4, 2}, fmt.Sprintf("Timeout or data slower than %d bytes/s, closing the connection", c.srv.cfg.SMTP.MinDataRate)))
	}
	c.logResult(id, size, smtp.NewError(421, smtp.EnhancedCode{4, 4, 2}, "Connection lost during "+verb+": "+netErr.Error()))
	return smtp.NewError(421, smtp.EnhancedCode{4, 4, 2}, "Connection error")
}

// finish runs the Checker on the complete message and commits it, or hands
// it to Options.Handoff, and returns the reply: a 250 only once one of them
// has taken it. DATA and BDAT LAST both end here, with the same envelope.
func (c *conn) finish(in *spool.Incoming, start time.Time) *smtp.Error {
	// The check and the commit may take a while (an fsync, a relay-first
	// attempt): the replies held back go out first (RFC 2920 section 3.1).
	c.flush()
	srv := c.srv
	env := &spool.Envelope{
		ID:         in.ID,
		Sender:     c.tx.sender,
		Recipients: c.tx.rcpts,
		RET:        c.tx.mail.ret,
		EnvID:      c.tx.mail.envID,
		SMTPUTF8:   c.tx.mail.utf8,
		Body:       c.tx.mail.body,
		Client:     c.client.String(),
		Helo:       smtp.Printable(c.helo),
		Trusted:    c.trusted,
		TLS:        c.tlsState != nil,
		Arrival:    start.UTC(),
		Size:       in.Size(),
		Stage:      spool.StageReceived,
	}
	if srv.opts.Check != nil {
		if err := srv.opts.Check(env); err != nil {
			if rej, ok := asRefusal(err); ok {
				return c.logResult(in.ID, in.Size(), rej)
			}
			srv.log.Error("smtpd: message check failed", "id", in.ID, "err", err)
			return c.logResult(in.ID, in.Size(), smtp.NewError(451, smtp.EnhancedCode{4, 3, 0}, "Temporary failure checking the message, try again later"))
		}
	}
	if srv.opts.Handoff != nil {
		if err := srv.opts.Handoff(env, in); err != nil {
			if rej, ok := asRefusal(err); ok {
				return c.logResult(in.ID, env.Size, rej)
			}
			srv.log.Error("smtpd: handing the message over failed", "id", in.ID, "err", err)
			return c.logResult(in.ID, env.Size, storageError(err))
		}
	} else {
		if err := in.Commit(env); err != nil {
			srv.log.Error("smtpd: committing to the spool failed", "id", in.ID, "err", err)
			return c.logResult(in.ID, in.Size(), storageError(err))
		}
		if srv.opts.OnQueued != nil {
			srv.opts.OnQueued(in.ID)
		}
	}
	c.lim.delivered()
	// The 250 carries the queue id, as Postfix's does.
	return c.logResult(in.ID, env.Size, smtp.NewError(250, smtp.EnhancedCode{2, 0, 0}, "OK queued as "+in.ID))
}

// asRefusal returns err as the reply it carries if that is a refusal, a
// 4xx or a 5xx. An *smtp.Error with any other code from a hook that has
// not taken the message (a 250 from a Checker, say) is no refusal and no
// acceptance either: the caller answers it as a failure, never with the
// hook's 2xx, which would tell the client a message nobody stored was
// taken.
func asRefusal(err error) (*smtp.Error, bool) {
	rej, ok := asReply(err)
	if !ok || !rej.Temporary() && !rej.Permanent() {
		return nil, false
	}
	return rej, true
}

// storageError is the reply when the spool cannot take the message: never
// a 250, and a 4xx so the client tries again (RFC 3463: 4.3.1 is "mail
// system full").
func storageError(err error) *smtp.Error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EFBIG) {
		return smtp.NewError(452, smtp.EnhancedCode{4, 3, 1}, "Insufficient system storage, try again later")
	}
	return smtp.NewError(451, smtp.EnhancedCode{4, 3, 0}, "Local error in processing, try again later")
}

// dataDeadline returns the function that moves the read deadline while a
// message comes in (DATA, and each BDAT chunk). As with Postfix's
// smtpd_min_data_rate, each byte received buys 1/min_data_rate seconds on
// top of the command timeout, and no single read may wait longer than the
// command timeout: a client that trickles its message is dropped. No read
// waits past the end of the session. Replies held back are flushed first:
// the client may be waiting for them (RFC 2920 section 3.1).
func (c *conn) dataDeadline(start time.Time) func(int64) error {
	timeout := c.srv.cfg.SMTP.CommandTimeout.D()
	rate := int64(c.srv.cfg.SMTP.MinDataRate)
	return func(total int64) error {
		if err := c.flush(); err != nil {
			return err
		}
		now := time.Now()
		deadline := now.Add(timeout)
		if rate > 0 {
			earned := start.Add(timeout + time.Duration(total*int64(time.Second)/rate))
			if earned.Before(deadline) {
				deadline = earned
			}
		}
		return c.nc.SetReadDeadline(c.readDeadline(deadline))
	}
}

// logResult writes the one line per transaction and returns e.
func (c *conn) logResult(id string, size int64, e *smtp.Error) *smtp.Error {
	// The recipients as fmt would print the slice, "[a b]", built without
	// fmt: formatting slices through reflection was a tenth of the
	// relay's CPU in the log lines.
	var rcpts strings.Builder
	rcpts.WriteByte('[')
	for i, r := range c.tx.rcpts {
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
	verb := "DATA"
	if c.tx.chunked {
		verb = "BDAT"
	}
	c.srv.log.Info(what,
		"id", id, "client", c.client.String(), "trusted", c.trusted, "tls", c.tlsState != nil,
		"sender", c.tx.sender, "rcpts", rcpts.String(), "size", size, "verb", verb,
		"reply", e.Error())
	return e
}
