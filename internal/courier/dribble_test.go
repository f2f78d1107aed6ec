package courier

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// dribbler is a small SMTP server on a loopback port that answers like an
// ordinary MTA, except that the reply to one step is sent one byte at a
// time: the slow next hop of issue 13. It records the commands it saw and,
// per dribbled reply, whether the client hung up before the reply was
// complete.
type dribbler struct {
	addr string
	// slow is the step whose reply dribbles: "greeting", a verb ("EHLO",
	// "RCPT", "BDAT", "QUIT"), or "." for the reply to the final dot.
	slow  string
	every time.Duration
	ext   []string // EHLO keywords offered
	// greeting, when set, replaces the ordinary greeting.
	greeting string

	mu   sync.Mutex
	cmds []string
	// dribbles gets one value per dribbled reply: true when all of it
	// but its last byte went out (the last follows the report), false when
	// the client hung up before.
	dribbles chan bool
}

// dribbleReply is long enough that, at one byte per 200 ms, sending it
// takes far longer than any timeout the tests set.
const dribbleReply = "250 2.0.0 Ok: queued as DRIBBLE0001\r\n"

func startDribbler(t *testing.T, slow string, ext ...string) *dribbler {
	t.Helper()
	return newDribbler(slow, ext...).start(t)
}

// newDribbler makes a dribbler to be adjusted before start.
func newDribbler(slow string, ext ...string) *dribbler {
	return &dribbler{slow: slow, every: 200 * time.Millisecond, ext: ext, dribbles: make(chan bool, 16)}
}

func (d *dribbler) start(t *testing.T) *dribbler {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	d.addr = l.Addr().String()
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go d.serve(c)
		}
	}()
	return d
}

func (d *dribbler) commands() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.cmds...)
}

// outcome waits for the first dribbled reply to end, either way.
func (d *dribbler) outcome(t *testing.T) (complete bool) {
	t.Helper()
	select {
	case complete = <-d.dribbles:
		return complete
	case <-time.After(30 * time.Second):
		t.Fatal("no reply was ever dribbled")
		return false
	}
}

func (d *dribbler) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	say := func(step, s string) bool {
		if step != d.slow {
			_, err := io.WriteString(c, s)
			return err == nil
		}
		if step == "greeting" {
			s = "220 dribble.test ESMTP at one byte per 200 ms\r\n"
		}
		for i := 0; i < len(s)-1; i++ {
			if _, err := c.Write([]byte{s[i]}); err != nil {
				d.dribbles <- false
				return false
			}
			time.Sleep(d.every)
		}
		// Reported before the last byte leaves, so that a client that
		// waited for the whole reply cannot have it before the report.
		d.dribbles <- true
		_, err := c.Write([]byte{s[len(s)-1]})
		return err == nil
	}
	greeting := "220 dribble.test ESMTP\r\n"
	if d.greeting != "" {
		greeting = d.greeting
	}
	if !say("greeting", greeting) {
		return
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		d.mu.Lock()
		d.cmds = append(d.cmds, line)
		d.mu.Unlock()
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		var r string
		switch verb {
		case "EHLO":
			r = "250-dribble.test\r\n"
			for _, e := range d.ext {
				r += "250-" + e + "\r\n"
			}
			r += "250 ENHANCEDSTATUSCODES\r\n"
		case "HELO", "RSET", "NOOP":
			r = "250 2.0.0 Ok\r\n"
		case "MAIL":
			r = "250 2.1.0 Ok\r\n"
		case "RCPT":
			addr := strings.TrimPrefix(strings.ToUpper(arg), "TO:<")
			switch {
			case strings.HasPrefix(addr, "GONE"):
				r = "550 5.1.1 <" + strings.ToLower(addr) + " no such user\r\n"
			case strings.HasPrefix(addr, "LATER"):
				r = "451 4.3.0 try again later\r\n"
			default:
				r = "250 2.1.5 Ok\r\n"
			}
		case "DATA":
			if !say("DATA", "354 End data with <CR><LF>.<CR><LF>\r\n") {
				return
			}
			for {
				l, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
			}
			verb, r = ".", dribbleReply
		case "BDAT":
			n, _ := strconv.Atoi(strings.Fields(arg + " x")[0])
			if _, err := io.CopyN(io.Discard, br, int64(n)); err != nil {
				return
			}
			r = dribbleReply
		case "QUIT":
			say("QUIT", "221 2.0.0 Bye\r\n")
			return
		default:
			r = "502 5.5.2 Error: command not recognized\r\n"
		}
		if !say(verb, r) {
			return
		}
	}
}

// A next hop that dribbles its reply to the final dot is cut once the
// reply has not arrived whole within DataDoneTimeout, however steadily the
// bytes come: the recipient is deferred as a possible duplicate. Before the
// fix every byte moved the deadline and the dribble was waited out.
func TestDataDoneTimeoutBoundsTheWholeReply(t *testing.T) {
	t.Parallel()
	d := startDribbler(t, ".")
	c, _ := newCourier(t, Config{TLS: TLSNone, DataDoneTimeout: 600 * time.Millisecond})
	res := deliver(t, c, Route{NextHop: d.addr}, newMessage("DD1", "a@example.org", testBody, "b@example.net"))
	wantStatus(t, res, Deferred)
	if !res[0].MaybeDuplicate || !strings.Contains(res[0].Diagnostic(), "end of data") {
		t.Errorf("the final dot went out and no reply came: %+v", res[0])
	}
	if d.outcome(t) {
		t.Error("the courier waited for the whole dribbled reply to the final dot")
	}
}

// A dribbled greeting and a dribbled reply to RCPT are cut at the command
// timeout, with nothing sent and no duplicate possible.
func TestCommandTimeoutBoundsTheWholeReply(t *testing.T) {
	t.Parallel()
	for _, step := range []string{"greeting", "EHLO", "RCPT"} {
		t.Run(step, func(t *testing.T) {
			t.Parallel()
			d := startDribbler(t, step, "PIPELINING")
			c, _ := newCourier(t, Config{TLS: TLSNone, CommandTimeout: 600 * time.Millisecond})
			res := deliver(t, c, Route{NextHop: d.addr}, newMessage("CT1", "a@example.org", testBody, "b@example.net"))
			wantStatus(t, res, Deferred)
			if res[0].MaybeDuplicate || !strings.Contains(res[0].Diagnostic(), "timeout") {
				t.Errorf("%+v", res[0])
			}
			if d.outcome(t) {
				t.Errorf("the courier waited for the whole dribbled reply to %s", step)
			}
			for _, cmd := range d.commands() {
				if cmd == "DATA" {
					t.Error("DATA was sent although the dribbling reply came before it")
				}
			}
		})
	}
}

// The reply to QUIT decides nothing: a server that dribbles it must not
// hold the delivery, whose outcome is known already. The session is past
// MaxReuseTime, so the pool ends it with QUIT as the delivery returns.
func TestDeliverDoesNotWaitForQUIT(t *testing.T) {
	t.Parallel()
	d := startDribbler(t, "QUIT")
	c, _ := newCourier(t, Config{TLS: TLSNone, MaxReuseTime: time.Nanosecond})
	res := deliver(t, c, Route{NextHop: d.addr}, newMessage("Q1", "a@example.org", testBody, "b@example.net"))
	wantStatus(t, res, Delivered)
	select {
	case complete := <-d.dribbles:
		t.Errorf("Deliver returned only after the reply to QUIT had ended (complete: %v)", complete)
	default:
	}
}

// FinishBy bounds the whole attempt. A next hop that dribbles its reply to
// the final dot is given up on at FinishBy although DataDoneTimeout is
// far away: the recipient is Deferred as a possible duplicate, with a
// reply that says the next hop did not answer in time, and the connection
// is closed, never pooled.
func TestFinishByCutsTheReplyToTheFinalDot(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ext  []string
		msg  func() *Message
	}{
		{"DATA", nil, func() *Message { return newMessage("FB1", "a@example.org", testBody, "b@example.net") }},
		{"BDAT", []string{"PIPELINING", "CHUNKING"}, func() *Message { return inMemory("FB2", testBody, "b@example.net") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			slow := "."
			if tc.name == "BDAT" {
				slow = "BDAT"
			}
			d := startDribbler(t, slow, tc.ext...)
			c, _ := newCourier(t, Config{TLS: TLSNone, IdleTimeout: time.Minute})
			m := tc.msg()
			m.FinishBy = time.Now().Add(time.Second)
			res := deliver(t, c, Route{NextHop: d.addr}, m)
			wantStatus(t, res, Deferred)
			if !res[0].MaybeDuplicate || !strings.Contains(res[0].Diagnostic(), "did not answer in time") {
				t.Errorf("%+v", res[0])
			}
			if d.outcome(t) {
				t.Error("the courier waited for the whole dribbled reply")
			}
			if total, _, _ := c.pool.stats(""); total != 0 {
				t.Errorf("%d connections kept after FinishBy passed, want none", total)
			}
			var sent bool
			for _, cmd := range d.commands() {
				sent = sent || cmd == "DATA" || strings.HasPrefix(cmd, "BDAT")
			}
			if !sent {
				t.Errorf("the content never went: %q", d.commands())
			}
		})
	}
}

// FinishBy that passes before the content has gone makes no duplicate:
// the recipients are deferred with nothing sent.
func TestFinishByBeforeTheContent(t *testing.T) {
	t.Parallel()
	d := startDribbler(t, "RCPT")
	c, _ := newCourier(t, Config{TLS: TLSNone})
	m := newMessage("FB3", "a@example.org", testBody, "b@example.net", "c@example.net")
	m.FinishBy = time.Now().Add(time.Second)
	res := deliver(t, c, Route{NextHop: d.addr}, m)
	wantStatus(t, res, Deferred, Deferred)
	for _, r := range res {
		if r.MaybeDuplicate || !strings.Contains(r.Diagnostic(), "did not answer in time") {
			t.Errorf("%+v", r)
		}
	}
	if d.outcome(t) {
		t.Error("the courier waited for the whole dribbled reply to RCPT")
	}
	for _, cmd := range d.commands() {
		if cmd == "DATA" {
			t.Error("DATA was sent after FinishBy passed")
		}
	}
}

// A recipient batch that comes after FinishBy passed is not tried: with
// one recipient per transaction, the first is delivered and the second,
// whose turn comes too late, is Deferred without a connection.
func TestFinishByEndsLaterBatches(t *testing.T) {
	t.Parallel()
	d := startDribbler(t, ".")
	c, _ := newCourier(t, Config{TLS: TLSNone, MaxRecipientsPerTransaction: 1})
	m := newMessage("FB4", "a@example.org", testBody, "b@example.net", "c@example.net")
	m.FinishBy = time.Now().Add(time.Second)
	res := deliver(t, c, Route{NextHop: d.addr}, m)
	wantStatus(t, res, Deferred, Deferred)
	if !res[0].MaybeDuplicate || res[1].MaybeDuplicate {
		t.Errorf("the first batch had its dot written, the second nothing: %+v / %+v", res[0], res[1])
	}
	if !strings.Contains(res[1].Diagnostic(), "did not answer in time") {
		t.Errorf("%+v", res[1])
	}
	n := 0
	for _, cmd := range d.commands() {
		if strings.HasPrefix(cmd, "MAIL") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d transactions began, want 1", n)
	}
}
