package courier

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"

	"smimegate/internal/smtp"
)

// Deliver carries m to the next hop of r and returns one Result per
// recipient, in the order of m.Recipients. It never returns early without
// a result: whatever goes wrong becomes a Deferred or Failed result that
// says why.
//
// Recipients are sent in transactions of at most
// Config.MaxRecipientsPerTransaction, one after the other on the same
// connection. The whole call ends by m.FinishBy when that is set.
func (c *Courier) Deliver(ctx context.Context, r Route, m *Message) []Result {
	results := make([]Result, len(m.Recipients))
	if len(results) == 0 {
		return results
	}
	if r.TLS == TLSDefault {
		r.TLS = c.cfg.TLS
	}
	for i, rc := range m.Recipients {
		results[i] = Result{Rcpt: rc.Addr, TLS: "none"}
	}
	d := &delivery{c: c, route: r, msg: m, results: results, key: poolKey(r), finish: ctx}
	if !m.FinishBy.IsZero() {
		var cancel context.CancelFunc
		d.finish, cancel = context.WithDeadlineCause(ctx, m.FinishBy, errTooSlow)
		defer cancel()
	}
	d.start = d.finish
	if !m.StartBy.IsZero() {
		var cancel context.CancelFunc
		d.start, cancel = context.WithDeadlineCause(d.finish, m.StartBy, errTooSlow)
		defer cancel()
	}

	var todo []int
	if !safeAddress(m.From) {
		d.fill(all(len(results)), localFailure(Failed, smtp.EnhancedCode{5, 1, 7}, "bad sender address syntax"))
		return results
	}
	for i, rc := range m.Recipients {
		if rc.Addr == "" || !safeAddress(rc.Addr) {
			d.fill([]int{i}, localFailure(Failed, smtp.EnhancedCode{5, 1, 3}, "bad recipient address syntax"))
			continue
		}
		todo = append(todo, i)
	}
	for len(todo) > 0 {
		n := min(len(todo), c.cfg.MaxRecipientsPerTransaction)
		if f := d.batch(todo[:n]); f != nil {
			// No session could be had: the rest of the recipients would
			// only meet the same hosts (and their timeouts) again.
			d.fill(todo[n:], f)
			break
		}
		todo = todo[n:]
	}
	return results
}

// delivery is the state of one Deliver (or Verify) call: the targets are
// resolved once, when the first batch needs a new connection.
type delivery struct {
	c        *Courier
	route    Route
	msg      *Message
	results  []Result
	key      string
	targets  []target
	resolved bool
	// finish is the context of the whole attempt: the caller's, or the
	// caller's with Message.FinishBy as deadline. start is the context up
	// to the content: finish, or finish with Message.StartBy as deadline.
	// The content itself and the reply to it run under finish.
	start, finish context.Context
	// probe: a Verify, which logs as a recipient verification.
	probe bool
}

func poolKey(r Route) string {
	if r.NextHop == "mx" {
		return "mx:" + strings.ToLower(r.Domain) + "|" + r.TLS.String()
	}
	return r.NextHop + "|" + r.TLS.String()
}

func all(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// safeAddress refuses what would break the command line or smuggle a
// second command into it; the receiver already checked the syntax, this is
// the last line of defence.
func safeAddress(a string) bool {
	return !strings.ContainsAny(a, "\r\n<> \t\x00") && len(a) <= 512
}

// batch runs one transaction for the recipients idx. It returns the
// failure when no session could be had at all.
func (d *delivery) batch(idx []int) *failure {
	c := d.c
	for {
		s, f := d.session(d.start, idx)
		if f != nil {
			d.fill(idx, f)
			return f
		}
		reusable, stale := d.transaction(s, idx)
		c.pool.release(s, reusable && d.finish.Err() == nil && !s.conn.aborted.Load(), c.cfg.MaxReuseTime)
		if !stale {
			return nil
		}
		// The reused connection had been closed by the server while it
		// waited: nothing of this transaction reached it. Its idle
		// siblings most likely went the same way (a restart); drop them
		// and go again, which dials afresh.
		c.pool.dropIdle(d.key)
	}
}

// session takes an idle connection to the destination, or dials one.
func (d *delivery) session(ctx context.Context, idx []int) (*session, *failure) {
	c := d.c
	if ctx.Err() != nil {
		// FinishBy or StartBy passed during an earlier transaction: the
		// time of the attempt is up, and nothing is dialled.
		return nil, localFailure(Deferred, smtp.EnhancedCode{4, 4, 2}, "%s was not tried: %v", d.hopName(), cause(ctx))
	}
	for {
		s, err := c.pool.acquire(ctx, d.key)
		if err != nil {
			if errors.Is(err, errClosed) {
				return nil, localFailure(Deferred, smtp.EnhancedCode{4, 3, 2}, "courier is shutting down")
			}
			return nil, localFailure(Deferred, smtp.EnhancedCode{4, 4, 7}, "no connection slot for %s before the attempt ended: %v", d.hopName(), cause(ctx))
		}
		if s == nil {
			break
		}
		if ok, _ := s.ext("PIPELINING"); ok {
			// RFC 2920: the RSET travels with the next transaction's
			// commands, and a dead connection shows there (stale).
			s.needReset = true
			return s, nil
		}
		stop := abortOn(ctx, s.conn)
		err = s.reset()
		stop()
		if err == nil {
			return s, nil
		}
		// The server dropped the idle connection: not a failure of this
		// message, just dial afresh.
		c.pool.release(s, false, 0)
	}
	if !d.resolved {
		t, err := c.targets(ctx, d.route)
		if err != nil {
			c.pool.unreserve(d.key)
			if ctx.Err() != nil {
				return nil, localFailure(Deferred, smtp.EnhancedCode{4, 4, 3}, "looking up the next hop %s did not finish: %v", d.hopName(), cause(ctx))
			}
			var he *hopError
			if errors.As(err, &he) {
				return nil, localFailure(he.status, he.enhanced, "%s", he.text)
			}
			return nil, localFailure(Deferred, smtp.EnhancedCode{4, 4, 3}, "%v", err)
		}
		d.targets, d.resolved = t, true
	}
	s, f := c.connect(ctx, d.route.TLS, d.targets, func(t target, f *failure) {
		text := f.text()
		if f.step != "" {
			text += " (in reply to " + f.step + ")"
		}
		d.log(d.rcpts(idx), t.host+"["+t.addr+"]", "none", text, "next host")
	})
	if f != nil {
		c.pool.unreserve(d.key)
		return nil, f
	}
	s.key = d.key
	return s, nil
}

// hopName is the next hop as the operator configured it, for messages.
func (d *delivery) hopName() string {
	if d.route.NextHop == "mx" {
		return "MX of " + d.route.Domain
	}
	return d.route.NextHop
}

func (d *delivery) rcpts(idx []int) []string {
	out := make([]string, len(idx))
	for i, j := range idx {
		out[i] = d.msg.Recipients[j].Addr
	}
	return out
}

// fill gives every recipient in idx the same outcome, logs it once, and
// is used when no transaction took place.
func (d *delivery) fill(idx []int, f *failure) {
	if len(idx) == 0 {
		return // nothing left to report (and no empty log line)
	}
	for _, i := range idx {
		res := &d.results[i]
		res.Status, res.Reply, res.Remote, res.Enhanced = f.status, f.reply, f.remote, f.enhanced
		if f.answered {
			res.Host, res.HostName = f.target.addr, f.target.host
		}
	}
	hop := d.route.NextHop
	if f.target.addr != "" {
		hop = f.target.host + "[" + f.target.addr + "]"
	}
	text := f.text()
	if f.step != "" {
		text += " (in reply to " + f.step + ")"
	}
	d.log(d.rcpts(idx), hop, "none", text, f.status.String())
}

// log writes the one line per delivery attempt (or verification).
func (d *delivery) log(rcpts []string, hop, tlsDesc, reply, outcome string, extra ...slog.Attr) {
	if d.probe {
		d.c.logProbe(rcpts[0], hop, tlsDesc, reply, outcome)
		return
	}
	d.c.logAttempt(d.msg, rcpts, hop, tlsDesc, reply, outcome, extra...)
}

// logAttempt writes the one line per delivery attempt: never the message
// content, only the envelope and the server's words.
func (c *Courier) logAttempt(m *Message, rcpts []string, hop, tlsDesc, reply, outcome string, extra ...slog.Attr) {
	level := slog.LevelInfo
	if outcome == "failed" {
		level = slog.LevelWarn
	}
	if !c.log.Enabled(context.Background(), level) {
		return
	}
	// LogAttrs, not Log: the attributes need no boxing into []any, and
	// the line is written once per attempt.
	attrs := make([]slog.Attr, 0, 7+len(extra))
	attrs = append(attrs,
		slog.String("queue_id", m.ID),
		slog.String("from", m.From),
		slog.String("rcpts", "["+strings.Join(rcpts, " ")+"]"), // as fmt prints it, without fmt's reflection
		slog.String("next_hop", hop),
		slog.String("tls", tlsDesc),
		slog.String("reply", reply),
		slog.String("outcome", outcome))
	attrs = append(attrs, extra...)
	c.log.LogAttrs(context.Background(), level, "delivery attempt", attrs...)
}

// probeOutcomes names a verification's outcomes in its log line, where
// "delivered" would mislead.
var probeOutcomes = map[string]string{"delivered": "accepted", "failed": "refused"}

// logProbe writes the one line per verification: the address and the
// server's words, never more.
func (c *Courier) logProbe(rcpt, hop, tlsDesc, reply, outcome string) {
	if o, ok := probeOutcomes[outcome]; ok {
		outcome = o
	}
	c.log.LogAttrs(context.Background(), slog.LevelInfo, "recipient verification",
		slog.String("rcpt", rcpt),
		slog.String("next_hop", hop),
		slog.String("tls", tlsDesc),
		slog.String("reply", reply),
		slog.String("outcome", outcome))
}

// transaction runs MAIL, RCPT, DATA for the recipients idx on s and fills
// their results. It reports whether s is fit for another transaction.
// stale means that s, a reused connection, turned out to be closed before
// anything of the transaction reached the server: no result is set and
// nothing is logged, and the caller tries again on another connection.
func (d *delivery) transaction(s *session, idx []int) (reusable, stale bool) {
	c, m := d.c, d.msg
	// Up to the content, d.start may cut the connection; from the content
	// on, only d.finish.
	stop := abortOn(d.start, s.conn)
	defer func() { stop() }()
	toContent := func() {
		if d.start != d.finish {
			stop()
			stop = abortOn(d.finish, s.conn)
		}
	}
	t := newTally(d, s, idx)
	defer func() {
		if !stale {
			t.log()
		}
	}()

	// RFC 6531 section 3.4: without SMTPUTF8 at the server, a message
	// that needs it cannot go there. A recipient whose own address is
	// UTF-8 fails alone; a UTF-8 sender or header fails them all.
	utf8OK, _ := s.ext("SMTPUTF8")
	msgNeedsUTF8 := m.SMTPUTF8 || !isASCII(m.From)
	needUTF8 := msgNeedsUTF8
	var send []int
	for _, i := range idx {
		addr := m.Recipients[i].Addr
		if !utf8OK && (msgNeedsUTF8 || !isASCII(addr)) {
			t.set(i, localFailure(Failed, smtp.EnhancedCode{5, 6, 7}, "SMTPUTF8 is required, but was not offered by host %s[%s]", s.target.host, s.target.addr))
			continue
		}
		needUTF8 = needUTF8 || !isASCII(addr)
		send = append(send, i)
	}
	if len(send) == 0 {
		return true, false
	}
	// Content in memory goes with BDAT (RFC 3030) when the server offers
	// CHUNKING and PIPELINING and the content is already what DATA would
	// deliver (CRLF lines, a final CRLF): the whole transaction is then
	// one write and one round trip.
	var content []byte
	var body io.Reader
	if m.Data != nil {
		body = bytes.NewReader(m.Data)
		chunking, _ := s.ext("CHUNKING")
		pipelining, _ := s.ext("PIPELINING")
		if chunking && pipelining && crlfClean(m.Data) {
			content = m.Data
		}
	} else {
		if m.Open == nil {
			t.setAll(send, localFailure(Deferred, smtp.EnhancedCode{4, 3, 0}, "the queued message has no content to send"))
			return true, false
		}
		rc, err := m.Open()
		if err != nil {
			t.setAll(send, localFailure(Deferred, smtp.EnhancedCode{4, 3, 0}, "cannot read the queued message: %v", err))
			return true, false
		}
		defer rc.Close()
		body = rc
		// A spool file knows its size: announce it (MAIL ... SIZE=).
		if sz, ok := rc.(interface{ Size() int64 }); ok && m.Size == 0 {
			m.Size = sz.Size()
		}
	}
	// RFC 1870 section 6: a message larger than the announced SIZE would
	// be refused after it was sent; say so now.
	if limit := s.sizeLimit(); limit > 0 && m.Size > limit {
		t.setAll(send, localFailure(Failed, smtp.EnhancedCode{5, 3, 4}, "message size %d exceeds size limit %d of server %s[%s]", m.Size, limit, s.target.host, s.target.addr))
		return true, false
	}
	if content != nil {
		// The content leaves with the envelope: StartBy ends here.
		toContent()
	}

	accepted, final, reusable, proceed, stale := d.envelope(s, t, send, needUTF8, content)
	if !proceed {
		return reusable, stale
	}
	if content != nil {
		t.delivered(accepted, final)
		return true, false
	}
	toContent()
	w := smtp.NewDotWriter(s.bw)
	buf := copyBuffers.Get().(*[]byte)
	s.conn.pace(c.cfg.MinDataRate)
	_, err := io.CopyBuffer(w, taggedReader{body}, *buf)
	copyBuffers.Put(buf)
	if err != nil {
		s.conn.unpace()
		// A transaction cannot be taken back once DATA began (RFC 5321
		// section 4.1.1.4): close the connection without the final dot.
		_ = s.conn.Close()
		if d.finish.Err() != nil || s.conn.aborted.Load() || !isLocalReadError(err) {
			t.setAll(accepted, s.lost("sending message content", err, false))
		} else {
			t.setAll(accepted, localFailure(Deferred, smtp.EnhancedCode{4, 3, 0}, "cannot read the queued message: %v", err))
		}
		return false, false
	}
	err = w.Close()
	s.conn.unpace()
	if err != nil {
		t.setAll(accepted, s.lost("sending end of data", err, false))
		return false, false
	}
	s.conn.asked()
	r, _, err := s.readReply(c.cfg.DataDoneTimeout)
	if err != nil {
		// RFC 5321 section 4.1.1.4 and RFC 1047: the dot left us and no
		// reply came (in time). The server may have the message; we must
		// try again anyway, and say that a duplicate is possible.
		f := s.lost("waiting for the reply to end of data", err, false)
		f.reply.Message += " (the message may have been delivered: a duplicate is possible)"
		f.dup = s.conn.lastWriteOK
		t.setAll(accepted, f)
		return false, false
	}
	if !r.Positive() {
		t.reply(accepted, r, "end of data")
		return true, false
	}
	t.delivered(accepted, r)
	return true, false
}

// readErr marks errors that came from reading the queued message rather
// than from writing to the server.
type readErr struct{ err error }

func (e *readErr) Error() string { return e.err.Error() }
func (e *readErr) Unwrap() error { return e.err }

func isLocalReadError(err error) bool {
	var re *readErr
	return errors.As(err, &re)
}

// taggedReader marks the errors of the queued message's reader, so that a
// broken spool file is not mistaken for a broken connection.
type taggedReader struct{ r io.Reader }

func (t taggedReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && err != io.EOF {
		err = &readErr{err}
	}
	return n, err
}

// copyBuffers recycles the buffers that carry message content to the
// server: one 32 KiB buffer per transaction was a sixth of the relay's
// allocations.
var copyBuffers = sync.Pool{New: func() any {
	b := make([]byte, 32<<10)
	return &b
}}

// crlfClean reports whether b is made of CRLF-terminated lines only: no
// bare CR or LF, and a final CRLF. Such content is sent by BDAT as it is;
// anything else goes through DATA, whose dot-writer repairs line ends.
func crlfClean(b []byte) bool {
	if !bytes.HasSuffix(b, []byte("\r\n")) {
		return false
	}
	lines := 0
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			break
		}
		j += i
		if j == 0 || b[j-1] != '\r' {
			return false
		}
		lines++
		i = j + 1
	}
	// Every LF has its CR; any other CR is a bare one.
	return bytes.Count(b, []byte{'\r'}) == lines
}
