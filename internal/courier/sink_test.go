package courier

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// These tests run Postfix's smtp-sink, a real SMTP server with fault
// switches, on a free loopback port.

func TestSinkOutageThenRecovery(t *testing.T) {
	t.Parallel()
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	c, _ := newCourier(t, Config{TLS: TLSNone})
	msg := newMessage("K1", "a@example.org", testBody, "b@example.net", "c@example.net")
	res := deliver(t, c, Route{NextHop: addr}, msg)
	wantStatus(t, res, Deferred, Deferred)
	if res[0].Enhanced.String() != "4.4.1" || res[0].Remote || res[0].Host != "" {
		t.Errorf("outage: %+v", res[0])
	}

	s := startSink(t, addr)
	res = deliver(t, c, Route{NextHop: addr}, msg)
	wantStatus(t, res, Delivered, Delivered)
	dumps := s.dumps(t)
	if len(dumps) != 1 {
		t.Fatalf("smtp-sink captured %d messages, want 1", len(dumps))
	}
	d := dumps[0]
	for _, want := range []string{"X-Mail-Args: <a@example.org>", "X-Rcpt-Args: <b@example.net>", "X-Rcpt-Args: <c@example.net>", "X-Helo-Args: gw.example.org", "Secret body line", "\n.leading dot\n"} {
		if !strings.Contains(d, want) {
			t.Errorf("dump lacks %q:\n%s", want, d)
		}
	}
}

func TestSinkSoftAndHardRecipientRejects(t *testing.T) {
	t.Parallel()
	soft := startSink(t, "", "-r", "RCPT")
	hard := startSink(t, "", "-f", "RCPT")
	c, _ := newCourier(t, Config{TLS: TLSNone})
	res := deliver(t, c, Route{NextHop: soft.addr}, newMessage("K2", "a@example.org", testBody, "b@example.net"))
	wantStatus(t, res, Deferred)
	if res[0].Reply.Code != 450 || !res[0].Remote || res[0].Enhanced.String() != "4.3.0" {
		t.Errorf("soft: %+v", res[0])
	}
	res = deliver(t, c, Route{NextHop: hard.addr}, newMessage("K3", "a@example.org", testBody, "b@example.net"))
	wantStatus(t, res, Failed)
	if res[0].Reply.Code != 500 || !res[0].Remote || res[0].Enhanced.String() != "5.3.0" || res[0].Diagnostic() != "500 5.3.0 Error: command failed" {
		t.Errorf("hard: %+v", res[0])
	}
	if n := len(soft.dumps(t)) + len(hard.dumps(t)); n != 0 {
		t.Errorf("%d messages captured although every recipient was refused", n)
	}
}

func TestSinkPartialFailureOnSecondTransaction(t *testing.T) {
	t.Parallel()
	// smtp-sink refuses the final dot with 4xx: every recipient of that
	// transaction is deferred, with the reply.
	s := startSink(t, "", "-r", ".")
	c, _ := newCourier(t, Config{TLS: TLSNone})
	res := deliver(t, c, Route{NextHop: s.addr}, newMessage("K4", "a@example.org", testBody, "b@example.net", "c@example.net"))
	wantStatus(t, res, Deferred, Deferred)
	if res[1].Reply.Code != 450 || !res[1].Remote || res[1].MaybeDuplicate {
		t.Errorf("%+v", res[1])
	}
}

func TestSink421AfterDot(t *testing.T) {
	t.Parallel()
	// -Q .: a 421 reply to the final dot, then the server hangs up. That
	// is a reply, so no duplicate is suspected.
	s := startSink(t, "", "-Q", ".")
	c, _ := newCourier(t, Config{TLS: TLSNone})
	res := deliver(t, c, Route{NextHop: s.addr}, newMessage("K5", "a@example.org", testBody, "b@example.net"))
	wantStatus(t, res, Deferred)
	if res[0].Reply.Code != 421 || !res[0].Remote || res[0].MaybeDuplicate {
		t.Errorf("%+v", res[0])
	}
	// The session was closed by the server; the next message needs a new
	// connection and gets the same answer rather than a broken pipe.
	res = deliver(t, c, Route{NextHop: s.addr}, newMessage("K6", "a@example.org", testBody, "b@example.net"))
	if res[0].Reply.Code != 421 || !res[0].Remote {
		t.Errorf("second message: %+v", res[0])
	}
}

func TestSinkDisconnectAfterDotIsMaybeDuplicate(t *testing.T) {
	t.Parallel()
	// -q .: smtp-sink hangs up without a reply once it has the dot.
	s := startSink(t, "", "-q", ".")
	c, _ := newCourier(t, Config{TLS: TLSNone})
	res := deliver(t, c, Route{NextHop: s.addr}, newMessage("K7", "a@example.org", testBody, "b@example.net"))
	wantStatus(t, res, Deferred)
	if !res[0].MaybeDuplicate || res[0].Enhanced.String() != "4.4.2" {
		t.Errorf("%+v", res[0])
	}
}

func TestSinkSlowServerTimesOut(t *testing.T) {
	t.Parallel()
	// -w 3: three seconds before the reply to DATA; the command timeout
	// is one second.
	s := startSink(t, "", "-w", "3")
	c, _ := newCourier(t, Config{TLS: TLSNone, CommandTimeout: time.Second})
	res := deliver(t, c, Route{NextHop: s.addr}, newMessage("K8", "a@example.org", testBody, "b@example.net"))
	wantStatus(t, res, Deferred)
	if !strings.Contains(res[0].Diagnostic(), "timeout") || res[0].MaybeDuplicate {
		t.Errorf("%+v", res[0])
	}
}

func TestSinkWithoutSTARTTLSAndRequiredTLS(t *testing.T) {
	t.Parallel()
	// smtp-sink never offers STARTTLS.
	s := startSink(t, "")
	c, _ := newCourier(t, Config{TLS: TLSRequired})
	res := deliver(t, c, Route{NextHop: s.addr}, newMessage("K9", "a@example.org", testBody, "b@example.net"))
	wantStatus(t, res, Deferred)
	if res[0].Enhanced.String() != "4.7.4" {
		t.Errorf("%+v", res[0])
	}
	if n := len(s.dumps(t)); n != 0 {
		t.Errorf("%d messages went out in the clear", n)
	}
}

func TestSinkNullSenderAndDSNParameters(t *testing.T) {
	t.Parallel()
	s := startSink(t, "")
	c, _ := newCourier(t, Config{TLS: TLSNone})
	msg := newMessage("K10", "", testBody, "b@example.net")
	msg.Recipients[0].Notify = []string{"NEVER"}
	msg.Recipients[0].ORcpt = "rfc822;B@example.net"
	msg.RET, msg.EnvID = "FULL", "id1"
	wantStatus(t, deliver(t, c, Route{NextHop: s.addr}, msg), Delivered)
	d := strings.Join(s.dumps(t), "")
	for _, want := range []string{"X-Mail-Args: <> RET=FULL ENVID=id1", "X-Rcpt-Args: <b@example.net> NOTIFY=NEVER ORCPT=rfc822;B@example.net"} {
		if !strings.Contains(d, want) {
			t.Errorf("dump lacks %q:\n%s", want, d)
		}
	}
}

func TestSinkWithoutPipelining(t *testing.T) {
	t.Parallel()
	// -p: no PIPELINING, so each command waits for its reply.
	s := startSink(t, "", "-p")
	c, _ := newCourier(t, Config{TLS: TLSNone})
	res := deliver(t, c, Route{NextHop: s.addr}, newMessage("K11", "a@example.org", testBody, "b@example.net", "c@example.net", "d@example.net"))
	wantStatus(t, res, Delivered, Delivered, Delivered)
	if d := s.dumps(t); len(d) != 1 || strings.Count(d[0], "X-Rcpt-Args:") != 3 {
		t.Errorf("dumps: %q", d)
	}
	// -r MAIL (which implies -p): a refused MAIL ends the transaction.
	refuse := startSink(t, "", "-r", "MAIL")
	res = deliver(t, c, Route{NextHop: refuse.addr}, newMessage("K12", "a@example.org", testBody, "b@example.net", "c@example.net"))
	wantStatus(t, res, Deferred, Deferred)
	if res[0].Reply.Code != 450 || !res[0].Remote {
		t.Errorf("%+v", res[0])
	}
}
