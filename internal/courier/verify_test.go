package courier

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Verify against a real SMTP server (go-smtp) that knows some recipients,
// refuses others for good (550 5.1.1) and some for now (452 4.2.2): each
// probe gets the server's verdict, no DATA is ever sent, the sender is
// the null sender, and the probes share one pooled connection.
func TestVerifyAcceptsAndRefuses(t *testing.T) {
	t.Parallel()
	m := startMTA(t, nil)
	m.set(refuseGoneAndFull)
	c, logs := newCourier(t, Config{TLS: TLSNone, IdleTimeout: time.Minute})
	r := Route{NextHop: m.addr, Domain: "example.net"}
	for _, tc := range []struct {
		addr     string
		status   Status
		code     int
		enhanced string
	}{
		{"ok@example.net", Delivered, 250, "2.0.0"},
		{"gone@example.net", Failed, 550, "5.1.1"},
		{"full@example.net", Deferred, 452, "4.2.2"},
		{"other@example.net", Delivered, 250, "2.0.0"},
	} {
		res := c.Verify(context.Background(), r, tc.addr)
		if res.Rcpt != tc.addr || res.Status != tc.status || res.Reply.Code != tc.code || !res.Remote || res.Enhanced.String() != tc.enhanced || res.MaybeDuplicate {
			t.Errorf("%s: %+v, want %v %d %s", tc.addr, res, tc.status, tc.code, tc.enhanced)
		}
		if res.Host != m.addr || !strings.HasPrefix(res.Diagnostic(), strconv.Itoa(tc.code)+" ") {
			t.Errorf("%s: host %q reply %q", tc.addr, res.Host, res.Diagnostic())
		}
	}
	if n := m.datas.Load(); n != 0 {
		t.Errorf("%d DATA commands during verification", n)
	}
	if got := m.received(); len(got) != 0 {
		t.Errorf("verification delivered %d messages", len(got))
	}
	m.mu.Lock()
	froms := append([]string(nil), m.froms...)
	m.mu.Unlock()
	if len(froms) != 4 {
		t.Errorf("%d MAIL commands for 4 probes", len(froms))
	}
	for _, f := range froms {
		if f != "" {
			t.Errorf("probe sent MAIL FROM:<%s>, want the null sender", f)
		}
	}
	if n := m.conns.Load(); n != 1 {
		t.Errorf("%d connections for 4 probes, want 1 (reused after RSET)", n)
	}
	if _, dest, idle := c.pool.stats(poolKey(Route{NextHop: m.addr, TLS: TLSNone})); dest != 1 || idle != 1 {
		t.Errorf("pool holds %d connections (%d idle), want 1 idle", dest, idle)
	}
	// A delivery reuses the probes' connection.
	wantStatus(t, deliver(t, c, r, newMessage("V1", "a@example.org", testBody, "ok@example.net")), Delivered)
	if n := m.conns.Load(); n != 1 {
		t.Errorf("%d connections after a delivery, want 1", n)
	}
	if !strings.Contains(logs.String(), `"msg":"recipient verification","rcpt":"gone@example.net"`) || !strings.Contains(logs.String(), `"outcome":"refused"`) {
		t.Errorf("the verification is not logged as one:\n%s", logs)
	}
}

// The exact dialogue of a probe, pipelined and not: MAIL FROM:<>, RCPT
// TO, RSET, and never DATA.
func TestVerifyDialogue(t *testing.T) {
	t.Parallel()
	for _, ext := range [][]string{nil, {"PIPELINING"}} {
		d := startDribbler(t, "none", ext...)
		c, _ := newCourier(t, Config{TLS: TLSNone})
		r := Route{NextHop: d.addr}
		ok := c.Verify(context.Background(), r, "someone@example.net")
		gone := c.Verify(context.Background(), r, "gone@example.net")
		later := c.Verify(context.Background(), r, "later@example.net")
		if ok.Status != Delivered || gone.Status != Failed || gone.Enhanced.String() != "5.1.1" || later.Status != Deferred || later.Reply.Code != 451 || !later.Remote {
			t.Errorf("%v: %+v / %+v / %+v", ext, ok, gone, later)
		}
		want := []string{"EHLO gw.example.org",
			"MAIL FROM:<>", "RCPT TO:<someone@example.net>", "RSET",
			"RSET", "MAIL FROM:<>", "RCPT TO:<gone@example.net>", "RSET",
			"RSET", "MAIL FROM:<>", "RCPT TO:<later@example.net>", "RSET"}
		if got := d.commands(); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("%v: dialogue\n%q\nwant\n%q", ext, got, want)
		}
	}
}

// A next hop that answers 451 to everything leaves the recipient
// Deferred; one that refuses the null sender is misconfigured, and its
// refusal is no verdict on the recipient: Deferred as well, not Failed.
func TestVerifyTemporaryAndRefusedNullSender(t *testing.T) {
	t.Parallel()
	m := startMTA(t, nil)
	m.set(func(m *mta) {
		m.rcptErr = func(string) error {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
		}
	})
	c, _ := newCourier(t, Config{TLS: TLSNone})
	res := c.Verify(context.Background(), Route{NextHop: m.addr}, "u@example.net")
	if res.Status != Deferred || res.Reply.Code != 451 || !res.Remote || res.Diagnostic() != "451 4.3.0 try again later" {
		t.Errorf("%+v", res)
	}
	m.set(func(m *mta) {
		m.mailErr = func(string) error {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "no bounces here"}
		}
	})
	res = c.Verify(context.Background(), Route{NextHop: m.addr}, "u@example.net")
	if res.Status != Deferred || res.Reply.Code != 550 || !res.Remote || res.Enhanced.String() != "4.7.1" {
		t.Errorf("refused null sender: %+v", res)
	}
	if n := m.datas.Load(); n != 0 {
		t.Errorf("%d DATA commands during verification", n)
	}
}

// No answer is Deferred, within the command timeout (a dribbled reply to
// RCPT is cut) or the caller's deadline, whichever comes first; a bad
// address never reaches the server.
func TestVerifyWithoutAnAnswer(t *testing.T) {
	t.Parallel()
	d := startDribbler(t, "RCPT")
	c, _ := newCourier(t, Config{TLS: TLSNone, CommandTimeout: 600 * time.Millisecond})
	res := c.Verify(context.Background(), Route{NextHop: d.addr}, "u@example.net")
	// The reply's own timeout and the probe's, both the command timeout,
	// race: either may say so.
	if res.Status != Deferred || res.Remote || !strings.Contains(res.Diagnostic(), "timeout") && !strings.Contains(res.Diagnostic(), "did not answer in time") {
		t.Errorf("%+v", res)
	}
	if d.outcome(t) {
		t.Error("Verify waited for the whole dribbled reply")
	}

	d2 := startDribbler(t, "RCPT")
	c2, _ := newCourier(t, Config{TLS: TLSNone})
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	res = c2.Verify(ctx, Route{NextHop: d2.addr}, "u@example.net")
	if res.Status != Deferred || !strings.Contains(res.Diagnostic(), "did not answer in time") {
		t.Errorf("%+v", res)
	}
	if d2.outcome(t) {
		t.Error("Verify waited past its context for the whole dribbled reply")
	}

	res = c2.Verify(context.Background(), Route{NextHop: d2.addr}, "x@y>\r\nDATA")
	if res.Status != Failed || res.Enhanced.String() != "5.1.3" || res.Host != "" {
		t.Errorf("bad address: %+v", res)
	}
}

// A probe keeps to the pool's limits: with one connection per destination,
// held by a delivery that waits for its reply to the final dot, the probe
// waits for a slot within its deadline and gives up, Deferred, without a
// second connection.
func TestVerifyRespectsThePoolLimit(t *testing.T) {
	t.Parallel()
	m := startMTA(t, nil)
	inData := make(chan struct{}, 1)
	release := make(chan struct{})
	m.set(func(m *mta) {
		m.dataErr = func([]byte) error {
			inData <- struct{}{}
			<-release
			return nil
		}
	})
	c, _ := newCourier(t, Config{TLS: TLSNone, MaxPerDestination: 1, IdleTimeout: time.Minute})
	r := Route{NextHop: m.addr}
	done := make(chan []Result, 1)
	go func() {
		done <- c.Deliver(context.Background(), r, newMessage("V2", "a@example.org", testBody, "b@example.net"))
	}()
	<-inData
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	res := c.Verify(ctx, r, "u@example.net")
	cancel()
	if res.Status != Deferred || !strings.Contains(res.Diagnostic(), "no connection slot") {
		t.Errorf("%+v", res)
	}
	if n := m.conns.Load(); n != 1 {
		t.Errorf("%d connections, limit 1", n)
	}
	close(release)
	wantStatus(t, <-done, Delivered)
	// Now the connection is idle, and the probe takes it.
	if res := c.Verify(context.Background(), r, "u@example.net"); res.Status != Delivered {
		t.Errorf("%+v", res)
	}
	if n := m.conns.Load(); n != 1 {
		t.Errorf("%d connections, want the idle one reused", n)
	}
}
