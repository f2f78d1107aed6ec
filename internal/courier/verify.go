package courier

import (
	"context"

	"smimegate/internal/smtp"
)

// Verify asks the next hop of route whether it would accept addr as a
// recipient, as Postfix's verify(8) service probes: EHLO (and STARTTLS as
// route.TLS demands), MAIL FROM:<>, RCPT TO:<addr>, then RSET. It never
// sends DATA, so nothing is delivered.
//
// The Result is for addr:
//
//   - Delivered: RCPT got a 2xx, the next hop accepts the recipient;
//   - Failed: RCPT got a 5xx (a 550 5.1.1 for an unknown user), or addr is
//     not an address the courier would send (5.1.3), or it needs SMTPUTF8
//     that the next hop does not offer (5.6.7);
//   - Deferred: RCPT got a 4xx, or no answer came: the next hop could not
//     be reached, did not answer in time, or spoke no SMTP. A refused
//     MAIL FROM:<> is Deferred as well, with the class of its code made
//     4: RFC 5321 section 4.5.5 requires servers to take the null sender,
//     so a refusal says the hop is misconfigured, not that the recipient
//     is unknown.
//
// Code, Enhanced, Reply, Host, HostName and TLS are as for Deliver;
// MaybeDuplicate is never set.
//
// The probe shares the courier's pool: it takes an idle connection to the
// destination when there is one, else a slot within MaxConnections and
// MaxPerDestination (waiting for one counts against its time), and leaves
// the connection reusable after its RSET. The whole probe, the wait for a
// slot, DNS, connect, TLS and every reply included, ends by ctx's deadline
// and at most Config.CommandTimeout after it began.
func (c *Courier) Verify(ctx context.Context, route Route, addr string) Result {
	if route.TLS == TLSDefault {
		route.TLS = c.cfg.TLS
	}
	results := []Result{{Rcpt: addr, TLS: "none"}}
	ctx, cancel := context.WithTimeoutCause(ctx, c.cfg.CommandTimeout, errTooSlow)
	defer cancel()
	d := &delivery{c: c, route: route, msg: &Message{Recipients: []Rcpt{{Addr: addr}}}, results: results,
		key: poolKey(route), start: ctx, finish: ctx, probe: true}
	if addr == "" || !safeAddress(addr) {
		d.fill([]int{0}, localFailure(Failed, smtp.EnhancedCode{5, 1, 3}, "bad recipient address syntax"))
		return results[0]
	}
	for {
		s, f := d.session(ctx, []int{0})
		if f != nil {
			d.fill([]int{0}, f)
			return results[0]
		}
		reusable, stale := d.probeOn(s)
		c.pool.release(s, reusable && ctx.Err() == nil && !s.conn.aborted.Load(), c.cfg.MaxReuseTime)
		if !stale {
			return results[0]
		}
		// As in batch: a reused connection the server had closed.
		c.pool.dropIdle(d.key)
	}
}

// probeOn runs MAIL FROM:<>, RCPT TO and RSET on s, pipelined when the
// server allows, and sets the one result. It reports whether s may be
// reused, and stale as transaction does.
func (d *delivery) probeOn(s *session) (reusable, stale bool) {
	stop := abortOn(d.finish, s.conn)
	defer stop()
	t := newTally(d, s, []int{0})
	defer func() {
		if !stale {
			t.log()
		}
	}()
	addr := d.msg.Recipients[0].Addr
	mail := "MAIL FROM:<>"
	if !isASCII(addr) {
		// RFC 6531 section 3.4, as for a delivery.
		if ok, _ := s.ext("SMTPUTF8"); !ok {
			t.set(0, localFailure(Failed, smtp.EnhancedCode{5, 6, 7}, "SMTPUTF8 is required, but was not offered by host %s[%s]", s.target.host, s.target.addr))
			return true, false
		}
		mail += " SMTPUTF8"
	}
	cmds := []string{mail, "RCPT TO:<" + addr + ">", "RSET"}
	expect := []int{2, 2, 2}
	pipelined, _ := s.ext("PIPELINING")
	reset := s.needReset && pipelined
	s.needReset = false
	if reset {
		cmds = append([]string{"RSET"}, cmds...)
		expect = append([]int{2}, expect...)
	}
	answers, err := s.exchange(cmds, expect, pipelined, nil, 0, func(done []answer) bool {
		// Without pipelining, a refused MAIL ends the probe; with no
		// transaction open there is nothing to reset either.
		return done[0].ok
	})
	if reset {
		if len(answers) == 0 || (!answers[0].ok && len(answers) == 1 && err != nil) {
			return false, true
		}
		answers = answers[1:]
	}
	switch {
	case len(answers) == 0:
		t.setAll([]int{0}, s.lost("sending MAIL FROM", err, false))
		return false, false
	case !answers[0].ok:
		f := replyFailure(answers[0].r).soften()
		t.set(0, f)
		t.lastStep = "MAIL FROM:<>"
		return err == nil, false
	case len(answers) == 1:
		t.setAll([]int{0}, s.lost("sending RCPT TO", err, false))
		return false, false
	}
	r := answers[1].r
	if r.Positive() {
		t.delivered([]int{0}, r)
	} else {
		t.reply([]int{0}, r, "RCPT TO")
	}
	// The session is clean only when RSET was answered.
	return err == nil && len(answers) == 3 && answers[2].ok, false
}
