package courier

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

func TestDeliverBytesAndDSNParameters(t *testing.T) {
	t.Parallel()
	m := startMTA(t, func(s *smtp.Server) { s.EnableDSN = true })
	c, _ := newCourier(t, Config{TLS: TLSNone})
	msg := newMessage("Q1", "a@example.org", testBody, "b@example.net", "c+tag@example.net")
	msg.Recipients[0].Notify = []string{"failure", "DELAY"}
	msg.Recipients[0].ORcpt = "rfc822;B+x=y@Example.net"
	msg.RET, msg.EnvID = "HDRS", "env 42+"
	res := deliver(t, c, Route{NextHop: m.addr, Domain: "example.net"}, msg)
	wantStatus(t, res, Delivered, Delivered)
	if res[0].Reply.Code != 250 || !res[0].Remote || res[0].Host != m.addr || res[0].TLS != "none" || !strings.HasPrefix(res[0].Diagnostic(), "250 ") {
		t.Errorf("result %+v", res[0])
	}
	got := m.received()
	if len(got) != 1 {
		t.Fatalf("server received %d transactions, want 1 (both recipients in one)", len(got))
	}
	r := got[0]
	if string(r.data) != testBody {
		t.Errorf("bytes changed in transit:\n%q\nwant\n%q", r.data, testBody)
	}
	if r.helo != "gw.example.org" {
		t.Errorf("EHLO name %q", r.helo)
	}
	if r.mopts.Return != smtp.DSNReturnHeaders || r.mopts.EnvelopeID != "env 42+" {
		t.Errorf("RET/ENVID not passed on: %+v", r.mopts)
	}
	o := r.ropts[0]
	if len(o.Notify) != 2 || o.Notify[0] != smtp.DSNNotifyFailure || o.Notify[1] != smtp.DSNNotifyDelayed {
		t.Errorf("NOTIFY = %v", o.Notify)
	}
	if o.OriginalRecipientType != smtp.DSNAddressTypeRFC822 || o.OriginalRecipient != "B+x=y@Example.net" {
		t.Errorf("ORCPT = %s;%s", o.OriginalRecipientType, o.OriginalRecipient)
	}
}

func TestNoDSNParametersWithoutDSN(t *testing.T) {
	t.Parallel()
	// go-smtp refuses NOTIFY and ORCPT when it does not offer DSN, so
	// the delivery only succeeds if the courier leaves them out.
	m := startMTA(t, nil)
	c, _ := newCourier(t, Config{TLS: TLSNone})
	msg := newMessage("Q2", "a@example.org", testBody, "b@example.net")
	msg.Recipients[0].Notify = []string{"SUCCESS"}
	msg.Recipients[0].ORcpt = "rfc822;b@example.net"
	msg.RET = "FULL"
	wantStatus(t, deliver(t, c, Route{NextHop: m.addr}, msg), Delivered)
}

func TestPartialRecipientFailures(t *testing.T) {
	t.Parallel()
	m := startMTA(t, nil)
	m.set(refuseGoneAndFull)
	c, _ := newCourier(t, Config{TLS: TLSNone})
	msg := newMessage("Q3", "a@example.org", testBody, "gone@example.net", "ok@example.net", "full@example.net")
	res := deliver(t, c, Route{NextHop: m.addr}, msg)
	wantStatus(t, res, Failed, Delivered, Deferred)
	if res[0].Reply.Code != 550 || !res[0].Remote || res[0].Enhanced.String() != "5.1.1" || res[0].Diagnostic() != "550 5.1.1 no such user" {
		t.Errorf("failed recipient: %+v", res[0])
	}
	if res[2].Enhanced.String() != "4.2.2" {
		t.Errorf("deferred recipient: %+v", res[2])
	}
	if got := m.received(); len(got) != 1 || len(got[0].rcpts) != 1 || got[0].rcpts[0] != "ok@example.net" {
		t.Errorf("server got %+v", got)
	}
}

func TestTemporaryThenSuccess(t *testing.T) {
	t.Parallel()
	m := startMTA(t, nil)
	m.set(func(m *mta) {
		m.mailErr = func(string) error {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}
		}
	})
	c, _ := newCourier(t, Config{TLS: TLSNone})
	msg := newMessage("Q4", "a@example.org", testBody, "b@example.net")
	res := deliver(t, c, Route{NextHop: m.addr}, msg)
	wantStatus(t, res, Deferred)
	if res[0].Diagnostic() != "451 4.3.0 try later" {
		t.Errorf("reply %q", res[0].Diagnostic())
	}
	m.set(func(m *mta) { m.mailErr = nil })
	wantStatus(t, deliver(t, c, Route{NextHop: m.addr}, msg), Delivered)
	if n := len(m.received()); n != 1 {
		t.Errorf("server has %d messages, want 1", n)
	}
}

func TestPermanentFailureAtEndOfData(t *testing.T) {
	t.Parallel()
	m := startMTA(t, nil)
	m.set(func(m *mta) {
		m.dataErr = func([]byte) error {
			return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "content refused"}
		}
	})
	c, _ := newCourier(t, Config{TLS: TLSNone})
	res := deliver(t, c, Route{NextHop: m.addr}, newMessage("Q5", "a@example.org", testBody, "b@example.net", "c@example.net"))
	wantStatus(t, res, Failed, Failed)
	if res[1].Diagnostic() != "554 5.7.1 content refused" || res[1].MaybeDuplicate {
		t.Errorf("%+v", res[1])
	}
}

func TestConnectionLostAfterFinalDot(t *testing.T) {
	t.Parallel()
	m := startMTA(t, nil)
	m.set(func(m *mta) { m.dropData = true })
	c, logs := newCourier(t, Config{TLS: TLSNone})
	res := deliver(t, c, Route{NextHop: m.addr}, newMessage("Q6", "a@example.org", testBody, "b@example.net"))
	wantStatus(t, res, Deferred)
	if !res[0].MaybeDuplicate || !strings.Contains(res[0].Diagnostic(), "duplicate") {
		t.Errorf("lost after the dot must be flagged as a possible duplicate: %+v", res[0])
	}
	if !strings.Contains(logs.String(), `"maybe_duplicate":true`) {
		t.Errorf("log does not say a duplicate is possible:\n%s", logs)
	}
}

func TestSMTPUTF8Required(t *testing.T) {
	t.Parallel()
	plain := startMTA(t, nil)
	c, _ := newCourier(t, Config{TLS: TLSNone})

	// The message needs SMTPUTF8 (UTF-8 header): every recipient fails.
	msg := newMessage("Q7", "a@example.org", "Subject: caf\u00e9\r\n\r\nx\r\n", "b@example.net", "c@example.net")
	msg.SMTPUTF8 = true
	res := deliver(t, c, Route{NextHop: plain.addr}, msg)
	wantStatus(t, res, Failed, Failed)
	if res[0].Enhanced.String() != "5.6.7" || res[0].HostName == "" {
		t.Errorf("%+v", res[0])
	}
	// Only one recipient's address is UTF-8: only that one fails.
	msg = newMessage("Q8", "a@example.org", testBody, "j\u00fcrgen@example.net", "c@example.net")
	res = deliver(t, c, Route{NextHop: plain.addr}, msg)
	wantStatus(t, res, Failed, Delivered)
	if got := plain.received(); len(got) != 1 || got[0].rcpts[0] != "c@example.net" || got[0].mopts.UTF8 {
		t.Errorf("server got %+v", got)
	}

	// A server with SMTPUTF8 gets it all, with the parameter.
	utf := startMTA(t, func(s *smtp.Server) { s.EnableSMTPUTF8 = true })
	msg = newMessage("Q9", "a@example.org", testBody, "j\u00fcrgen@example.net")
	wantStatus(t, deliver(t, c, Route{NextHop: utf.addr}, msg), Delivered)
	if got := utf.received(); len(got) != 1 || !got[0].mopts.UTF8 {
		t.Errorf("SMTPUTF8 not declared: %+v", got)
	}
}

func TestEightBitMIMEDeclared(t *testing.T) {
	t.Parallel()
	m := startMTA(t, nil)
	c, _ := newCourier(t, Config{TLS: TLSNone})
	body := "Subject: x\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe\r\n"
	msg := newMessage("Q10", "a@example.org", body, "b@example.net")
	msg.EightBit = true
	wantStatus(t, deliver(t, c, Route{NextHop: m.addr}, msg), Delivered)
	got := m.received()
	if len(got) != 1 || got[0].mopts.Body != smtp.Body8BitMIME || string(got[0].data) != body {
		t.Errorf("8BITMIME: %+v", got)
	}
}

func TestConnectionReuse(t *testing.T) {
	t.Parallel()
	m := startMTA(t, nil)
	c, _ := newCourier(t, Config{TLS: TLSNone, IdleTimeout: time.Minute, MaxRecipientsPerTransaction: 2})
	r := Route{NextHop: m.addr, Domain: "example.net"}
	for i := 0; i < 3; i++ {
		res := deliver(t, c, r, newMessage("R", "a@example.org", testBody, "b@example.net", "c@example.net", "d@example.net", "e@example.net", "f@example.net"))
		wantStatus(t, res, Delivered, Delivered, Delivered, Delivered, Delivered)
	}
	if n := m.conns.Load(); n != 1 {
		t.Errorf("server saw %d connections for 3 messages, want 1 (reuse)", n)
	}
	got := m.received()
	if len(got) != 9 {
		t.Fatalf("server received %d transactions, want 9 (3 messages x 3 batches of at most 2)", len(got))
	}
	for _, g := range got {
		if len(g.rcpts) > 2 {
			t.Errorf("transaction with %d recipients, limit is 2", len(g.rcpts))
		}
	}
	if _, dest, idle := c.pool.stats(poolKey(Route{NextHop: m.addr, TLS: TLSNone})); dest != 1 || idle != 1 {
		t.Errorf("pool holds %d connections (%d idle), want 1 idle", dest, idle)
	}
	c.Close()
	if total, _, _ := c.pool.stats(""); total != 0 {
		t.Errorf("after Close %d connections remain", total)
	}
	res := deliver(t, c, r, newMessage("R", "a@example.org", testBody, "b@example.net"))
	wantStatus(t, res, Deferred)
}

func TestReuseSurvivesServerClosingIdleConnection(t *testing.T) {
	t.Parallel()
	m := startMTA(t, func(s *smtp.Server) { s.ReadTimeout = time.Second })
	c, _ := newCourier(t, Config{TLS: TLSNone, IdleTimeout: time.Minute})
	r := Route{NextHop: m.addr}
	wantStatus(t, deliver(t, c, r, newMessage("S1", "a@example.org", testBody, "b@example.net")), Delivered)
	// Wait until the server has given up on the idle connection.
	deadline := time.Now().Add(10 * time.Second)
	for m.active.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	wantStatus(t, deliver(t, c, r, newMessage("S2", "a@example.org", testBody, "b@example.net")), Delivered)
	if n := m.conns.Load(); n != 2 {
		t.Errorf("server saw %d connections, want 2 (the stale one replaced)", n)
	}
}

func TestConcurrencyLimitPerDestination(t *testing.T) {
	t.Parallel()
	m := startMTA(t, nil)
	m.set(func(m *mta) {
		m.dataErr = func([]byte) error {
			time.Sleep(30 * time.Millisecond) // keep transactions overlapping
			return nil
		}
	})
	c, _ := newCourier(t, Config{TLS: TLSNone, MaxPerDestination: 2, IdleTimeout: time.Minute})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := c.Deliver(context.Background(), Route{NextHop: m.addr}, newMessage("C", "a@example.org", testBody, "b@example.net"))
			wantStatus(t, res, Delivered)
		}()
	}
	wg.Wait()
	if n := m.maxConc.Load(); n > 2 {
		t.Errorf("server saw %d concurrent connections, limit is 2", n)
	}
	if n := len(m.received()); n != 8 {
		t.Errorf("server received %d messages, want 8", n)
	}
}

func TestTotalLimitEvictsIdleConnection(t *testing.T) {
	t.Parallel()
	a := startMTA(t, nil)
	b := startMTA(t, nil)
	c, _ := newCourier(t, Config{TLS: TLSNone, MaxConnections: 1, IdleTimeout: time.Minute})
	wantStatus(t, deliver(t, c, Route{NextHop: a.addr}, newMessage("E1", "a@example.org", testBody, "x@a.test")), Delivered)
	// The idle connection to a holds the only slot; b must still get one.
	wantStatus(t, deliver(t, c, Route{NextHop: b.addr}, newMessage("E2", "a@example.org", testBody, "x@b.test")), Delivered)
	if total, _, _ := c.pool.stats(""); total != 1 {
		t.Errorf("%d connections open, limit 1", total)
	}
}

func TestCancelledAttemptIsDeferred(t *testing.T) {
	t.Parallel()
	m := startMTA(t, nil)
	inData := make(chan struct{}, 1)
	release := make(chan struct{})
	defer close(release)
	m.set(func(m *mta) {
		m.dataErr = func([]byte) error {
			inData <- struct{}{}
			<-release
			return nil
		}
	})
	c, _ := newCourier(t, Config{TLS: TLSNone})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once the server holds the whole message and the courier
		// waits for the reply to the final dot.
		<-inData
		cancel()
	}()
	res := c.Deliver(ctx, Route{NextHop: m.addr}, newMessage("X", "a@example.org", testBody, "b@example.net"))
	wantStatus(t, res, Deferred)
	if !res[0].MaybeDuplicate {
		t.Errorf("cancelled while waiting for the reply to the dot: %+v", res[0])
	}
}

func TestUnreadableMessageIsDeferred(t *testing.T) {
	t.Parallel()
	m := startMTA(t, nil)
	c, _ := newCourier(t, Config{TLS: TLSNone})
	msg := newMessage("U", "a@example.org", testBody, "b@example.net")
	msg.Open = func() (io.ReadCloser, error) { return nil, errors.New("spool file missing") }
	res := deliver(t, c, Route{NextHop: m.addr}, msg)
	wantStatus(t, res, Deferred)
	if res[0].Enhanced.String() != "4.3.0" {
		t.Errorf("%+v", res[0])
	}
	// A reader that breaks half way: the transaction is abandoned without
	// the final dot, so the server never takes a truncated message.
	msg.Open = func() (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(strings.NewReader("Subject: x\r\n\r\nhalf"), errReader{})), nil
	}
	res = deliver(t, c, Route{NextHop: m.addr}, msg)
	wantStatus(t, res, Deferred)
	if n := len(m.received()); n != 0 {
		t.Errorf("server accepted %d truncated messages", n)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("disk read error") }

func TestBadAddressesNeverReachTheServer(t *testing.T) {
	t.Parallel()
	m := startMTA(t, nil)
	c, _ := newCourier(t, Config{TLS: TLSNone})
	res := deliver(t, c, Route{NextHop: m.addr}, newMessage("B", "a@example.org", testBody, "x@y>\r\nRCPT TO:<evil@z", "ok@example.net"))
	wantStatus(t, res, Failed, Delivered)
	res = deliver(t, c, Route{NextHop: m.addr}, newMessage("B", "a@x\r\nRSET", testBody, "ok@example.net"))
	wantStatus(t, res, Failed)
	if got := m.received(); len(got) != 1 || len(got[0].rcpts) != 1 {
		t.Errorf("server got %+v", got)
	}
}

func TestOneLogLinePerAttempt(t *testing.T) {
	t.Parallel()
	m := startMTA(t, nil)
	m.set(func(m *mta) {
		m.rcptErr = func(to string) error {
			if strings.HasPrefix(to, "gone") {
				return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
			}
			return nil
		}
	})
	c, logs := newCourier(t, Config{TLS: TLSNone})
	deliver(t, c, Route{NextHop: m.addr}, newMessage("LOG1", "a@example.org", testBody, "gone@example.net", "ok@example.net"))
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("%d log lines, want 1:\n%s", len(lines), logs)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"queue_id", "rcpts", "next_hop", "tls", "reply", "outcome"} {
		if _, ok := rec[k]; !ok {
			t.Errorf("log line lacks %s: %s", k, lines[0])
		}
	}
	if rec["queue_id"] != "LOG1" || rec["outcome"] != "partial" || !strings.Contains(rec["results"].(string), "gone@example.net=failed 5.1.1") {
		t.Errorf("log line: %s", lines[0])
	}
	if strings.Contains(logs.String(), "Secret body") || strings.Contains(logs.String(), "courier test") {
		t.Errorf("message content in the log: %s", logs)
	}
}

func TestEndlessReplyIsCutOff(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rawServer(t, l, func(c net.Conn) {
		_, _ = c.Write([]byte("220 mx ESMTP\r\n"))
		buf := make([]byte, 512)
		_, _ = c.Read(buf) // EHLO
		line := []byte("250-" + strings.Repeat("X", 1000) + "\r\n")
		for i := 0; i < 10000; i++ { // 10 MB if nobody stops reading
			if _, err := c.Write(line); err != nil {
				return
			}
		}
	})
	c, _ := newCourier(t, Config{TLS: TLSNone})
	res := deliver(t, c, Route{NextHop: l.Addr().String()}, newMessage("L", "a@example.org", testBody, "b@example.net"))
	wantStatus(t, res, Deferred)
	// The reply is refused at its hundred-and-first line, long before the
	// 256 KiB that may follow one command.
	if !strings.Contains(res[0].Diagnostic(), "reply of more than 100 lines") {
		t.Errorf("%+v", res[0])
	}
}

func TestUnresolvableRelayIsDeferred(t *testing.T) {
	t.Parallel()
	c, _ := newCourier(t, Config{TLS: TLSNone, DNSServer: dnsServer(t, nil, nil)})
	res := deliver(t, c, Route{NextHop: "relay.invalid.test:25"}, newMessage("N", "a@example.org", testBody, "b@example.net"))
	wantStatus(t, res, Deferred)
	if res[0].Enhanced.String() != "4.4.3" || !strings.Contains(res[0].Diagnostic(), "relay.invalid.test") {
		t.Errorf("%+v", res[0])
	}
}

func TestUnreachableHopIsTriedOncePerMessage(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var greetings atomic.Int32
	rawServer(t, l, func(c net.Conn) {
		greetings.Add(1)
		_, _ = c.Write([]byte("421 4.3.2 not now\r\n"))
	})
	c, _ := newCourier(t, Config{TLS: TLSNone, MaxRecipientsPerTransaction: 1})
	res := deliver(t, c, Route{NextHop: l.Addr().String()}, newMessage("O", "a@example.org", testBody, "b@example.net", "c@example.net", "d@example.net"))
	wantStatus(t, res, Deferred, Deferred, Deferred)
	if n := greetings.Load(); n != 1 {
		t.Errorf("the refusing host was tried %d times for one message, want 1", n)
	}
	if res[2].Diagnostic() != "421 4.3.2 not now" || res[2].Reply.Code != 421 || !res[2].Remote || res[2].HostName != "127.0.0.1" {
		t.Errorf("%+v", res[2])
	}
}
