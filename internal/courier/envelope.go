package courier

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"smimegate/internal/smtp"
)

// envelope runs MAIL FROM, the RCPT TOs and DATA for the recipients send.
// With PIPELINING (RFC 2920) the whole group leaves in one write and the
// replies are read in order afterwards, which saves a round trip per
// recipient; without it each command waits for its reply, and the group
// stops at a refused MAIL or when no recipient was accepted.
//
// proceed is true when the server answered DATA with 354 and accepted
// holds the recipients the content goes to; otherwise every recipient of
// send has its result, and reusable says whether the session may carry
// another transaction.
//
// On a reused session that needs its RSET (session.needReset), the RSET
// leads the pipelined group; when not even its reply comes back, the
// server had closed the connection and nothing reached it: stale, with no
// result set.
//
// With content (CHUNKING, RFC 3030), the group ends in "BDAT n LAST" and
// the content itself, all in one write: then proceed means the server
// accepted the message for accepted, and final is its reply to BDAT. A
// connection lost after that write may have delivered the message, so
// those results say a duplicate is possible.
func (d *delivery) envelope(s *session, t *tally, send []int, needUTF8 bool, content []byte) (accepted []int, final *smtp.Error, reusable, proceed, stale bool) {
	m := d.msg
	cmds := []string{"MAIL FROM:<" + m.From + ">" + d.mailParams(s, needUTF8)}
	expect := []int{2}
	dsn, _ := s.ext("DSN")
	for _, i := range send {
		cmds = append(cmds, "RCPT TO:<"+m.Recipients[i].Addr+">"+rcptParams(m.Recipients[i], dsn))
		expect = append(expect, 2)
	}
	// RFC 2920 section 3.1: DATA may end a pipelined group; RFC 3030
	// section 4.2: BDAT may be pipelined, its data following it.
	last, lastExpect := "DATA", 3
	if content != nil {
		last, lastExpect = "BDAT "+strconv.Itoa(len(content))+" LAST", 2
	}
	cmds = append(cmds, last)
	expect = append(expect, lastExpect)
	dataAt := len(cmds) - 1

	pipelined, _ := s.ext("PIPELINING")
	reset := s.needReset && pipelined
	s.needReset = false
	if reset {
		cmds = append([]string{"RSET"}, cmds...)
		expect = append([]int{2}, expect...)
	}
	answers, err := s.exchange(cmds, expect, pipelined, content, d.c.cfg.DataDoneTimeout, func(done []answer) bool {
		if !done[0].ok {
			return false // MAIL refused: no RCPT, no DATA
		}
		if len(done) == dataAt {
			for _, a := range done[1:] {
				if a.ok {
					return true
				}
			}
			return false // nobody accepted: no DATA
		}
		return true
	})
	if reset {
		if len(answers) == 0 || (!answers[0].ok && len(answers) == 1 && err != nil) {
			// No reply even to RSET (or its last words, a 421): the
			// connection was dead before this transaction.
			return nil, nil, false, false, true
		}
		answers = answers[1:] // RSET's own reply says nothing of the transaction
	}
	// Once the content has left, a lost connection may have delivered it.
	sentContent := content != nil && s.conn.lastWriteOK
	lostAt := func(step string) *failure {
		f := s.lost(step, err, false)
		if sentContent {
			f.reply.Message += " (the message may have been delivered: a duplicate is possible)"
			f.dup = true
		}
		return f
	}
	// dataStarted is a pipelined DATA that a broken server answered with
	// 354 although nothing can follow: only closing the connection ends
	// that transaction cleanly.
	dataStarted := len(answers) > dataAt && answers[dataAt].ok

	if len(answers) == 0 {
		t.setAll(send, lostAt("sending MAIL FROM"))
		return nil, nil, false, false, false
	}
	if !answers[0].ok {
		t.reply(send, answers[0].r, "MAIL FROM")
		return nil, nil, err == nil && !dataStarted, false, false
	}
	var unanswered []int
	for k, i := range send {
		switch {
		case k+1 >= len(answers):
			unanswered = append(unanswered, i)
		case answers[k+1].ok:
			accepted = append(accepted, i)
		default:
			t.reply([]int{i}, answers[k+1].r, "RCPT TO")
		}
	}
	if err != nil && len(unanswered) > 0 {
		t.setAll(append(accepted, unanswered...), lostAt("sending RCPT TO"))
		return nil, nil, false, false, false
	}
	if len(accepted) == 0 {
		// Nothing to send; the next user of the session sends RSET.
		return nil, nil, err == nil && !dataStarted, false, false
	}
	if len(answers) <= dataAt {
		t.setAll(accepted, lostAt("sending DATA"))
		return nil, nil, false, false, false
	}
	if !answers[dataAt].ok {
		t.reply(accepted, answers[dataAt].r, last)
		return nil, nil, err == nil, false, false
	}
	return accepted, answers[dataAt].r, true, true, false
}

// mailParams are the MAIL FROM parameters: RFC 6152 BODY, RFC 1870 SIZE,
// RFC 6531 SMTPUTF8, RFC 3461 RET and ENVID.
func (d *delivery) mailParams(s *session, needUTF8 bool) string {
	m := d.msg
	var p strings.Builder
	// Without 8BITMIME at the server an 8-bit body still goes unchanged:
	// the draft asks that mail be relayed unaltered (draft-ramsdell-enc-smime-gateway-00 section 5.2:
	// "Any other message SHOULD be relayed unaltered"), which rules out
	// a conversion to quoted-printable, and bouncing mail for it would be
	// worse than what every current MTA accepts.
	if ok, _ := s.ext("8BITMIME"); ok && m.EightBit {
		p.WriteString(" BODY=8BITMIME")
	}
	if ok, _ := s.ext("SIZE"); ok && m.Size > 0 {
		fmt.Fprintf(&p, " SIZE=%d", m.Size)
	}
	if needUTF8 {
		p.WriteString(" SMTPUTF8")
	}
	if ok, _ := s.ext("DSN"); ok {
		if ret := strings.ToUpper(m.RET); ret == "FULL" || ret == "HDRS" {
			p.WriteString(" RET=" + ret)
		}
		if m.EnvID != "" && isASCII(m.EnvID) && len(m.EnvID) <= 100 {
			p.WriteString(" ENVID=" + smtp.EncodeXtext(m.EnvID))
		}
	}
	return p.String()
}

// rcptParams are the RFC 3461 RCPT TO parameters, when the server offers
// DSN.
func rcptParams(rc Rcpt, dsn bool) string {
	if !dsn {
		return ""
	}
	var p strings.Builder
	if v := notifyParam(rc.Notify); v != "" {
		p.WriteString(" " + v)
	}
	if v := orcptParam(rc.ORcpt); v != "" {
		p.WriteString(" " + v)
	}
	return p.String()
}

// answer is one reply of a command group; ok says it had the expected
// class.
type answer struct {
	r  *smtp.Error
	ok bool
}

// exchange sends cmds and reads one reply for each. Pipelined, the group
// goes out in one write; otherwise each command waits for the previous
// reply, and more (given the answers so far) may end the group early. Each
// reply must arrive whole within the command timeout of the moment the
// courier begins to wait for it; the last one, with content, within final
// (the reply to BDAT LAST is the reply to the end of data). A network
// failure returns the answers read before it.
func (s *session) exchange(cmds []string, expect []int, pipelined bool, content []byte, final time.Duration, more func(done []answer) bool) ([]answer, error) {
	timeout := func(i int) time.Duration {
		if content != nil && i == len(cmds)-1 {
			return final
		}
		return s.timeout
	}
	var out []answer
	if pipelined {
		if content != nil {
			s.conn.pace(s.minRate)
			defer s.conn.unpace()
		}
		for _, c := range cmds {
			s.bw.WriteString(c)
			if _, err := s.bw.WriteString("\r\n"); err != nil {
				// bufio.Writer keeps its first error: this is it.
				return nil, err
			}
		}
		if _, err := s.bw.Write(content); err != nil {
			return nil, err
		}
		if err := s.send(); err != nil {
			return nil, err
		}
		s.conn.unpace()
		for i := range cmds {
			a, err := s.read(expect[i], timeout(i))
			if err != nil {
				return out, err
			}
			out = append(out, a)
		}
		return out, nil
	}
	for i, c := range cmds {
		if i > 0 && !more(out) {
			break
		}
		if err := s.send(c); err != nil {
			return out, err
		}
		a, err := s.read(expect[i], timeout(i))
		if err != nil {
			return out, err
		}
		out = append(out, a)
	}
	return out, nil
}

// read reads one reply within timeout; a reply of another class than
// expect is an answer that is not ok, not an error.
func (s *session) read(expect int, timeout time.Duration) (answer, error) {
	r, _, err := s.readReply(timeout)
	if err != nil {
		return answer{}, err
	}
	return answer{r: r, ok: r.Code/100 == expect}, nil
}
